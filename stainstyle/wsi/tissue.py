"""Where the tissue is on a slide: the project's tissue rule on a thumbnail.

:func:`slide_tissue_mask` reads a thumbnail of the whole slide (from its coarsest suitable
level) and applies :func:`stainstyle.tissue.tissue_mask`, the rule every method uses: a pixel
is tissue when its optical density reaches 0.15 in some channel and it is not black. A
morphological opening with a 3 x 3 square then removes isolated pixels (dust, noise on the
glass). The mask carries its downsample factor, so that :meth:`TissueMask.fractions` can say how
much of any level-0 rectangle, such as a tile of a grid, is tissue.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from stainstyle.tissue import tissue_mask
from stainstyle.wsi.reader import Slide

#: Longest side of the thumbnail the mask is computed on, by default.
MASK_MAX_SIDE = 2048


@dataclass(frozen=True, eq=False)
class TissueMask:
    """Tissue pixels of a slide's thumbnail, with the scale that maps them to level 0.

    Parameters
    ----------
    mask : ndarray of shape (h, w), dtype bool
        True where the thumbnail shows tissue.
    downsample : tuple of (float, float)
        Level-0 pixels per mask pixel, ``(x, y)``.

    Attributes
    ----------
    coverage : float
        Fraction of the mask that is tissue.
    """

    mask: np.ndarray
    downsample: tuple[float, float]
    _integral: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        # Summed-area table: the tissue count of any rectangle in four lookups.
        integral = cv2.integral(np.ascontiguousarray(self.mask, dtype=np.uint8), sdepth=cv2.CV_64F)
        object.__setattr__(self, "_integral", integral)

    @property
    def coverage(self) -> float:
        """Fraction of the mask that is tissue."""
        return float(np.count_nonzero(self.mask)) / max(self.mask.size, 1)

    def fractions(self, boxes: np.ndarray) -> np.ndarray:
        """Fraction of tissue in each level-0 rectangle.

        Each rectangle is mapped onto the mask (its edges rounded to mask pixels, at least one
        pixel wide); the parts outside the slide count as not tissue.

        Parameters
        ----------
        boxes : ndarray of shape (N, 4), float
            ``(x, y, width, height)`` in level-0 pixels.

        Returns
        -------
        ndarray of shape (N,), dtype float64
            Values in [0, 1].
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        height, width = self.mask.shape
        dx, dy = self.downsample
        x0 = np.rint(boxes[:, 0] / dx)
        y0 = np.rint(boxes[:, 1] / dy)
        x1 = np.maximum(np.rint((boxes[:, 0] + boxes[:, 2]) / dx), x0 + 1)
        y1 = np.maximum(np.rint((boxes[:, 1] + boxes[:, 3]) / dy), y0 + 1)
        area = (x1 - x0) * (y1 - y0)
        cx0, cx1 = (np.clip(v, 0, width).astype(np.intp) for v in (x0, x1))
        cy0, cy1 = (np.clip(v, 0, height).astype(np.intp) for v in (y0, y1))
        s = self._integral
        count = s[cy1, cx1] - s[cy0, cx1] - s[cy1, cx0] + s[cy0, cx0]
        return count / area


def slide_tissue_mask(slide: Slide, *, max_side: int = MASK_MAX_SIDE) -> TissueMask:
    """Tissue mask of a whole slide, from a thumbnail at most ``max_side`` pixels long.

    Parameters
    ----------
    slide : Slide
        An open slide.
    max_side : int, default=2048
        Longest side of the thumbnail (the slide's own size when smaller).

    Returns
    -------
    TissueMask
        The mask and its downsample factor; all False for a slide without tissue.

    Raises
    ------
    SlideRequestError, SlideReadError
        As :meth:`Slide.thumbnail`.

    See Also
    --------
    stainstyle.tissue.tissue_mask : The per-pixel rule.
    """
    thumbnail = slide.thumbnail(max_side)
    mask = tissue_mask(thumbnail).view(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).view(bool)
    width, height = slide.dimensions
    return TissueMask(mask, (width / mask.shape[1], height / mask.shape[0]))
