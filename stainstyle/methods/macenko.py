"""Macenko et al. 2009 stain normalization: stain vectors from the optical-density plane."""

from __future__ import annotations

from numbers import Real
from typing import Any

import cv2
import numpy as np
from sklearn.utils._param_validation import Interval

from stainstyle._fitted import FittedArray, columns_of_positive_norm
from stainstyle._renamed import DEPRECATED, DEPRECATED_CONSTRAINT, Renamed
from stainstyle.base import StainNormalizer
from stainstyle.color.od import IO_DEFAULT, od_lut
from stainstyle.color.quantize import float_to_uint8, row_strips
from stainstyle.methods._macenko_pixels import ODStream, Survey, stream_percentiles
from stainstyle.methods._macenko_pixels import sorted_percentiles as _sorted_percentiles
from stainstyle.methods._stains import (
    StainSeparationMixin,
    StainSource,
    concentration_scale,
)
from stainstyle.sources import UnmodelledSource
from stainstyle.tissue import min_tissue_pixels

#: Reference H&E stain matrix of Macenko's reference code (columns H, E; rows R, G, B).
HE_REFERENCE = np.array([[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]])
#: Reference 99th-percentile concentrations of H and E (Macenko's reference code).
MAX_CONCENTRATIONS_REFERENCE = np.array([1.9705, 1.0308])

#: Stain vectors closer than this (cosine) are one stain: the tile is degenerate.
_MAX_STAIN_COSINE = 0.995
#: Angular range below which the optical-density plane holds a single stain.
_MIN_ANGLE_RANGE = 1e-3


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
    od = np.ascontiguousarray(od_tissue, dtype=np.float32).reshape(-1, 3)
    stream = ODStream.of_tissue(od)
    return _stain_matrix(stream, stream.survey(), alpha)


def _stain_matrix(stream: ODStream, survey: Survey, alpha: float) -> tuple[np.ndarray, bool]:
    """:func:`macenko_stain_matrix` of the tissue pixels of a stream, from its survey."""
    n = survey.n_tissue
    mean = survey.total / n
    covariance = (survey.second - n * np.outer(mean, mean)) / max(n - 1, 1)
    _, vectors = np.linalg.eigh(covariance)
    plane = vectors[:, [1, 2]]
    plane *= np.where(mean @ plane < 0, -1.0, 1.0)  # mean(od @ e) >= 0 for each axis
    plane32 = plane.astype(np.float32)
    job = (lambda od: _pseudo_angles(od @ plane32), [alpha, 100.0 - alpha], _pseudo_to_angle)
    ((angle_min, angle_max),) = stream_percentiles(stream, survey, True, [job])
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
    return _sorted_percentiles(_pseudo_angles(points), q, _pseudo_to_angle)


def _pseudo_angles(points: np.ndarray) -> np.ndarray:
    """``p = sign(y) * (1 - x / (|x| + |y|))`` of points ``(M, 2)``, increasing with the angle."""
    x, y = points[:, 0], points[:, 1]
    r = x / (np.abs(x) + np.abs(y))
    return np.copysign(1.0 - r, y)


def _pseudo_to_angle(p: np.ndarray) -> np.ndarray:
    """The angle in radians of pseudo-angles ``p`` (:func:`_pseudo_angles`)."""
    r = 1.0 - np.abs(p)
    return np.arctan2(np.copysign(1.0 - np.abs(r), p), r)


def _max_concentrations(
    stream: ODStream, survey: Survey, stain_matrix: np.ndarray, on_tissue: bool
) -> np.ndarray:
    """99th percentile of each stain's least-squares concentration (Macenko steps 6 and 7).

    Parameters
    ----------
    stream : ODStream
        The pixels.
    survey : Survey
        ``stream.survey()``.
    stain_matrix : ndarray of shape (3, 2)
        Stain vectors as columns.
    on_tissue : bool
        Over the tissue pixels only, else over all pixels (as the reference does).

    Returns
    -------
    ndarray of shape (2,), dtype float64
        ``P99`` of ``C = pinv(HE) @ OD`` per stain; concentrations are unconstrained.
    """
    projection = np.linalg.pinv(stain_matrix)
    jobs = [(_concentration(row), [99.0], None) for row in projection]
    return np.array([p[0] for p in stream_percentiles(stream, survey, on_tissue, jobs)])


def _concentration(projection_row: np.ndarray):
    """``od -> row @ od`` per pixel of ``(n, 3)`` float32 optical densities, as float32."""
    row = projection_row[None]
    return lambda od: cv2.transform(od.reshape(-1, 1, 3), row)


#: Macenko's source statistics: the stain matrix and maximum concentrations of a slide, a group
#: or one tile (the type Vahadane shares).
MacenkoSource = StainSource


