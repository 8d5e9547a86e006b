"""Model card (``README.md`` with Hub metadata) of a saved stainstyle normalizer or augmenter."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

#: Tags every stainstyle model card carries; the method's own tag is added to them.
BASE_TAGS = ("histopathology", "stain-normalization", "h-and-e")

#: Placeholder used in the usage snippet of a card saved to a local folder.
LOCAL_PLACEHOLDER = "path/to/this/folder"

#: What a model does and how to use it, by kind (``_card_kind`` of its class).
_USAGE = {
    "normalizer": """A fitted `{class_name}` saved with stainstyle {version}. It maps H&E tiles
(uint8 RGB) into the stain style it was fitted on.

## How to use

```python
import stainstyle

normalizer = stainstyle.load("{source}")
normalized = normalizer.transform(tiles)  # uint8 array of shape (N, H, W, 3)
```

From the command line:

```bash
stainstyle normalize --model {source} tiles/ --out normalized/
```""",
    "augmenter": """A `{class_name}` stain augmenter saved with stainstyle {version}. It perturbs
the stain colours of H&E tiles at random, for training.

## How to use

```python
import stainstyle

augmenter = stainstyle.load("{source}", random_state=0)
augmented = augmenter(tiles)  # same type, shape and dtype as tiles
```

From the command line:

```bash
stainstyle augment --model {source} --seed 0 tiles/ --out augmented/
```""",
}

#: Body of the card, below its metadata; filled by :func:`render_model_card`.
_BODY = """
# {class_name} ({method}) for stainstyle

{usage}

## Parameters

{parameters}

## Training data

{training}

## Benchmark

{results}

## Files

- `config.json`: class, parameters, fitted statistics and the stainstyle version.
- `model.safetensors`: fitted arrays and network weights. Loading reads only JSON and
  safetensors and never unpickles.
"""


def _table(rows: Mapping[str, Any], header: tuple[str, str]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    for key, value in rows.items():
        shown = value if isinstance(value, str) else json.dumps(value)
        lines.append(f"| `{key}` | {shown} |")
    return "\n".join(lines)


def render_model_card(
    *,
    class_name: str,
    method: str,
    version: str,
    params: Mapping[str, Any],
    repo_id: str | None = None,
    training_data: str | None = None,
    benchmark: Mapping[str, Any] | None = None,
    datasets: list[str] | None = None,
    license: str | None = None,
    kind: str = "normalizer",
) -> ModelCard:
    """Build the model card of a fitted normalizer or augmenter.

    Parameters
    ----------
    class_name : str
        Estimator class, e.g. ``"MacenkoNormalizer"``.
    method : str
        Short method name, used as a Hub tag (e.g. ``"macenko"``).
    version : str
        stainstyle version that saved the model.
    params : mapping of str to JSON-able values
        Constructor parameters, shown as a table.
    repo_id : str, optional
        Hub repository the card is pushed to; the usage snippet loads from it. When None the
        snippet loads from a local folder.
    training_data : str, optional
        Free-text description of the tiles the model was fitted on (cohort, scanner,
        magnification, tile size, number of tiles).
    benchmark : mapping of str to number or str, optional
        Measured results (metric name to value), shown as a table.
    datasets : list of str, optional
        Hub dataset ids the model was fitted on, recorded in the metadata.
    license : str, optional
        Licence identifier of the saved model, recorded in the metadata.
    kind : {"normalizer", "augmenter"}, default="normalizer"
        What the model is; chooses the usage snippets.

    Returns
    -------
    huggingface_hub.ModelCard
        Card whose metadata has ``library_name: stainstyle``, the tags of :data:`BASE_TAGS`
        plus ``method``, and ``pipeline_tag: image-to-image``.
    """
    data = ModelCardData(
        library_name="stainstyle",
        tags=[*BASE_TAGS, method],
        pipeline_tag="image-to-image",
        datasets=datasets,
        license=license,
    )
    source = repo_id or LOCAL_PLACEHOLDER
    body = _BODY.format(
        class_name=class_name,
        method=method,
        usage=_USAGE[kind].format(class_name=class_name, version=version, source=source),
        parameters=_table(params, ("parameter", "value")) if params else "None.",
        training=training_data or "Not described by the person who saved this model.",
        results=(
            _table(benchmark, ("metric", "value"))
            if benchmark
            else "No benchmark numbers were recorded for this model."
        ),
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")
