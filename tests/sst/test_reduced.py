"""Colouring at reduced resolution (``stainstyle.sst.reduced``, ``inference_scale``)."""

import cv2
import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError

from stainstyle.sst import StainStyleTransfer
from stainstyle.sst.reduced import guided_upsample, reduce_gray, reduced_shape


def textured_gray(height, width, seed=0):
    """Gray levels with detail finer than the reduced resolution (nuclei-sized dots, stripes)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width]
    gray = 150 + 40 * np.sin(x / 1.3) * np.cos(y / 1.7) + rng.normal(0, 8, (height, width))
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("height", "width", "scale"), [(64, 64, 0.5), (37, 23, 0.25), (5, 3, 0.25)]
)
def test_reduced_shape_rounds_and_keeps_a_pixel(height, width, scale):
    gray = textured_gray(height, width)[None]
    reduced = reduce_gray(gray, scale)
    expected = (max(1, round(height * scale)), max(1, round(width * scale)))
    assert reduced_shape(height, width, scale) == expected
    assert reduced.shape == (1, *expected) and reduced.dtype == np.uint8


def test_a_colour_linear_in_the_gray_levels_comes_back_with_full_detail():
    """Colour = a * gray + b per channel at the reduced size: the full-size result is exact."""
    gray = textured_gray(96, 80)
    small = reduce_gray(gray[None], 0.5)[0]
    slope, offset = np.array([0.9, 0.6, 0.75]), np.array([20.0, 5.0, 40.0])

    def colour(g):
        return np.clip(np.rint(g[..., None] * slope + offset), 0, 255).astype(np.uint8)

    out = guided_upsample(colour(small), small, gray)
    assert out.shape == (96, 80, 3) and out.dtype == np.uint8
    error = np.abs(out.astype(int) - colour(gray))
    assert error.mean() < 0.6 and error.max() <= 3
    # Plain enlargement of the reduced colour loses that detail.
    enlarged = cv2.resize(colour(small), (80, 96), interpolation=cv2.INTER_LINEAR)
    assert np.abs(enlarged.astype(int) - colour(gray)).mean() > 5 * error.mean()


def test_flat_gray_gets_the_window_mean_colour():
    gray = np.full((16, 16), 120, np.uint8)
    small = reduce_gray(gray[None], 0.25)[0]
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[..., 0], colour[..., 1], colour[..., 2] = 200, 100, 150
    np.testing.assert_array_equal(
        guided_upsample(colour, small, gray), np.full((16, 16, 3), [200, 100, 150])
    )


@pytest.fixture(scope="module")
def fitted(tiles):
    return StainStyleTransfer(
        width=4, depth=2, crop_size=16, max_epochs=1, lambda_fp=0, device="cpu"
    ).fit(tiles)


def test_transform_at_reduced_resolution_keeps_shape_and_is_close_to_full(fitted, tiles):
    assert StainStyleTransfer().inference_scale == 1.0  # off by default
    full = fitted.transform(tiles)
    fitted.set_params(inference_scale=0.5)
    try:
        reduced = fitted.transform(tiles)
    finally:
        fitted.set_params(inference_scale=1.0)
    assert reduced.shape == full.shape and reduced.dtype == np.uint8
    assert np.abs(reduced.astype(int) - full).mean() < 10


@pytest.mark.parametrize("scale", [0.25, 0.3, 2.0, 0])
def test_other_scales_are_refused(fitted, tiles, scale):
    fitted.set_params(inference_scale=scale)
    try:
        with pytest.raises(InvalidParameterError, match="inference_scale"):
            fitted.transform(tiles)
    finally:
        fitted.set_params(inference_scale=1.0)
