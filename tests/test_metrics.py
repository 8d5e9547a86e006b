import numpy as np
import pytest

from stainstyle.metrics import ciede2000_lowpass, psnr, ssim


def test_psnr_known_values_per_image_and_pooled():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[1] += 1
    per_image = psnr(b, a)
    assert per_image[0] == float("inf")
    assert per_image[1] == pytest.approx(20 * np.log10(255))
    assert psnr(b, a, pooled=True) == pytest.approx(20 * np.log10(255) + 10 * np.log10(2))
    with pytest.raises(ValueError, match="same shape"):
        psnr(a, a[:, :2])


def test_identical_images_have_zero_colour_difference_and_unit_ssim():
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert ciede2000_lowpass(image, image) == 0.0
    assert ssim(image, image) == pytest.approx(1.0)
    assert ciede2000_lowpass(image, 255 - image) > 1.0
