"""Macenko's pixel statistics in bounded memory: optical densities by chunks, exact percentiles.

Tiles (or a set of fit tiles) of at most :data:`IN_MEMORY_PIXELS` pixels together are converted
to optical density once and held whole, as the estimate has always done. Larger ones are
streamed: every pass over their pixels recomputes the optical densities strip by strip, about
:data:`CHUNK_PIXELS` pixels at a time, so memory stays bounded by a chunk whatever the image
size. The statistics stay exact:

* the moments of the tissue pixels (mean and covariance) are summed chunk by chunk in float64;
* a percentile is an order statistic found in two passes: a strided sample of the values,
  taken while the moments are summed, brackets it, and one counting pass keeps only the values
  strictly inside the bracket (a few per mille of them) and counts those below it and at its
  ends, so ties cost no memory either. A bracket that misses (rare) is widened, up to the whole
  range.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from stainstyle._sums import column_sums, cross_products
from stainstyle.color.od import od_lut
from stainstyle.color.quantize import row_strips
from stainstyle.tissue import masked_pixels, tissue_mask

#: Images up to this many pixels together (2048x2048) are held whole as optical densities.
IN_MEMORY_PIXELS = 1 << 22
#: Pixels per chunk of a streamed image (1024x1024): about 12 MB of optical densities.
CHUNK_PIXELS = 1 << 20
#: Arrays up to this size are sorted whole for percentiles; larger ones are bracketed first.
SORT_ALL_BELOW = 1 << 12
#: Stride of the sample that brackets order statistics of larger arrays.
SAMPLE_STRIDE = 64

#: One percentile job: values of a chunk ``(n, 3) -> (n,)``, percentiles, increasing map or None.
Job = tuple[Callable[[np.ndarray], np.ndarray], list[float], Callable | None]


def sorted_percentiles(values: np.ndarray, q: list[float], monotone=None) -> np.ndarray:
    """``np.percentile(monotone(values), q)`` (linear method) from order statistics.

    ``monotone`` is an increasing function applied only to the two order statistics around
    each percentile (identity when None). Small arrays are sorted. Larger ones (a tile's pixels
    already) are not: a strided sample brackets each needed order statistic and only the values
    inside the bracket are sorted, a few percent of the array for Macenko's 1st and 99th
    percentiles; when a bracket misses (rare), the whole array is sorted. The result is exact
    either way.
    """
    values = values.ravel()
    n = len(values)
    position = np.asarray(q, dtype=np.float64) / 100.0 * (n - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, n - 1)
    low, high = np.empty(len(q)), np.empty(len(q))
    ordered = np.sort(values) if n <= SORT_ALL_BELOW else None
    sample = None if ordered is not None else np.sort(values[::SAMPLE_STRIDE])
    for i in range(len(q)):
        if ordered is None:
            window = _bracket(values, sample, below[i], above[i])
            if window is None:
                ordered = np.sort(values)
            else:
                bracket, offset = window
                low[i], high[i] = bracket[below[i] - offset], bracket[above[i] - offset]
                continue
        low[i], high[i] = ordered[below[i]], ordered[above[i]]
    if monotone is not None:
        low, high = monotone(low), monotone(high)
    return low + (position - below) * (high - low)


def _bracket(values: np.ndarray, sample: np.ndarray, first: int, last: int):
    """Sorted values bracketing ranks ``first..last``, and the rank of the first of them.

    Returns None when the bracket taken from the sample does not contain both ranks.
    """
    n, m = len(values), len(sample)
    # Four standard deviations of a random sample's rank at this quantile, plus two.
    p = first / max(n - 1, 1)
    margin = int(4 * np.sqrt(m * p * (1 - p))) + 2
    lo = sample[max(0, first * m // n - margin)]
    hi = sample[min(m - 1, last * m // n + margin)]
    inside = (values >= lo) & (values <= hi)
    offset = int(np.count_nonzero(values < lo))
    bracket = np.sort(values[inside])
    if offset <= first and last < offset + len(bracket):
        return bracket, offset
    return None


@dataclass(frozen=True)
class Survey:
    """What one pass over a stream learns: tissue moments, counts and strided pixel samples.

    Attributes
    ----------
    n_tissue, n_every : int
        Tissue pixels and all pixels.
    total : ndarray of shape (3,), dtype float64
        Sum of the tissue optical densities.
    second : ndarray of shape (3, 3), dtype float64
        ``sum(od.T @ od)`` over the tissue pixels.
    tissue_sample, every_sample : ndarray of shape (m, 3), dtype float32, or None
        Every :data:`SAMPLE_STRIDE`-th tissue pixel and pixel (None when held whole).
    """

    n_tissue: int
    total: np.ndarray
    second: np.ndarray
    n_every: int
    tissue_sample: np.ndarray | None = None
    every_sample: np.ndarray | None = None


def _sums(od: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum and second moments of ``(n, 3)`` float32 pixels, in float64.

    Summed in a fixed order (:mod:`stainstyle._sums`), so the stain vectors do not depend on
    the number of BLAS threads.
    """
    return column_sums(od), cross_products(od, od)


