"""The torch twins of the numpy reductions the classic methods share.

Each function here has a numpy counterpart whose result it reproduces on torch tensors, on their
device and batched over tiles: the uint8 quantization
(:func:`stainstyle.color.quantize.float_to_uint8`), per-tile masked moments (``cv2.meanStdDev``),
exact linear percentiles
(:func:`stainstyle.methods._macenko_pixels.sorted_percentiles`) and ``np.interp``.

Sums over pixels are matrix products in float32 (BLAS on the CPU, cuBLAS on CUDA), divided in
float64: a mean or a covariance over a tile's pixels then differs from numpy's fixed-order
float64 sums (:mod:`stainstyle._sums`) by a relative 1e-6 or so, far below a gray level, and may
differ in its last bits with the number of threads (unlike :mod:`stainstyle._sums`).
Percentiles are order statistics of each tile's values, so they are exact and the same on every
device; ``torch.quantile`` (limited to 16 M elements) is not used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

#: Pixels of one block of per-pixel work on CPU tensors, all tiles of a batch together: few
#: enough that a block's float temporaries stay in the CPU cache, as the numpy paths' strips
#: (:data:`stainstyle.color.quantize.STRIP_PIXELS`) do.
CPU_BLOCK_PIXELS = 1 << 16


def pixel_blocks(n_tiles: int, n_pixels: int, device: torch.device) -> list[slice]:
    """Slices of the pixel axis of ``n_tiles`` tiles of ``n_pixels`` pixels, one block each.

    A chain of per-pixel operations on a whole batch writes and reads every temporary from
    memory; on the CPU it runs several times faster block by block, each block's temporaries
    staying in the cache. An accelerator gets one block: its kernels want large tensors.

    Parameters
    ----------
    n_tiles, n_pixels : int
        The batch's tiles and pixels per tile, the first two axes of ``(n_tiles, n_pixels, c)``.
    device : torch.device
        Where the work runs.

    Returns
    -------
    list of slice
        Consecutive slices covering ``range(n_pixels)``: ``CPU_BLOCK_PIXELS // n_tiles`` pixels
        (at least one) per tile each on the CPU, one slice of all pixels elsewhere.
    """
    cpu = device.type == "cpu"
    step = max(1, CPU_BLOCK_PIXELS // max(n_tiles, 1)) if cpu else max(n_pixels, 1)
    return [slice(start, start + step) for start in range(0, n_pixels, step)]


def count_true(mask: torch.Tensor) -> torch.Tensor:
    """Per-row number of True values of a bool tensor ``(n, P)``, dtype int64.

    ``mask.sum(1)`` reduces bools in int64; summing their bytes in int32 (exact below 2**31 per
    row, int64 above) gives the same counts several times faster on the CPU.
    """
    dtype = torch.int32 if mask.shape[1] < 2**31 else torch.int64
    return mask.view(torch.uint8).sum(1, dtype=dtype).to(torch.int64)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 255], round half to even and cast; NaN becomes 0, +inf 255.

    Parameters
    ----------
    x : torch.Tensor, float
        Intensities on the 0-255 scale; overwritten (as numpy's twin overwrites its input).

    Returns
    -------
    torch.Tensor, dtype uint8
        As :func:`stainstyle.color.quantize.float_to_uint8`.
    """
    x = torch.nan_to_num_(x, nan=0.0, posinf=255.0, neginf=0.0)
    return x.clamp_(0.0, 255.0).round_().to(torch.uint8)


