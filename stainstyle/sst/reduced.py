"""Colouring at reduced resolution: the generator sees half of the pixels per side.

The generator's cost grows with the number of pixels, so colouring a tile at half its
resolution costs about a quarter. What a reduced tile loses is fine detail: nuclear borders,
chromatin texture. That detail is still in the full-resolution gray input, and over a few
pixels the generator's colour is close to a linear function of the gray level (it colours
what it sees). So the colour is restored at full resolution by guided upsampling (the fast
guided filter of He & Sun 2015): at the reduced resolution, each channel of the generated colour
is fitted, in every small window, as ``a * gray + b``; the coefficients are smoothed, enlarged
to full resolution and applied to the full-resolution gray levels. Colour comes from the
generator, its fine structure from the input's own gray levels.

References
----------
.. [1] K. He, J. Sun, X. Tang, "Guided image filtering", IEEE TPAMI 35(6), 2013.
.. [2] K. He, J. Sun, "Fast guided filter", arXiv:1505.00996, 2015.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Fractions of the resolution the generator can run at. A quarter (0.25) was measured and
#: dropped: on Table 1 its AUC fell below that of the untouched tiles (docs/sst.md).
SCALES = (1.0, 0.5)
#: Radius, in reduced pixels, of the windows of the local linear fits.
GUIDE_RADIUS = 2
#: Regularization of the local fits, in squared [0, 1] units: windows whose gray levels vary by
#: less than about ``sqrt(GUIDE_EPS) * 255`` = 2.5 levels get the window's mean colour.
GUIDE_EPS = 1e-4


def reduced_shape(height: int, width: int, scale: float) -> tuple[int, int]:
    """Height and width of an image reduced by ``scale``, at least one pixel each.

    Parameters
    ----------
    height, width : int
        Full-resolution size.
    scale : float
        Fraction of the resolution, in (0, 1].

    Returns
    -------
    tuple of int
        ``(max(1, round(height * scale)), max(1, round(width * scale)))``.
    """
    return max(1, round(height * scale)), max(1, round(width * scale))


def reduce_gray(gray: np.ndarray, scale: float) -> np.ndarray:
    """Gray tiles reduced by ``scale`` with area averaging.

    Parameters
    ----------
    gray : ndarray of shape (N, H, W), dtype uint8
        Full-resolution gray tiles.
    scale : float
        Fraction of the resolution, in (0, 1].

    Returns
    -------
    ndarray of shape (N, h, w), dtype uint8
        ``(h, w) = reduced_shape(H, W, scale)``.
    """
    height, width = reduced_shape(gray.shape[1], gray.shape[2], scale)
    return np.stack(
        [cv2.resize(tile, (width, height), interpolation=cv2.INTER_AREA) for tile in gray]
    )


def guided_upsample(
    colour: np.ndarray,
    guide_reduced: np.ndarray,
    guide: np.ndarray,
    *,
    radius: int = GUIDE_RADIUS,
    eps: float = GUIDE_EPS,
) -> np.ndarray:
    """Enlarge a colour image to the guide's resolution, with the guide's detail.

    At the reduced resolution, each colour channel ``p`` is fitted in every
    ``(2 * radius + 1)``-pixel window as ``a * I + b`` of the reduced guide ``I``
    (``a = cov(I, p) / (var(I) + eps)``); ``a`` and ``b`` are averaged over the windows that
    cover each pixel, enlarged bilinearly to full resolution and applied to the full guide.

    Parameters
    ----------
    colour : ndarray of shape (h, w, 3), dtype uint8
        Colour at the reduced resolution.
    guide_reduced : ndarray of shape (h, w), dtype uint8
        The gray image the colour was made from.
    guide : ndarray of shape (H, W), dtype uint8
        The same gray image at full resolution.
    radius : int, default=GUIDE_RADIUS
        Window radius of the local fits, in reduced pixels.
    eps : float, default=GUIDE_EPS
        Regularization of the slope ``a`` (squared [0, 1] units).

    Returns
    -------
    ndarray of shape (H, W, 3), dtype uint8
    """
    size = (2 * radius + 1, 2 * radius + 1)

    def box(image: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(image, -1, size, borderType=cv2.BORDER_REFLECT)

    guide_small = guide_reduced.astype(np.float32) / 255
    colour_small = colour.astype(np.float32) / 255
    mean_guide = box(guide_small)
    mean_colour = box(colour_small)
    variance = box(guide_small * guide_small) - mean_guide * mean_guide
    covariance = box(colour_small * guide_small[..., None]) - mean_colour * mean_guide[..., None]
    slope = covariance / (np.maximum(variance, 0)[..., None] + eps)
    offset = mean_colour - slope * mean_guide[..., None]
    full = (guide.shape[1], guide.shape[0])
    slope = cv2.resize(box(slope), full, interpolation=cv2.INTER_LINEAR)
    offset = cv2.resize(box(offset), full, interpolation=cv2.INTER_LINEAR)
    out = slope * (guide.astype(np.float32)[..., None] / 255) + offset
    return np.rint(np.clip(out, 0, 1) * 255).astype(np.uint8)
