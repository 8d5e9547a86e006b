"""Fitted torch modules of a saved model: sizes checked on the meta device, then filled.

The estimator's ``_build_modules()`` hook builds its networks from its parameters and JSON-able
fitted attributes. Built first on the ``meta`` device, which allocates nothing, they are compared
with the safetensors header, so that a configuration can never make the loader allocate more
than the tensors the file holds; only then are they built for real and filled with
``load_state_dict(strict=True)``.

Imports :mod:`.declarations`; torch is imported when a network is checked or built.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stainstyle._persistence.declarations import value_problem

#: Name -> (dtype name, shape) of tensors, as a safetensors header describes them.
Layout = Mapping[str, tuple[str, list[int]]]


def check_network_sizes(
    estimator: Any, listed: Mapping[str, Any], header: Layout, where: str, weights_path: Path
) -> set[str]:
    """Build the networks on the meta device (no memory) and compare them with the header.

    Parameters
    ----------
    estimator : StainNormalizer
        The estimator, with its parameters and JSON-able fitted attributes set.
    listed : mapping of str to dict
        The ``modules`` section of the configuration.
    header : mapping of str to (str, list of int)
        The tensors of ``model.safetensors``, from its header.
    where : str
        The file the configuration came from, for messages.
    weights_path : Path
        ``model.safetensors``, for messages.

    Returns
    -------
    set of str
        The tensor names the modules account for.

    Raises
    ------
    ValueError
        If the networks cannot be built, or their tensors are not those of the header.
    """
    if not listed:
        return set()
    built = _build_on_meta(estimator, listed, where)
    covered = set()
    for name, module in built.items():
        prefix = f"{name}."
        expected = {
            prefix + key: (str(t.dtype).removeprefix("torch."), list(t.shape))
            for key, t in module.state_dict().items()
        }
        actual = {key: value for key, value in header.items() if key.startswith(prefix)}
        problem = _layout_problem(listed[name], type(module).__name__, expected, actual)
        if problem is not None:
            raise _misfit(weights_path, name, module, problem)
        covered |= set(expected)
    return covered


def _build_on_meta(estimator: Any, listed: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The estimator's networks, built on the meta device: exactly the listed ones."""
    import torch

    klass = type(estimator)
    if not hasattr(estimator, "_build_modules"):
        raise ValueError(
            f"{where}: lists modules {sorted(listed)}, {klass.__name__} has no networks"
        )
    try:
        with torch.device("meta"):
            built = estimator._build_modules()
    except Exception as err:  # noqa: BLE001 - a class hook fed saved sizes; report, do not crash
        raise ValueError(
            f"{where}: {klass.__name__} cannot build its networks from it: {err}"
        ) from err
    if set(built) != set(listed):
        raise ValueError(
            f"{where}: lists modules {sorted(listed)}, {klass.__name__}._build_modules() builds "
            f"{sorted(built)}"
        )
    return built


def _layout_problem(
    spec: Mapping[str, Any], class_name: str, expected: Layout, actual: Layout
) -> str | None:
    """How a module's tensors in the header differ from those of the module built."""
    if spec["class"] != class_name:
        return f"its configuration names the class {spec['class']!r}"
    if spec["n_tensors"] != len(expected):
        return f"its configuration lists {spec['n_tensors']} tensors, it has {len(expected)}"
    if set(actual) != set(expected):
        lacking, extra = sorted(set(expected) - set(actual)), sorted(set(actual) - set(expected))
        return f"missing tensors {lacking[:5]}, unexpected tensors {extra[:5]}"
    for key, value in expected.items():
        if actual[key] != value:
            return (
                f"tensor {key!r} has dtype {actual[key][0]} and shape {actual[key][1]}, "
                f"the network built from the configuration has {value[0]} and {value[1]}"
            )
    return None


def load_networks(
    estimator: Any, states: Mapping[str, Mapping[str, Any]], weights_path: Path
) -> None:
    """Check the saved tensors, build the networks and fill them; set them in eval mode.

    Parameters
    ----------
    estimator : StainNormalizer
        The estimator, whose ``_build_modules()`` already passed :func:`check_network_sizes`.
    states : mapping of str to mapping of str to torch.Tensor
        The ``state_dict`` of each module, read from ``model.safetensors``.
    weights_path : Path
        ``model.safetensors``, for messages.

    Raises
    ------
    ValueError
        If a tensor fails the class's declaration, or does not fit its module.
    """
    import torch

    klass = type(estimator)
    for name, state in states.items():
        problem = value_problem(klass, name, "modules", state)
        if problem is not None:
            raise ValueError(f"{weights_path}: module {name!r}: {problem}")
    with torch.random.fork_rng(devices=[]):  # building must not move the caller's seed
        built = estimator._build_modules()
    for name, module in built.items():
        try:
            module.load_state_dict(states[name], strict=True)
        except RuntimeError as err:
            raise _misfit(weights_path, name, module, str(err)) from err
        setattr(estimator, name, module.eval())


def _misfit(weights_path: Path, name: str, module: Any, reason: str) -> ValueError:
    return ValueError(
        f"{weights_path}: its tensors do not fit module {name!r} ({type(module).__name__}): "
        f"{reason}"
    )
