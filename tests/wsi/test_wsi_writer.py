"""Writing pyramidal BigTIFF slides: ``stainstyle.wsi.writer``.

Pyramids are built from real CAMELYON17 tiles and the real SVS, read back with both OpenSlide
and tiffslide, and compared level by level with a NumPy reference of the downsampling (exactly,
with lossless compression).
"""

from __future__ import annotations

import os
import textwrap

import numpy as np
import pytest
from _support import ROOT, run_python, skip_or_fail
from _wsi_support import box_2x, mosaic, reference_pyramid, rows_of, svs_path, write_image_slide

from stainstyle.metrics import psnr
from stainstyle.wsi import downsample_2x, open_slide, pyramid_dimensions, write_pyramid

BACKENDS = ["tiffslide", "openslide"]


# ---------------------------------------------------------------------------- the maths
@pytest.mark.parametrize("shape", [(8, 8), (7, 9), (1, 1), (1, 6), (513, 257)])
def test_downsample_2x_is_the_rounded_mean_of_2x2_blocks(shape):
    image = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    np.testing.assert_array_equal(downsample_2x(image), box_2x(image))


def test_downsample_2x_known_values():
    block = np.array([[[0, 0, 255], [1, 0, 255]], [[1, 1, 255], [1, 1, 254]]], np.uint8)
    # (0+1+1+1+2)//4 = 1, (0+0+1+1+2)//4 = 1, (255*3+254+2)//4 = 255
    np.testing.assert_array_equal(downsample_2x(block), [[[1, 1, 255]]])
    odd = np.array([[[10, 20, 30]], [[11, 21, 31]], [[50, 60, 70]]], np.uint8)  # 3 x 1
    np.testing.assert_array_equal(downsample_2x(odd), [[[11, 21, 31]], [[50, 60, 70]]])


def test_pyramid_dimensions_halve_until_one_tile():
    assert pyramid_dimensions((1500, 1100), 256) == [
        (1500, 1100),
        (750, 550),
        (375, 275),
        (188, 138),
    ]
    assert pyramid_dimensions((256, 100), 256) == [(256, 100)]
    assert pyramid_dimensions((257, 1), 256) == [(257, 1), (129, 1)]


# ---------------------------------------------------------------------------- round trips
@pytest.fixture(scope="module")
def image():
    return mosaic(1300, 900, seed=7, glass=0.2)


@pytest.mark.parametrize(("compression", "tile_size"), [("deflate", 256), ("zstd", 512)])
def test_lossless_pyramid_reads_back_exactly_in_both_readers(
    tmp_path, image, compression, tile_size
):
    path = write_image_slide(
        tmp_path / "slide.tif",
        image,
        tile_size,
        compression=compression,
        mpp=0.25,
        magnification=40,
    )
    levels = reference_pyramid(image, tile_size)
    assert len(levels) == (4 if tile_size == 256 else 3)
    for backend in BACKENDS:
        with open_slide(path, backend=backend) as slide:
            assert slide.vendor == "aperio"
            assert slide.level_dimensions == tuple((a.shape[1], a.shape[0]) for a in levels)
            assert slide.mpp == pytest.approx((0.25, 0.25))
            assert slide.objective_power == 40.0
            for level, expected in enumerate(levels):
                box = (0, 0, expected.shape[1], expected.shape[0])
                np.testing.assert_array_equal(slide.read_level(level, box), expected)


