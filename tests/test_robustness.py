"""Property tests over every registered method: any shape and content in, same shape and dtype
out, never NaN, never an exception on blank, black, single-colour or tiny tiles."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _support import he_tiles
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stainstyle

FITTED = {}


def fitted(name):
    if name not in FITTED:
        FITTED[name] = stainstyle.METHODS[name]().fit(he_tiles(4, 64, seed=11))
    return FITTED[name]


names = pytest.mark.parametrize("name", sorted(stainstyle.METHODS))
quick = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(out, tiles):
    assert out.shape == tiles.shape and out.dtype == tiles.dtype
    if out.dtype.kind == "f":
        assert np.all(np.isfinite(out))


@names
@quick
@given(
    st.integers(1, 3),
    st.integers(1, 48),
    st.integers(1, 48),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["random", "smooth", "he"]),
)
def test_any_shape_and_content(name, n, height, width, seed, kind):
    rng = np.random.default_rng(seed)
    if kind == "random":
        tiles = rng.integers(0, 256, (n, height, width, 3), dtype=np.uint8)
    elif kind == "smooth":
        tiles = np.broadcast_to(
            rng.integers(0, 256, (n, 1, 1, 3), dtype=np.uint8), (n, height, width, 3)
        ).copy()
    else:
        tiles = he_tiles(n, 64, seed=seed % 1000)[:, :height, :width]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stainstyle.BackgroundTileWarning)
        out = fitted(name).transform(tiles)
        _check(out, tiles)
        as_float = tiles.astype(np.float32) / 255
        _check(fitted(name).transform(as_float), as_float)


@names
@pytest.mark.parametrize(
    "tile",
    [
        np.full((32, 32, 3), 255, np.uint8),
        np.zeros((32, 32, 3), np.uint8),
        np.full((32, 32, 3), (150, 60, 160), np.uint8),
        np.full((1, 1, 3), 90, np.uint8),
        np.full((2, 3, 3), 10, np.uint8),
    ],
    ids=["white", "black", "single-colour", "1x1", "2x3-dark"],
)
def test_degenerate_tiles_pass_through_with_a_warning(name, tile):
    with pytest.warns(stainstyle.BackgroundTileWarning):
        out = fitted(name).transform(tile)
    np.testing.assert_array_equal(out, tile)
