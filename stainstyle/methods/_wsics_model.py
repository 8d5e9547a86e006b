"""WSICS class statistics, soft class weights and the colour mapping, as pure functions.

Follows the WSICS reference code (``TransformCxCyDensity``, ``CxCyWeights``,
``NaiveBayesFeatureClassifier``, ``NormalizedLutCreation``) with the corrections listed in the
project's algorithm specification, each marked where it is made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stainstyle.color.hsd import hsd_to_rgb, rgb_to_hsd
from stainstyle.color.quantize import float_to_uint8
from stainstyle.methods._wsics_labels import unpack_rgb

#: Rows of the per-class arrays: hematoxylin, eosin, background.
HEMATOXYLIN, EOSIN, BACKGROUND = 0, 1, 2

#: Percentiles of the landmarks on each rotated chromatic axis.
LANDMARK_FRACTIONS = (0.0, 0.01, 0.25, 0.5, 0.75, 0.99, 1.0)

#: Bins and Gaussian width (in bins) of the naive-Bayes feature histograms.
NAIVE_BAYES_BINS, NAIVE_BAYES_SIGMA = 100, 3.0

#: A source density spread below this is not rescaled.
MIN_DENSITY_STD = 1e-6


@dataclass(frozen=True)
class ClassStatistics:
    """Chromatic and density statistics of the hematoxylin, eosin and background classes.

    Attributes
    ----------
    medians : ndarray of shape (3, 2)
        Upper median of ``(c_x, c_y)`` per class.
    angles : ndarray of shape (2,)
        Major-axis angle in radians, in (-pi/2, pi/2], of the hematoxylin and eosin
        chromaticity.
    landmarks : ndarray of shape (2, 2, 7)
        Per stain and rotated axis (major, minor): min, P1, P25, P50, P75, P99, max.
    density_mean, density_std : ndarray of shape (3,)
        Mean and standard deviation of ``D`` per class.
    counts : ndarray of shape (3,), dtype int64
        Pixels per class.
    """

    medians: np.ndarray
    angles: np.ndarray
    landmarks: np.ndarray
    density_mean: np.ndarray
    density_std: np.ndarray
    counts: np.ndarray


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    """Rotate 2-D points ``(n, 2)`` counter-clockwise by ``angle``."""
    cos, sin = np.cos(angle), np.sin(angle)
    # Correction of the reference code, which overwrites x' before computing y' in place.
    return np.stack(
        [cos * points[:, 0] - sin * points[:, 1], sin * points[:, 0] + cos * points[:, 1]],
        axis=1,
    )


def _upper_median(values: np.ndarray) -> np.ndarray:
    """Per-column element at index ``n // 2`` of the sorted values."""
    return np.partition(values, len(values) // 2, axis=0)[len(values) // 2]


def _major_axis_angle(chroma: np.ndarray, counts: np.ndarray | None = None) -> float:
    """Angle of the major axis of a 2-D point cloud, canonicalized to (-pi/2, pi/2].

    ``counts`` weights each point by its number of occurrences (default one each).
    """
    n = len(chroma) if counts is None else int(counts.sum())
    if n < 2:
        return 0.0
    _, vectors = np.linalg.eigh(np.cov(chroma, rowvar=False, fweights=counts))
    major = vectors[:, 1]
    # Correction: the axis direction is canonicalized (c_x >= 0) so that source and template
    # angles are comparable; the reference code folds acos(-v) into (pi/2, pi] instead.
    if major[0] < 0 or (major[0] == 0 and major[1] < 0):
        major = -major
    return float(np.arctan2(major[1], major[0]))


def _order_statistics(values: np.ndarray, counts: np.ndarray, ranks: list[int]) -> np.ndarray:
    """Elements at ``ranks`` (0-based) of the sorted multiset ``values`` repeated ``counts``."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(counts[order])
    return values[order[np.searchsorted(cumulative, ranks, side="right")]]


#: A class of more than this many pixels is summarised by its distinct colours (see
#: :func:`colour_class_statistics`).
MAX_PLAIN_PIXELS = 1 << 22


def class_statistics(samples: list[np.ndarray]) -> ClassStatistics:
    """Statistics of labelled pixels.

    Parameters
    ----------
    samples : list of 3 ndarrays of shape (n_k, 3)
        ``(c_x, c_y, D)`` of the hematoxylin, eosin and background pixels. The hematoxylin and
        eosin arrays must be non-empty; an empty background gets median (0, 0), mean 0 and
        standard deviation 0 (its mapping is then the identity, see :func:`map_hsd`).

    Returns
    -------
    ClassStatistics

    See Also
    --------
    colour_class_statistics : The same from packed colours, in bounded memory.
    """
    return _assemble([_plain_class(values, k) for k, values in enumerate(samples)])


def colour_class_statistics(colours: list[np.ndarray]) -> ClassStatistics:
    """:func:`class_statistics` of pixels given by their packed RGB colours.

    A class of at most :data:`MAX_PLAIN_PIXELS` pixels is converted to HSD and measured as
    :func:`class_statistics` does. A larger one is summarised by its distinct colours and their
    counts, so memory is bounded by the colours present (at most 2**24), not the pixels: order
    statistics (medians, landmarks) are the same, and means, spreads and the covariance equal
    to floating-point rounding.

    Parameters
    ----------
    colours : list of 3 ndarrays of shape (n_k,), integer
        ``R << 16 | G << 8 | B`` of the hematoxylin, eosin and background pixels.

    Returns
    -------
    ClassStatistics
    """
    parts = []
    for k, packed in enumerate(colours):
        if len(packed) <= MAX_PLAIN_PIXELS:
            parts.append(_plain_class(rgb_to_hsd(unpack_rgb(packed)), k))
        else:
            distinct, counts = np.unique(packed, return_counts=True)
            parts.append(_counted_class(rgb_to_hsd(unpack_rgb(distinct)), counts, k))
    return _assemble(parts)


def _plain_class(values: np.ndarray, k: int) -> tuple:
    """(median, density mean, density std, angle, landmarks, count) of one class's pixels."""
    median, angle, landmarks = np.zeros(2), 0.0, np.zeros((2, len(LANDMARK_FRACTIONS)))
    if len(values) == 0:
        return median, 0.0, 0.0, angle, landmarks, 0
    median = _upper_median(values[:, :2])
    density_mean, density_std = values[:, 2].mean(), values[:, 2].std()
    if k != BACKGROUND:
        angle = _major_axis_angle(values[:, :2])
        rotated = _rotate(values[:, :2] - median, -angle)
        # Order statistics at floor((n - 1) p), as the reference code's nth_element picks.
        landmarks = np.percentile(
            rotated, np.multiply(LANDMARK_FRACTIONS, 100), axis=0, method="lower"
        ).T
    return median, density_mean, density_std, angle, landmarks, len(values)


def _counted_class(values: np.ndarray, counts: np.ndarray, k: int) -> tuple:
    """:func:`_plain_class` of distinct values ``(u, 3)`` occurring ``counts`` times each."""
    n = int(counts.sum())
    median = np.array([_order_statistics(values[:, c], counts, [n // 2])[0] for c in (0, 1)])
    density_mean = counts @ values[:, 2] / n
    density_std = np.sqrt(counts @ (values[:, 2] - density_mean) ** 2 / n)
    angle, landmarks = 0.0, np.zeros((2, len(LANDMARK_FRACTIONS)))
    if k != BACKGROUND:
        angle = _major_axis_angle(values[:, :2], counts)
        rotated = _rotate(values[:, :2] - median, -angle)
        ranks = [int(np.floor((n - 1) * f)) for f in LANDMARK_FRACTIONS]
        landmarks = np.stack([_order_statistics(rotated[:, a], counts, ranks) for a in (0, 1)])
    return median, density_mean, density_std, angle, landmarks, n


def _assemble(parts: list[tuple]) -> ClassStatistics:
    medians = np.zeros((3, 2))
    angles = np.zeros(2)
    landmarks = np.zeros((2, 2, len(LANDMARK_FRACTIONS)))
    density_mean, density_std = np.zeros(3), np.zeros(3)
    counts = np.zeros(3, dtype=np.int64)
    for k, (median, mean, std, angle, marks, count) in enumerate(parts):
        medians[k], density_mean[k], density_std[k], counts[k] = median, mean, std, count
        if k != BACKGROUND:
            angles[k], landmarks[k] = angle, marks
    return ClassStatistics(medians, angles, landmarks, density_mean, density_std, counts)


@dataclass(frozen=True)
class NaiveBayesTables:
    """Per-feature posterior tables ``p(class | x_f)`` of the WSICS naive-Bayes weighting.

    Attributes
    ----------
    minimum, scale : ndarray of shape (3,)
        Bin position of a feature value is ``(x - minimum) * scale``.
    posterior : ndarray of shape (3, NAIVE_BAYES_BINS, 3)
        Per feature and bin, ``p(class | x)`` for hematoxylin, eosin and background.
    """

    minimum: np.ndarray
    scale: np.ndarray
    posterior: np.ndarray


def naive_bayes_features(hsd: np.ndarray) -> np.ndarray:
    """Features of the class weighting: ``(c_x, c_y, D / 2)``.

    Parameters
    ----------
    hsd : ndarray of shape (n, 3)

    Returns
    -------
    ndarray of shape (n, 3), dtype float64
    """
    return hsd * np.array([1.0, 1.0, 0.5])


def fit_naive_bayes(features: np.ndarray, classes: np.ndarray) -> NaiveBayesTables:
    """Gaussian-smeared histogram tables of ``p(class | x_f)``, one per feature.

    Each sample at bin position ``f`` adds ``exp(-((j - f) / sigma)**2)`` to bins ``j`` within
    ``2.5 sigma`` (sigma = 3 bins) of its class and of the total; the class histograms and the
    total are normalized to sum 1 and Bayes' rule gives ``p(x | k) p(k) / p(x)`` per bin.

    Parameters
    ----------
    features : ndarray of shape (n, 3)
        :func:`naive_bayes_features` of the labelled pixels.
    classes : ndarray of shape (n,), dtype int
        0 hematoxylin, 1 eosin, 2 background.

    Returns
    -------
    NaiveBayesTables
    """
    n_bins, sigma = NAIVE_BAYES_BINS, NAIVE_BAYES_SIGMA
    minimum = features.min(axis=0)
    width = (features.max(axis=0) - minimum) / n_bins
    scale = np.where(width > 0, 1.0 / np.where(width > 0, width, 1.0), 0.0)
    priors = np.bincount(classes, minlength=3) / len(classes)
    reach = 2.5 * sigma
    posterior = np.zeros((3, n_bins, 3))
    for f in range(3):
        position = (features[:, f] - minimum[f]) * scale[f]
        # The bins the reference code visits: int(f - 2.5 sigma) <= j < int(f + 2.5 sigma + 1),
        # clipped to [0, n_bins); one vectorized pass per offset from the first of them.
        first = np.maximum(0, (position - reach).astype(np.intp))
        stop = np.minimum(n_bins, (position + reach + 1).astype(np.intp))
        histogram = np.zeros(n_bins * 3)
        for offset in range(int(2 * reach) + 2):
            bins = first + offset
            valid = bins < stop
            weight = np.exp(-(((bins - position) / sigma) ** 2)) * valid
            index = np.minimum(bins, n_bins - 1) * 3 + classes
            histogram += np.bincount(index, weights=weight, minlength=n_bins * 3)
        histogram = histogram.reshape(n_bins, 3)
        total = histogram.sum(axis=1)
        total = total / total.sum()  # every sample weighs on its own bin: the sum is positive
        class_sums = histogram.sum(axis=0)
        likelihood = histogram / np.where(class_sums > 0, class_sums, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            table = likelihood * priors / total[:, None]
        # Bins no sample reaches (total 0) give 0/0 or x/0: there the likelihood is kept.
        posterior[f] = np.where(np.isfinite(table), table, likelihood)
    return NaiveBayesTables(minimum=minimum, scale=scale, posterior=posterior)


def class_weights(tables: NaiveBayesTables, features: np.ndarray) -> np.ndarray:
    """Soft class weights ``w_k ∝ prod_f p(k | x_f)``, interpolated linearly between bins.

    Parameters
    ----------
    tables : NaiveBayesTables
    features : ndarray of shape (n, 3)
        :func:`naive_bayes_features` of the colours to weight.

    Returns
    -------
    ndarray of shape (n, 3), dtype float64
        Hematoxylin, eosin and background weights, summing to 1; 1/3 each where every product
        is 0 or not finite.
    """
    n_bins = tables.posterior.shape[1]
    weights = np.ones((len(features), 3))
    for f in range(3):
        position = np.clip((features[:, f] - tables.minimum[f]) * tables.scale[f], 0, n_bins - 1)
        low = np.minimum(position.astype(np.intp), n_bins - 2)
        fraction = (position - low)[:, None]
        table = tables.posterior[f]
        weights *= (1.0 - fraction) * table[low] + fraction * table[low + 1]
    total = weights.sum(axis=1, keepdims=True)
    ok = np.isfinite(total) & (total > 0)
    return np.where(ok, weights / np.where(ok, total, 1.0), 1.0 / 3.0)


def _knots(landmarks: np.ndarray) -> np.ndarray:
    """Strictly increasing knots from (possibly tied) landmarks."""
    return np.maximum.accumulate(landmarks) + 1e-9 * np.arange(len(landmarks))


def map_hsd(
    hsd: np.ndarray, weights: np.ndarray, source: ClassStatistics, template: ClassStatistics
) -> np.ndarray:
    """Map HSD colours from the source statistics to the template's.

    Parameters
    ----------
    hsd : ndarray of shape (n, 3)
        ``(c_x, c_y, D)`` of the colours.
    weights : ndarray of shape (n, 3)
        Soft class weights from :func:`class_weights`.
    source, template : ClassStatistics

    Returns
    -------
    ndarray of shape (n, 3), dtype float64
        ``sum_k w_k (q_k, D'_k)``.
    """
    chroma, density = hsd[:, :2], hsd[:, 2]
    mapped_chroma = np.zeros((len(hsd), 3, 2))
    mapped_density = np.zeros((len(hsd), 3))
    for k in (HEMATOXYLIN, EOSIN):
        rotated = _rotate(chroma - source.medians[k], -source.angles[k])
        for axis in range(2):
            # All 7 landmarks as knots for both stains (the reference code uses 5 for
            # hematoxylin). np.interp clamps to the template's [min, max] outside the source's
            # [min, max], which is what linear extrapolation followed by that clamp gives.
            rotated[:, axis] = np.interp(
                rotated[:, axis],
                _knots(source.landmarks[k, axis]),
                _knots(template.landmarks[k, axis]),
            )
        mapped_chroma[:, k] = _rotate(rotated, template.angles[k]) + template.medians[k]
    both_background = source.counts[BACKGROUND] > 0 and template.counts[BACKGROUND] > 0
    for k in (HEMATOXYLIN, EOSIN, BACKGROUND):
        if k == BACKGROUND and not both_background:
            mapped_chroma[:, k], mapped_density[:, k] = chroma, density
            continue
        if k == BACKGROUND:
            mapped_chroma[:, k] = chroma - source.medians[k] + template.medians[k]
        # Correction: the reference code (DensityNormalizationThreeScales) multiplies by
        # std_source / std_template, which inverts the scaling.
        source_std = source.density_std[k]
        ratio = template.density_std[k] / source_std if source_std >= MIN_DENSITY_STD else 1.0
        mapped_density[:, k] = (density - source.density_mean[k]) * ratio + (
            template.density_mean[k]
        )
    out = np.empty_like(hsd, dtype=np.float64)
    out[:, :2] = np.einsum("nk,nkc->nc", weights, mapped_chroma)
    out[:, 2] = np.einsum("nk,nk->n", weights, mapped_density)
    return out


def map_colours(
    hsd: np.ndarray, tables: NaiveBayesTables, source: ClassStatistics, template: ClassStatistics
) -> np.ndarray:
    """Map colours into the template style.

    Parameters
    ----------
    hsd : ndarray of shape (n, 3)
        ``(c_x, c_y, D)`` of the colours (typically the distinct colours of a tile).
    tables : NaiveBayesTables
        Source class weighting.
    source, template : ClassStatistics

    Returns
    -------
    ndarray of shape (n, 3), dtype uint8
        Clipped and rounded.
    """
    weights = class_weights(tables, naive_bayes_features(hsd))
    return float_to_uint8(hsd_to_rgb(map_hsd(hsd, weights, source, template)))
