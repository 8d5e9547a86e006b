"""Opening slides and reading them: ``stainstyle.wsi.reader`` on the real SVS and on pyramids.

The pyramids are built from real CAMELYON17 tiles with lossless compression, so that every
level read back can be compared exactly with the reference downsampling.
"""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest
from _wsi_support import mosaic, plain_tiff, reference_pyramid, svs_path, write_image_slide

from stainstyle.wsi import SlideReadError, SlideRequestError, open_slide
from stainstyle.wsi import reader as reader_module

BACKENDS = ["tiffslide", "openslide"]


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory):
    """A 4-level lossless slide at 0.25 um/px and 40x, with its reference levels."""
    image = mosaic(1500, 1100, seed=1, glass=0.3)
    path = tmp_path_factory.mktemp("pyramid") / "slide.tif"
    write_image_slide(path, image, compression="deflate", mpp=0.25, magnification=40)
    return path, reference_pyramid(image, 256)


# ---------------------------------------------------------------------------- the real slide
@pytest.mark.parametrize("backend", BACKENDS)
def test_real_svs_reports_size_levels_mpp_and_power(backend):
    with open_slide(svs_path(), backend=backend) as slide:
        assert slide.backend == backend
        assert slide.vendor == "aperio"
        assert slide.dimensions == (2220, 2967)
        assert slide.level_count == 1
        assert slide.level_downsamples == (1.0,)
        assert slide.mpp == pytest.approx((0.499, 0.499))
        assert slide.objective_power == 20.0
        assert slide.properties  # vendor metadata as strings
        assert all(isinstance(v, str) for v in slide.properties.values())


def test_real_svs_is_read_with_tiffslide_by_default_and_both_backends_agree():
    with open_slide(svs_path()) as ours, open_slide(svs_path(), backend="openslide") as other:
        assert ours.backend == "tiffslide"
        for box in [(0, 0, 300, 200), (1000, 1500, 512, 512), (1900, 2700, 320, 267)]:
            a, b = ours.read_level(0, box), other.read_level(0, box)
            assert a.shape == (box[3], box[2], 3) and a.dtype == np.uint8
            assert np.abs(a.astype(int) - b).max() <= 2


def test_real_svs_thumbnail_keeps_the_aspect_ratio():
    with open_slide(svs_path()) as slide:
        thumbnail = slide.thumbnail(512)
        assert thumbnail.shape == (512, 383, 3)
        assert thumbnail.dtype == np.uint8
        full = slide.read_level(0, (0, 0, 2220, 2967))
        expected = cv2.resize(full, (383, 512), interpolation=cv2.INTER_AREA)
        assert np.abs(thumbnail.astype(int) - expected).mean() < 1.0


# ---------------------------------------------------------------------------- regions
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_level_reads_back_exactly(pyramid, backend):
    path, levels = pyramid
    with open_slide(path, backend=backend) as slide:
        assert slide.level_count == len(levels) == 4
        for level, expected in enumerate(levels):
            height, width = expected.shape[:2]
            assert slide.level_dimensions[level] == (width, height)
            np.testing.assert_array_equal(slide.read_level(level, (0, 0, width, height)), expected)


def test_read_region_takes_level0_locations(pyramid):
    path, levels = pyramid
    with open_slide(path) as slide:
        region = slide.read_region((402, 298), 1, (100, 80))
        np.testing.assert_array_equal(region, levels[1][149:229, 201:301])
        region = slide.read_region((403, 299), 2, (50, 40))  # floor(403 / 4), floor(299 / 4)
        np.testing.assert_array_equal(region, levels[2][74:114, 100:150])


@pytest.mark.parametrize("backend", BACKENDS)
def test_outside_the_slide_is_white(pyramid, backend):
    path, levels = pyramid
    with open_slide(path, backend=backend) as slide:
        region = slide.read_level(0, (-10, 1050, 40, 100))
        assert np.all(region[:, :10] == 255) and np.all(region[50:] == 255)
        np.testing.assert_array_equal(region[:50, 10:], levels[0][1050:, :30])
        assert np.all(slide.read_level(3, (5000, 5000, 20, 10)) == 255)
        assert np.all(slide.read_region((-3000, -3000), 0, (64, 64)) == 255)


