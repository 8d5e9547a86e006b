"""Macenko et al. 2009 stain normalization: stain vectors from the optical-density plane."""

from __future__ import annotations

from numbers import Real
from typing import Any

import cv2
import numpy as np
from sklearn.utils._param_validation import Interval

from stainstyle._fitted import FittedArray, columns_of_positive_norm
from stainstyle._validation import Tiles
from stainstyle.base import StainNormalizer, require_tissue
from stainstyle.color.od import od_lut
from stainstyle.color.quantize import float_to_uint8, row_strips
from stainstyle.tissue import IO_DEFAULT, masked_pixels, min_tissue_pixels, tissue_mask

#: Reference H&E stain matrix of Macenko's reference code (columns H, E; rows R, G, B).
HE_REFERENCE = np.array([[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]])
#: Reference 99th-percentile concentrations of H and E (Macenko's reference code).
MAX_CONCENTRATIONS_REFERENCE = np.array([1.9705, 1.0308])

#: Stain vectors closer than this (cosine) are one stain: the tile is degenerate.
_MAX_STAIN_COSINE = 0.995
#: Angular range below which the optical-density plane holds a single stain.
_MIN_ANGLE_RANGE = 1e-3
#: Arrays up to this size are sorted whole for percentiles; larger ones are bracketed first.
_SORT_ALL_BELOW = 1 << 12
#: Stride of the sample that brackets order statistics of larger arrays.
_SAMPLE_STRIDE = 64
#: Concentration percentiles at or below this leave the stain unscaled.
_MIN_CONCENTRATION = 1e-6


def macenko_stain_matrix(od_tissue: np.ndarray, alpha: float = 1.0) -> tuple[np.ndarray, bool]:
    """Estimate the H&E stain matrix from tissue optical densities (Macenko steps 3 to 5).

    Parameters
    ----------
    od_tissue : ndarray of shape (M, 3), float
        Optical densities of tissue pixels (every channel >= beta).
    alpha : float, default=1
        Percentile (in %) of the angle distribution that defines the extreme stain directions.

    Returns
    -------
    stain_matrix : ndarray of shape (3, 2), dtype float64
        Unit stain vectors as columns, hematoxylin (larger red optical density) first.
    degenerate : bool
        True when the pixels hold one stain only (the two directions coincide), in which case
        the matrix is rank-deficient and must not be used.

    Notes
    -----
    Follows Veta's reference ``normalizeStaining.m``: centred covariance (ddof=1), the plane of
    the two largest eigenvectors, angles by ``atan2`` and the ``alpha`` / ``100 - alpha``
    percentiles. Eigenvectors are sign-canonicalized so that the projections are positive on
    average (``eigh`` may return either sign), and stain vectors with a negative component sum
    are flipped.
    """
    od = np.ascontiguousarray(od_tissue, dtype=np.float32)
    n = len(od)
    # Moments by two BLAS products (float32 data, float64 result): the covariance of optical
    # densities is far from the float32 cancellation limit, as the float64 parity test checks.
    mean = (np.ones(n, dtype=np.float32) @ od).astype(np.float64) / n
    second = (od.T @ od).astype(np.float64)
    covariance = (second - n * np.outer(mean, mean)) / max(n - 1, 1)
    _, vectors = np.linalg.eigh(covariance)
    plane = vectors[:, [1, 2]]
    plane *= np.where(mean @ plane < 0, -1.0, 1.0)  # mean(od @ e) >= 0 for each axis
    projected = od @ plane.astype(np.float32)
    angle_min, angle_max = _angle_percentiles(projected, [alpha, 100.0 - alpha])
    v_min = plane @ np.array([np.cos(angle_min), np.sin(angle_min)])
    v_max = plane @ np.array([np.cos(angle_max), np.sin(angle_max)])
    stains = np.stack([v_min, v_max] if v_min[0] > v_max[0] else [v_max, v_min], axis=1)
    stains *= np.where(stains.sum(axis=0) < 0, -1.0, 1.0)
    stains /= np.linalg.norm(stains, axis=0)
    degenerate = bool(
        abs(stains[:, 0] @ stains[:, 1]) > _MAX_STAIN_COSINE
        or angle_max - angle_min < _MIN_ANGLE_RANGE
    )
    return stains, degenerate


def _angle_percentiles(points: np.ndarray, q: list[float]) -> np.ndarray:
    """``np.percentile(np.arctan2(y, x), q)`` without an arctan per point.

    The L1-normalized direction ``(r, sign(y) * (1 - |r|))`` with ``r = x / (|x| + |y|)`` has
    the same angle as ``(x, y)``, and ``p = sign(y) * (1 - r)`` increases with the angle over
    (-pi, pi]. So sorting ``p`` orders the angles; only the order statistics that the linear
    percentile interpolates between need an ``arctan2``.

    Parameters
    ----------
    points : ndarray of shape (M, 2), float
        Points in the plane, none at the origin.
    q : list of float
        Percentiles in [0, 100].

    Returns
    -------
    ndarray of shape (len(q),), dtype float64
        Angles in radians, equal to numpy's ``linear`` percentile of ``arctan2(y, x)``.
    """
    x, y = points[:, 0], points[:, 1]
    r = x / (np.abs(x) + np.abs(y))

    def angle(p: np.ndarray) -> np.ndarray:
        r = 1.0 - np.abs(p)
        return np.arctan2(np.copysign(1.0 - np.abs(r), p), r)

    return _sorted_percentiles(np.copysign(1.0 - r, y), q, angle)


