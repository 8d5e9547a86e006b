"""Vahadane et al. 2016 stain normalization: stain matrix by sparse non-negative factorization.

**Algorithm** (tags as in the project's algorithm specifications: [V] checked against
published code, [R] from the paper, [C] our choice)

1. [V] Optical density ``OD = -ln((I + 1) / io)`` (:mod:`stainstyle.color.od`) with
   ``io = 255``, the paper's and staintools' blank field for 8-bit images (staintools:
   ``max(-ln(max(I, 1) / 255), 1e-6)``). [C] Not Macenko's 240: the sparse factorization is
   sensitive to the offset, and with 240 the eosin vector moves 3-12 degrees away from
   staintools' on the parity images.
2. [C] Tissue pixels: the shared rule of :mod:`stainstyle.tissue` (optical density >= ``beta``
   = 0.15 in some channel, not black). staintools keeps pixels of CIE L* < 80 (OpenCV's 8-bit
   Lab, ``luminosity_threshold=0.8``), a near-identical set on H&E; Macenko's every-channel
   filter would drop pale eosin, which the factorization needs.
3. [V] Stain matrix: the two-atom sparse non-negative dictionary of the tissue optical
   densities, ``min 0.5 * ||x - D a||^2 + lambda1 * ||a||_1`` over ``D >= 0`` with columns of
   norm <= 1 and codes ``a >= 0``, ``lambda1 = 0.1`` (the paper; staintools calls SPAMS
   ``trainDL(K=2, lambda1=0.1, mode=2, modeD=0, posAlpha=True, posD=True)``).
   [C] Solved by batch alternating minimization (:mod:`stainstyle.methods._sparse_nmf`) on a
   random sample of ``n_pixels`` = 16384 tissue pixels (``random_state``), from Ruifrok &
   Johnston's H&E matrix, for at most ``max_iter`` passes, to the optimum of the objective.
   The sample's optimum is within 0.6 degrees per stain of the optimum over all tissue pixels
   (staintools' data) on the parity images. No SPAMS and no scikit-learn internals: numpy,
   deterministic for a given ``random_state``. SPAMS (staintools) runs online updates for one
   second instead and stops short of the optimum: on CAMELYON17 tile center_2/14011 its stain
   vectors lie 2-4 degrees from those of SPAMS run to convergence (``trainDL(batch=True)``,
   which agree with ours within 0.3 degrees there and 0.7 on all five parity images), more so
   on a loaded machine, and its normalizations differ from converged staintools by 2-5 gray
   levels where ours differ by 0.8-1.6. Parity with staintools
   (``benchmarks/vahadane_parity.py``) is therefore bounded by its own convergence, not by
   this solver.
4. [V] Order: hematoxylin is the atom with the larger red optical density (staintools, and
   Macenko's rule); columns are scaled to unit norm. [C] The tile holds a single stain (and is
   passed through) when an atom has no pixel or the two atoms are within 1 degree.
5. [V] Concentrations: the non-negative lasso ``argmin_{c >= 0} 0.5 * ||OD - S c||^2 +
   lambda_lasso * sum(c)`` with ``lambda_lasso = 0.01`` (staintools: SPAMS ``lasso(mode=2,
   lambda1=0.01, pos=True)``), for every pixel. [C] Solved exactly in closed form for two stains
   (:func:`stainstyle.separation.nonnegative_lasso`, an active-set case analysis), not
   iteratively; on the parity images it equals ``spams.lasso`` to within 5e-5.
6. [V] Maximum concentrations: the exact 99th percentile of each stain's concentrations over
   all pixels, background included (staintools; the paper scales by "robust pseudo-maximum"
   concentrations).
   [C] ``tissue_only=True`` takes it over the tissue pixels only, as Macenko's option does.
7. [V] ``fit`` estimates steps 1-6 on the pooled target pixels; ``transform`` on each tile (or
   once per slide or group), then rebuilds ``I = io * exp(-S_target @ (c * maxC_target /
   maxC_source))``. [C] Clipped to [0, 255] and rounded (staintools truncates with
   ``astype(uint8)``); a stain whose source maximum is <= 1e-6 is left unscaled.

Edge cases: fewer tissue pixels than ``max(100, 0.5 %)`` of the tile, or a single stain:
passthrough (``fit`` raises). Tiles larger than 2048 x 2048 pixels are read strip by strip for
the sample and the percentiles (exact), so memory stays bounded.

**Sources:** Vahadane et al., "Structure-preserving color normalization and sparse stain
separation for histological images", IEEE TMI 35(8):1962-1971, 2016; Peter554/StainTools 2.1.2
``staintools/stain_extraction/vahadane_stain_extractor.py``, ``stain_normalizer.py``,
``miscellaneous/get_concentrations.py``, ``miscellaneous/optical_density_conversion.py``,
``tissue_masks/luminosity_threshold_tissue_locator.py``; SPAMS ``trainDL`` and ``lasso``
documentation (Mairal et al., JMLR 11:19-60, 2010).
"""

