"""stainstyle.tissue: the masks and tile tests every method's background policy relies on."""

from __future__ import annotations

import numpy as np
import pytest

from stainstyle.tissue import (
    UNIFORM_MAX_STD,
    is_background,
    is_uniform,
    masked_pixels,
    screen_background,
    screen_tiles,
    tissue_mask,
)


def brute_force_uniform(tiles: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    out = []
    for tile, mask in zip(tiles, tissue, strict=True):
        pixels = tile[mask].astype(np.float64)
        out.append(len(pixels) == 0 or bool(np.all(pixels.std(axis=0) <= UNIFORM_MAX_STD)))
    return np.array(out)


@pytest.mark.parametrize("seed", range(6))
def test_is_uniform_equals_its_definition(seed):
    rng = np.random.default_rng(seed)
    n, size = 24, int(rng.choice([1, 7, 33, 64]))
    tiles = np.full((n, size, size, 3), rng.integers(20, 200, 3), dtype=np.uint8)
    # Sparse outliers (a few pixels off by one or more) are near the std limit of 0.5.
    for i in range(n):
        k = int(rng.integers(0, max(2, size * size // 4)))
        rows, cols = rng.integers(0, size, k), rng.integers(0, size, k)
        tiles[i, rows, cols] += rng.integers(0, 3, (k, 3)).astype(np.uint8)
    tiles[: n // 3] = rng.integers(0, 256, tiles[: n // 3].shape, dtype=np.uint8)
    tissue = tissue_mask(tiles) & (rng.random(tiles.shape[:3]) < 0.9)
    np.testing.assert_array_equal(is_uniform(tiles, tissue), brute_force_uniform(tiles, tissue))


def test_masked_pixels_equals_boolean_indexing():
    rng = np.random.default_rng(0)
    image = rng.random((3, 17, 9, 3), dtype=np.float32)
    mask = rng.random((3, 17, 9)) < 0.4
    np.testing.assert_array_equal(masked_pixels(image, mask), image[mask])


@pytest.mark.parametrize("size", [1, 5, 16, 64, 130])
def test_screen_tiles_and_screen_background_equal_the_full_mask_tests(size):
    rng = np.random.default_rng(size)
    n = 30
    tiles = np.full((n, size, size, 3), 240, dtype=np.uint8)  # glass
    for i in range(n):
        # Tissue on a random fraction of the rows: from none to all, uniform or varied.
        rows = int(rng.integers(0, size + 1))
        colour = rng.integers(60, 200, 3)
        spread = int(rng.choice([0, 1, 40]))
        noise = rng.integers(0, spread + 1, (rows, size, 3))
        tiles[i, :rows] = np.clip(colour + noise, 0, 255).astype(np.uint8)
    tiles[0] = 0  # black padding
    full = tissue_mask(tiles)
    expected_background = is_background(full)
    expected_uniform = ~expected_background & is_uniform(tiles, full)
    background, uniform = screen_tiles(tiles)
    np.testing.assert_array_equal(background, expected_background)
    np.testing.assert_array_equal(uniform, expected_uniform)
    np.testing.assert_array_equal(screen_background(tiles), expected_background)


@pytest.mark.parametrize("every_channel", [False, True])
def test_tissue_mask_in_strips_equals_one_pass(monkeypatch, every_channel):
    import stainstyle.tissue as tissue

    rng = np.random.default_rng(3)
    tiles = rng.integers(0, 256, (2, 37, 29, 3), dtype=np.uint8)
    tiles[0, :10] = 3  # black
    whole = tissue_mask(tiles, every_channel=every_channel)
    monkeypatch.setattr(tissue, "MASK_STRIP_PIXELS", 50)  # strips of one row, many inputs above
    for view in (tiles, tiles[:, ::-1, ::2], np.asfortranarray(tiles)):
        expected = whole[:, ::-1, ::2] if view.base is tiles else whole
        np.testing.assert_array_equal(tissue_mask(view, every_channel=every_channel), expected)
    np.testing.assert_array_equal(tissue_mask(tiles[0], every_channel=every_channel), whole[0])


def test_a_standard_deviation_of_exactly_the_limit_is_uniform():
    tiles = np.full((2, 16, 16, 3), 100, dtype=np.uint8)
    tiles[0, :, ::2] = 101  # half the pixels one level up: std exactly 0.5 in every channel
    tiles[1, :, ::2] = 102  # std 1
    tissue = tissue_mask(tiles)
    assert UNIFORM_MAX_STD == 0.5
    np.testing.assert_array_equal(is_uniform(tiles, tissue), [True, False])
    np.testing.assert_array_equal(screen_tiles(tiles)[1], [True, False])
    with pytest.raises(ValueError):
        is_uniform(tiles, tissue[:1])


def test_a_tile_with_exactly_the_minimum_tissue_is_not_background():
    from stainstyle.tissue import min_tissue_pixels

    tissue = np.zeros((3, 40, 40), dtype=bool)
    needed = min_tissue_pixels(40, 40)
    assert needed == 100
    tissue[0].flat[:needed] = True
    tissue[1].flat[: needed - 1] = True
    np.testing.assert_array_equal(is_background(tissue), [False, True, True])
