"""Hostile tensors to the torch path of the classic methods and to ``as_module``.

Attacks: bad dtypes (int64, bool), NaN and infinite values, values outside [0, 1], wrong
shapes and channel counts, empty batches, partly transparent RGBA, lists mixing bad tiles,
hostile layouts (permuted, sliced, negative-stride flips of a copy), half precision, tensors
that require gradients, blank tiles, and a module used before ``fit`` or on non-tensors. Every
method with torch kernels either normalizes or raises a ``ValueError`` naming the problem, and
never modifies its input.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from _support import he_tiles
from sklearn.exceptions import NotFittedError

import stainstyle
from stainstyle import BackgroundTileWarning

TORCH_METHODS = sorted(
    name for name, cls in stainstyle.METHODS.items() if getattr(cls, "_tensor_kernels", False)
)


@pytest.fixture(scope="module")
def fitted():
    target = torch.from_numpy(he_tiles(4, 64, seed=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BackgroundTileWarning)
        return {name: stainstyle.METHODS[name]().fit(target) for name in TORCH_METHODS}


def test_every_tensor_method_is_covered():
    assert set(TORCH_METHODS) >= {"reinhard", "macenko", "vahadane", "histogram", "gray"}


@pytest.mark.parametrize("name", TORCH_METHODS)
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (torch.zeros((8, 8), dtype=torch.uint8), "expected one tile"),
        (torch.zeros((2, 2, 8, 8, 3), dtype=torch.uint8), "got shape"),
        (torch.zeros((8, 8, 2), dtype=torch.uint8), "channels"),
        (torch.zeros((0, 8, 8, 3), dtype=torch.uint8), "empty"),
        (torch.zeros((8, 8, 3), dtype=torch.int64), "dtype"),
        (torch.zeros((8, 8, 3), dtype=torch.bool), "dtype"),
        (torch.full((8, 8, 3), float("nan")), "NaN"),
        (torch.full((8, 8, 3), float("inf"), dtype=torch.float64), "infinite"),
        (torch.full((8, 8, 3), 2.0), r"\[0, 1\]"),
        (torch.full((8, 8, 3), -0.5), r"\[0, 1\]"),
        (
            [torch.zeros((8, 8, 3), dtype=torch.uint8), torch.zeros((8, 8), dtype=torch.uint8)],
            r"X\[1\]",
        ),
        ([torch.zeros((8, 8, 3), dtype=torch.uint8), torch.full((8, 8, 3), 3.0)], r"X\[1\]"),
    ],
)
def test_bad_tensors_give_clear_value_errors(fitted, name, bad, message):
    with pytest.raises(ValueError, match=message):
        fitted[name].transform(bad)
    with pytest.raises(ValueError, match=message):
        stainstyle.METHODS[name]().fit(bad)


@pytest.mark.parametrize("name", TORCH_METHODS)
def test_transparent_rgba_rejected_opaque_accepted(fitted, name):
    tiles = torch.from_numpy(he_tiles(2, 64, seed=3))
    alpha = torch.full((*tiles.shape[:-1], 1), 255, dtype=torch.uint8)
    rgba = torch.cat([tiles, alpha], -1)
    torch.testing.assert_close(fitted[name].transform(rgba), fitted[name].transform(tiles))
    rgba[0, 0, 0, 3] = 10
    with pytest.raises(ValueError, match="alpha"):
        fitted[name].transform(rgba)


@pytest.mark.parametrize("name", TORCH_METHODS)
def test_hostile_layouts_and_dtypes_match_the_plain_batch(fitted, name):
    tiles = he_tiles(3, 64, seed=4)
    plain = fitted[name].transform(torch.from_numpy(tiles))
    channels_first = torch.from_numpy(tiles).permute(0, 3, 1, 2).contiguous()
    layouts = {
        "permuted view": channels_first.permute(0, 2, 3, 1),
        "flipped copy": torch.from_numpy(tiles[:, ::-1].copy()).flip(1),
        "sliced": torch.from_numpy(np.pad(tiles, ((0, 0), (0, 0), (0, 5), (0, 0))))[:, :, :64],
    }
    for label, variant in layouts.items():
        torch.testing.assert_close(fitted[name].transform(variant), plain, msg=label)
    for dtype in (torch.float16, torch.bfloat16):
        floats = torch.from_numpy(tiles).to(dtype) / 255
        out = fitted[name].transform(floats)
        assert out.dtype == dtype and out.shape == floats.shape and torch.isfinite(out).all()
    wanting = (torch.from_numpy(tiles).float() / 255).requires_grad_(True)
    out = fitted[name].transform(wanting)
    assert not out.requires_grad and out.shape == wanting.shape


@pytest.mark.parametrize("name", TORCH_METHODS)
def test_inputs_are_never_modified_and_blank_tiles_pass_through(fitted, name):
    tiles = torch.from_numpy(he_tiles(2, 64, seed=5))
    blank = torch.full((64, 64, 3), 250, dtype=torch.uint8)
    batch = torch.cat([tiles, blank[None]])
    floats = batch.float() / 255
    before, before_float = batch.clone(), floats.clone()
    with pytest.warns(BackgroundTileWarning):
        out = fitted[name].transform(batch)
    with pytest.warns(BackgroundTileWarning):
        out_float = fitted[name].transform(floats)
    assert torch.equal(batch, before) and torch.equal(floats, before_float)
    assert torch.equal(out[2], blank) and torch.equal(out_float[2], floats[2])
    out[2] += 1  # the pass-through tile is a copy, not a view of the input
    assert torch.equal(batch, before)
    with pytest.raises(ValueError, match="cannot learn"):
        stainstyle.METHODS[name]().fit(blank)


def test_module_before_fit_and_on_non_tensors(fitted):
    with pytest.raises(NotFittedError):
        stainstyle.ReinhardNormalizer().as_module()
    module = fitted["reinhard"].as_module()
    for bad, message in [
        (np.zeros((2, 8, 8, 3), np.uint8), "expected a torch.Tensor"),
        ([torch.zeros((8, 8, 3), dtype=torch.uint8)], "expected a torch.Tensor"),
        (torch.zeros((2, 2, 3, 8, 8), dtype=torch.uint8), "expected a tensor"),
        (torch.zeros((2, 5, 8, 8), dtype=torch.uint8), "3 channels"),
        (torch.full((2, 3, 8, 8), 7.0), r"\[0, 1\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            module(bad)
