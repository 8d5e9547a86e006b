"""Tile grids, the tissue-tile iterator and the sampler: ``stainstyle.wsi.tiles``."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from _wsi_support import mosaic, plain_tiff, reference_pyramid, svs_path, write_image_slide

from stainstyle import MacenkoNormalizer
from stainstyle.wsi import (
    NoTissueError,
    SlideRequestError,
    iter_tiles,
    open_slide,
    sample_tiles,
    slide_tissue_mask,
    tile_grid,
)
from stainstyle.wsi.tiles import _spread


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    """Two lossless slides at 0.25 um/px: mostly tissue, and mostly glass; with their levels."""
    folder = tmp_path_factory.mktemp("tiles")
    made = {}
    for name, glass, seed in (("tissue", 0.1, 4), ("sparse", 0.85, 5)):
        image = mosaic(1400, 1000, seed=seed, glass=glass)
        path = write_image_slide(folder / f"{name}.tif", image, compression="zstd", mpp=0.25)
        made[name] = (path, reference_pyramid(image, 256))
    return made


def test_a_grid_at_the_native_resolution_reads_level_0(slides):
    path, levels = slides["tissue"]
    with open_slide(path) as slide:
        grid = tile_grid(slide, 256)
        assert (grid.level, grid.factor, grid.shape, grid.mpp) == (0, 1.0, (4, 6), (0.25, 0.25))
        np.testing.assert_array_equal(grid.read(1, 2), levels[0][256:512, 512:768])
        edge = grid.read(3, 5)  # beyond the slide: white
        np.testing.assert_array_equal(edge[:232, :120], levels[0][768:, 1280:])
        assert np.all(edge[232:] == 255) and np.all(edge[:, 120:] == 255)


def test_a_grid_at_a_level_resolution_reads_that_level_as_it_is(slides):
    path, levels = slides["tissue"]
    with open_slide(path) as slide:
        grid = tile_grid(slide, 128, mpp=0.5)
        assert (grid.level, grid.factor, grid.shape) == (1, 1.0, (4, 6))
        np.testing.assert_array_equal(grid.read(2, 3), levels[1][256:384, 384:512])
        near = tile_grid(slide, 128, mpp=0.505)  # within the tolerance: level 1 as it is
        assert (near.level, near.factor, near.mpp) == (1, 1.0, (0.5, 0.5))


def test_a_grid_between_levels_resamples_the_finer_one(slides):
    path, levels = slides["tissue"]
    with open_slide(path) as slide:
        grid = tile_grid(slide, 128, mpp=0.375)  # 1.5 level-0 pixels per output pixel
        assert (grid.level, grid.factor, grid.mpp) == (0, 1.5, (0.375, 0.375))
        assert grid.shape == (6, 8)
        expected = cv2.resize(levels[0][192:384, 384:576], (128, 128), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(grid.read(1, 2), expected)


def test_overlap_adds_the_neighbours_and_white_beyond_the_slide(slides):
    path, levels = slides["tissue"]
    with open_slide(path) as slide:
        grid = tile_grid(slide, 256, overlap=16)
        assert grid.tile_size == 288
        np.testing.assert_array_equal(grid.read(1, 1), levels[0][240:528, 240:528])
        corner = grid.read(0, 0)
        assert np.all(corner[:16] == 255) and np.all(corner[:, :16] == 255)
        np.testing.assert_array_equal(corner[16:, 16:], levels[0][:272, :272])


def test_iter_tiles_yields_the_tissue_tiles_row_by_row(slides):
    path, _ = slides["sparse"]
    with open_slide(path) as slide:
        grid = tile_grid(slide, 128)
        fractions = grid.tissue_fractions(slide_tissue_mask(slide))
        tiles = list(iter_tiles(slide, 128, min_tissue=0.5))
        assert [(t.row, t.col) for t in tiles] == [
            tuple(rc) for rc in np.argwhere(fractions >= 0.5)
        ]
        assert 0 < len(tiles) < fractions.size
        assert all(t.tissue >= 0.5 and t.pixels.shape == (128, 128, 3) for t in tiles)
        np.testing.assert_array_equal(tiles[0].pixels, grid.read(tiles[0].row, tiles[0].col))
        everything = list(iter_tiles(slide, 128, min_tissue=0))
        assert len(everything) == fractions.size and everything[0].tissue is None


def test_iter_tiles_opens_and_closes_a_path(slides):
    path, _ = slides["tissue"]
    tiles = iter_tiles(path, 256, mpp=0.5)
    assert next(tiles).pixels.shape == (256, 256, 3)
    tiles.close()


def test_a_slide_without_tissue_is_named(tmp_path):
    path = write_image_slide(tmp_path / "glass.tif", np.full((600, 600, 3), 250, np.uint8), mpp=0.5)
    with pytest.raises(NoTissueError, match=r"glass\.tif: no tile of 256 pixels .*covers 0\.0%"):
        list(iter_tiles(path, 256))
    with pytest.raises(NoTissueError, match=r"glass\.tif: 4 tiles .* hold 0 \(glass\.tif: 0\)"):
        sample_tiles(path, n=4, size=256, mpp=0.5)


def test_sample_tiles_is_seeded_and_spread_over_the_slides(slides):
    paths = [slides["tissue"][0], slides["sparse"][0]]
    sample = sample_tiles(paths, n=8, size=128, mpp=0.5, random_state=3)
    assert sample.shape == (8, 128, 128, 3) and sample.dtype == np.uint8
    np.testing.assert_array_equal(
        sample, sample_tiles(paths, n=8, size=128, mpp=0.5, random_state=3)
    )
    assert not np.array_equal(sample, sample_tiles(paths, n=8, size=128, mpp=0.5, random_state=4))
    # Every tile is a tissue tile of one of the slides, without repeats, half from each slide.
    found = []
    for index, path in enumerate(paths):
        with open_slide(path) as slide:
            for tile in iter_tiles(slide, 128, mpp=0.5):
                found.extend(index for s in sample if np.array_equal(s, tile.pixels))
    assert len(found) == 8 and found.count(0) == found.count(1) == 4


def test_a_slide_with_few_tissue_tiles_gives_all_it_has(slides):
    paths = [slides["tissue"][0], slides["sparse"][0]]
    counts = []
    for path in paths:
        with open_slide(path) as slide:
            grid = tile_grid(slide, 256, mpp=0.25)
            counts.append(int((grid.tissue_fractions(slide_tissue_mask(slide)) >= 0.5).sum()))
    assert 0 < counts[1] < 6 < counts[0]
    sample = sample_tiles(paths, n=12, size=256, mpp=0.25)
    assert len({s.tobytes() for s in sample}) == 12  # no tile twice
    total = sum(counts)
    expected = (
        rf"{total + 1} tiles .*hold {total} \(tissue\.tif: {counts[0]}, sparse\.tif: {counts[1]}\)"
    )
    with pytest.raises(NoTissueError, match=expected):
        sample_tiles(paths, n=total + 1, size=256, mpp=0.25)


def test_spread_is_even_and_capped():
    assert _spread(10, [100, 100, 100]).tolist() == [4, 3, 3]
    assert _spread(10, [1, 100, 2]).tolist() == [1, 7, 2]
    assert _spread(10, [3, 3]).tolist() == [3, 3]
    assert _spread(5, [0, 0]).tolist() == [0, 0]


def test_sample_tiles_fits_a_normalizer_from_the_real_slide_in_one_line():
    tiles = sample_tiles(svs_path(), n=24, size=128, mpp=0.5)
    normalizer = MacenkoNormalizer().fit(tiles)
    assert normalizer.stain_matrix_.shape == (3, 2)
    assert normalizer.transform(tiles[:2]).shape == (2, 128, 128, 3)


def test_requests_that_do_not_fit_are_named(slides, tmp_path):
    path, _ = slides["tissue"]
    with open_slide(path) as slide:
        with pytest.raises(SlideRequestError, match=r"tissue\.tif: size: expected an integer >= 1"):
            tile_grid(slide, 0)
        with pytest.raises(SlideRequestError, match="overlap: expected an integer >= 0"):
            tile_grid(slide, 256, overlap=-1)
        with pytest.raises(SlideRequestError, match="less than one pixel"):
            tile_grid(slide, 256, mpp=1e6)
        with pytest.raises(SlideRequestError, match="min_tissue: expected a value in"):
            next(iter_tiles(slide, min_tissue=1.5))
    with pytest.raises(SlideRequestError, match=r"min_tissue: expected a value in \(0, 1\]"):
        sample_tiles(path, n=2, min_tissue=0)
    with pytest.raises(ValueError, match="n: expected a positive integer"):
        sample_tiles(path, n=0)
    with pytest.raises(ValueError, match="slides: expected at least one slide"):
        sample_tiles([], n=2)
    no_mpp = plain_tiff(tmp_path / "no-mpp.tif", mosaic(600, 600))
    with pytest.raises(SlideRequestError, match=r"no-mpp\.tif: the file records no microns"):
        sample_tiles(no_mpp, n=2, size=128, mpp=0.5)
    with open_slide(no_mpp, mpp=0.5) as slide:
        assert sample_tiles(slide, n=2, size=128, mpp=0.5).shape == (2, 128, 128, 3)