def masked_covariance(
    values: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-tile count, mean and covariance (ddof=0) of masked pixels.

    Parameters
    ----------
    values : torch.Tensor of shape (n, P, c), float
        The pixels of ``n`` tiles (or of one pooled set, ``n = 1``).
    mask : torch.Tensor of shape (n, P), bool, or None
        The pixels to use; all when None.

    Returns
    -------
    count : torch.Tensor of shape (n,), dtype float64
    mean : torch.Tensor of shape (n, c), dtype float64
    covariance : torch.Tensor of shape (n, c, c), dtype float64
        ``sum w (x - mean)(x - mean)^T / count``, centred in two passes (NaN for a tile
        without pixels). Sums are matrix products in the dtype of ``values`` (BLAS on the CPU,
        cuBLAS on CUDA) over blocks of pixels (:func:`pixel_blocks`), added and divided in
        float64.
    """
    if mask is None:
        count = torch.full((len(values),), values.shape[1], dtype=torch.float64)
        count = count.to(values.device)
        total = values.sum(1)
    else:
        weights = mask.to(values.dtype)
        count = count_true(mask).to(torch.float64)
        total = (weights[:, None] @ values)[:, 0]
    mean = total.to(torch.float64) / count[:, None]
    centre = mean.to(values.dtype)[:, None]
    n, pixels, channels = values.shape
    covariance = torch.zeros((n, channels, channels), dtype=torch.float64, device=values.device)
    for block in pixel_blocks(n, pixels, values.device):
        centred = values[:, block] - centre
        if mask is not None:  # masked out pixels add nothing (weights are 0 or 1)
            centred.mul_(weights[:, block, None])
        covariance += (centred.transpose(1, 2) @ centred).to(torch.float64)
    return count, mean, covariance / count[:, None, None]


def masked_moments(
    values: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-tile count, mean and standard deviation (ddof=0) of masked pixels.

    The diagonal of :func:`masked_covariance`: the twin of ``cv2.meanStdDev`` with a mask.

    Returns
    -------
    count : torch.Tensor of shape (n,), dtype float64
    mean, std : torch.Tensor of shape (n, c), dtype float64
    """
    count, mean, covariance = masked_covariance(values, mask)
    return count, mean, covariance.diagonal(dim1=1, dim2=2).clamp(min=0).sqrt()


def masked_percentiles(
    values: torch.Tensor,
    mask: torch.Tensor | None,
    q: Sequence[float],
    monotone: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Per-tile ``np.percentile(monotone(values[mask]), q)`` (linear method), exact.

    The twin of :func:`stainstyle.methods._macenko_pixels.sorted_percentiles`: order statistics
    of each row's values, ``monotone`` (increasing) applied to the two around each percentile.
    Only the order statistics needed are found: ``torch.topk`` of the values up to the needed
    rank from the nearer end of the row (a few per cent of them for the 1st or 99th
    percentile), rather than a sort of every value.

    Parameters
    ----------
    values : torch.Tensor of shape (n, P), float
        Values of ``n`` tiles (or of one pooled set, ``n = 1``).
    mask : torch.Tensor of shape (n, P), bool, or None
        The values to use; all when None. A row without any gives NaN.
    q : sequence of float
        Percentiles in [0, 100].
    monotone : callable, optional
        Increasing map of float64 tensors.

    Returns
    -------
    torch.Tensor of shape (n, len(q)), dtype float64
    """
    count = (
        torch.full((len(values),), values.shape[1], device=values.device)
        if mask is None
        else count_true(mask)
    )
    last = (count - 1).clamp(min=0)[:, None]
    fraction = torch.as_tensor(q, dtype=torch.float64, device=values.device)[None] / 100.0
    position = fraction * last.to(torch.float64)
    below = position.floor().long()
    above = torch.minimum(below + 1, last)
    low = torch.empty(position.shape, dtype=torch.float64, device=values.device)
    high = torch.empty_like(low)
    for j, percent in enumerate(q):
        from_top = percent > 50.0
        ranks = torch.stack([below[:, j], above[:, j]], 1)
        if from_top:  # ranks counted from the largest value down
            ranks = last - ranks
        depth = min(int(ranks.max()) + 1, values.shape[1])
        filler = float("-inf") if from_top else float("inf")
        candidates = values if mask is None else values.masked_fill(~mask, filler)
        nearest = candidates.topk(depth, dim=1, largest=from_top, sorted=True).values
        found = nearest.gather(1, ranks).to(torch.float64)
        low[:, j], high[:, j] = found[:, 0], found[:, 1]
    if monotone is not None:
        low, high = monotone(low), monotone(high)
    result = low + (position - below) * (high - low)
    return result.masked_fill((count == 0)[:, None], float("nan"))


def interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """``np.interp(x, xp, fp)`` on tensors: piecewise linear, constant beyond the ends.

    Parameters
    ----------
    x : torch.Tensor, float64
        Where to evaluate.
    xp : torch.Tensor of shape (k,), float64, increasing
    fp : torch.Tensor of shape (k,), float64

    Returns
    -------
    torch.Tensor of the shape of ``x``, float64
    """
    if len(xp) == 1:
        return fp[0].expand_as(x).clone()
    right = torch.searchsorted(xp, x.contiguous(), right=True).clamp(1, len(xp) - 1)
    x0, x1, f0, f1 = xp[right - 1], xp[right], fp[right - 1], fp[right]
    slope = (f1 - f0) / (x1 - x0)
    inside = slope * (x - x0) + f0
    return torch.where(x < xp[0], fp[0], torch.where(x >= xp[-1], fp[-1], inside))
