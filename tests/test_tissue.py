"""stainstyle.tissue: the masks and tile tests every method's background policy relies on."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _support import traced_peak

import stainstyle.tissue as tissue_module
from stainstyle.tissue import (
    SCREEN_STRIDE,
    UNIFORM_MAX_STD,
    is_background,
    is_uniform,
    masked_pixels,
    screen_background,
    screen_tensors,
    screen_tiles,
    tissue_mask,
    tissue_mask_tensor,
)


def screen_numpy(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return screen_tiles(tiles)


def screen_torch(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return screen_tensors(torch.from_numpy(tiles))


SCREENS = [screen_numpy, screen_torch]


def expected_screen(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The definition the screens shortcut: background and uniform from the full masks."""
    full = tissue_mask(tiles)
    background = is_background(full)
    return background, ~background & is_uniform(tiles, full)


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


@pytest.mark.parametrize("screen", SCREENS)
@pytest.mark.parametrize("size", [1, 5, 16, 64, 130])
def test_screen_tiles_and_screen_background_equal_the_full_mask_tests(size, screen):
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
    expected_background, expected_uniform = expected_screen(tiles)
    background, uniform = screen(tiles)
    assert background.dtype == uniform.dtype == bool
    np.testing.assert_array_equal(background, expected_background)
    np.testing.assert_array_equal(uniform, expected_uniform)
    only_background = screen_background(tiles)
    assert only_background.dtype == bool
    np.testing.assert_array_equal(only_background, expected_background)


def sample_bound_tiles() -> list[np.ndarray]:
    """Batches of tiles on which deciding from the screening sample alone would be wrong.

    The screens decide a tile from its sample (every 4th pixel of every 4th row) only when the
    sample's ``k`` tissue pixels, of variance ``v``, give ``k * v / (H * W) > 0.25``, a lower
    bound of the whole tile's tissue variance. Each tile here is one the sample must leave to
    the full masks, and its full answer differs from what a looser rule would say.

    Returns
    -------
    list of ndarray of shape (n, H, W, 3), dtype uint8
        Five 64x64 tiles, then one 41x41 tile.
    """
    tiles = np.empty((5, 64, 64, 3), dtype=np.uint8)
    tiles[:] = (150, 100, 160)  # tissue of one colour
    grid = (slice(None, None, SCREEN_STRIDE),) * 2
    # 0: the sample's red varies by 2 levels around its mean: k * v = 256 * 4 is exactly the
    # bound, so the sample does not decide; the tile's std is 0.5, uniform.
    tiles[0][grid + (0,)] = np.where(np.indices((16, 16)).sum(0) % 2, 152, 148)
    # 1: glass with 50 tissue pixels on the sample grid, of two far-apart colours: varied, but
    # too little tissue (100 pixels are needed): background.
    tiles[1] = 240
    dots = tiles[1][grid].reshape(-1, 3)
    dots[:50:2], dots[1:50:2] = (60, 40, 120), (180, 60, 200)
    tiles[1][grid] = dots.reshape(16, 16, 3)
    # 2: varied tissue only off the sample grid (rows 1-3 of every 4): the sample is glass,
    # the tile is varied tissue.
    rng = np.random.default_rng(7)
    tiles[2] = 240
    off_grid = np.arange(64) % SCREEN_STRIDE != 0
    tiles[2, off_grid] = rng.integers(60, 200, (48, 64, 3), dtype=np.uint8)
    # 3: one colour, no variation at all: uniform.
    # 4: varied: half the sample 2 levels up in red and a quarter of the tile 2 levels down.
    tiles[4][grid + (0,)] = 152
    tiles[4][(slice(2, None, SCREEN_STRIDE),) * 2 + (0,)] = 148
    # A 41x41 tile: 11 x 11 sample pixels, a little more than 1/16 of the tile. Its red has
    # 50 at +2, 50 at -2 and 21 at 0: a sample std of 1.82 (k * std**2 = 400 under the bound
    # 420.25, k * 2 * std = 440 over it); the tile's std is 0.49, uniform.
    odd = np.full((1, 41, 41, 3), (150, 100, 160), dtype=np.uint8)
    offsets = np.array([2] * 50 + [-2] * 50 + [0] * 21).reshape(11, 11)
    odd[0, ::4, ::4, 0] = 150 + offsets
    return [tiles, odd]