class MacenkoNormalizer(StainSeparationMixin, StainNormalizer):
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
    tissue_only : bool, default=False
        Take the 99th concentration percentile over tissue pixels only (those of the stain
        filter, optical density >= ``beta`` in every channel; more robust on mostly-background
        tiles) instead of over all pixels as the reference does.
    background : {"passthrough", "raise"}, default="passthrough"
        Policy for tiles with too little tissue or a single stain (see
        :class:`~stainstyle.base.StainNormalizer`).
    batch_size : int, default=32
        Tiles processed at once.
    maxc_on_tissue : bool, deprecated
        The former name of ``tissue_only``; accepted with a ``FutureWarning``.

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
    ``MultiMacenkoNormalizer`` "concat" mode). The source stain vectors and maximum
    concentrations are estimated per tile, or once for a slide or group (``source_statistics``,
    ``transform(X, groups=...)``) from their pooled pixels in the same way: a
    :class:`MacenkoSource`. ``stain_concentrations`` gives the H and E maps of tiles
    (non-negative least squares in each tile's stain basis).

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
        "tissue_only": ["boolean"],
        "maxc_on_tissue": ["boolean", DEPRECATED_CONSTRAINT],
    }
    _fitted_attributes: dict = {
        "stain_matrix_": FittedArray((3, 2), maximum_abs=1e3, rule=columns_of_positive_norm),
        "max_concentrations_": FittedArray((2,), minimum=0, exclusive_minimum=True, maximum=1e3),
    }
    _fit_dependent_params = ("io", "beta", "alpha", "tissue_only", "maxc_on_tissue")
    _machine_local_params = ()
    _colour_table = True
    _renamed_params: dict = {"maxc_on_tissue": Renamed("tissue_only")}

    def __init__(
        self,
        *,
        io: float = IO_DEFAULT,
        beta: float = 0.15,
        alpha: float = 1.0,
        tissue_only: bool = False,
        background: str = "passthrough",
        batch_size: int = 32,
        maxc_on_tissue: bool | str = DEPRECATED,
    ):
        self.io = io
        self.beta = beta
        self.alpha = alpha
        self.tissue_only = tissue_only
        self.background = background
        self.batch_size = batch_size
        self.maxc_on_tissue = maxc_on_tissue

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

    def _separation_penalty(self) -> float:
        return 0.0  # stain_concentrations: non-negative least squares

    def _estimate(self, images: list[np.ndarray], needed: int) -> tuple[MacenkoSource, ODStream]:
        """Macenko's steps 1 to 7 on the pooled pixels of ``images``.

        Returns the estimate and the optical-density stream it was made from (which holds the
        optical densities of a single image that was not streamed in chunks).

        Raises
        ------
        UnmodelledSource
            If fewer than ``needed`` pixels pass Macenko's filter, or one stain only is found.
        """
        stream = ODStream(images, self.io, self.beta)
        survey = stream.survey()
        if survey.n_tissue < needed:
            raise UnmodelledSource(
                f"hold {survey.n_tissue} pixels with an optical density of at least "
                f"beta={self.beta} in every channel (Macenko's stain filter), at least {needed} "
                "are needed; are they pale or blank?"
            )
        stains, degenerate = _stain_matrix(stream, survey, self.alpha)
        if degenerate:
            raise UnmodelledSource("hold a single stain (the two estimated stain vectors coincide)")
        maxc = _max_concentrations(stream, survey, stains, self._param("tissue_only"))
        return MacenkoSource(stain_matrix=stains, max_concentrations=maxc), stream

    def _needs_tissue_mask(self) -> bool:
        return False  # stain vectors come from Macenko's own every-channel filter

    def _transform_tile(self, tile: np.ndarray, source: MacenkoSource | None) -> np.ndarray | None:
        """Normalize one tile with the source's stains, or its own; None when it has none.

        Stain vectors come from Macenko's own pixel filter (``beta`` in every channel), not from
        the shared tissue mask. A tile larger than 2048x2048 pixels is streamed in chunks
        (:mod:`stainstyle.methods._macenko_pixels`): its optical densities are never all held.
        """
        stream = None
        if source is None:
            try:
                source, stream = self._estimate([tile], min_tissue_pixels(*tile.shape[:2]))
            except UnmodelledSource:
                return None
        scale = concentration_scale(source.max_concentrations, self.max_concentrations_)
        # I = io * exp(-HE_ref @ diag(scale) @ pinv(HE) @ OD), one 3x4 affine map in log space
        mix = self.stain_matrix_ @ np.diag(scale) @ np.linalg.pinv(source.stain_matrix)
        affine = np.hstack([-mix, np.full((3, 1), np.log(self.io))]).astype(np.float32)
        held = None if stream is None or stream.whole is None else stream.whole[1]
        od = None if held is None else held.reshape(tile.shape)
        lut = od_lut(self.io, np.float32)
        out = np.empty(tile.shape, dtype=np.uint8)
        for rows in row_strips(tile.shape):
            od_rows = cv2.LUT(tile[rows], lut) if od is None else od[rows]
            out[rows] = float_to_uint8(cv2.exp(cv2.transform(od_rows, affine)))
        return out

    def _tensor_stains(self, od: Any, pixels: Any, needed: int) -> Any:
        from stainstyle.methods._stain_tensors import macenko_stains

        return macenko_stains(
            od,
            pixels,
            io=self.io,
            beta=self.beta,
            alpha=self.alpha,
            tissue_only=self._param("tissue_only"),
            needed=needed,
            max_cosine=_MAX_STAIN_COSINE,
            min_angle_range=_MIN_ANGLE_RANGE,
        )

    def _tensor_mapped(self, od: Any, source: Any) -> Any:
        from stainstyle.methods._stain_tensors import macenko_mapped

        return macenko_mapped(
            od,
            source,
            self.stain_matrix_,
            self.max_concentrations_,
            self.io,
        )
