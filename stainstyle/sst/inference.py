"""Running a trained generator: gray tiles in, colour tiles out, in blended windows."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from stainstyle.sst._torch import to_tensor, to_uint8


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Start offsets of windows covering ``[0, length)`` with at least ``overlap`` shared pixels.

    Parameters
    ----------
    length : int
        Side of the image.
    window : int
        Side of the window.
    overlap : int
        Minimum overlap between neighbouring windows, ``0 <= overlap < window``.

    Returns
    -------
    list of int
        ``[0]`` when the image fits in one window; otherwise evenly spaced starts, the last one
        at ``length - window``.
    """
    if length <= window:
        return [0]
    n = int(np.ceil((length - overlap) / (window - overlap)))
    return np.linspace(0, length - window, n).round().astype(int).tolist()


def blend_weights(window: int, overlap: int) -> np.ndarray:
    """Separable weights that fade a window's border in over ``overlap`` pixels.

    Parameters
    ----------
    window, overlap : int
        Window side and overlap, as in :func:`window_starts`.

    Returns
    -------
    ndarray of shape (window, window), dtype float32
        Positive everywhere (the border weight is small, not zero, so pixels covered by a single
        window keep their value), 1 in the interior.
    """
    ramp = np.ones(window, dtype=np.float32)
    if overlap > 0:
        rise = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        ramp[:overlap] = rise
        ramp[window - overlap :] = rise[::-1]
    return np.outer(ramp, ramp)


@torch.no_grad()
def colorize(
    generator: nn.Module,
    gray: np.ndarray,
    *,
    window: int,
    overlap: int,
    device: torch.device,
    batch_size: int = 32,
    autocast: bool = False,
) -> np.ndarray:
    """Colour gray tiles with a generator, window by window, blending the overlaps.

    Tiles no larger than ``window`` go through the generator whole. Larger tiles are cut into
    overlapping ``window x window`` patches; their outputs are averaged with weights that fall off
    towards each patch's border (:func:`blend_weights`), so no seams are visible.

    Parameters
    ----------
    generator : torch.nn.Module
        Maps (n, 1, h, w) in [-1, 1] to (n, 3, h, w) in [-1, 1]; used as given (call ``eval()``
        first).
    gray : ndarray of shape (N, H, W), dtype uint8
        Gray tiles.
    window : int
        Side of the patches.
    overlap : int
        Overlap of neighbouring patches, ``0 <= overlap < window``.
    device : torch.device
        Where to run the generator.
    batch_size : int, default=32
        Patches per forward pass.
    autocast : bool, default=False
        Run under bfloat16 autocast (CUDA).

    Returns
    -------
    ndarray of shape (N, H, W, 3), dtype uint8
    """
    n, height, width = gray.shape
    tops, lefts = window_starts(height, window, overlap), window_starts(width, window, overlap)
    ph, pw = min(window, height), min(window, width)
    boxes = [(t, s) for t in tops for s in lefts]
    weights = torch.from_numpy(blend_weights(window, overlap)[:ph, :pw]).to(device)
    if len(boxes) == 1:
        weights = torch.ones_like(weights)
    accum = torch.zeros(n, 3, height, width, device=device)
    total = torch.zeros(height, width, device=device)
    patches = [(i, t, s) for i in range(n) for t, s in boxes]
    for start in range(0, len(patches), batch_size):
        chunk = patches[start : start + batch_size]
        batch = np.stack([gray[i, t : t + ph, s : s + pw] for i, t, s in chunk])
        x = to_tensor(batch, device) * 2 - 1
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
            y = generator(x)
        y = (y.float() + 1) / 2
        for (i, t, s), out in zip(chunk, y, strict=True):
            accum[i, :, t : t + ph, s : s + pw] += out * weights
    for t, s in boxes:
        total[t : t + ph, s : s + pw] += weights
    return to_uint8(accum / total)
