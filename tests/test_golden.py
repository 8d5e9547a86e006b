"""Behaviour pinned across refactorings: command-line outputs and saved model folders.

Every classic method is fitted with ``stainstyle fit`` on synthetic target tiles and applied with
``stainstyle normalize``; a tiny stain-style transfer model is trained with ``stainstyle
train-sst``. The normalized images, the fitted arrays and the generator weights in each saved
``model.safetensors`` are compared with the values recorded in ``tests/golden/behaviour.npz``.
A change of behaviour fails here; when a change is intended, regenerate the file with
``STAINSTYLE_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py`` and say why in the commit.

Images must agree within one gray level (mean absolute difference at most 0.01) and arrays
within float32 rounding, so that the test holds on any x86-64 CPU, whatever its SIMD width.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from _support import read_rgb, skip_or_fail
from PIL import Image
from safetensors.numpy import load_file

from stainstyle.cli import main
from stainstyle.data import make_tiles
from stainstyle.registry import CLASSIC_METHODS

GOLDEN = Path(__file__).parent / "golden" / "behaviour.npz"
UPDATE = os.environ.get("STAINSTYLE_UPDATE_GOLDEN") == "1"

#: Parameters that make each method fit the synthetic tiles (0.5 um/px).
PARAMS = {"wsics": ["--param", "microns_per_pixel=0.5"]}
SST = ["--max-epochs", "1", "--device", "cpu", "--param", "width=4", "--param", "depth=2"]
SST += ["--param", "crop_size=16", "--param", "lambda_fp=0", "--param", "random_state=3"]


def _write_tiles(folder: Path, tiles: np.ndarray) -> None:
    folder.mkdir()
    for i, tile in enumerate(tiles):
        Image.fromarray(tile).save(folder / f"tile{i}.png")


@pytest.fixture(scope="module")
def observed(tmp_path_factory) -> dict[str, np.ndarray]:
    """Outputs and saved tensors of every method, run through the command line.

    Torch runs on one thread here: how a convolution splits its sums depends on the thread
    count, and the trained weights with it.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _observe(tmp_path_factory.mktemp("golden"))
    finally:
        torch.set_num_threads(threads)


def _observe(base: Path) -> dict[str, np.ndarray]:
    target, _ = make_tiles(8, "radboud", size=128, seed=0)
    source, _ = make_tiles(2, "utrecht", size=128, seed=1)
    _write_tiles(base / "target", target)
    _write_tiles(base / "inputs", source)
    values: dict[str, np.ndarray] = {}
    runs = [(m, ["fit", "--method", m, *PARAMS.get(m, [])]) for m in CLASSIC_METHODS]
    runs.append(("sst", ["train-sst", *SST]))
    for method, command in runs:
        model = base / f"model-{method}"
        assert main([*command, "--target", str(base / "target"), "--out", str(model), "-q"]) == 0
        out = base / f"out-{method}"
        argv = ["normalize", "--model", str(model), str(base / "inputs"), "--out", str(out), "-q"]
        assert main(argv) == 0
        for i in range(len(source)):
            values[f"{method}/output{i}"] = read_rgb(out / f"tile{i}.png")
        for name, array in load_file(model / "model.safetensors").items():
            if not name.startswith("discriminator_."):  # pinned by the generator it trained
                values[f"{method}/saved/{name}"] = array
    return values


def test_outputs_and_saved_models_are_unchanged(observed):
    if UPDATE:
        GOLDEN.parent.mkdir(exist_ok=True)
        np.savez_compressed(GOLDEN, **observed)
        skip_or_fail(f"recorded {len(observed)} values in {GOLDEN}")
    with np.load(GOLDEN) as recorded:
        expected = dict(recorded)
    assert sorted(observed) == sorted(expected)
    for key, value in observed.items():
        want = expected[key]
        assert value.shape == want.shape and value.dtype == want.dtype, key
        if value.dtype == np.uint8 and "/output" in key:
            difference = np.abs(value.astype(np.int16) - want)
            assert difference.max() <= 1 and difference.mean() <= 0.01, key
        elif value.dtype.kind == "f":
            np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(value, want, err_msg=key)
