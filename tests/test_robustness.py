"""Property tests over every registered method: any shape and content in, same shape and dtype
out, never NaN, never an exception on blank, black, single-colour or tiny tiles."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _support import DEGENERATE_TILES, he_tiles, tile_batches
from hypothesis import HealthCheck, given, settings

import stainstyle

FITTED = {}

#: The neural method, at a size that trains in seconds: the properties do not depend on it.
TINY_SST = {"width": 4, "depth": 2, "crop_size": 16, "train_batch_size": 4, "lambda_fp": 0.0,
            "max_epochs": 1, "device": "cpu", "random_state": 0}  # fmt: skip


def fitted(name):
    if name not in FITTED:
        if name == "sst":
            from stainstyle.sst import StainStyleTransfer

            estimator = StainStyleTransfer(**TINY_SST)
        else:
            estimator = stainstyle.METHODS[name]()
        FITTED[name] = estimator.fit(he_tiles(4, 64, seed=11))
    return FITTED[name]


names = pytest.mark.parametrize("name", [*sorted(stainstyle.METHODS), "sst"])
quick = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(out, tiles):
    assert out.shape == tiles.shape and out.dtype == tiles.dtype
    if out.dtype.kind == "f":
        assert np.all(np.isfinite(out))


@names
@quick
@given(tile_batches(max_tiles=3, max_side=48, source_size=64))
def test_any_shape_and_content(name, tiles):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stainstyle.BackgroundTileWarning)
        out = fitted(name).transform(tiles)
        _check(out, tiles)
        as_float = tiles.astype(np.float32) / 255
        _check(fitted(name).transform(as_float), as_float)


DEGENERATE = {**DEGENERATE_TILES, "2x3-dark": np.full((2, 3, 3), 10, np.uint8)}


@names
@pytest.mark.parametrize("tile", list(DEGENERATE.values()), ids=list(DEGENERATE))
def test_degenerate_tiles_pass_through_with_a_warning(name, tile):
    with pytest.warns(stainstyle.BackgroundTileWarning):
        out = fitted(name).transform(tile)
    np.testing.assert_array_equal(out, tile)