@pytest.mark.parametrize("screen", SCREENS)
def test_screens_leave_tiles_the_sample_cannot_decide_to_the_full_masks(screen):
    tiles, odd = sample_bound_tiles()
    background, uniform = expected_screen(tiles)
    np.testing.assert_array_equal(background, [False, True, False, False, False])
    np.testing.assert_array_equal(uniform, [True, False, False, True, False])
    for order in (np.arange(5), np.arange(5)[::-1]):  # beside any other tile
        got = screen(np.ascontiguousarray(tiles[order]))
        np.testing.assert_array_equal(got[0], background[order])
        np.testing.assert_array_equal(got[1], uniform[order])
    for i in range(5):
        np.testing.assert_array_equal(screen(tiles[i : i + 1])[1], uniform[i : i + 1])
    np.testing.assert_array_equal(screen_background(tiles), background)
    np.testing.assert_array_equal(expected_screen(odd)[1], [True])
    np.testing.assert_array_equal(screen(odd)[1], [True])


@pytest.mark.parametrize("screen", SCREENS)
def test_screens_decide_varied_tissue_from_the_sample_alone(monkeypatch, screen):
    # Tissue varying by a few gray levels (std about 3) is decided from its sample: the full
    # masks, the costly part, are never computed for it.
    rng = np.random.default_rng(5)
    tiles = (np.array([150, 100, 160]) + rng.integers(0, 11, (8, 64, 64, 3))).astype(np.uint8)
    measured = []
    for name in ("tissue_mask", "_tissue_spread"):
        original = getattr(tissue_module, name)

        def counted(x, *args, original=original, **kwargs):
            measured.append(tuple(x.shape))
            return original(x, *args, **kwargs)

        monkeypatch.setattr(tissue_module, name, counted)
    background, uniform = screen(tiles)
    assert not background.any() and not uniform.any()
    assert measured == [(8, 16, 16, 3)]  # the sample only
    measured.clear()
    assert not screen_background(tiles).any() and measured == [(8, 16, 16, 3)]


def test_tissue_mask_tensor_equals_tissue_mask_on_every_boundary_level():
    levels = [0, 1, 7, 8, 9, 100, 204, 205, 206, 254, 255]
    pixels = np.array(np.meshgrid(levels, levels, levels), dtype=np.uint8).reshape(3, -1).T
    tiles = pixels.reshape(11, 11, 11, 3)
    for io, od in [(240.0, 0.15), (255.0, 0.5), (240.0, math.log(160.0)), (240.0, 10.0)]:
        for every_channel in (False, True):
            expected = tissue_mask(tiles, io, od, every_channel)
            assert set(np.unique(expected.view(np.uint8))) <= {0, 1}  # a valid bool array
            got = tissue_mask_tensor(torch.from_numpy(tiles), io, od, every_channel)
            assert got.dtype == torch.bool and got.shape == expected.shape
            np.testing.assert_array_equal(got.numpy(), expected)


def test_a_tissue_limit_of_zero_keeps_pixels_with_one_channel_at_zero():
    # io * exp(-od) = 1.5: only intensity 0 reaches the threshold; (0, 255, 255) is tissue.
    pixels = np.array([[[0, 255, 255], [1, 255, 255], [0, 0, 0]]], dtype=np.uint8)
    od = math.log(160.0)
    assert tissue_module.max_tissue_intensity(240.0, od) == 0
    np.testing.assert_array_equal(tissue_mask(pixels, 240.0, od), [[True, False, False]])


def test_no_intensity_reaches_an_unreachable_threshold():
    tiles = np.zeros((2, 5, 7, 3), dtype=np.uint8)
    assert tissue_module.max_tissue_intensity(240.0, 10.0) == -1
    mask = tissue_mask(tiles, 240.0, 10.0)
    assert mask.dtype == bool and mask.shape == (2, 5, 7) and not mask.any()


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
    for screen in SCREENS:
        np.testing.assert_array_equal(screen(tiles)[1], [True, False])
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


@pytest.mark.parametrize(
    ("io", "od", "limit"),
    [
        (240.0, 0.15, 205),
        (255.0, 0.5, 153),
        (240.0, math.log(160.0), 0),
        (240.0, 10.0, -1),
        (1000.0, 0.0, 255),
    ],
)
def test_max_tissue_intensity_is_clipped_to_the_uint8_range_and_minus_one(io, od, limit):
    assert tissue_module.max_tissue_intensity(io, od) == limit


@pytest.mark.parametrize(
    ("height", "width", "needed"), [(1, 1, 100), (40, 40, 100), (256, 256, 328), (100, 400, 200)]
)
def test_min_tissue_pixels_is_half_a_percent_of_the_tile_or_100(height, width, needed):
    assert tissue_module.min_tissue_pixels(height, width) == needed


def test_tissue_mask_of_a_large_strided_image_stays_strip_sized():
    # A strided view of a large image is copied contiguous one strip at a time, never whole
    # (here 12 MiB).
    image = np.full((2048, 4096, 3), 120, dtype=np.uint8)
    mask, peak = traced_peak(lambda: tissue_mask(image[:, ::2]))
    assert mask.all() and mask.shape == (2048, 2048)
    assert peak - mask.nbytes < 8 * 2**20