from __future__ import annotations

from numbers import Integral, Real

import cv2
import numpy as np
from sklearn.utils._param_validation import Interval

from stainstyle._fitted import FittedArray, columns_of_positive_norm
from stainstyle.base import StainNormalizer
from stainstyle.color.od import od_lut
from stainstyle.color.quantize import float_to_uint8, row_strips
from stainstyle.methods._macenko_pixels import (
    IN_MEMORY_PIXELS,
    ODStream,
    sorted_percentiles,
    stream_percentiles,
)
from stainstyle.methods._sparse_nmf import learn_dictionary
from stainstyle.methods._stains import (
    StainSeparationMixin,
    StainSource,
    concentration_scale,
)
from stainstyle.separation import RUIFROK_HE, ClosedFormLasso, tile_concentrations
from stainstyle.sources import UnmodelledSource
from stainstyle.tissue import TISSUE_OD_THRESHOLD, masked_pixels, min_tissue_pixels, tissue_mask

#: Blank-field intensity of Vahadane's optical density: 255, as the paper and staintools.
IO_VAHADANE = 255.0
#: Stain vectors closer than this (cosine of 1 degree) are one stain: the tile is degenerate.
#: Looser than Macenko's 0.995: with its sparsity penalty Vahadane's two stains of real tissue
#: can lie 4-6 degrees apart (SPAMS agrees), and the non-negative lasso stays well posed.
_MAX_STAIN_COSINE = float(np.cos(np.radians(1.0)))
#: The factorization stops once no stain-matrix entry moves by more than this in a pass.
_TOL = 2e-4
#: Tissue pixels sampled to learn a stain matrix. The sample's optimum is within 0.6 degrees
#: per stain of the optimum over all tissue pixels on the parity images (five samples each);
#: 2048 pixels gave 1.2 degrees, and 8.6 on the torchstain target (another local optimum).
N_PIXELS = 1 << 14


def vahadane_stain_matrix(
    od_tissue: np.ndarray,
    *,
    lambda1: float = 0.1,
    n_pixels: int = N_PIXELS,
    max_iter: int = 100,
    random_state: int | None = 0,
) -> tuple[np.ndarray, bool]:
    """Estimate the H&E stain matrix from tissue optical densities (Vahadane steps 3 and 4).

    Parameters
    ----------
    od_tissue : ndarray of shape (M, 3), float
        Optical densities of tissue pixels, M >= 1.
    lambda1 : float, default=0.1
        l1 penalty of the sparse codes.
    n_pixels : int, default=16384
        Size of the random sample of pixels the dictionary is learned on (all when fewer).
    max_iter : int, default=100
        Most alternating passes.
    random_state : int or None, default=0
        Seed of the sample; None draws a fresh one.

    Returns
    -------
    stain_matrix : ndarray of shape (3, 2), dtype float64
        Non-negative unit stain vectors as columns, hematoxylin (larger red optical density)
        first; rows R, G, B.
    degenerate : bool
        True when the pixels hold one stain only (an atom unused, or both within 1 degree);
        the matrix must not be used then.

    Examples
    --------
    >>> import numpy as np
    >>> from stainstyle.separation import RUIFROK_HE
    >>> rng = np.random.default_rng(0)
    >>> od = rng.exponential(0.5, (2000, 2)) * (rng.random((2000, 2)) < 0.7) @ RUIFROK_HE.T
    >>> stains, degenerate = vahadane_stain_matrix(od[od.max(axis=1) > 0.15])
    >>> bool(degenerate), (stains.T @ RUIFROK_HE).diagonal().round(3).tolist()
    (False, [1.0, 1.0])
    """
    od = np.asarray(od_tissue, dtype=np.float64).reshape(-1, 3)
    ranks = _sample_ranks(len(od), n_pixels, np.random.default_rng(random_state))
    return _ordered_stains(od if ranks is None else od[ranks], lambda1, max_iter)


