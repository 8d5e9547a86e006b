import warnings

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


def test_one_pair_gives_a_float_and_leading_axes_are_kept():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (2, 3, 12, 12, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (2, 3, 12, 12, 3), dtype=np.uint8)
    for metric in (ciede2000_lowpass, psnr, ssim):
        assert type(metric(a[0, 0], b[0, 0])) is float
        values = metric(a, b)
        assert values.shape == (2, 3)
        assert values[1, 2] == metric(a[1, 2], b[1, 2])


def test_colour_difference_blurs_with_sigma_three_by_default():
    from skimage.color import deltaE_ciede2000, rgb2lab
    from skimage.filters import gaussian

    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)

    def lab(x):
        return rgb2lab(gaussian(x / 255.0, sigma=3.0, channel_axis=-1))

    expected = deltaE_ciede2000(lab(a), lab(b)).mean()
    assert ciede2000_lowpass(a, b) == pytest.approx(expected, rel=1e-12)
    assert ciede2000_lowpass(a, b, sigma=4.0) != pytest.approx(expected, rel=1e-6)


def test_identical_images_give_infinite_psnr_without_a_warning():
    image = np.full((4, 4, 3), 7, np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert psnr(image, image) == float("inf")
        assert psnr(image, image, pooled=True) == float("inf")


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        (np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), "RGB images"),
        (np.zeros((4, 3), np.uint8), np.zeros((4, 3), np.uint8), "RGB images"),
        (np.zeros((4, 4, 3)), np.zeros((4, 4, 3), np.uint8), "^a: expected dtype uint8"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3)), "^b: expected dtype uint8"),
    ],
)
def test_bad_pairs_are_named(a, b, match):
    for metric in (ciede2000_lowpass, psnr, ssim):
        with pytest.raises(ValueError, match=match):
            metric(a, b)
