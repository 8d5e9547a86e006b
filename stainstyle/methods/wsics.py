"""WSICS: whole-slide image colour standardization (Ehteshami Bejnordi et al. 2016).

Pixels are classified into hematoxylin, eosin and background from colour and from nuclei found
in the density image (:mod:`stainstyle.methods._wsics_labels`). Per class, the chromaticity
``(c_x, c_y)`` of the hue-saturation-density model is centred, rotated onto its major axis and
matched piecewise-linearly at landmark percentiles, and the density is matched by mean and
standard deviation; the three class mappings are blended by soft naive-Bayes class weights
(:mod:`stainstyle.methods._wsics_model`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.utils._param_validation import Interval

from stainstyle._fitted import FittedArray, FittedInt, non_decreasing, positive_entries
from stainstyle._validation import Tiles
from stainstyle.base import StainNormalizer
from stainstyle.color.hsd import rgb_to_hsd
from stainstyle.methods._wsics_labels import (
    LABEL_BACKGROUND,
    LABEL_EOSIN,
    LABEL_HEMATOXYLIN,
    label_stain_classes,
    min_nuclei,
    pack_rgb,
)
from stainstyle.methods._wsics_model import (
    EOSIN,
    HEMATOXYLIN,
    ClassStatistics,
    NaiveBayesTables,
    class_statistics,
    fit_naive_bayes,
    map_colours,
    naive_bayes_features,
)
from stainstyle.tissue import is_background, tissue_mask

logger = logging.getLogger(__name__)

#: Most labelled pixels pooled per group (``max_training`` of the reference code), split into
#: quotas of 45 % hematoxylin, 45 % eosin and 10 % background.
MAX_TRAINING_PIXELS = 20_000_000
CLASS_QUOTAS = (0.45, 0.45, 0.10)

#: Fewest pixels the naive-Bayes histograms are built from, when the pool has them.
NAIVE_BAYES_MIN_SAMPLES = 10_000

_LABELS = (LABEL_HEMATOXYLIN, LABEL_EOSIN, LABEL_BACKGROUND)


@dataclass(frozen=True)
class WSICSSourceModel:
    """Source statistics and class weighting of one group of tiles.

    Attributes
    ----------
    statistics : ClassStatistics
        Per-class chromatic and density statistics.
    tables : NaiveBayesTables
        The soft class weighting of its colours.
    """

    statistics: ClassStatistics
    tables: NaiveBayesTables


@dataclass(frozen=True)
class LabelledPixels:
    """Labelled pixels pooled over a group of tiles.

    Attributes
    ----------
    samples : list of 3 ndarrays of shape (n_k, 3), dtype float64
        ``(c_x, c_y, D)`` of the hematoxylin, eosin and background pixels.
    n_nuclei : int
        Nuclei detected in the tiles used.
    n_tiles : int
        Tiles used (with tissue and enough nuclei).
    """

    samples: list[np.ndarray]
    n_nuclei: int
    n_tiles: int


def _keep_smallest_keys(
    parts: list[np.ndarray], keys: list[np.ndarray], limit: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Concatenate pixel arrays, keeping the ``limit`` with the smallest random keys.

    Keys drawn uniformly once per pixel make this a uniform sample without replacement of all
    pixels seen, however often it is applied, so the memory of a large group stays bounded.
    """
    values = np.concatenate(parts) if parts else np.empty((0, 3))
    key = np.concatenate(keys) if keys else np.empty(0)
    if len(values) > limit:
        chosen = np.argpartition(key, limit)[:limit]
        values, key = values[chosen], key[chosen]
    return [values], [key]


