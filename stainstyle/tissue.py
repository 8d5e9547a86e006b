"""Tissue detection shared by every method: which pixels hold stain, and which tiles hold enough.

A pixel is tissue when its optical density ``OD_c = -ln((I_c + 1) / 240)`` (the Macenko
reference transform) reaches :data:`TISSUE_OD_THRESHOLD` in *some* channel, i.e. when it is not
bright in all three channels. On uint8 data that is ``I_c <= 205`` for some channel, computed
with integer comparisons, no logarithm.

Deviation from the shared specification, which asks for the threshold in *every* channel: that
rule is Macenko's filter for stain-vector estimation, and it discards eosin-only pixels (pink
stroma has a red optical density of about 0.02), so on a pale lab the "tissue" statistics of
Reinhard or histogram specification would describe nuclei only while a darker lab's would
describe all of its tissue. Requiring a stain in any channel keeps stroma and still drops white
and light-grey glass. Macenko keeps its reference rule through ``every_channel=True``.

Black pixels (every channel <= :data:`BLACK_MAX_INTENSITY`) are not tissue either: they are the
padding of crops at a slide border or ink, and their optical density would otherwise count as
the darkest stain. (WSICS likewise treats ``D > 5.5`` as background.)

A tile is *background* when it has fewer than ``max(100, 0.5 % of its pixels)`` tissue pixels,
and *uniform* when its tissue pixels have no colour variation (a standard deviation of at most
:data:`UNIFORM_MAX_STD` gray levels in every channel): no method can estimate stains from it.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from stainstyle.color.od import IO_DEFAULT

#: Minimum optical density of a tissue pixel (Macenko's beta).
TISSUE_OD_THRESHOLD = 0.15

#: Pixels this dark in every channel are padding or ink, not tissue.
BLACK_MAX_INTENSITY = 8

#: Tissue with at most this standard deviation (gray levels) in every channel is uniform.
UNIFORM_MAX_STD = 0.5

#: Absolute floor of tissue pixels for a tile to count as tissue.
MIN_TISSUE_PIXELS = 100

#: Fraction of a tile's pixels that must be tissue for it to count as tissue.
MIN_TISSUE_FRACTION = 0.005

#: :func:`screen_tiles` looks at every this-many-th pixel of every this-many-th row first.
SCREEN_STRIDE = 4

#: :func:`tissue_mask` works on strips of about this many pixels of larger inputs.
MASK_STRIP_PIXELS = 1 << 20


def max_tissue_intensity(io: float = IO_DEFAULT, od_threshold: float = TISSUE_OD_THRESHOLD) -> int:
    """Largest uint8 intensity whose optical density reaches ``od_threshold``.

    Parameters
    ----------
    io : float
        Blank-field intensity of ``OD = -ln((I + 1) / io)``.
    od_threshold : float
        Minimum optical density.

    Returns
    -------
    int
        ``floor(io * exp(-od_threshold) - 1)``, clipped to [-1, 255]; 205 for the defaults.
    """
    return int(min(255, max(-1, math.floor(io * math.exp(-od_threshold) - 1.0))))


def tissue_mask(
    tiles: np.ndarray,
    io: float = IO_DEFAULT,
    od_threshold: float = TISSUE_OD_THRESHOLD,
    every_channel: bool = False,
) -> np.ndarray:
    """Boolean mask of tissue pixels.

    Parameters
    ----------
    tiles : ndarray of shape (..., H, W, 3), dtype uint8
        RGB tiles.
    io, od_threshold : float
        Optical-density transform and threshold (see module docstring).
    every_channel : bool, default=False
        Require the threshold in every channel (Macenko's stain-estimation filter) instead of
        in some channel.

    Returns
    -------
    ndarray of shape (..., H, W), dtype bool
        True where ``-ln((I + 1) / io) >= od_threshold`` in some (or every) channel and some
        channel is brighter than :data:`BLACK_MAX_INTENSITY`.
    """
    limit = max_tissue_intensity(io, od_threshold)
    if limit < 0:
        return np.zeros(tiles.shape[:-1], dtype=bool)
    if tiles.ndim < 3 or tiles.size <= 3 * MASK_STRIP_PIXELS:
        flat = np.ascontiguousarray(tiles).reshape(-1, 1, 3)
        return _tissue_flags(flat, limit, every_channel).reshape(tiles.shape[:-1]).view(bool)
    # Large inputs strip by strip: the temporaries (and a contiguous copy of a strided view)
    # stay strip-sized.
    mask = np.empty(tiles.shape[:-1], dtype=bool)
    height, width = tiles.shape[-3:-1]
    step = max(1, MASK_STRIP_PIXELS // max(width, 1))
    for index in np.ndindex(tiles.shape[:-3]):
        image, out = tiles[index], mask[index]
        for top in range(0, height, step):
            flat = np.ascontiguousarray(image[top : top + step]).reshape(-1, 1, 3)
            flags = _tissue_flags(flat, limit, every_channel)
            out[top : top + step] = flags.reshape(out[top : top + step].shape).view(bool)
    return mask


def _tissue_flags(flat: np.ndarray, limit: int, every_channel: bool) -> np.ndarray:
    """1 for tissue, 0 otherwise, of contiguous uint8 pixels ``(n, 1, 3)``, as uint8 ``(n, 1)``."""
    black = cv2.inRange(flat, (0, 0, 0), (BLACK_MAX_INTENSITY,) * 3)
    if every_channel:
        stained = cv2.inRange(flat, (0, 0, 0), (limit, limit, limit))
        not_tissue = cv2.bitwise_not(cv2.subtract(stained, black))
    else:
        not_tissue = cv2.bitwise_or(cv2.inRange(flat, (limit + 1,) * 3, (255,) * 3), black)
    # 0/255 -> 1/0 in one OpenCV pass; a uint8 array of zeros and ones is a valid bool view.
    _, tissue = cv2.threshold(not_tissue, 0, 1, cv2.THRESH_BINARY_INV)
    return tissue


def masked_pixels(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The pixels of ``image`` where ``mask`` is True, in row-major order.

    Equal to ``image[mask]``, which NumPy runs element by element when ``mask`` covers the
    leading axes only; ``np.compress`` over flattened pixels copies whole pixels and is about
    six times faster on a 256x256 tile.

    Parameters
    ----------
    image : ndarray of shape (..., C)
        Pixels with C channels.
    mask : ndarray of shape (...), bool
        Pixels to select; same leading shape as ``image``.

    Returns
    -------
    ndarray of shape (M, C), same dtype as ``image``
        M is the number of True values in ``mask``.
    """
    return np.compress(mask.reshape(-1), image.reshape(-1, image.shape[-1]), axis=0)


def min_tissue_pixels(height: int, width: int) -> int:
    """Number of tissue pixels a tile needs to be normalized, ``max(100, 0.5 % of H*W)``.

    Parameters
    ----------
    height, width : int
        Tile size in pixels.

    Returns
    -------
    int
        The threshold.
    """
    return max(MIN_TISSUE_PIXELS, math.ceil(MIN_TISSUE_FRACTION * height * width))


def is_background(tissue: np.ndarray) -> np.ndarray:
    """Which tiles have too little tissue to be normalized.

    Parameters
    ----------
    tissue : ndarray of shape (N, H, W), dtype bool
        Tissue masks from :func:`tissue_mask`.

    Returns
    -------
    ndarray of shape (N,), dtype bool
        True for tiles with fewer than :func:`min_tissue_pixels` tissue pixels.
    """
    # Per tile: count_nonzero over a whole array is a SIMD popcount, along an axis a slow sum.
    counts = np.array([np.count_nonzero(mask) for mask in tissue], dtype=np.int64)
    return counts < min_tissue_pixels(*tissue.shape[1:3])


def is_uniform(tiles: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    """Which tiles have no colour variation over their tissue pixels.

    Parameters
    ----------
    tiles : ndarray of shape (N, H, W, 3), dtype uint8
        RGB tiles.
    tissue : ndarray of shape (N, H, W), dtype bool
        Tissue masks from :func:`tissue_mask`.

    Returns
    -------
    ndarray of shape (N,), dtype bool
        True where the standard deviation over tissue pixels is at most
        :data:`UNIFORM_MAX_STD` in every channel (or there is no tissue).

    See Also
    --------
    screen_tiles : The same test, deciding most tiles from a sample of their pixels.
    """
    uniform = np.ones(len(tiles), dtype=bool)
    for i, (tile, mask) in enumerate(zip(tiles, tissue, strict=True)):
        if mask.any():
            _, std = cv2.meanStdDev(np.ascontiguousarray(tile), mask=mask.view(np.uint8))
            uniform[i] = bool(np.all(std <= UNIFORM_MAX_STD))
    return uniform


def screen_tiles(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Background and uniform flags of tiles, as :func:`is_background` and :func:`is_uniform`.

    Equal to those two functions on the full tissue masks, but most tiles are decided exactly
    from a sample of every :data:`SCREEN_STRIDE`-th pixel of every :data:`SCREEN_STRIDE`-th row,
    so no full mask is computed for them. A tile is not background when its sample alone holds
    enough tissue pixels (the sample's tissue is part of the tile's). It is not uniform when the
    sample's ``k`` tissue pixels have a variance ``v_k`` with ``k * v_k / (H * W)`` above
    ``UNIFORM_MAX_STD ** 2`` in some channel, a lower bound of the variance over all the tile's
    tissue pixels (at most ``H * W`` of them). Tiles the sample does not decide are measured in
    full.

    Parameters
    ----------
    tiles : ndarray of shape (N, H, W, 3), dtype uint8
        RGB tiles.

    Returns
    -------
    background, uniform : ndarray of shape (N,), dtype bool
        Too little tissue; tissue without colour variation (False for background tiles).
    """
    n, height, width = tiles.shape[:3]
    needed = min_tissue_pixels(height, width)
    limit = height * width * UNIFORM_MAX_STD**2
    sample, sample_tissue = _screening_sample(tiles)
    background = np.zeros(n, dtype=bool)
    uniform = np.zeros(n, dtype=bool)
    for i in range(n):
        k = np.count_nonzero(sample_tissue[i])
        if k >= max(needed, 2):
            _, std = cv2.meanStdDev(sample[i], mask=sample_tissue[i].view(np.uint8))
            if np.any(k * std**2 > limit):
                continue
        full = tissue_mask(tiles[i : i + 1])
        background[i] = is_background(full)[0]
        uniform[i] = not background[i] and is_uniform(tiles[i : i + 1], full)[0]
    return background, uniform


def screen_background(tiles: np.ndarray) -> np.ndarray:
    """Background flags of tiles, as :func:`is_background` of their full tissue masks.

    Decided as :func:`screen_tiles` decides it: a tile whose sample of every
    :data:`SCREEN_STRIDE`-th pixel of every :data:`SCREEN_STRIDE`-th row holds enough tissue
    pixels is not background (the sample's tissue is part of the tile's); the others are
    measured in full.

    Parameters
    ----------
    tiles : ndarray of shape (N, H, W, 3), dtype uint8
        RGB tiles.

    Returns
    -------
    ndarray of shape (N,), dtype bool
        True for tiles with fewer than :func:`min_tissue_pixels` tissue pixels.
    """
    needed = min_tissue_pixels(*tiles.shape[1:3])
    _, sample_tissue = _screening_sample(tiles)
    background = np.zeros(len(tiles), dtype=bool)
    for i, mask in enumerate(sample_tissue):
        if np.count_nonzero(mask) < needed:
            background[i] = is_background(tissue_mask(tiles[i : i + 1]))[0]
    return background


def _screening_sample(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every :data:`SCREEN_STRIDE`-th pixel of every such row of ``tiles``, and its tissue mask."""
    sample = np.ascontiguousarray(tiles[:, ::SCREEN_STRIDE, ::SCREEN_STRIDE])
    return sample, tissue_mask(sample)


def tissue_mask_tensor(
    tiles: Any,
    io: float = IO_DEFAULT,
    od_threshold: float = TISSUE_OD_THRESHOLD,
    every_channel: bool = False,
) -> Any:
    """:func:`tissue_mask` of uint8 torch tiles ``(..., H, W, 3)``, on their device.

    Parameters
    ----------
    tiles : torch.Tensor of shape (..., H, W, 3), dtype uint8
    io, od_threshold, every_channel
        As for :func:`tissue_mask`.

    Returns
    -------
    torch.Tensor of shape (..., H, W), dtype bool
        The same pixels as :func:`tissue_mask` of the same values.
    """
    import torch

    limit = max_tissue_intensity(io, od_threshold)
    if limit < 0:  # compared with uint8 values, -1 would wrap around to 255
        return torch.zeros(tiles.shape[:-1], dtype=torch.bool, device=tiles.device)
    # Channel by channel: a reduction over the last axis of size 3 is slower on the CPU.
    red, green, blue = tiles.unbind(-1)
    high = torch.maximum(torch.maximum(red, green), blue)
    stained = (high if every_channel else torch.minimum(torch.minimum(red, green), blue)) <= limit
    return stained & (high > BLACK_MAX_INTENSITY)


def screen_tensors(tiles: Any) -> tuple[np.ndarray, np.ndarray]:
    """:func:`screen_tiles` of uint8 torch tiles ``(N, H, W, 3)``, measured on their device.

    The same rule, decided the same way: from a sample of every :data:`SCREEN_STRIDE`-th pixel
    of every :data:`SCREEN_STRIDE`-th row for most tiles, in full for the others.

    Parameters
    ----------
    tiles : torch.Tensor of shape (N, H, W, 3), dtype uint8

    Returns
    -------
    background, uniform : ndarray of shape (N,), dtype bool
        Too little tissue; tissue without colour variation (False for background tiles).
    """
    n, height, width = tiles.shape[:3]
    needed = min_tissue_pixels(height, width)
    sample = tiles[:, ::SCREEN_STRIDE, ::SCREEN_STRIDE].contiguous()
    k, std = _tissue_spread(sample)
    varied = (k >= max(needed, 2)) & (
        k[:, None] * std**2 > height * width * UNIFORM_MAX_STD**2
    ).any(1)
    background = np.zeros(n, dtype=bool)
    uniform = np.zeros(n, dtype=bool)
    undecided = np.flatnonzero(~varied.cpu().numpy())
    if len(undecided):
        count, std = _tissue_spread(tiles[undecided])
        flags = (count < needed, (std <= UNIFORM_MAX_STD).all(1))
        background[undecided], uniform[undecided] = (f.cpu().numpy() for f in flags)
        uniform &= ~background
    return background, uniform


def _tissue_spread(tiles: Any) -> tuple[Any, Any]:
    """Tissue pixel counts ``(n,)`` and their standard deviations ``(n, 3)`` of torch tiles."""
    from stainstyle._torch_ops import masked_moments

    n = len(tiles)
    mask = tissue_mask_tensor(tiles).reshape(n, -1)
    count, _, std = masked_moments(tiles.reshape(n, -1, 3).float(), mask)
    return count, std