def _sample_ranks(n: int, n_pixels: int, rng: np.random.Generator) -> np.ndarray | None:
    """Sorted ranks of a uniform sample of ``n_pixels`` of ``n`` pixels; None to take all."""
    return None if n <= n_pixels else np.sort(rng.choice(n, n_pixels, replace=False))


def _ordered_stains(sample: np.ndarray, lambda1: float, max_iter: int) -> tuple[np.ndarray, bool]:
    """The dictionary of a pixel sample, H first, unit columns, and whether it is degenerate."""
    dictionary = learn_dictionary(sample, RUIFROK_HE, lambda1, max_iter, _TOL)
    stains = dictionary.atoms
    if stains[0, 0] < stains[0, 1]:
        stains = stains[:, ::-1]
    norms = np.linalg.norm(stains, axis=0)
    unused = not dictionary.used.all() or np.any(norms == 0)
    stains = stains / np.where(norms == 0, 1.0, norms)
    degenerate = bool(unused or stains[:, 0] @ stains[:, 1] > _MAX_STAIN_COSINE)
    return np.ascontiguousarray(stains), degenerate


def _tissue_pixels(
    images: list[np.ndarray], masks: list[np.ndarray], ranks: np.ndarray | None
) -> np.ndarray:
    """The uint8 pixels ``(m, 3)`` of the given ranks among the images' tissue pixels.

    ``masks`` are the images' flat tissue masks; ranks count tissue pixels in row-major order,
    image after image; None takes them all.
    """
    picked, offset = [], 0
    for image, mask in zip(images, masks, strict=True):
        where = np.flatnonzero(mask)
        if ranks is not None:
            lo, hi = np.searchsorted(ranks, [offset, offset + len(where)])
            where, offset = where[ranks[lo:hi] - offset], offset + len(where)
        picked.append(image.reshape(-1, 3)[where])
    return _joined(picked)


def _streamed_tissue_sample(stream: ODStream, ranks: np.ndarray | None) -> np.ndarray:
    """The optical densities ``(m, 3)`` of the given ranks among a stream's tissue pixels.

    Ranks count tissue pixels in stream order (as :func:`_tissue_pixels`), so a streamed image
    gives the same sample as the same image held whole; None takes them all.
    """
    picked, offset = [], 0
    for tissue, _ in stream.chunks(tissue=True):
        if ranks is None:
            picked.append(tissue)
        else:
            lo, hi = np.searchsorted(ranks, [offset, offset + len(tissue)])
            picked.append(tissue[ranks[lo:hi] - offset])
        offset += len(tissue)
    return np.concatenate(picked)


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