def wsics_pool(
    tiles: Iterable[np.ndarray], microns_per_pixel: float, random_state: int | None = 2000
) -> LabelledPixels:
    """Label the pixels of tiles and pool them per class.

    Background tiles (too little tissue) and tiles with no more nuclei than
    :func:`~stainstyle.methods._wsics_labels.min_nuclei` requires are skipped.

    Parameters
    ----------
    tiles : iterable of ndarray of shape (H, W, 3), dtype uint8
    microns_per_pixel : float
        Pixel size.
    random_state : int or None
        Seed of the eosin-seed subsampling (the same for every tile) and of the quota
        subsampling (a uniform sample of at most 45 %, 45 % and 10 % of
        :data:`MAX_TRAINING_PIXELS` hematoxylin, eosin and background pixels).

    Returns
    -------
    LabelledPixels
    """
    rng = np.random.default_rng(random_state)
    limits = [int(quota * MAX_TRAINING_PIXELS) for quota in CLASS_QUOTAS]
    parts: list[list[np.ndarray]] = [[], [], []]
    keys: list[list[np.ndarray]] = [[], [], []]
    sizes = [0, 0, 0]
    n_nuclei = n_tiles = 0
    for tile in tiles:
        if is_background(tissue_mask(tile)[None])[0]:
            continue
        labels = label_stain_classes(tile, microns_per_pixel, np.random.default_rng(random_state))
        if labels.n_nuclei <= min_nuclei(*tile.shape[:2], microns_per_pixel):
            continue
        n_nuclei += labels.n_nuclei
        n_tiles += 1
        for k, label in enumerate(_LABELS):
            values = labels.hsd[labels.labels == label]
            parts[k].append(values)
            keys[k].append(rng.random(len(values)))
            sizes[k] += len(values)
            if sizes[k] > 2 * limits[k]:
                parts[k], keys[k] = _keep_smallest_keys(parts[k], keys[k], limits[k])
                sizes[k] = limits[k]
    samples = []
    for k in range(3):
        parts[k], keys[k] = _keep_smallest_keys(parts[k], keys[k], limits[k])
        samples.append(parts[k][0])
    return LabelledPixels(samples=samples, n_nuclei=n_nuclei, n_tiles=n_tiles)