def test_the_file_has_the_svs_layout_and_resolution_tags(tmp_path, image):
    import tifffile

    path = write_image_slide(tmp_path / "slide.svs", image, compression="zstd", mpp=(0.25, 0.26))
    with tifffile.TiffFile(path) as tiff:
        assert tiff.is_bigtiff
        pages = list(tiff.pages)
        assert [p.is_tiled for p in pages] == [True, False, True, True, True]
        assert pages[0].description.startswith("Aperio Image Library stainstyle")
        assert "|MPP = 0.25" in pages[0].description and "AppMag" not in pages[0].description
        assert pages[1].shape == (113, 163, 3)  # the thumbnail: the smallest level
        assert pages[0].tilewidth == pages[0].tilelength == 256
        for page, downsample in zip(pages[2:], (2, 4, 8), strict=True):
            x = page.tags["XResolution"].value
            y = page.tags["YResolution"].value
            assert page.tags["ResolutionUnit"].value == 3  # centimetre
            width_ratio = 1300 / page.shape[1]
            height_ratio = 900 / page.shape[0]
            assert x[0] / x[1] == pytest.approx(1e4 / (0.25 * width_ratio))
            assert y[0] / y[1] == pytest.approx(1e4 / (0.26 * height_ratio))
            assert width_ratio == pytest.approx(downsample, rel=0.02)


def test_jpeg_pyramid_is_close_to_the_reference(tmp_path, image):
    path = write_image_slide(tmp_path / "slide.tif", image, mpp=0.5)
    lossless = write_image_slide(tmp_path / "lossless.tif", image, compression="deflate")
    assert os.path.getsize(path) < os.path.getsize(lossless) / 2
    levels = reference_pyramid(image, 256)
    for backend in BACKENDS:
        with open_slide(path, backend=backend) as slide:
            assert slide.objective_power is None
            for level in (0, 1):
                expected = levels[level]
                read = slide.read_level(level, (0, 0, expected.shape[1], expected.shape[0]))
                assert psnr(read, expected) > 35


def test_rows_may_be_lists_of_tiles(tmp_path, image):
    def rows():
        for row in rows_of(image, 256):
            yield [row[:, x : x + 256] for x in range(0, row.shape[1], 256)]

    path = write_pyramid(tmp_path / "tiles.tif", rows(), size=(1300, 900), compression="zstd")
    with open_slide(path) as slide:
        np.testing.assert_array_equal(slide.read_level(0, (0, 0, 1300, 900)), image)


def test_a_slide_smaller_than_a_tile_has_one_level(tmp_path, image):
    small = image[:200, :250]
    path = write_image_slide(tmp_path / "small.tif", small, compression="deflate", mpp=0.5)
    for backend in BACKENDS:
        with open_slide(path, backend=backend) as slide:
            assert slide.level_dimensions == ((250, 200),)
            np.testing.assert_array_equal(slide.read_level(0, (0, 0, 250, 200)), small)


# ---------------------------------------------------------------------------- the real slide
@pytest.fixture(scope="module")
def svs_copy(tmp_path_factory):
    """The real SVS copied into a JPEG pyramid and a lossless one, with its level 0."""
    folder = tmp_path_factory.mktemp("copy")
    with open_slide(svs_path()) as slide:
        source = slide.read_level(0, (0, 0, *slide.dimensions))
        for name, compression in (("copy.svs", "jpeg"), ("lossless.tif", "zstd")):
            rows = (
                slide.read_level(0, (0, y, 2220, min(256, 2967 - y))) for y in range(0, 2967, 256)
            )
            options = {"mpp": slide.mpp, "magnification": slide.objective_power}
            write_pyramid(
                folder / name, rows, size=slide.dimensions, compression=compression, **options
            )
    return folder, source


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_copy_of_the_real_svs_reads_back_with_its_size_levels_and_mpp(svs_copy, backend):
    folder, source = svs_copy
    for name in ("copy.svs", "lossless.tif"):
        with open_slide(folder / name, backend=backend) as slide:
            assert slide.dimensions == (2220, 2967)
            assert slide.level_dimensions == (
                (2220, 2967),
                (1110, 1484),
                (555, 742),
                (278, 371),
                (139, 186),
            )
            assert slide.mpp == pytest.approx((0.499, 0.499))
            assert slide.objective_power == 20.0
            level0 = slide.read_level(0, (0, 0, 2220, 2967))
            if name == "lossless.tif":
                np.testing.assert_array_equal(level0, source)
            else:  # the source's JPEG tiles encoded again at quality 90
                assert psnr(level0, source) > 30