class VahadaneNormalizer(StainSeparationMixin, StainNormalizer):
    """Vahadane stain normalization: sparse non-negative stain separation, target stains.

    Each tile's H and E stain vectors are learned as the sparse non-negative dictionary of its
    tissue optical densities, its concentrations (a non-negative lasso per pixel) are rescaled
    so that their 99th percentiles match the target's, and the tile is rebuilt with the target
    stain vectors, ``I = io * exp(-S_target @ C')``. The module docstring gives the algorithm
    step by step, with its sources and deviations.

    Parameters
    ----------
    lambda1 : float, default=0.1
        l1 penalty of the sparse codes while learning the stain matrix (the paper, staintools).
    lambda_lasso : float, default=0.01
        l1 penalty of the concentrations (staintools' ``get_concentrations``); 0 gives
        non-negative least squares.
    io : float, default=255
        Blank-field intensity of ``OD = -ln((I + 1) / io)``, 255 as the paper and staintools
        (Macenko's reference uses 240).
    beta : float, default=0.15
        Minimum optical density, in some channel, of the pixels the stain matrix is learned on
        (the shared tissue rule).
    n_pixels : int, default=16384
        Tissue pixels sampled (at random, ``random_state``) to learn each stain matrix; all of
        them when fewer. ``fit`` samples this many from the pooled targets.
    max_iter : int, default=100
        Most alternating passes of the factorization (it stops earlier once converged).
    random_state : int or None, default=0
        Seed of the pixel sample, the same for every tile; None draws a fresh one each time
        (not reproducible).
    tissue_only : bool, default=False
        Take the 99th concentration percentile over tissue pixels only instead of over all
        pixels (as staintools does).
    background : {"passthrough", "raise"}, default="passthrough"
        Policy for tiles with too little tissue or a single stain (see
        :class:`~stainstyle.base.StainNormalizer`).
    batch_size : int, default=32
        Tiles processed at once.

    Attributes
    ----------
    stain_matrix_ : ndarray of shape (3, 2), dtype float64
        Target stain vectors (columns H, E; rows R, G, B), non-negative, unit norm.
    max_concentrations_ : ndarray of shape (2,), dtype float64
        Target 99th-percentile concentrations of H and E.

    See Also
    --------
    vahadane_stain_matrix : The stain-matrix estimate, as a function.
    stainstyle.separation.separate_stains : Concentration maps for a given stain matrix.
    MacenkoNormalizer : Stain vectors from the optical-density plane instead.

    Notes
    -----
    Source statistics (``source_statistics``, ``transform(X, groups=...)``) are a
    :class:`~stainstyle.methods._stains.StainSource`, as Macenko's. ``stain_concentrations``
    gives the H and E maps of tiles.

    References
    ----------
    Vahadane et al., "Structure-preserving color normalization and sparse stain separation for
    histological images", IEEE Transactions on Medical Imaging 35(8):1962-1971, 2016.

    Examples
    --------
    >>> from stainstyle.data.synthetic import make_tiles
    >>> target, _ = make_tiles(2, "radboud", size=64, seed=0)
    >>> normalizer = VahadaneNormalizer().fit(target)
    >>> normalizer.stain_matrix_.shape, normalizer.transform(target[0]).shape
    ((3, 2), (64, 64, 3))
    """

    _parameter_constraints: dict = {
        **StainNormalizer._parameter_constraints,
        "lambda1": [Interval(Real, 0, None, closed="neither")],
        "lambda_lasso": [Interval(Real, 0, None, closed="left")],
        "io": [Interval(Real, 1, None, closed="left")],
        "beta": [Interval(Real, 0, None, closed="left")],
        "n_pixels": [Interval(Integral, 2, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "random_state": [Interval(Integral, 0, None, closed="left"), None],
        "tissue_only": ["boolean"],
    }
    _fitted_attributes: dict = {
        "stain_matrix_": FittedArray(
            (3, 2), minimum=0, maximum=1.0 + 1e-6, rule=columns_of_positive_norm
        ),
        "max_concentrations_": FittedArray((2,), minimum=0, exclusive_minimum=True, maximum=1e3),
    }
    _fit_dependent_params = (
        "lambda1",
        "lambda_lasso",
        "io",
        "beta",
        "n_pixels",
        "max_iter",
        "random_state",
        "tissue_only",
    )
    _machine_local_params = ()
    _colour_table = True

    def __init__(
        self,
        *,
        lambda1: float = 0.1,
        lambda_lasso: float = 0.01,
        io: float = IO_VAHADANE,
        beta: float = TISSUE_OD_THRESHOLD,
        n_pixels: int = N_PIXELS,
        max_iter: int = 100,
        random_state: int | None = 0,
        tissue_only: bool = False,
        background: str = "passthrough",
        batch_size: int = 32,
    ):
        self.lambda1 = lambda1
        self.lambda_lasso = lambda_lasso
        self.io = io
        self.beta = beta
        self.n_pixels = n_pixels
        self.max_iter = max_iter
        self.random_state = random_state
        self.tissue_only = tissue_only
        self.background = background
        self.batch_size = batch_size

    def _separation_penalty(self) -> float:
        return float(self.lambda_lasso)

    def _estimate(
        self, images: list[np.ndarray], needed: int
    ) -> tuple[StainSource, np.ndarray | None]:
        """Vahadane's steps 1 to 6 on the pooled pixels of ``images``.

        Returns the estimate and, when the images are held whole (at most
        :data:`~stainstyle.methods._macenko_pixels.IN_MEMORY_PIXELS` pixels together), the
        concentrations of all their pixels ``(n, 2)`` float32 (for the transform to reuse),
        else None. Held whole, no optical-density array of the images is built: the sample's
        pixels are gathered as uint8 and the concentrations computed strip by strip.

        Raises
        ------
        UnmodelledSource
            If fewer than ``needed`` pixels are tissue, or one stain only is found.
        """
        if sum(image.shape[0] * image.shape[1] for image in images) > IN_MEMORY_PIXELS:
            return self._streamed_estimate(ODStream(images, self.io, self.beta, False), needed)
        masks = [tissue_mask(image, self.io, self.beta, False).reshape(-1) for image in images]
        ranks = self._sample_ranks(sum(int(np.count_nonzero(mask)) for mask in masks), needed)
        lut = od_lut(self.io, np.float32)
        stains = self._stains(cv2.LUT(_tissue_pixels(images, masks, ranks), lut))
        lasso = ClosedFormLasso.of(stains, self.lambda_lasso)
        held = _joined([tile_concentrations(im, lasso, self.io).reshape(-1, 2) for im in images])
        measured = masked_pixels(held, np.concatenate(masks)) if self.tissue_only else held
        maxc = np.array([sorted_percentiles(measured[:, k], [99.0])[0] for k in range(2)])
        return StainSource(stain_matrix=stains, max_concentrations=maxc), held

    def _streamed_estimate(self, stream: ODStream, needed: int) -> tuple[StainSource, None]:
        """:meth:`_estimate` of images too large to hold whole, in strips."""
        survey = stream.survey()
        ranks = self._sample_ranks(survey.n_tissue, needed)
        stains = self._stains(_streamed_tissue_sample(stream, ranks))
        lasso = ClosedFormLasso.of(stains, self.lambda_lasso)
        jobs = [(lambda od, k=k: lasso(od)[:, k], [99.0], None) for k in range(2)]
        found = stream_percentiles(stream, survey, self.tissue_only, jobs)
        maxc = np.array([p[0] for p in found])
        return StainSource(stain_matrix=stains, max_concentrations=maxc), None

    def _sample_ranks(self, n_tissue: int, needed: int) -> np.ndarray | None:
        """Ranks of the sampled tissue pixels (:func:`_sample_ranks`), once enough are tissue."""
        if n_tissue < needed:
            raise UnmodelledSource(
                f"hold {n_tissue} tissue pixels (an optical density of at least "
                f"beta={self.beta} in some channel), at least {needed} are needed; are they "
                "pale or blank?"
            )
        return _sample_ranks(n_tissue, self.n_pixels, np.random.default_rng(self.random_state))

    def _stains(self, sample: np.ndarray) -> np.ndarray:
        """The stain matrix ``(3, 2)`` learned on a pixel sample ``(m, 3)``."""
        stains, degenerate = _ordered_stains(sample, self.lambda1, self.max_iter)
        if degenerate:
            raise UnmodelledSource("hold a single stain (the two learned stain vectors coincide)")
        return stains

    def _needs_tissue_mask(self) -> bool:
        return False  # the estimate applies its own tissue rule (beta)

    def _transform_tile(self, tile: np.ndarray, source: StainSource | None) -> np.ndarray | None:
        """Normalize one tile with the source's stains, or its own; None when it has none."""
        held = None
        if source is None:
            try:
                source, held = self._estimate([tile], min_tissue_pixels(*tile.shape[:2]))
            except UnmodelledSource:
                return None
        scale = concentration_scale(source.max_concentrations, self.max_concentrations_)
        # I = io * exp(-S_target @ diag(scale) @ c): one 3x3 affine map of the concentrations
        rebuild = np.hstack([-self.stain_matrix_ * scale, np.full((3, 1), np.log(self.io))])
        rebuild = rebuild.astype(np.float32)
        lasso = ClosedFormLasso.of(source.stain_matrix, self.lambda_lasso)
        concentrations = None if held is None else held.reshape(*tile.shape[:2], 2)
        lut = od_lut(self.io, np.float32)
        out = np.empty(tile.shape, dtype=np.uint8)
        for rows in row_strips(tile.shape):
            if concentrations is None:
                strip = lasso(cv2.LUT(tile[rows], lut).reshape(-1, 3)).reshape(-1, 1, 2)
            else:
                strip = concentrations[rows].reshape(-1, 1, 2)
            mapped = cv2.exp(cv2.transform(strip, rebuild))
            out[rows] = float_to_uint8(mapped).reshape(out[rows].shape)
        return out

    def _tensor_stains(self, od, pixels, needed: int):
        from stainstyle.methods._stain_tensors import vahadane_stains

        return vahadane_stains(
            od,
            pixels,
            io=self.io,
            beta=self.beta,
            lambda_lasso=self.lambda_lasso,
            n_pixels=self.n_pixels,
            random_state=self.random_state,
            tissue_only=self.tissue_only,
            needed=needed,
            sample_ranks=_sample_ranks,
            learn=lambda sample: _ordered_stains(sample, self.lambda1, self.max_iter),
        )

    def _tensor_mapped(self, od, source):
        from stainstyle.methods._stain_tensors import vahadane_mapped

        return vahadane_mapped(
            od,
            source,
            self.stain_matrix_,
            self.max_concentrations_,
            self.io,
            self.lambda_lasso,
        )
