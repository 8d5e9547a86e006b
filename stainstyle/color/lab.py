"""Lab colour spaces used by Reinhard colour transfer: Ruderman's lαβ and CIE L*a*b*.

These are the float64 reference conversions. :mod:`stainstyle.methods.reinhard` runs a fused
float32 form of the same maths, tested against these functions.
"""

from __future__ import annotations

import numpy as np

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
