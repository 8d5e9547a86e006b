"""The tissue mask of a slide: ``stainstyle.wsi.tissue``."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from _wsi_support import mosaic, svs_path, write_image_slide

from stainstyle.tissue import tissue_mask
from stainstyle.wsi import TissueMask, open_slide, slide_tissue_mask


@pytest.fixture(scope="module")
def half_glass(tmp_path_factory):
    """A 2000 x 1200 slide of real tissue whose right half is glass."""
    path = tmp_path_factory.mktemp("tissue") / "half.tif"
    return write_image_slide(
        path, mosaic(2000, 1200, seed=3, glass=0.5), compression="zstd", mpp=0.5
    )


def test_the_mask_finds_tissue_left_and_glass_right(half_glass):
    with open_slide(half_glass) as slide:
        mask = slide_tissue_mask(slide, max_side=500)
    assert mask.mask.shape == (300, 500) and mask.mask.dtype == bool
    assert mask.downsample == pytest.approx((4.0, 4.0))
    assert mask.mask[:, :250].mean() > 0.6
    assert not mask.mask[:, 251:].any()
    fractions = mask.fractions(np.array([[0, 0, 1000, 1200], [1000, 0, 1000, 1200]]))
    assert fractions[0] > 0.6 and fractions[1] == 0.0
    assert mask.coverage == pytest.approx(mask.mask.mean())


def test_the_mask_is_the_project_rule_on_the_thumbnail_after_an_opening():
    with open_slide(svs_path()) as slide:
        mask = slide_tissue_mask(slide, max_side=1024)
        thumbnail = slide.thumbnail(1024)
    raw = tissue_mask(thumbnail).view(np.uint8)
    opened = cv2.morphologyEx(raw, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).view(bool)
    np.testing.assert_array_equal(mask.mask, opened)
    assert 0.15 < mask.coverage < 0.6  # the CMU-1 region: a tissue fragment on glass
    assert mask.downsample == pytest.approx((2220 / 766, 2967 / 1024))


def test_fractions_count_mask_pixels_and_treat_the_outside_as_glass():
    rng = np.random.default_rng(0)
    pixels = rng.random((40, 60)) < 0.3
    mask = TissueMask(pixels, (2.0, 3.0))
    boxes = np.array(
        [
            [0, 0, 120, 120],  # the whole mask
            [10, 9, 20, 30],  # mask [3:13, 5:15]
            [-20, -30, 40, 60],  # three quarters outside: mask [0:10, 0:10] of 20 x 20
            [500, 500, 10, 10],  # wholly outside
            [4, 3, 0.5, 0.5],  # smaller than a mask pixel: one pixel, mask [1, 2]
        ],
        dtype=float,
    )
    expected = [
        pixels.mean(),
        pixels[3:13, 5:15].mean(),
        pixels[0:10, 0:10].sum() / 400,
        0.0,
        float(pixels[1, 2]),
    ]
    np.testing.assert_allclose(mask.fractions(boxes), expected)


def test_a_blank_slide_has_an_empty_mask(tmp_path):
    blank = np.full((700, 900, 3), 245, np.uint8)
    blank[100:110, 100:110] = 120  # a speck of dust, removed by the opening at this scale
    path = write_image_slide(tmp_path / "blank.tif", blank, compression="deflate")
    with open_slide(path) as slide:
        mask = slide_tissue_mask(slide, max_side=200)
    assert mask.coverage == 0.0