class ODStream:
    """Optical densities of the tissue pixels and of all pixels of some images, in order.

    Tissue is Macenko's filter, optical density >= ``beta`` in every channel, unless
    ``every_channel`` is False.

    Parameters
    ----------
    images : list of ndarray of shape (H_i, W_i, 3), dtype uint8
        The pixels, image by image in this order.
    io, beta : float
        Blank-field intensity and tissue threshold.
    every_channel : bool, default=True
        Tissue needs ``beta`` in every channel (Macenko's filter), else in some channel (the
        shared rule of :func:`stainstyle.tissue.tissue_mask`).

    Attributes
    ----------
    whole : (ndarray, ndarray) or None
        Tissue and all optical densities, each ``(n, 3)`` float32, when the images hold at most
        :data:`IN_MEMORY_PIXELS` pixels together; None when they are streamed.
    """

    def __init__(
        self, images: list[np.ndarray], io: float, beta: float, every_channel: bool = True
    ):
        self._images, self._io, self._beta = images, io, beta
        self._every_channel = every_channel
        self._lut = od_lut(io, np.float32)
        self.whole = None
        if sum(image.shape[0] * image.shape[1] for image in images) <= IN_MEMORY_PIXELS:
            every = [cv2.LUT(image, self._lut).reshape(-1, 3) for image in images]
            tissue = [
                masked_pixels(od, self._tissue(image))
                for od, image in zip(every, images, strict=True)
            ]
            self.whole = (_joined(tissue), _joined(every))

    @classmethod
    def of_tissue(cls, od_tissue: np.ndarray) -> ODStream:
        """A stream of given tissue optical densities ``(n, 3)`` float32, held whole."""
        stream = cls.__new__(cls)
        stream._images, stream._io, stream._beta, stream._lut = [], None, None, None
        stream.whole = (od_tissue, None)
        return stream

    def _tissue(self, pixels: np.ndarray) -> np.ndarray:
        return tissue_mask(pixels, self._io, self._beta, every_channel=self._every_channel)

    def optical_density(self, image: np.ndarray) -> np.ndarray:
        """Optical density ``(..., 3)`` float32 of uint8 pixels ``(..., 3)``."""
        return cv2.LUT(image, self._lut)

    def chunks(self, tissue: bool = True) -> Iterator[tuple]:
        """``(tissue, all)`` optical densities ``(n, 3)`` per strip of the images, recomputed.

        The tissue part is None when not asked for.
        """
        for image in self._images:
            for rows in row_strips(image.shape, CHUNK_PIXELS):
                od = self.optical_density(image[rows]).reshape(-1, 3)
                yield masked_pixels(od, self._tissue(image[rows])) if tissue else None, od

    def survey(self) -> Survey:
        """Tissue moments, counts and (when streamed) pixel samples, in one pass."""
        if self.whole is not None:
            tissue, every = self.whole
            n_every = 0 if every is None else len(every)
            return Survey(len(tissue), *_sums(tissue), n_every)
        n_tissue = n_every = 0
        total, second = np.zeros(3), np.zeros((3, 3))
        tissue_sample, every_sample = [], []
        for tissue, every in self.chunks():
            # Copies: a strided view would keep the whole chunk alive.
            tissue_sample.append(tissue[(-n_tissue) % SAMPLE_STRIDE :: SAMPLE_STRIDE].copy())
            every_sample.append(every[(-n_every) % SAMPLE_STRIDE :: SAMPLE_STRIDE].copy())
            n_tissue, n_every = n_tissue + len(tissue), n_every + len(every)
            chunk_total, chunk_second = _sums(tissue)
            total, second = total + chunk_total, second + chunk_second
        return Survey(
            n_tissue,
            total,
            second,
            n_every,
            np.concatenate(tissue_sample),
            np.concatenate(every_sample),
        )


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def stream_percentiles(
    stream: ODStream, survey: Survey, tissue: bool, jobs: list[Job]
) -> list[np.ndarray]:
    """``np.percentile(monotone(values(od)), q)`` of each job, over the tissue or all pixels.

    Parameters
    ----------
    stream : ODStream
        The pixels.
    survey : Survey
        ``stream.survey()``.
    tissue : bool
        Over the tissue pixels (else all pixels).
    jobs : list of (values, q, monotone)
        ``values`` maps a chunk of optical densities ``(n, 3)`` to ``n`` values elementwise;
        ``q`` are percentiles in [0, 100]; ``monotone`` is an increasing map applied to the order
        statistics, or None.

    Returns
    -------
    list of ndarray of shape (len(q),), dtype float64
        Exact, as ``np.percentile`` (linear method); NaN values sort last.
    """
    if stream.whole is not None:
        od = stream.whole[0] if tissue else stream.whole[1]
        return [sorted_percentiles(values(od), q, monotone) for values, q, monotone in jobs]
    n = survey.n_tissue if tissue else survey.n_every
    rows = survey.tissue_sample if tissue else survey.every_sample
    samples = [np.sort(values(rows).ravel()) if len(rows) else rows[:, 0] for values, _, _ in jobs]
    positions = [np.asarray(q, dtype=np.float64) / 100.0 * (n - 1) for _, q, _ in jobs]
    below = [np.floor(position).astype(np.int64) for position in positions]
    above = [np.minimum(b + 1, n - 1) for b in below]
    wanted = [sorted({*b.tolist(), *a.tolist()}) for b, a in zip(below, above, strict=True)]
    found: list[dict[int, float]] = [{} for _ in jobs]
    for widen in (1.0, 16.0, np.inf):
        pending = [
            [r for r in ranks if r not in done] for ranks, done in zip(wanted, found, strict=True)
        ]
        if not any(pending):
            break
        brackets = [
            [_sample_bracket(sample, n, rank, widen) for rank in ranks]
            for sample, ranks in zip(samples, pending, strict=True)
        ]
        _count_pass(stream, tissue, jobs, pending, brackets, found)
    results = []
    for j, (_, _, monotone) in enumerate(jobs):
        low = np.array([found[j].get(int(r), np.nan) for r in below[j]])
        high = np.array([found[j].get(int(r), np.nan) for r in above[j]])
        if monotone is not None:
            low, high = monotone(low), monotone(high)
        results.append(low + (positions[j] - below[j]) * (high - low))
    return results


