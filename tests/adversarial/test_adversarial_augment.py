"""Hostile input to the augmenters: bad shapes, dtypes and values, threads, inputs kept intact."""

import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from _support import he_tiles
from sklearn.exceptions import NotFittedError

sys.path.insert(0, str(Path(__file__).parents[1] / "augment"))
from _augmenters import NAMES, make  # noqa: E402

from stainstyle import GrayNormalizer, MacenkoNormalizer  # noqa: E402
from stainstyle.augment import HEDJitter, RandStainNA, StainAugmenter  # noqa: E402

TILES = he_tiles(2, 32, seed=9)

BAD_NUMPY = {
    "2-d": (np.zeros((32, 32), np.uint8), "expected one tile"),
    "5-d": (np.zeros((1, 2, 8, 8, 3), np.uint8), "expected one tile"),
    "2 channels": (np.zeros((8, 8, 2), np.uint8), "channels"),
    "int32": (np.zeros((8, 8, 3), np.int32), "dtype"),
    "bool": (np.zeros((8, 8, 3), bool), "dtype"),
    "complex": (np.zeros((8, 8, 3), np.complex64), "dtype"),
    "nan": (np.full((8, 8, 3), np.nan), "NaN"),
    "inf": (np.full((8, 8, 3), np.inf), "NaN or infinite"),
    "0-255 floats": (np.full((8, 8, 3), 200.0), "[0, 1]"),
    "negative floats": (np.full((8, 8, 3), -0.5), "[0, 1]"),
    "empty": (np.zeros((0, 8, 8, 3), np.uint8), "empty"),
    "empty list": ([], "empty"),
    "not an array": ("tile.png", "expected a numpy array"),
}

BAD_TENSORS = {
    "2-d": (torch.zeros(8, 8, dtype=torch.uint8), "expected a tensor"),
    "5-d": (torch.zeros(1, 1, 3, 8, 8, dtype=torch.uint8), "expected a tensor"),
    "no channel axis of 3": (torch.zeros(2, 4, 8, 8, dtype=torch.uint8), "3 channels"),
    "int64": (torch.zeros(3, 8, 8, dtype=torch.int64), "dtype"),
    "bool": (torch.zeros(3, 8, 8, dtype=torch.bool), "dtype"),
    "nan": (torch.full((3, 8, 8), float("nan")), "NaN"),
    "inf": (torch.full((3, 8, 8), float("inf")), "NaN or infinite"),
    "0-255 floats": (torch.full((3, 8, 8), 200.0), "[0, 1]"),
    "empty": (torch.zeros(0, 3, 8, 8, dtype=torch.uint8), "empty"),
}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", list(BAD_NUMPY))
def test_bad_numpy_input_is_a_clear_value_error(name, case):
    value, words = BAD_NUMPY[case]
    with pytest.raises(ValueError, match=re.escape(words)):
        make(name)(value)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", list(BAD_TENSORS))
def test_bad_tensor_input_is_a_clear_value_error(name, case):
    value, words = BAD_TENSORS[case]
    with pytest.raises(ValueError, match=re.escape(words)):
        make(name)(value)


@pytest.mark.parametrize(
    ("augmenter", "words"),
    [
        (HEDJitter(sigma=-0.1), "sigma"),
        (HEDJitter(sigma=1.5), "sigma"),
        (HEDJitter(sigma="medium"), "sigma"),
        (HEDJitter(random_state=-1), "random_state"),
        (HEDJitter(random_state="seed"), "random_state"),
        (HEDJitter(io=0), "io"),
    ],
)
def test_bad_parameters_are_named(augmenter, words):
    with pytest.raises(ValueError, match=words):
        augmenter(TILES)


def test_fitted_augmenters_refuse_to_run_unfitted_or_badly_set():
    with pytest.raises(NotFittedError):
        StainAugmenter()(TILES)
    with pytest.raises(NotFittedError):
        StainAugmenter(MacenkoNormalizer()).fit()
    with pytest.raises(ValueError, match="stain matrix"):
        StainAugmenter(GrayNormalizer()).fit(TILES)
    with pytest.raises(NotFittedError):
        RandStainNA()(TILES)
    with pytest.raises(ValueError, match="tissue"):
        RandStainNA().fit(np.full((2, 32, 32, 3), 250, np.uint8))
    with pytest.raises(ValueError, match="spaces"):
        RandStainNA(spaces=("lab", "rgb")).fit(TILES)
    with pytest.raises(ValueError, match="distribution"):
        RandStainNA(distribution="uniform").fit(TILES)
    fitted = RandStainNA(spaces="lab").fit(TILES)
    fitted.spaces = "hsv"
    with pytest.raises(ValueError, match="refit"):
        fitted(TILES)


@pytest.mark.parametrize("name", NAMES)
def test_inputs_are_never_modified(name):
    arrays = [TILES.copy(), TILES / 255.0, TILES.astype(np.float32) / 255]
    tensors = [torch.from_numpy(TILES.copy()).permute(0, 3, 1, 2), torch.from_numpy(TILES / 255.0)]
    for x in arrays:
        before = x.copy()
        make(name, 0.5)(x)
        assert np.array_equal(x, before)
    for x in tensors:
        before = x.clone()
        make(name, 0.5)(x)
        assert torch.equal(x, before)
    read_only = TILES.copy()
    read_only.flags.writeable = False
    assert make(name)(read_only).flags.writeable


@pytest.mark.parametrize("name", NAMES)
def test_large_declared_input_without_tissue_passes_through(name):
    """A 4096 x 4096 tile declared by broadcasting one white pixel: no copy of it is made."""
    white = np.broadcast_to(np.full((1, 1, 3), 255, np.uint8), (4096, 4096, 3))
    out = make(name)(white)
    assert out.shape == white.shape and np.all(out == 255)


@pytest.mark.parametrize("name", NAMES)
def test_one_augmenter_serves_several_threads(name):
    augmenter = make(name, 0.3)
    seeds = list(range(8))
    expected = [make(name, 0.3)(TILES, random_state=seed) for seed in seeds]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda seed: augmenter(TILES, random_state=seed), seeds))
    for got, want in zip(results, expected, strict=True):
        assert np.array_equal(got, want)
    with ThreadPoolExecutor(4) as pool:  # the shared stream: every call a distinct draw
        shared = list(pool.map(lambda _: augmenter(TILES), range(8)))
    assert len({out.tobytes() for out in shared}) == 8
