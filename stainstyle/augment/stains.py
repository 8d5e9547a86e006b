"""Stain-matrix augmentation around a fitted Macenko or Vahadane normalizer.

Algorithm, per tile (StainTools' ``StainAugmentor``; tiatoolbox's ``StainAugmentor``):

1. Optical density ``OD = -ln((I + 1) / io)`` of every pixel.
2. H and E concentrations ``C`` by the normalizer's separation: the exact two-stain
   non-negative lasso of :class:`stainstyle.separation.ClosedFormLasso` with the fitted stain
   matrix ``S`` (3, 2) and the method's penalty (0 for Macenko, ``lambda_lasso`` for Vahadane).
3. Each stain scaled and shifted, ``C'_k = max(alpha_k * C_k + beta_k, 0)`` with
   ``alpha_k ~ U(1 - sigma1, 1 + sigma1)`` and ``beta_k ~ U(-sigma2, sigma2)`` drawn per tile,
   on tissue pixels only (:func:`stainstyle.tissue.tissue_mask`'s rule; other pixels hold no
   stain by the project's policy and stay as they are).
4. ``OD' = OD + S (C' - C)`` and ``I' = io * exp(-OD') - 1``.

Which stain matrix: StainTools and tiatoolbox (without a given matrix) estimate each image's
own matrix and rebuild the image from its concentrations alone, ``OD' = S C'``; that loses the
part of the optical density the two stains do not explain (so even ``sigma = 0`` changes the
image) and costs a stain estimation per tile. Here every tile is separated with the fitted
matrix (tiatoolbox's behaviour when it is given a ``stain_matrix``): the augmentation moves the
tile's colours along the stain directions of the fitted style, step 4 keeps the residual, so
``sigma1 = sigma2 = 0`` is the identity, and the per-pixel cost is four 3x3 maps, five
elementwise operations, a logarithm and an exponential, on any torch device. It is not one
affine map of the optical density, as HED jitter is: the lasso's non-negativity and the clip at
zero in step 3 make it piecewise affine. Fit the normalizer on tiles of the training set's
style for the fitted matrix to describe the tiles augmented.

References
----------
Vahadane et al., IEEE TMI 35(8):1962-1971, 2016 (stain separation); Macenko et al., ISBI 2009;
Tellez et al., Medical Image Analysis 58:101544, 2019 (stain augmentation); StainTools
(Peter Byfield), ``staintools/stain_augmentor.py``; tiatoolbox ``tools/stainaugment.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from stainstyle._fitted import FittedArray, FittedFloat, columns_of_positive_norm
from stainstyle.augment._common import ODAugmenter, affine_pixels, through_od
from stainstyle.color.od import IO_DEFAULT
from stainstyle.registry import make_normalizer
from stainstyle.separation import ClosedFormLasso, check_stain_matrix

#: Methods whose stain matrix a :class:`StainAugmenter` can use, by name.
STAIN_METHODS = ("macenko", "vahadane")


def draw_stain_jitter(
    rng: np.random.Generator, n: int, sigma1: float, sigma2: float
) -> dict[str, np.ndarray]:
    """The random scales and shifts of the H and E concentrations of ``n`` tiles.

    Parameters
    ----------
    rng : numpy.random.Generator
        The stream to draw from: one array of ``4 n`` uniforms, in tile order.
    n : int
        Number of tiles.
    sigma1, sigma2 : float
        Scale and shift strengths, >= 0.

    Returns
    -------
    dict
        ``"alpha"`` ~ U(1 - sigma1, 1 + sigma1) and ``"beta"`` ~ U(-sigma2, sigma2), float64
        arrays of shape (n, 2) (H, E).
    """
    u = rng.random((n, 2, 2))
    return {"alpha": 1.0 + sigma1 * (2.0 * u[:, 0] - 1.0), "beta": sigma2 * (2.0 * u[:, 1] - 1.0)}


def stain_jitter(
    xp: Any,
    x: Any,
    stain_matrix: np.ndarray,
    alpha: np.ndarray,
    beta: np.ndarray,
    *,
    lambda1: float = 0.0,
    io: float = IO_DEFAULT,
) -> Any:
    """Concentration jitter ``C' = max(alpha C + beta, 0)`` of a batch, in numpy or torch.

    Parameters
    ----------
    xp : module
        :mod:`numpy` or :mod:`torch`, the namespace of ``x``.
    x : ndarray or torch.Tensor of shape (n, H, W, 3), float32 or float64
        RGB intensities on the 0-255 scale.
    stain_matrix : ndarray of shape (3, 2)
        Stain vectors as columns (H, E); rows R, G, B. Not parallel.
    alpha, beta : ndarray of shape (n, 2)
        Per-tile scales and shifts of the H and E concentrations (:func:`draw_stain_jitter`).
    lambda1 : float, default=0
        l1 penalty of the separation (:class:`~stainstyle.separation.ClosedFormLasso`).
    io : float, default=240
        Blank-field intensity of the optical density.

    Returns
    -------
    ndarray or torch.Tensor of shape (n, H, W, 3), dtype of ``x``
        Intensities on the 0-255 scale, not clipped; pixels that are not tissue unchanged.
    """
    jitter = lambda od: _jittered_od(xp, od, stain_matrix, alpha, beta, lambda1)  # noqa: E731
    return through_od(xp, x, jitter, io, tissue_only=True)


def _jittered_od(
    xp: Any,
    od: Any,
    stain_matrix: np.ndarray,
    alpha: np.ndarray,
    beta: np.ndarray,
    lambda1: float = 0.0,
) -> Any:
    """The optical densities of :func:`stain_jitter`, ``OD + S (C' - C)``, on every pixel.

    Parameters
    ----------
    xp : module
        :mod:`numpy` or :mod:`torch`, the namespace of ``od``.
    od : ndarray or torch.Tensor of shape (n, H, W, 3), float32 or float64
        Optical densities.
    stain_matrix, alpha, beta, lambda1
        As for :func:`stain_jitter`.

    Returns
    -------
    ndarray or torch.Tensor of shape (n, H, W, 3), dtype of ``od``

    Notes
    -----
    Every step is written with a third, null stain (zero vector, amount 0, scale 1, shift 0),
    so that every per-pixel map is 3x3 (OpenCV's fast ``transform`` on numpy tiles). The
    lasso of :class:`~stainstyle.separation.ClosedFormLasso` then reads
    ``C = max(u + min(u, 0) @ R, 0)`` with ``u`` its unbounded optimum and ``R`` holding the
    ratios off the diagonal (``C_H = max(u_H + r_H min(u_E, 0), 0)`` and the same for E).
    """
    lasso = ClosedFormLasso.of(stain_matrix, lambda1)
    unmixing = _with_null_stain(lasso.affine.T)  # (4, 3): [OD, 1] -> u
    mixing = _with_null_stain(stain_matrix.T, axis=0)  # (3, 3): rows H, E and the null stain
    r_h, r_e = lasso.ratios
    ratios = np.array([[0.0, r_e, 0.0], [r_h, 0.0, 0.0], [0.0, 0.0, 0.0]])
    n = od.shape[0]
    scale = np.zeros((n, 3, 3))
    scale[:, [0, 1, 2], [0, 1, 2]] = np.column_stack([alpha, np.ones(n)])
    shift = np.column_stack([beta, np.zeros(n)])
    no_shift = np.zeros(3)
    free = affine_pixels(xp, od, unmixing[:3], unmixing[3])
    bounded = xp.clip(free, None, 0.0)
    concentrations = xp.clip(free + affine_pixels(xp, bounded, ratios, no_shift), 0.0, None)
    jittered = xp.clip(affine_pixels(xp, concentrations, scale, shift), 0.0, None)
    return od + affine_pixels(xp, jittered - concentrations, mixing, no_shift)


def _with_null_stain(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """``values`` with a zero row (``axis=0``) or column (``axis=-1``) for a third, null stain."""
    pad = [(0, 0)] * values.ndim
    pad[axis] = (0, 1)
    return np.pad(values, pad)


class StainAugmenter(ODAugmenter):
    """Random H and E concentration scales and shifts along a fitted stain matrix.

    Parameters
    ----------
    normalizer : MacenkoNormalizer, VahadaneNormalizer, {"macenko", "vahadane"}, optional
        Supplies the stain matrix, the separation penalty and ``io``: used as it is when
        fitted and :meth:`fit` gets no tiles; cloned and fitted when :meth:`fit` gets tiles.
        A method name means that method with its defaults (what the command line passes, and
        what a saved augmenter records; a normalizer object is saved as null, its stain
        matrix being saved as ``stain_matrix_``). None means ``MacenkoNormalizer()``.
    sigma1 : float, default=0.2
        Strength of the scales, ``alpha ~ U(1 - sigma1, 1 + sigma1)`` (StainTools' default).
    sigma2 : float, default=0.2
        Strength of the shifts, ``beta ~ U(-sigma2, sigma2)`` (StainTools' default), in the
        concentration units of the normalizer (optical density along unit stain vectors).
    random_state : None, int or numpy.random.Generator, default=None
        Seed of the parameter stream; the same seed gives the same output from numpy and torch
        input (within one gray level).

    Attributes
    ----------
    stain_matrix_ : ndarray of shape (3, 2), dtype float64
        The fitted stain matrix (columns H, E; rows R, G, B).
    lambda1_ : float
        The separation's l1 penalty (0 for Macenko).
    io_ : float
        Blank-field intensity of the optical density.

    See Also
    --------
    stain_jitter : The function behind it.
    HEDJitter : The same kind of perturbation with the fixed Ruifrok H, E and DAB vectors.

    Notes
    -----
    ``sigma1 = sigma2 = 0`` returns the tiles unchanged. Every tile is separated with the
    fitted stain matrix (see the module docstring for how this differs from StainTools, which
    estimates each image's own). Inputs and outputs as
    :class:`~stainstyle.augment._common.Augmenter` describes.

    Examples
    --------
    >>> import numpy as np
    >>> from stainstyle import MacenkoNormalizer
    >>> from stainstyle.separation import RUIFROK_HE, reconstruct
    >>> maps = np.random.default_rng(0).uniform(0.1, 1.0, (2, 32, 32, 2))
    >>> tiles = reconstruct(maps, RUIFROK_HE)
    >>> augmenter = StainAugmenter(MacenkoNormalizer(), random_state=0).fit(tiles)
    >>> augmenter(tiles).shape
    (2, 32, 32, 3)
    """

    _fitted_attributes: dict = {
        "stain_matrix_": FittedArray((3, 2), maximum_abs=1e3, rule=columns_of_positive_norm),
        "lambda1_": FittedFloat(0.0, 1e3),
        "io_": FittedFloat(1.0, 1e6),
    }

    def __init__(self, normalizer=None, *, sigma1=0.2, sigma2=0.2, random_state=None):
        super().__init__(random_state)
        self.normalizer = normalizer
        self.sigma1 = sigma1
        self.sigma2 = sigma2

    def fit(self, X: Any = None, y: Any = None) -> StainAugmenter:
        """Take the stain matrix of the normalizer, fitting a clone of it on ``X`` if given.

        Parameters
        ----------
        X : ndarray of shape (N, H, W, 3) or (H, W, 3), torch.Tensor, or list of tiles, optional
            Tiles of the style to augment around, uint8 or float in [0, 1]. Without them the
            normalizer must be fitted already.
        y : ignored

        Returns
        -------
        self

        Raises
        ------
        ValueError
            If the normalizer has no stain matrix (not Macenko or Vahadane), or the tiles
            hold no H&E tissue.
        sklearn.exceptions.NotFittedError
            If ``X`` is None and the normalizer is not fitted.
        """
        self._validate_params()
        normalizer = self.normalizer
        if normalizer is None or isinstance(normalizer, str):
            normalizer = make_normalizer(normalizer or "macenko")
        if X is not None:
            normalizer = clone(normalizer).fit(X)
        elif not hasattr(normalizer, "stain_matrix_"):
            raise NotFittedError(
                f"normalizer: this {type(normalizer).__name__} is not fitted; fit it, or pass "
                "tiles to StainAugmenter.fit"
            )
        self.stain_matrix_ = check_stain_matrix(normalizer.stain_matrix_, "stain_matrix_")
        self.lambda1_ = float(normalizer._separation_penalty())
        self.io_ = float(normalizer.io)
        return self

    def _validate_params(self) -> None:
        super()._validate_params()
        for name in ("sigma1", "sigma2"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float, np.floating)) and 0 <= value < 1):
                raise ValueError(f"{name}: expected a number in [0, 1), got {value!r}")
        normalizer = self.normalizer
        if isinstance(normalizer, str) and normalizer not in STAIN_METHODS:
            raise ValueError(f"normalizer: expected one of {STAIN_METHODS}, got {normalizer!r}")
        if not (normalizer is None or isinstance(normalizer, str)) and not hasattr(
            normalizer, "_separation_penalty"
        ):
            raise ValueError(
                "normalizer: expected a MacenkoNormalizer or VahadaneNormalizer (a method with a "
                f"stain matrix), got {type(normalizer).__name__}"
            )

    def _fitted_state_problem(self) -> str | None:
        """Whether the stain matrix separates two stains (:func:`check_stain_matrix`)."""
        try:
            check_stain_matrix(self.stain_matrix_, "stain_matrix_")
        except ValueError as err:
            return str(err)
        return None

    def _is_identity(self) -> bool:
        return self.sigma1 == 0 and self.sigma2 == 0

    def _draw(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        return draw_stain_jitter(rng, n, float(self.sigma1), float(self.sigma2))

    tissue_only = True

    def _io(self) -> float:
        return self.io_

    def _map_od(self, xp: Any, od: Any, params: dict[str, np.ndarray]) -> Any:
        return _jittered_od(
            xp, od, self.stain_matrix_, params["alpha"], params["beta"], self.lambda1_
        )