def _sample_bracket(sample: np.ndarray, n: int, rank: int, widen: float) -> tuple[float, float]:
    """Values around the sample's estimate of the order statistic at ``rank`` of ``n``."""
    m = len(sample)
    if m == 0 or widen == np.inf:
        return -np.inf, np.inf
    p = rank / max(n - 1, 1)
    # Four standard deviations of a random sample's rank at this quantile, plus two; widened.
    margin = int(widen * (4 * np.sqrt(m * p * (1 - p)) + 2))
    first, last = rank * m // n - margin, rank * m // n + margin
    lo = float(sample[first]) if first >= 0 else -np.inf
    hi = float(sample[last]) if last < m else np.inf
    return lo, hi


def _count_pass(stream, tissue, jobs, pending, brackets, found) -> None:
    """One pass: resolve the pending ranks of every job that fall inside their brackets."""
    counts = [np.zeros((len(ranks), 3), dtype=np.int64) for ranks in pending]  # <, ==lo, ==hi
    inside: list[list[list[np.ndarray]]] = [[[] for _ in ranks] for ranks in pending]
    for tissue_od, every_od in stream.chunks(tissue=tissue):
        od = tissue_od if tissue else every_od
        for j, (values, _, _) in enumerate(jobs):
            if not pending[j] or len(od) == 0:
                continue
            v = values(od).ravel()
            for i, (lo, hi) in enumerate(brackets[j]):
                counts[j][i] += (
                    np.count_nonzero(v < lo),
                    np.count_nonzero(v == lo),
                    np.count_nonzero(v == hi) if hi != lo else 0,
                )
                inside[j][i].append(v[(v > lo) & (v < hi)])
    for j, ranks in enumerate(pending):
        for i, rank in enumerate(ranks):
            lo, hi = brackets[j][i]
            n_less, n_lo, n_hi = (int(c) for c in counts[j][i])
            strictly = np.sort(np.concatenate(inside[j][i]))
            r = rank - n_less
            if r < 0:
                continue
            if r < n_lo:
                found[j][rank] = lo
            elif r - n_lo < len(strictly):
                found[j][rank] = float(strictly[r - n_lo])
            elif r - n_lo - len(strictly) < n_hi:
                found[j][rank] = hi
