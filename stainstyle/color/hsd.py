"""The hue-saturation-density (HSD) colour model of van der Laak et al. (2000).

Per channel, the optical density is ``D_c = -ln(I_c / 255)`` with the intensity first clamped to
[1, 254], as the WSICS reference implementation does: the clamp keeps every density in
[0.0039, 5.54], so the overall density ``D = (D_R + D_G + D_B) / 3`` never vanishes and the
chromaticity

``c_x = D_R / D - 1``,  ``c_y = (D_G - D_B) / (sqrt(3) * D)``

is always defined. Grey has chromaticity (0, 0); ``atan2(c_y, c_x)`` is the hue and
``hypot(c_x, c_y)`` the saturation. The inverse is exact: ``D_R = D (c_x + 1)``,
``D_G = D (2 - c_x + sqrt(3) c_y) / 2`` and ``D_B = D (2 - c_x - sqrt(3) c_y) / 2``.

References
----------
.. [1] J. A. van der Laak, M. M. Pahlplatz, A. G. Hanselaar and P. C. de Wilde, "Hue-saturation-
   density (HSD) model for stain recognition in digital images from transmitted light
   microscopy", Cytometry 39(4):275-284, 2000.
"""

from __future__ import annotations

import numpy as np

#: Blank-field intensity of the density transform (WSICS reference code).
HSD_BLANK_INTENSITY = 255.0

#: Intensities are clamped to this range before the logarithm (WSICS reference code).
HSD_INTENSITY_RANGE = (1.0, 254.0)

_SQRT3 = np.sqrt(3.0)

# Density of every uint8 level: the logarithm is evaluated 256 times, not once per pixel.
_UINT8_DENSITY = -np.log(np.clip(np.arange(256.0), *HSD_INTENSITY_RANGE) / HSD_BLANK_INTENSITY)


def _check_last_axis(array: np.ndarray, name: str) -> None:
    if array.ndim == 0 or array.shape[-1] != 3:
        raise ValueError(f"{name}: expected shape (..., 3), got {array.shape}")


def rgb_to_hsd(rgb: np.ndarray) -> np.ndarray:
    """Convert RGB intensities to HSD coordinates ``(c_x, c_y, D)``.

    Parameters
    ----------
    rgb : ndarray of shape (..., 3)
        RGB intensities on the 0-255 scale: uint8, or any real dtype. Values are clamped to
        [1, 254] before the logarithm.

    Returns
    -------
    ndarray of shape (..., 3), dtype float64
        Chromaticity ``c_x``, ``c_y`` (dimensionless, grey = 0) and mean optical density ``D``
        (natural log, in [0.0039, 5.54]) in the last axis.

    Raises
    ------
    ValueError
        If the last axis is not 3, or the dtype is neither uint8 nor real.

    See Also
    --------
    hsd_to_rgb : The inverse.

    Examples
    --------
    >>> import numpy as np
    >>> rgb_to_hsd(np.array([100, 100, 100], dtype=np.uint8)).round(3)
    array([0.   , 0.   , 0.936])
    """
    rgb = np.asarray(rgb)
    _check_last_axis(rgb, "rgb")
    if rgb.dtype == np.uint8:
        densities = _UINT8_DENSITY[rgb]
    elif rgb.dtype.kind in "fiu":
        clamped = np.clip(rgb.astype(np.float64), *HSD_INTENSITY_RANGE)
        densities = -np.log(clamped / HSD_BLANK_INTENSITY)
    else:
        raise ValueError(f"rgb: expected dtype uint8 or a real dtype, got {rgb.dtype}")
    mean = densities.mean(axis=-1)
    out = np.empty(densities.shape, dtype=np.float64)
    out[..., 0] = densities[..., 0] / mean - 1.0
    out[..., 1] = (densities[..., 1] - densities[..., 2]) / (_SQRT3 * mean)
    out[..., 2] = mean
    return out


def hsd_channel_densities(hsd: np.ndarray) -> np.ndarray:
    """Per-channel optical densities ``(D_R, D_G, D_B)`` of HSD coordinates.

    Parameters
    ----------
    hsd : ndarray of shape (..., 3)
        ``(c_x, c_y, D)`` in the last axis, as returned by :func:`rgb_to_hsd`.

    Returns
    -------
    ndarray of shape (..., 3), dtype float64
        ``D_R = D (c_x + 1)``, ``D_G = D (2 - c_x + sqrt(3) c_y) / 2`` and
        ``D_B = D (2 - c_x - sqrt(3) c_y) / 2``.

    Raises
    ------
    ValueError
        If the last axis is not 3.
    """
    hsd = np.asarray(hsd, dtype=np.float64)
    _check_last_axis(hsd, "hsd")
    c_x, c_y, density = hsd[..., 0], hsd[..., 1], hsd[..., 2]
    out = np.empty(hsd.shape, dtype=np.float64)
    out[..., 0] = density * (c_x + 1.0)
    out[..., 1] = 0.5 * density * (2.0 - c_x + _SQRT3 * c_y)
    out[..., 2] = 0.5 * density * (2.0 - c_x - _SQRT3 * c_y)
    return out


def hsd_to_rgb(hsd: np.ndarray) -> np.ndarray:
    """Convert HSD coordinates ``(c_x, c_y, D)`` back to RGB intensities.

    Parameters
    ----------
    hsd : ndarray of shape (..., 3)
        ``(c_x, c_y, D)`` in the last axis. Any real values are accepted; intensities outside
        [0, 255] are clipped.

    Returns
    -------
    ndarray of shape (..., 3), dtype float64
        ``255 exp(-D_c)`` per channel, clipped to [0, 255] and not rounded. ``np.rint`` of it
        reproduces a uint8 input of :func:`rgb_to_hsd` exactly, except for 0 and 255, which come
        back as 1 and 254 because of the clamp.

    Raises
    ------
    ValueError
        If the last axis is not 3.

    See Also
    --------
    rgb_to_hsd : The inverse.

    Examples
    --------
    >>> import numpy as np
    >>> rgb = np.array([[200, 120, 160]], dtype=np.uint8)
    >>> np.rint(hsd_to_rgb(rgb_to_hsd(rgb)))
    array([[200., 120., 160.]])
    """
    densities = hsd_channel_densities(hsd)
    with np.errstate(over="ignore"):
        rgb = HSD_BLANK_INTENSITY * np.exp(-densities)
    return np.clip(np.nan_to_num(rgb, nan=0.0, posinf=255.0), 0.0, 255.0)