# ---------------------------------------------------------------------------- refusals
def _attempt(path, image, rows=None, **options):
    options = {"size": (image.shape[1], image.shape[0]), **options}
    return write_pyramid(path, rows_of(image, 256) if rows is None else rows, **options)


def test_wrong_rows_are_named_and_leave_nothing(tmp_path, image):
    path = tmp_path / "out.tif"
    rows = list(rows_of(image, 256))
    cases = [
        (rows[:-1], r"out\.tif: rows: got 3, expected 4"),
        ([*rows, rows[-1]], r"out\.tif: rows: more than 4 rows"),
        (
            [rows[0], rows[1][:, :-1], *rows[2:]],
            r"out\.tif: row 1: expected uint8 of shape \(256, 1300, 3\)",
        ),
        ([rows[0].astype(float), *rows[1:]], r"row 0: expected uint8 .* got float64 array"),
        ([None, *rows[1:]], "row 0: expected uint8 of shape .* got NoneType"),
        (
            [rows[0], rows[1], rows[2], rows[3][:100]],
            r"row 3: expected uint8 of shape \(132, 1300, 3\)",
        ),
    ]
    for bad_rows, message in cases:
        with pytest.raises(ValueError, match=message):
            _attempt(path, image, bad_rows)
        assert os.listdir(tmp_path) == []


def test_wrong_options_are_named(tmp_path, image):
    path = tmp_path / "out.tif"
    cases = [
        ({"tile_size": 300}, "tile_size: expected a multiple of 16"),
        ({"compression": "lzw"}, "compression: expected one of"),
        ({"jpeg_quality": 0}, r"jpeg_quality: expected an integer in \[1, 100\]"),
        ({"mpp": -1}, "mpp: expected a positive number"),
        ({"mpp": (0.5, float("nan"))}, "mpp: expected a positive number"),
        ({"magnification": 0}, "magnification: expected a positive number"),
        ({"size": (0, 5)}, r"size: expected \(width, height\)"),
    ]
    for options, message in cases:
        with pytest.raises(ValueError, match=message):
            _attempt(path, image, **options)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _attempt(tmp_path / "missing" / "out.tif", image)
    assert os.listdir(tmp_path) == []


def test_a_failed_write_keeps_the_previous_file(tmp_path, image):
    path = write_image_slide(tmp_path / "out.tif", image, compression="zstd")
    before = path.read_bytes()

    def failing():
        yield from list(rows_of(image, 256))[:2]
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        _attempt(path, image, failing())
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.tif"]


# ---------------------------------------------------------------------------- memory
_MEMORY_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from stainstyle.wsi import write_pyramid

    def megabytes(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field)) // 1024

    width, height, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    blocks = np.random.default_rng(0).integers(100, 230, (32, -(-width // 8), 3), dtype=np.uint8)
    row = np.ascontiguousarray(blocks.repeat(8, axis=0).repeat(8, axis=1)[:, :width])
    rows = (row[: min(256, height - y)] for y in range(0, height, 256))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak resident size (VmHWM) starts again from the current size
    before = megabytes("VmRSS:")
    write_pyramid(out, rows, size=(width, height))
    print(megabytes("VmHWM:") - before)
    """
)


def test_memory_does_not_grow_with_the_slide_height(tmp_path):
    if not os.access("/proc/self/clear_refs", os.W_OK):
        skip_or_fail("needs Linux's /proc/self/clear_refs to measure the peak resident size")
    script = tmp_path / "measure.py"
    script.write_text(_MEMORY_SCRIPT)
    growth = {}
    for height in (1024, 16384):  # 12 MB and 200 MB of level-0 pixels, each in a new process
        out = tmp_path / f"{height}.tif"
        growth[height] = int(run_python([script, 4096, height, out], cwd=ROOT).split()[-1])
        with open_slide(out) as slide:
            assert slide.dimensions == (4096, height)
    # The peak above the starting size: a few rows of tiles (3 MB each), never a level.
    assert growth[16384] <= growth[1024] + 8, growth
    assert growth[16384] < 32, growth