def test_read_scaled_reads_the_coarsest_sufficient_level(pyramid):
    path, levels = pyramid
    with open_slide(path) as slide:
        # A quarter of the size: level 2 as it is.
        np.testing.assert_array_equal(slide.read_scaled((0, 0, 1500, 1100), (375, 275)), levels[2])
        # 1.5x: resampled from level 0 with area interpolation.
        out = slide.read_scaled((300, 150, 384, 384), (256, 256))
        expected = cv2.resize(levels[0][150:534, 300:684], (256, 256), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(out, expected)


def test_read_scaled_in_bands_matches_one_resize(pyramid, monkeypatch):
    path, levels = pyramid
    expected = cv2.resize(levels[0], (500, 367), interpolation=cv2.INTER_AREA)
    with open_slide(path) as slide:
        np.testing.assert_array_equal(
            slide.read_scaled((0, 0, 1500, 1100), (500, 367), level=0), expected
        )
        monkeypatch.setattr(reader_module, "BAND_PIXELS", 100_000)  # bands of 22 output rows
        banded = slide.read_scaled((0, 0, 1500, 1100), (500, 367), level=0)
    # Each band starts on a whole level row: rows move by at most half a level pixel.
    assert np.abs(banded.astype(int) - expected).mean() < 1.5


def test_read_scaled_beyond_the_slide_is_white_and_bounded(pyramid):
    path, levels = pyramid
    with open_slide(path) as slide:
        out = slide.read_scaled((-1500, 0, 3000, 1100), (200, 100))
    assert np.all(out[:, :99] == 255)
    assert not np.all(out[:, 101:] == 255)


def test_thumbnail_is_never_enlarged(pyramid):
    path, levels = pyramid
    with open_slide(path) as slide:
        assert slide.thumbnail(4000).shape == levels[0].shape
        assert slide.thumbnail(375).shape == (275, 375, 3)


# ---------------------------------------------------------------------------- resolution
def test_best_level_for_mpp(pyramid):
    path, _ = pyramid
    with open_slide(path) as slide:
        assert slide.mpp == pytest.approx((0.25, 0.25))
        assert slide.objective_power == 40.0
        assert [slide.best_level_for_mpp(m) for m in (0.25, 0.254, 0.4, 0.5, 0.97, 0.99, 50)] == [
            0,
            0,
            0,
            1,
            1,
            2,
            3,
        ]
        with pytest.raises(SlideRequestError, match=r"slide\.tif: 0\.1 um/px requested, finer"):
            slide.best_level_for_mpp(0.1)
        for bad in (0, -0.5, float("nan"), float("inf"), "x"):
            with pytest.raises(SlideRequestError, match="mpp: expected a positive finite"):
                slide.best_level_for_mpp(bad)


def test_a_slide_without_mpp_needs_it_stated(tmp_path):
    path = plain_tiff(tmp_path / "no-mpp.tif", mosaic(600, 400))
    with open_slide(path) as slide:
        assert slide.mpp is None and slide.objective_power is None
        with pytest.raises(SlideRequestError, match=r"no-mpp\.tif: the file records no microns"):
            slide.best_level_for_mpp(0.5)
    with open_slide(path, mpp=0.3) as slide:
        assert slide.mpp == (0.3, 0.3)
        assert slide.best_level_for_mpp(0.5) == 0
    with pytest.raises(SlideRequestError, match=r"no-mpp\.tif: mpp: expected a positive"):
        open_slide(path, mpp=-1)


# ---------------------------------------------------------------------------- pixel formats
@pytest.mark.parametrize("backend", BACKENDS)
def test_rgba_is_composited_onto_white_and_gray_is_replicated(tmp_path, backend):
    image = mosaic(300, 260)
    alpha = np.zeros((260, 300), np.uint8)
    alpha[:, 150:] = 255
    rgba = plain_tiff(tmp_path / "rgba.tif", np.dstack([image, alpha]), extrasamples=["unassalpha"])
    gray = plain_tiff(tmp_path / "gray.tif", image[..., 1], photometric="minisblack")
    with open_slide(rgba, backend=backend) as slide:
        pixels = slide.read_level(0, (0, 0, 300, 260))
    assert np.all(pixels[:, :150] == 255)
    assert np.abs(pixels[:, 150:].astype(int) - image[:, 150:]).max() <= 1
    with open_slide(gray, backend=backend) as slide:
        pixels = slide.read_level(0, (0, 0, 300, 260))
    np.testing.assert_array_equal(pixels, np.repeat(image[..., 1:2], 3, axis=-1))


def test_16_bit_slides_are_refused_by_tiffslide(tmp_path):
    path = plain_tiff(tmp_path / "deep.tif", mosaic(300, 260).astype(np.uint16) * 257)
    with pytest.raises(SlideReadError, match="uint16 samples"):
        open_slide(path, backend="tiffslide")


# ---------------------------------------------------------------------------- errors
def test_a_missing_file_or_folder_is_named(tmp_path):
    with pytest.raises(SlideReadError, match=r"nothing\.svs: file not found"):
        open_slide(tmp_path / "nothing.svs")
    with pytest.raises(SlideReadError, match="is a folder, not a slide file"):
        open_slide(tmp_path)


def test_an_unsupported_format_is_named_with_both_reasons(tmp_path):
    path = tmp_path / "picture.png"
    cv2.imwrite(str(path), mosaic(64, 64))
    with pytest.raises(SlideReadError, match=r"picture\.png: not a slide") as caught:
        open_slide(path)
    assert "tiffslide:" in str(caught.value) and "openslide:" in str(caught.value)
    with pytest.raises(ValueError, match="backend: expected one of"):
        open_slide(path, backend="pillow")


def test_a_level_that_does_not_exist_is_named(pyramid):
    path, _ = pyramid
    with open_slide(path) as slide:
        with pytest.raises(SlideRequestError, match=r"slide\.tif: level 4 does not exist.*0 to 3"):
            slide.read_level(4, (0, 0, 10, 10))
        with pytest.raises(SlideRequestError, match="level -1 does not exist"):
            slide.read_region((0, 0), -1, (10, 10))
        with pytest.raises(SlideRequestError, match="level: expected an integer"):
            slide.read_level(1.0, (0, 0, 10, 10))
        with pytest.raises(SlideRequestError, match="size: expected positive"):
            slide.read_level(0, (0, 0, 0, 10))
        with pytest.raises(SlideRequestError, match="box: expected 4 integers"):
            slide.read_level(0, (0, 0, 10.5, 10))


def test_errors_pickle_and_are_the_usual_types(tmp_path):
    error = SlideReadError(tmp_path / "a.svs", "truncated")
    again = pickle.loads(pickle.dumps(error))
    assert (
        isinstance(again, OSError)
        and str(again) == str(error) == f"{tmp_path / 'a.svs'}: truncated"
    )
    request = pickle.loads(pickle.dumps(SlideRequestError("a.svs", "level 3 does not exist")))
    assert isinstance(request, ValueError) and request.reason == "level 3 does not exist"


def test_a_closed_slide_says_so(pyramid):
    path, _ = pyramid
    slide = open_slide(path)
    with slide:
        assert "backend='tiffslide'" in repr(slide) and "1500x1100" in repr(slide)
    with pytest.raises(SlideReadError, match="the slide is closed"):
        slide.read_level(0, (0, 0, 10, 10))
    slide.close()  # twice is fine


def test_an_ome_tiff_pyramid_in_subifds_opens_with_tiffslide(tmp_path):
    import tifffile

    levels = reference_pyramid(mosaic(1300, 900, seed=2), 256)
    path = tmp_path / "slide.ome.tif"
    metadata = {"axes": "YXS", "PhysicalSizeX": 250, "PhysicalSizeXUnit": "nm"}
    metadata |= {"PhysicalSizeY": 0.25, "PhysicalSizeYUnit": "µm"}
    options = {"tile": (256, 256), "photometric": "rgb", "compression": "zlib"}
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tiff:
        tiff.write(levels[0], subifds=len(levels) - 1, metadata=metadata, **options)
        for level in levels[1:]:
            tiff.write(level, subfiletype=1, **options)
    with open_slide(path) as slide:
        assert slide.backend == "tiffslide"
        assert slide.mpp == pytest.approx((0.25, 0.25))  # from the OME-XML
        assert slide.level_count == 4
        for index, expected in enumerate(levels):
            box = (0, 0, expected.shape[1], expected.shape[0])
            np.testing.assert_array_equal(slide.read_level(index, box), expected)
