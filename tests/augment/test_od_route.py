"""The OpenCV route of numpy uint8 tiles against the maths it implements."""

import numpy as np
import pytest
import torch

from stainstyle.augment._common import affine_pixels, intensity_of, quantized_intensity
from stainstyle.color.quantize import float_to_uint8


@pytest.mark.parametrize(("channels", "outputs"), [(3, 3), (3, 2), (2, 3), (2, 2)])
@pytest.mark.parametrize("per_tile", [False, True])
def test_affine_pixels_numpy_tile_equals_the_matrix_product(channels, outputs, per_tile):
    rng = np.random.default_rng(channels * 10 + outputs)
    x = rng.normal(size=(1, 9, 7, channels)).astype(np.float32)
    matrix = rng.normal(size=(1, channels, outputs) if per_tile else (channels, outputs))
    offset = rng.normal(size=(1, outputs) if per_tile else (outputs,))
    expected = x.astype(np.float64) @ matrix.reshape(channels, outputs) + offset.reshape(outputs)
    out = affine_pixels(np, x, matrix, offset)
    assert out.shape == (1, 9, 7, outputs) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    in_torch = affine_pixels(torch, torch.from_numpy(x), matrix, offset).numpy()
    np.testing.assert_allclose(in_torch, expected, rtol=1e-5, atol=1e-5)


def test_quantized_intensity_rounds_as_float_to_uint8():
    rng = np.random.default_rng(0)
    od = rng.uniform(-1.0, 7.0, (64, 64, 3)).astype(np.float32)
    od[0, :3] = np.array([[-50.0], [-0.07], [50.0]])  # far above white, just above 255, black
    expected = float_to_uint8(intensity_of(np, od.astype(np.float64)))
    out = quantized_intensity(od.copy())
    assert out.dtype == np.uint8 and out.shape == od.shape
    assert np.abs(out.astype(int) - expected).max() <= 1
    assert np.mean(out != expected) < 1e-3  # only float rounding next to half a gray level
    assert out[0, :3].tolist() == [[255] * 3, [255] * 3, [0] * 3]
