"""Optical density (Beer-Lambert absorbance) of RGB intensities, ``OD = -ln((I + 1) / io)``."""

from __future__ import annotations

import functools

import numpy as np

#: Blank-field (transmitted light) intensity of the optical-density transform, 240 as in
#: Macenko's reference code (staintools uses 255).
IO_DEFAULT = 240.0


@functools.lru_cache(maxsize=16)
def od_lut(io: float = IO_DEFAULT, dtype: type = np.float32) -> np.ndarray:
    """Optical density of every uint8 intensity, ``-ln((I + 1) / io)``, as a lookup table.

    Parameters
    ----------
    io : float, default=240
        Blank-field (transmitted light) intensity.
    dtype : numpy float type, default=np.float32
        Dtype of the table.

    Returns
    -------
    ndarray of shape (256,)
        ``table[I]`` is the optical density of intensity ``I``. The ``+ 1`` keeps ``I = 0``
        finite (Macenko reference code). Read-only: the table is computed once per ``io`` and
        shared.
    """
    table = (-np.log((np.arange(256, dtype=np.float64) + 1.0) / io)).astype(dtype)
    table.flags.writeable = False
    return table


def rgb_to_od(rgb: np.ndarray, io: float = IO_DEFAULT) -> np.ndarray:
    """Convert RGB intensities to optical density, ``OD = -ln((I + 1) / io)``.

    Parameters
    ----------
    rgb : ndarray of shape (..., 3), dtype uint8
        RGB intensities in 0-255.
    io : float, default=240
        Blank-field intensity.

    Returns
    -------
    ndarray of shape (..., 3), dtype float64
        Optical density; 0 at ``I = io - 1``, negative for brighter pixels.

    See Also
    --------
    od_to_rgb : The inverse.

    Examples
    --------
    >>> import numpy as np
    >>> rgb_to_od(np.array([119, 0, 23], dtype=np.uint8)).round(3)
    array([0.693, 5.481, 2.303])
    """
    return -np.log((np.asarray(rgb, dtype=np.float64) + 1.0) / io)


def od_to_rgb(od: np.ndarray, io: float = IO_DEFAULT) -> np.ndarray:
    """Convert optical density back to uint8 RGB, ``I = io * exp(-OD)``, clipped and rounded.

    Parameters
    ----------
    od : ndarray of shape (..., 3), float
        Optical density.
    io : float, default=240
        Blank-field intensity.

    Returns
    -------
    ndarray of shape (..., 3), dtype uint8
        ``rint(clip(io * exp(-od), 0, 255))``. Note that :func:`rgb_to_od` adds 1 before the
        logarithm, as the Macenko reference does; its reconstruction does not subtract it.
    """
    values = io * np.exp(-np.asarray(od, dtype=np.float64))
    return np.rint(np.clip(np.nan_to_num(values, nan=255.0), 0.0, 255.0)).astype(np.uint8)
