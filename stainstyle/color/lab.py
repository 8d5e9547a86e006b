"""Lab colour spaces used by Reinhard colour transfer: Ruderman's lαβ and CIE L*a*b*.

These are the float64 reference conversions. :mod:`stainstyle.methods.reinhard` runs a fused
float32 form of the same maths, tested against these functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stainstyle._xp import constant, pixels_times

#: RGB to LMS cone response (Reinhard et al. 2001, eq. 4 combined with eq. 2).
RGB_TO_LMS = np.array(
    [[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]]
)
#: LMS to RGB, the exact inverse of :data:`RGB_TO_LMS`.
LMS_TO_RGB = np.linalg.inv(RGB_TO_LMS)
#: log-LMS to lαβ (Ruderman et al. 1998; Reinhard et al. 2001, eq. 6).
LOG_LMS_TO_LAB = np.diag([1 / np.sqrt(3), 1 / np.sqrt(6), 1 / np.sqrt(2)]) @ np.array(
    [[1.0, 1.0, 1.0], [1.0, 1.0, -2.0], [1.0, -1.0, 0.0]]
)
#: lαβ to log-LMS, the exact inverse of :data:`LOG_LMS_TO_LAB`.
LAB_TO_LOG_LMS = np.linalg.inv(LOG_LMS_TO_LAB)


def rgb_to_lab_ruderman(rgb: np.ndarray) -> np.ndarray:
    """Convert RGB to Ruderman's decorrelated lαβ space (natural logarithm).

    Parameters
    ----------
    rgb : ndarray of shape (..., 3)
        RGB intensities on the 0-255 scale (uint8 or float).

    Returns
    -------
    ndarray of shape (..., 3), dtype float64
        (l, α, β). Intensities are clamped to >= 1 before the logarithm so that black pixels
        stay finite (HistomicsTK instead substitutes 2.2e-16, which gives extreme values).

    See Also
    --------
    lab_ruderman_to_rgb : The inverse.

    References
    ----------
    Reinhard, Ashikhmin, Gooch & Shirley, "Color transfer between images", IEEE CG&A 21(5),
    2001.
    """
    rgb = np.maximum(np.asarray(rgb, dtype=np.float64), 1.0)
    return np.log(rgb @ RGB_TO_LMS.T) @ LOG_LMS_TO_LAB.T


def lab_ruderman_to_rgb(lab: np.ndarray) -> np.ndarray:
    """Convert Ruderman lαβ back to RGB on the 0-255 scale (not clipped).

    Parameters
    ----------
    lab : ndarray of shape (..., 3), float
        (l, α, β) as returned by :func:`rgb_to_lab_ruderman`.

    Returns
    -------
    ndarray of shape (..., 3), dtype float64
        RGB, possibly outside [0, 255] for out-of-gamut colours.
    """
    return np.exp(np.asarray(lab, dtype=np.float64) @ LAB_TO_LOG_LMS.T) @ LMS_TO_RGB.T


def rgb_to_lab_cie(rgb: np.ndarray) -> np.ndarray:
    """Convert RGB to CIE L*a*b* (sRGB, D65), as ``skimage.color.rgb2lab(rgb / 255)``.

    Parameters
    ----------
    rgb : ndarray of shape (..., 3)
        RGB intensities on the 0-255 scale.

    Returns
    -------
    ndarray of shape (..., 3), dtype float64
        L* in [0, 100], a* and b* roughly in [-128, 127].
    """
    from skimage.color import rgb2lab

    return rgb2lab(np.asarray(rgb, dtype=np.float64) / 255.0)


def lab_cie_to_rgb(lab: np.ndarray) -> np.ndarray:
    """Convert CIE L*a*b* back to RGB on the 0-255 scale, as ``skimage.color.lab2rgb * 255``.

    Parameters
    ----------
    lab : ndarray of shape (..., 3), float
        CIE L*a*b*.

    Returns
    -------
    ndarray of shape (..., 3), dtype float64
        RGB in [0, 255] (skimage clips out-of-gamut values).
    """
    from skimage.color import lab2rgb

    return lab2rgb(np.asarray(lab, dtype=np.float64)) * 255.0


def ruderman_of(xp: Any, rgb: Any) -> Any:
    """Ruderman lαβ of a float batch, written once for numpy and torch (``xp``).

    Parameters
    ----------
    xp : module
        :mod:`numpy` or :mod:`torch`.
    rgb : ndarray or torch.Tensor of shape (n, H, W, 3), float
        RGB intensities 0-255; clamped to >= 1 before the logarithm, as
        :func:`rgb_to_lab_ruderman`.

    Returns
    -------
    ndarray or torch.Tensor of shape (n, H, W, 3), dtype of ``rgb``
    """
    lms = pixels_times(xp.clip(rgb, 1.0, None), constant(xp, RGB_TO_LMS.T, rgb))
    return pixels_times(xp.log(lms), constant(xp, LOG_LMS_TO_LAB.T, rgb))


def rgb_of_ruderman(xp: Any, lab: Any) -> Any:
    """The inverse of :func:`ruderman_of`: RGB 0-255 (not clipped) of a float lαβ batch.

    Parameters
    ----------
    xp : module
        :mod:`numpy` or :mod:`torch`.
    lab : ndarray or torch.Tensor of shape (n, H, W, 3), float

    Returns
    -------
    ndarray or torch.Tensor of shape (n, H, W, 3), dtype of ``lab``
    """
    lms = xp.exp(pixels_times(lab, constant(xp, LAB_TO_LOG_LMS.T, lab)))
    return pixels_times(lms, constant(xp, LMS_TO_RGB.T, lab))


#: sRGB (D65) linear RGB to XYZ, as scikit-image's ``xyz_from_rgb``.
_XYZ_FROM_RGB = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
#: The D65 (2 degree) white point of scikit-image's ``rgb2lab``.
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])


def cie_of(xp: Any, rgb: Any) -> Any:
    """CIE L*a*b* of a float batch, the maths of :func:`rgb_to_lab_cie` for numpy and torch.

    Parameters
    ----------
    xp : module
        :mod:`numpy` or :mod:`torch`.
    rgb : ndarray or torch.Tensor of shape (n, H, W, 3), float
        RGB intensities 0-255.

    Returns
    -------
    ndarray or torch.Tensor of shape (n, H, W, 3), dtype of ``rgb``
        As ``skimage.color.rgb2lab(rgb / 255)``, in the dtype of ``rgb``.
    """
    c = rgb / 255.0
    linear = xp.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = pixels_times(linear, constant(xp, (_XYZ_FROM_RGB / _WHITE_D65[:, None]).T, rgb))
    f = xp.where(xyz > 0.008856, xp.clip(xyz, 0.008856, None) ** (1 / 3), 7.787 * xyz + 16 / 116)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return xp.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], -1)


def rgb_of_cie(xp: Any, lab: Any) -> Any:
    """The inverse of :func:`cie_of`, as :func:`lab_cie_to_rgb`: RGB 0-255, clipped.

    Parameters
    ----------
    xp : module
        :mod:`numpy` or :mod:`torch`.
    lab : ndarray or torch.Tensor of shape (n, H, W, 3), float
        CIE L*a*b*.

    Returns
    -------
    ndarray or torch.Tensor of shape (n, H, W, 3), dtype of ``lab``
        As ``skimage.color.lab2rgb(lab) * 255`` (negative Z clipped to 0, RGB to [0, 255]).
    """
    fy = (lab[..., 0] + 16.0) / 116.0
    f = xp.stack([fy + lab[..., 1] / 500.0, fy, xp.clip(fy - lab[..., 2] / 200.0, 0.0, None)], -1)
    xyz = xp.where(f > 0.2068966, f**3, (f - 16.0 / 116.0) / 7.787)
    inverse = np.linalg.inv(_XYZ_FROM_RGB) * _WHITE_D65[None, :]
    linear = pixels_times(xyz, constant(xp, inverse.T, lab))
    positive = xp.clip(linear, 0.0031308, None)
    c = xp.where(linear > 0.0031308, 1.055 * positive ** (1 / 2.4) - 0.055, linear * 12.92)
    return xp.clip(c, 0.0, 1.0) * 255.0
