"""Fidelity metrics of stain normalization against paired ground truth, with fixed settings.

Paired scans of the same tissue differ in registration and focus as well as in colour, so the
colour metric compares low-passed images: :func:`ciede2000_lowpass` blurs both images with a
Gaussian (sigma 3 px) before the CIEDE2000 colour difference. :func:`psnr` and :func:`ssim`
compare pixels and are reported beside it.
"""

from __future__ import annotations

import numpy as np
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.filters import gaussian
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

#: Settings of :func:`ssim`: Wang et al.'s Gaussian-weighted SSIM.
SSIM_SETTINGS = {
    "gaussian_weights": True,
    "sigma": 1.5,
    "use_sample_covariance": False,
    "data_range": 255,
    "channel_axis": -1,
}


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim < 3 or a.shape[-1] != 3:
        raise ValueError(
            f"a, b: expected two RGB images (..., H, W, 3) of the same shape, got shapes "
            f"{a.shape} and {b.shape}"
        )
    for name, array in (("a", a), ("b", b)):
        if array.dtype != np.uint8:
            raise ValueError(f"{name}: expected dtype uint8, got {array.dtype}")
    return a, b


def _per_image(metric, a: np.ndarray, b: np.ndarray) -> float | np.ndarray:
    a, b = _check_pair(a, b)
    flat_a, flat_b = a.reshape(-1, *a.shape[-3:]), b.reshape(-1, *b.shape[-3:])
    values = np.array([metric(x, y) for x, y in zip(flat_a, flat_b, strict=True)])
    return float(values[0]) if a.ndim == 3 else values.reshape(a.shape[:-3])


def ciede2000_lowpass(a: np.ndarray, b: np.ndarray, sigma: float = 3.0) -> float | np.ndarray:
    """Mean CIEDE2000 colour difference after a Gaussian low-pass.

    Parameters
    ----------
    a, b : ndarray of shape (..., H, W, 3), dtype uint8
        RGB images of the same shape.
    sigma : float, default=3.0
        Standard deviation in pixels of the Gaussian applied per channel to the RGB values in
        [0, 1] (``skimage.filters.gaussian``, nearest-edge mode) before the conversion to CIE Lab.

    Returns
    -------
    float or ndarray of shape (...)
        Mean over pixels, per image; a float for one pair of images.

    Raises
    ------
    ValueError
        If the shapes differ, are not (..., H, W, 3), or the dtype is not uint8.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.full((8, 8, 3), 128, dtype=np.uint8)
    >>> round(ciede2000_lowpass(a, a), 6)
    0.0
    """

    def metric(x: np.ndarray, y: np.ndarray) -> float:
        lab_x = rgb2lab(gaussian(x / 255.0, sigma=sigma, channel_axis=-1))
        lab_y = rgb2lab(gaussian(y / 255.0, sigma=sigma, channel_axis=-1))
        return float(deltaE_ciede2000(lab_x, lab_y).mean())

    return _per_image(metric, a, b)


def psnr(a: np.ndarray, b: np.ndarray, pooled: bool = False) -> float | np.ndarray:
    """Peak signal-to-noise ratio in dB, data range 255.

    Parameters
    ----------
    a, b : ndarray of shape (..., H, W, 3), dtype uint8
        Test and reference images of the same shape.
    pooled : bool, default=False
        One PSNR over the mean squared error of all pixels of all images, instead of one per
        image.

    Returns
    -------
    float or ndarray of shape (...)
        Per image (a float for one pair of images, or when ``pooled``); ``inf`` for identical
        images.

    Raises
    ------
    ValueError
        As :func:`ciede2000_lowpass`.
    """

    def metric(x: np.ndarray, y: np.ndarray) -> float:
        if np.array_equal(x, y):
            return float("inf")
        return float(peak_signal_noise_ratio(y, x, data_range=255))

    if pooled:
        a, b = _check_pair(a, b)
        return metric(a, b)
    return _per_image(metric, a, b)


def ssim(a: np.ndarray, b: np.ndarray) -> float | np.ndarray:
    """Structural similarity with :data:`SSIM_SETTINGS` (Gaussian 11x11, sigma 1.5).

    Parameters
    ----------
    a, b : ndarray of shape (..., H, W, 3), dtype uint8
        Images of the same shape, at least 7 x 7 pixels.

    Returns
    -------
    float or ndarray of shape (...)
        Mean SSIM over pixels and channels, per image.

    Raises
    ------
    ValueError
        As :func:`ciede2000_lowpass`.
    """

    def metric(x: np.ndarray, y: np.ndarray) -> float:
        return float(structural_similarity(x, y, **SSIM_SETTINGS))

    return _per_image(metric, a, b)