def wsics_source_model(pool: LabelledPixels, min_class_pixels: int) -> WSICSSourceModel | None:
    """Class statistics and naive-Bayes weighting of pooled source pixels.

    Parameters
    ----------
    pool : LabelledPixels
        From :func:`wsics_pool`.
    min_class_pixels : int
        Hematoxylin and eosin pixels needed.

    Returns
    -------
    WSICSSourceModel or None
        None when the pool has too few hematoxylin or eosin pixels.
    """
    if min(len(pool.samples[HEMATOXYLIN]), len(pool.samples[EOSIN])) < min_class_pixels:
        return None
    statistics = class_statistics(pool.samples)
    hsd = np.concatenate(pool.samples)
    classes = np.repeat(np.arange(3), [len(s) for s in pool.samples])
    # The reference code trains the weighting on every 20th to 50th pixel of its slide-level
    # pool; here every 20th at most, and never fewer than NAIVE_BAYES_MIN_SAMPLES when available.
    stride = max(1, min(20, len(hsd) // NAIVE_BAYES_MIN_SAMPLES))
    tables = fit_naive_bayes(naive_bayes_features(hsd[::stride]), classes[::stride])
    return WSICSSourceModel(statistics=statistics, tables=tables)


@dataclass(frozen=True)
class _Group:
    """Context of one group in ``transform(X, groups)``: its source model, or None."""

    model: WSICSSourceModel | None


class WSICSNormalizer(StainNormalizer):
    """Stain-specific colour standardization in HSD space (WSICS).

    ``fit`` labels the pixels of all target tiles as hematoxylin, eosin or background and pools
    them into one template: per class the chromatic median, major-axis angle and landmark
    percentiles, and the density mean and spread. ``transform`` computes the same statistics for
    each source tile, or for each group of tiles (e.g. all tiles of a slide, as WSICS was designed
    for whole slides), and maps every distinct colour once.

    Parameters
    ----------
    microns_per_pixel : float, default=0.5
        Pixel size of the tiles; sets the nucleus radius range ``[floor(1.94/s), ceil(4.86/s)]``
        pixels and the number of nuclei a tile must exceed (150 per 497.7 x 497.7 um).
    min_class_pixels : int, default=500
        Hematoxylin and eosin pixels a tile (or group) needs; fewer pass it through.
    random_state : int or None, default=2000
        Seed of the eosin-seed and quota subsampling (2000 as in the reference code).
    background : {"passthrough", "raise"}, default="passthrough"
        Policy for tiles with too little tissue or that WSICS cannot model (too few nuclei, too
        few hematoxylin or eosin pixels); see :class:`~stainstyle.base.StainNormalizer`.
    batch_size : int, default=32
        Tiles processed at once.

    Attributes
    ----------
    medians_ : ndarray of shape (3, 2)
        Template chromatic median ``(c_x, c_y)`` of hematoxylin, eosin and background.
    angles_ : ndarray of shape (2,)
        Template major-axis angle (radians) of hematoxylin and eosin.
    landmarks_ : ndarray of shape (2, 2, 7)
        Template landmarks (min, P1, P25, P50, P75, P99, max) per stain and rotated axis.
    density_mean_, density_std_ : ndarray of shape (3,)
        Template density mean and standard deviation per class.
    class_counts_ : ndarray of shape (3,), dtype int64
        Pooled template pixels per class.
    n_nuclei_ : int
        Nuclei detected in the template tiles used.
    n_tiles_fit_ : int
        Template tiles used (with tissue and enough nuclei).

    See Also
    --------
    stainstyle.color.hsd.rgb_to_hsd : The colour model.
    wsics_pool, wsics_source_model : The function twins of the statistics.

    Notes
    -----
    Corrections of the reference C++ code (computationalpathologygroup/WSICS), each marked in the
    code: a proper 2-D rotation, density scaled by ``std_template / std_source``, rejected
    nuclei contribute no hematoxylin seeds, canonical major-axis direction, all 7 landmarks for
    both stains. Nuclei are found by a Laplacian-of-Gaussian blob detector instead of the
    reference's randomized Hough ellipse fit.

    References
    ----------
    .. [1] B. Ehteshami Bejnordi, G. Litjens, N. Timofeeva, I. Otte-Holler, A. Homeyer,
       N. Karssemeijer and J. van der Laak, "Stain specific standardization of whole-slide
       histopathological images", IEEE Trans. Med. Imaging 35(2):404-415, 2016.

    Examples
    --------
    A pink (eosin) tile with 25 purple (hematoxylin) nuclei of radius 5 px at 0.5 um/px:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> yy, xx = np.mgrid[:128, :128]
    >>> tile = np.empty((128, 128, 3))
    >>> tile[:] = (235, 150, 190)
    >>> for cy, cx in rng.integers(8, 120, size=(25, 2)):
    ...     tile[(yy - cy) ** 2 + (xx - cx) ** 2 <= 25] = (90, 60, 150)
    >>> tile = np.clip(tile + rng.normal(0, 6, tile.shape), 0, 255).astype(np.uint8)
    >>> normalizer = WSICSNormalizer(microns_per_pixel=0.5).fit(tile)
    >>> normalizer.n_nuclei_
    24
    >>> out = normalizer.transform(tile)
    >>> out.shape, bool(np.abs(out.astype(int) - tile).mean() < 1)
    ((128, 128, 3), True)
    """

    _parameter_constraints: dict = {
        **StainNormalizer._parameter_constraints,
        "microns_per_pixel": [Interval(Real, 0, None, closed="neither")],
        "min_class_pixels": [Interval(Integral, 1, None, closed="left")],
        "random_state": [None, Interval(Integral, 0, None, closed="left")],
    }
    _fitted_attributes: dict = {
        "medians_": FittedArray((3, 2), maximum_abs=10),
        "angles_": FittedArray((2,), maximum_abs=np.pi),
        "landmarks_": FittedArray((2, 2, 7), maximum_abs=10, rule=non_decreasing),
        "density_mean_": FittedArray((3,), maximum_abs=1e3),
        "density_std_": FittedArray((3,), minimum=0, maximum=1e3),
        "class_counts_": FittedArray(
            (3,), kinds="iu", minimum=0, maximum=2**53, rule=positive_entries(0, 1)
        ),
        "n_nuclei_": FittedInt(0, 2**53),
        "n_tiles_fit_": FittedInt(1, 2**53),
    }
    _fit_dependent_params = ("microns_per_pixel", "min_class_pixels", "random_state")
    _machine_local_params = ()

    def __init__(
        self,
        *,
        microns_per_pixel: float = 0.5,
        min_class_pixels: int = 500,
        random_state: int | None = 2000,
        background: str = "passthrough",
        batch_size: int = 32,
    ):
        self.microns_per_pixel = microns_per_pixel
        self.min_class_pixels = min_class_pixels
        self.random_state = random_state
        self.background = background
        self.batch_size = batch_size

    # ------------------------------------------------------------------ estimator hooks
    def _fit(self, tiles: Tiles, y: Any) -> None:
        pool = self._pool(tile for _, batch in tiles.batches(self.batch_size) for tile in batch)
        counts = [len(s) for s in pool.samples]
        if pool.n_tiles == 0 or min(counts[HEMATOXYLIN], counts[EOSIN]) < self.min_class_pixels:
            raise ValueError(
                f"X: WSICS needs target tiles with tissue, nuclei and at least "
                f"{self.min_class_pixels} hematoxylin and eosin pixels; got {pool.n_tiles} of "
                f"{len(tiles)} tiles with enough nuclei and {counts[HEMATOXYLIN]} hematoxylin, "
                f"{counts[EOSIN]} eosin pixels (is microns_per_pixel={self.microns_per_pixel} "
                "right for these tiles?)"
            )
        template = class_statistics(pool.samples)
        self.medians_ = template.medians
        self.angles_ = template.angles
        self.landmarks_ = template.landmarks
        self.density_mean_ = template.density_mean
        self.density_std_ = template.density_std
        self.class_counts_ = template.counts
        self.n_nuclei_ = pool.n_nuclei
        self.n_tiles_fit_ = pool.n_tiles
        logger.info(
            "WSICS template from %d tiles: %d nuclei, %s pixels per class",
            pool.n_tiles,
            pool.n_nuclei,
            counts,
        )

    def _group_context(self, tiles: Tiles, members: np.ndarray) -> _Group:
        batches = (batch for _, batch in tiles.batches(self.batch_size, members))
        return _Group(self._source_model(tile for batch in batches for tile in batch))

    def _needs_tissue_mask(self) -> bool:
        return False

    def _transform_batch(
        self, batch: np.ndarray, tissue: np.ndarray, group: _Group | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        out = np.empty_like(batch)
        if group is not None:
            degenerate = np.full(len(batch), group.model is None)
            if group.model is not None:
                out = self._map(batch, group.model)
            return out, degenerate
        degenerate = np.zeros(len(batch), dtype=bool)
        for i, tile in enumerate(batch):
            model = self._source_model([tile])
            if model is None:
                degenerate[i] = True
            else:
                out[i] = self._map(tile, model)
        return out, degenerate

    # ------------------------------------------------------------------ helpers
    def _pool(self, tiles: Iterable[np.ndarray]) -> LabelledPixels:
        return wsics_pool(tiles, self.microns_per_pixel, self.random_state)

    def _source_model(self, tiles: Iterable[np.ndarray]) -> WSICSSourceModel | None:
        return wsics_source_model(self._pool(tiles), self.min_class_pixels)

    def _template(self) -> ClassStatistics:
        return ClassStatistics(
            medians=self.medians_,
            angles=self.angles_,
            landmarks=self.landmarks_,
            density_mean=self.density_mean_,
            density_std=self.density_std_,
            counts=self.class_counts_,
        )

    def _map(self, images: np.ndarray, model: WSICSSourceModel) -> np.ndarray:
        """Map uint8 RGB ``(..., 3)`` through the model, once per distinct colour."""
        packed, inverse = np.unique(pack_rgb(images).ravel(), return_inverse=True)
        colours = np.stack([packed >> 16, (packed >> 8) & 255, packed & 255], axis=1)
        mapped = map_colours(
            rgb_to_hsd(colours.astype(np.uint8)), model.tables, model.statistics, self._template()
        )
        return mapped[inverse.ravel()].reshape(images.shape)


__all__ = [
    "LabelledPixels",
    "WSICSNormalizer",
    "WSICSSourceModel",
    "wsics_pool",
    "wsics_source_model",
]
