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
#: Stride of the pixel samples that centre :func:`masked_covariance`'s sums and bracket
#: :func:`masked_percentiles`' order statistics.
SAMPLE_STRIDE = 64


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


def per_tile_product(pixels: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """``pixels @ matrices``: each tile's pixels times its own matrix.

    A batch of products with a few columns each runs several times slower per pixel on the
    CPU than one plain product; tiles that share one matrix (one tile, or a broadcast batch of
    matrices) get the plain product.

    Parameters
    ----------
    pixels : torch.Tensor of shape (n, P, c), float
    matrices : torch.Tensor of shape (n, c, k) or (1, c, k), of the dtype of ``pixels``

    Returns
    -------
    torch.Tensor of shape (n, P, k)
    """
    if len(matrices) > 1 and matrices.stride(0) != 0:
        return pixels @ matrices
    product = pixels.reshape(-1, pixels.shape[-1]) @ matrices[0]
    return product.reshape(*pixels.shape[:-1], matrices.shape[-1])


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
    values: torch.Tensor,
    mask: torch.Tensor | None,
    convert: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-tile count, mean and covariance (ddof=0) of masked pixels, in one pass.

    The pixels are read block by block (:func:`pixel_blocks`), each block's differences from a
    provisional centre and their products summed. The centre is the mean of every
    :data:`SAMPLE_STRIDE`-th pixel of a tile (of its masked ones when that sample holds
    some), near the mean, so that ``covariance = products / count - shift shift^T`` loses
    nothing to cancellation.

    Parameters
    ----------
    values : torch.Tensor of shape (n, P, c0)
        The pixels of ``n`` tiles (or of one pooled set, ``n = 1``), float unless ``convert``
        is given.
    mask : torch.Tensor of shape (n, P), bool, or None
        The pixels to use; all when None.
    convert : callable, optional
        A per-pixel map of a block of ``values`` ``(n, b, c0)`` to float ``(n, b, c)``: the
        moments are those of the converted pixels, which are never held whole.

    Returns
    -------
    count : torch.Tensor of shape (n,), dtype float64
    mean : torch.Tensor of shape (n, c), dtype float64
    covariance : torch.Tensor of shape (n, c, c), dtype float64
        ``sum w (x - mean)(x - mean)^T / count`` (NaN for a tile without pixels). A block's
        sums are matrix products in the float dtype of the pixels (BLAS on the CPU, cuBLAS on
        CUDA), added across blocks and divided in float64.
    """
    n, pixels = values.shape[:2]
    device = values.device
    convert = convert or (lambda block: block)
    if mask is None:
        count = torch.full((n,), pixels, dtype=torch.float64, device=device)
    else:
        count = count_true(mask).to(torch.float64)
    centre = _provisional_centre(convert, values, mask)
    shift = torch.zeros(centre.shape[::2], dtype=torch.float64, device=device)
    products = torch.zeros(shift.shape + shift.shape[1:], dtype=torch.float64, device=device)
    for block in pixel_blocks(n, pixels, device):
        centred = convert(values[:, block]) - centre
        weighted = centred if mask is None else centred * mask[:, block, None]
        shift += weighted.sum(1).to(torch.float64)
        products += (weighted.transpose(1, 2) @ centred).to(torch.float64)
    shift /= count[:, None]
    covariance = products / count[:, None, None] - shift[:, :, None] * shift[:, None, :]
    return count, centre[:, 0].to(torch.float64) + shift, covariance


def _provisional_centre(
    convert: Callable[[torch.Tensor], torch.Tensor], values: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """``(n, 1, c)``: the mean of every :data:`SAMPLE_STRIDE`-th pixel (of the masked ones if any).

    Rounded to an integer: the differences of integer pixels (uint8 intensities) from it are
    exact, and so are their moments where they are small (a uniform tile's spread, decided
    against a limit, stays exact at the limit).
    """
    sample = convert(values[:, ::SAMPLE_STRIDE])
    centre = sample.mean(1, keepdim=True)
    if mask is not None:
        weights = mask[:, ::SAMPLE_STRIDE, None].to(sample.dtype)
        total = weights.sum(1, keepdim=True)
        masked = (sample * weights).sum(1, keepdim=True) / total.clamp(min=1)
        centre = torch.where(total > 0, masked, centre)
    return centre.round_()


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
    They are found as the numpy twin finds them, without sorting every value: a strided sample
    of each row (every :data:`SAMPLE_STRIDE`-th value), sorted, brackets the two order
    statistics of a percentile; one pass counts the values below the bracket and gathers those
    inside it (a few per cent for the 1st or 99th percentile), which are sorted. A row whose
    bracket misses (rare) is sorted whole. Rows are independent, and one long row (a pooled
    set) costs a few passes over its values, where ``torch.topk`` would run on one thread.

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
    n = len(values)
    count = (
        torch.full((n,), values.shape[1], device=values.device)
        if mask is None
        else count_true(mask)
    )
    # Values left out become +inf, above every value used (and above every bracket's end).
    candidates = values if mask is None else values.masked_fill(~mask, float("inf"))
    last = (count - 1).clamp(min=0)[:, None]
    fraction = torch.as_tensor(q, dtype=torch.float64, device=values.device)[None] / 100.0
    position = fraction * last.to(torch.float64)
    below = position.floor().long()
    above = torch.minimum(below + 1, last)
    ranks = torch.stack([below, above], 2)  # (n, len(q), 2)
    found = _bracketed_order_statistics(candidates, count, ranks)
    low, high = found.unbind(2)
    if monotone is not None:
        low, high = monotone(low), monotone(high)
    result = low + (position - below) * (high - low)
    return result.masked_fill((count == 0)[:, None], float("nan"))


def _bracketed_order_statistics(
    candidates: torch.Tensor, count: torch.Tensor, ranks: torch.Tensor
) -> torch.Tensor:
    """Values of ranks ``(n, k, 2)`` (pairs of neighbours) among each row's ``count`` smallest.

    ``candidates`` ``(n, P)`` holds a row's values used, and +inf for the others. A bracket
    from the sample that misses its ranks (a sample of structured values can be biased) is
    widened sixteen-fold, then the row is sorted whole. Returns float64 ``(n, k, 2)``.
    """
    n, width = candidates.shape
    sample = candidates[:, ::SAMPLE_STRIDE].sort(1).values
    result = torch.empty(ranks.shape, dtype=torch.float64, device=candidates.device)
    pending = (count > 0)[:, None].expand(ranks.shape[:2]).clone()
    for widen in (1, 16):
        lo, hi = _sample_brackets(sample, count, ranks, widen)
        for j in range(ranks.shape[1]):
            rows = pending[:, j].nonzero()[:, 0]
            if len(rows) == 0:
                continue
            every = len(rows) == n  # no copy of the rows then
            values, hit = _inside_bracket(
                candidates if every else candidates[rows],
                lo[rows, j],
                hi[rows, j],
                ranks[rows, j],
            )
            result[rows, j] = values
            pending[rows[hit], j] = False
    missed = pending.any(1)
    if missed.any():
        whole = candidates[missed].sort(1).values
        picked = whole.gather(1, ranks[missed].reshape(len(whole), -1).clamp(0, width - 1))
        result[missed] = picked.reshape(-1, *ranks.shape[1:]).to(torch.float64)
    return result


def _sample_brackets(
    sample: torch.Tensor, count: torch.Tensor, ranks: torch.Tensor, widen: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each rank pair's bracket ``(lo, hi)``, ``(n, k)`` each, from the sorted sample ``(n, m)``.

    An open end is the dtype's largest finite value (negated at the bottom): it takes in every
    value used and none of the +inf that stand for values left out.
    """
    in_sample = (sample < float("inf")).sum(1, keepdim=True)  # used values sampled, (n, 1)
    total = count[:, None].clamp(min=1)
    first, final = ranks.unbind(2)
    p = first / (total - 1).clamp(min=1)
    # Four standard deviations of a random sample's rank at this quantile, plus two; widened.
    margin = (widen * (4 * (in_sample * p * (1 - p)).sqrt() + 2)).long()
    start = first * in_sample // total - margin
    stop = final * in_sample // total + margin
    top = torch.finfo(sample.dtype).max
    at = sample.shape[1] - 1
    lo = torch.where(start >= 0, sample.gather(1, start.clamp(0, at)), -top)
    hi = torch.where(stop < in_sample, sample.gather(1, stop.clamp(0, at)), top)
    return lo, hi


def _inside_bracket(
    candidates: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, ranks: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Values of ranks ``(r, 2)`` of rows ``(r, P)``, found among those in ``[lo, hi]`` ``(r,)``.

    Returns the values ``(r, 2)`` float64 and whether both ranks fell inside ``(r,)``.
    """
    under = candidates < lo[:, None]
    inside = (candidates <= hi[:, None]) ^ under
    n_under, n_inside = count_true(under), count_true(inside)
    # The values inside, row after row, each row's in increasing order.
    chosen = candidates[inside]
    by_value = chosen.argsort(stable=True)
    rows = torch.arange(len(candidates), device=candidates.device)
    row_of = torch.repeat_interleave(rows, n_inside)[by_value]
    ordered = chosen[by_value][row_of.argsort(stable=True)]
    within = ranks - n_under[:, None]  # ranks among the values inside
    hit = ((within >= 0) & (within < n_inside[:, None])).all(1)
    if len(ordered) == 0:
        return torch.full(ranks.shape, float("nan"), dtype=torch.float64, device=hit.device), hit
    offset = torch.cumsum(n_inside, 0) - n_inside
    index = (offset[:, None] + within).clamp(0, len(ordered) - 1)
    return ordered[index].to(torch.float64), hit


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