def _sorted_percentiles(values: np.ndarray, q: list[float], monotone=None) -> np.ndarray:
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
    ordered = np.sort(values) if n <= _SORT_ALL_BELOW else None
    sample = None if ordered is not None else np.sort(values[::_SAMPLE_STRIDE])
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


def _max_concentrations(od: np.ndarray, stain_matrix: np.ndarray) -> np.ndarray:
    """99th percentile of each stain's least-squares concentration (Macenko steps 6 and 7).

    Parameters
    ----------
    od : ndarray of shape (..., 3), dtype float32
        Optical densities (all pixels, as the reference does, or tissue only).
    stain_matrix : ndarray of shape (3, 2)
        Stain vectors as columns.

    Returns
    -------
    ndarray of shape (2,), dtype float64
        ``P99`` of ``C = pinv(HE) @ OD`` per stain; concentrations are unconstrained.
    """
    pixels = np.ascontiguousarray(od, dtype=np.float32).reshape(-1, 1, 3)
    projection = np.linalg.pinv(stain_matrix)
    return np.array(
        [_sorted_percentiles(cv2.transform(pixels, row[None]), [99.0])[0] for row in projection]
    )


class MacenkoNormalizer(StainNormalizer):
    """Macenko stain normalization: map stain concentrations onto a target stain matrix.

    Each tile's H and E stain vectors are estimated from its optical-density plane, its
    concentrations are rescaled so that their 99th percentiles match the target's, and the tile
    is rebuilt with the target stain vectors, ``I = Io * exp(-HE_target @ C')``.

    Parameters
    ----------
    io : float, default=240
        Blank-field intensity of ``OD = -ln((I + 1) / io)`` (Macenko's reference code; staintools
        uses 255).
    beta : float, default=0.15
        Minimum optical density, in every channel, of the pixels used to estimate stain vectors.
    alpha : float, default=1
        Angle percentile (in %) that defines the extreme stain directions.
    maxc_on_tissue : bool, default=False
        Take the 99th concentration percentile over tissue pixels only (more robust on
        mostly-background tiles) instead of over all pixels as the reference does.
    background : {"passthrough", "raise"}, default="passthrough"
        Policy for tiles with too little tissue or a single stain (see
        :class:`~stainstyle.base.StainNormalizer`).
    batch_size : int, default=32
        Tiles processed at once.

    Attributes
    ----------
    stain_matrix_ : ndarray of shape (3, 2), dtype float64
        Target stain vectors (columns H, E; rows R, G, B).
    max_concentrations_ : ndarray of shape (2,), dtype float64
        Target 99th-percentile concentrations of H and E.

    See Also
    --------
    macenko_stain_matrix : The stain-vector estimate, as a function.
    MacenkoNormalizer.from_reference : A normalizer fitted to the reference stain matrix.

    Notes
    -----
    ``fit`` on several target tiles pools their pixels before the estimate (torchstain's
    ``MultiMacenkoNormalizer`` "concat" mode).

    References
    ----------
    Macenko et al., "A method for normalizing histology slides for quantitative analysis",
    ISBI 2009, 1107-1110.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> tile = rng.integers(40, 200, size=(64, 64, 3), dtype=np.uint8)
    >>> MacenkoNormalizer.from_reference().transform(tile).shape
    (64, 64, 3)
    """

    _parameter_constraints: dict = {
        **StainNormalizer._parameter_constraints,
        "io": [Interval(Real, 1, None, closed="left")],
        "beta": [Interval(Real, 0, None, closed="left")],
        "alpha": [Interval(Real, 0, 50, closed="left")],
        "maxc_on_tissue": ["boolean"],
    }
    _fitted_attributes: dict = {
        "stain_matrix_": FittedArray((3, 2), maximum_abs=1e3, rule=columns_of_positive_norm),
        "max_concentrations_": FittedArray((2,), minimum=0, exclusive_minimum=True, maximum=1e3),
    }
    _fit_dependent_params = ("io", "beta", "alpha", "maxc_on_tissue")
    _machine_local_params = ()

    def __init__(
        self,
        *,
        io: float = IO_DEFAULT,
        beta: float = 0.15,
        alpha: float = 1.0,
        maxc_on_tissue: bool = False,
        background: str = "passthrough",
        batch_size: int = 32,
    ):
        self.io = io
        self.beta = beta
        self.alpha = alpha
        self.maxc_on_tissue = maxc_on_tissue
        self.background = background
        self.batch_size = batch_size

    @classmethod
    def from_reference(
        cls,
        stain_matrix: np.ndarray | None = None,
        max_concentrations: np.ndarray | None = None,
        **params: Any,
    ) -> MacenkoNormalizer:
        """Create a normalizer already fitted to a given target stain matrix.

        Parameters
        ----------
        stain_matrix : ndarray of shape (3, 2), optional
            Target stain vectors (columns H, E; rows R, G, B); :data:`HE_REFERENCE` by default.
        max_concentrations : ndarray of shape (2,), optional
            Target 99th-percentile concentrations; :data:`MAX_CONCENTRATIONS_REFERENCE` by
            default.
        **params
            Constructor parameters.

        Returns
        -------
        MacenkoNormalizer
            Fitted; ``fit`` need not be called.

        Raises
        ------
        ValueError
            If the arrays have the wrong shape or non-finite values, if a stain vector (column
            of ``stain_matrix``) is zero, or if a concentration is not positive (the checks of
            the fitted attributes a loaded model gets, see ``_fitted_attributes``).
        """
        fitted = {}
        for name, value, default in (
            ("stain_matrix", stain_matrix, HE_REFERENCE),
            ("max_concentrations", max_concentrations, MAX_CONCENTRATIONS_REFERENCE),
        ):
            try:
                array = np.array(default if value is None else value, dtype=np.float64)
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"{name}: expected an array of numbers, got {type(value).__name__}"
                ) from err
            problem = cls._fitted_attributes[f"{name}_"].problem(array)
            if problem is not None:
                raise ValueError(f"{name}: {problem}")
            fitted[f"{name}_"] = array
        normalizer = cls(**params)
        normalizer._validate_params()
        normalizer.stain_matrix_ = fitted["stain_matrix_"]
        normalizer.max_concentrations_ = fitted["max_concentrations_"]
        return normalizer

    def _fit(self, tiles: Tiles, y: Any) -> None:
        lut = od_lut(self.io, np.float32)
        od_tissue, od_for_maxc = [], []
        for batch, _ in self._fit_batches(tiles):
            od = cv2.LUT(batch.reshape(-1, 1, 3), lut)
            keep = tissue_mask(batch, self.io, self.beta, every_channel=True).reshape(-1)
            od_tissue.append(masked_pixels(od, keep))
            od_for_maxc.append(od_tissue[-1] if self.maxc_on_tissue else od)
        od_tissue = np.concatenate(od_tissue)
        require_tissue(len(od_tissue), type(self).__name__)
        stains, degenerate = macenko_stain_matrix(od_tissue.reshape(-1, 3), self.alpha)
        if degenerate:
            raise ValueError(
                f"{type(self).__name__}: the target tiles hold a single stain (the two "
                "estimated stain vectors coincide); fit on H&E-stained tissue"
            )
        self.stain_matrix_ = stains
        self.max_concentrations_ = _max_concentrations(np.concatenate(od_for_maxc), stains)

    def _needs_tissue_mask(self) -> bool:
        return False  # stain vectors come from Macenko's own every-channel filter

    def _transform_batch(
        self, batch: np.ndarray, tissue: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        out = np.empty_like(batch)
        degenerate = np.zeros(len(batch), dtype=bool)
        for i, tile in enumerate(batch):
            mapped = self._transform_tile(tile)
            if mapped is None:
                degenerate[i] = True
            else:
                out[i] = mapped
        return out, degenerate

    def _transform_tile(self, tile: np.ndarray) -> np.ndarray | None:
        """Normalize one tile; None when it cannot be modelled.

        Stain vectors come from Macenko's own pixel filter (``beta`` in every channel), not from
        the shared tissue mask.
        """
        od = cv2.LUT(tile, od_lut(self.io, np.float32))
        keep = tissue_mask(tile, self.io, self.beta, every_channel=True)
        od_tissue = masked_pixels(od, keep)
        if len(od_tissue) < min_tissue_pixels(*tile.shape[:2]):
            return None
        stains, degenerate = macenko_stain_matrix(od_tissue, self.alpha)
        if degenerate:
            return None
        maxc = _max_concentrations(od_tissue if self.maxc_on_tissue else od, stains)
        flat = maxc <= _MIN_CONCENTRATION
        scale = np.where(flat, 1.0, self.max_concentrations_ / np.where(flat, 1.0, maxc))
        # I = io * exp(-HE_ref @ diag(scale) @ pinv(HE) @ OD), one 3x4 affine map in log space
        mix = self.stain_matrix_ @ np.diag(scale) @ np.linalg.pinv(stains)
        affine = np.hstack([-mix, np.full((3, 1), np.log(self.io))]).astype(np.float32)
        out = np.empty(tile.shape, dtype=np.uint8)
        for rows in row_strips(tile.shape):
            out[rows] = float_to_uint8(cv2.exp(cv2.transform(od[rows], affine)))
        return out
