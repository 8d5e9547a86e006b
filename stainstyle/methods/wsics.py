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
from stainstyle.color.table import map_distinct
from stainstyle.methods._wsics_labels import (
    LABEL_BACKGROUND,
    LABEL_EOSIN,
    LABEL_HEMATOXYLIN,
    label_stain_classes,
    labelling_tiles,
    min_nuclei,
    pack_rgb,
    unpack_rgb,
)
from stainstyle.methods._wsics_model import (
    EOSIN,
    HEMATOXYLIN,
    ClassStatistics,
    NaiveBayesTables,
    colour_class_statistics,
    fit_naive_bayes,
    map_colours,
    naive_bayes_features,
)
from stainstyle.sources import UnmodelledSource
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
    colours : list of 3 ndarrays of shape (n_k,), dtype int32
        Packed RGB (:func:`~stainstyle.methods._wsics_labels.pack_rgb`) of the hematoxylin,
        eosin and background pixels: 4 bytes a pixel instead of 24 for its HSD coordinates,
        which are a function of the colour.
    n_nuclei : int
        Nuclei detected in the tiles used.
    n_tiles : int
        Labelling tiles used (with tissue and enough nuclei); a tile larger than
        :func:`~stainstyle.methods._wsics_labels.labelling_tile_side` counts once per part.
    """

    colours: list[np.ndarray]
    n_nuclei: int
    n_tiles: int

    @property
    def samples(self) -> list[np.ndarray]:
        """``(c_x, c_y, D)`` of the pixels of each class, list of 3 ndarrays ``(n_k, 3)``."""
        return [rgb_to_hsd(unpack_rgb(packed)) for packed in self.colours]

    def class_sizes(self) -> list[int]:
        """Pixels per class: hematoxylin, eosin, background."""
        return [len(packed) for packed in self.colours]


def _keep_smallest_keys(
    parts: list[np.ndarray], keys: list[np.ndarray], limit: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Concatenate pixel arrays, keeping the ``limit`` with the smallest random keys.

    Keys drawn uniformly once per pixel make this a uniform sample without replacement of all
    pixels seen, however often it is applied, so the memory of a large group stays bounded.
    """
    values = _concatenate_releasing(parts, np.int32)
    key = _concatenate_releasing(keys, np.float64)
    if len(values) > limit:
        chosen = np.argpartition(key, limit)[:limit]
        values, key = values[chosen], key[chosen]
    return [values], [key]


def _concatenate_releasing(arrays: list[np.ndarray], dtype) -> np.ndarray:
    """``np.concatenate(arrays)``, emptying the list as it goes so each piece is freed once copied.

    The pool then needs its own size plus one piece, not twice its size.
    """
    if len(arrays) == 1:
        return arrays.pop()
    out = np.empty(sum(len(a) for a in arrays), dtype=dtype)
    start = 0
    while arrays:
        piece = arrays.pop(0)
        out[start : start + len(piece)] = piece
        start += len(piece)
    return out


class _QuotaSample:
    """A uniform sample of at most ``limit`` pixels of one class, kept as the pixels arrive.

    The sample keeps the pixels with the smallest of one uniform random key each. Once it
    outgrows its quota by a quarter it is pruned to it, and from then on only pixels keyed
    below the largest kept key are kept (no other can be among the smallest).
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.parts: list[np.ndarray] = []
        self.keys: list[np.ndarray] = []
        self.size = 0
        self.threshold: float | None = None  # the largest kept key, once pruned

    def add(self, values: np.ndarray, key: np.ndarray) -> None:
        """Offer packed colours ``(n,)`` with their random keys ``(n,)``."""
        if self.threshold is not None:
            below = key < self.threshold
            values, key = values[below], key[below]
        self.parts.append(values)
        self.keys.append(key)
        self.size += len(values)
        if self.size > self.limit + self.limit // 4:
            self.parts, self.keys = _keep_smallest_keys(self.parts, self.keys, self.limit)
            self.size, self.threshold = self.limit, float(self.keys[0].max())

    def pixels(self) -> np.ndarray:
        """The sample: in arrival order if it never outgrew its quota, else in key order."""
        outgrown = self.threshold is not None or self.size > self.limit
        self.parts, self.keys = _keep_smallest_keys(self.parts, self.keys, self.limit)
        values = self.parts[0]
        if outgrown:
            values = values[np.argsort(self.keys[0], kind="stable")]
        return values


def wsics_pool(
    tiles: Iterable[np.ndarray], microns_per_pixel: float, random_state: int | None = 2000
) -> LabelledPixels:
    """Label the pixels of tiles and pool them per class.

    Each tile is labelled in parts no larger than
    :func:`~stainstyle.methods._wsics_labels.labelling_tile_side` (the reference code's tile
    area; :func:`~stainstyle.methods._wsics_labels.labelling_tiles`). Background parts (too
    little tissue) and parts with no more nuclei than
    :func:`~stainstyle.methods._wsics_labels.min_nuclei` requires are skipped.

    Parameters
    ----------
    tiles : iterable of ndarray of shape (H, W, 3), dtype uint8
    microns_per_pixel : float
        Pixel size.
    random_state : int or None
        Seed of the eosin-seed subsampling (the same for every labelling tile) and of the quota
        subsampling (a uniform sample of at most 45 %, 45 % and 10 % of
        :data:`MAX_TRAINING_PIXELS` hematoxylin, eosin and background pixels).

    Returns
    -------
    LabelledPixels

    Notes
    -----
    Each class is a uniform sample of its quota, pruned as pixels arrive (:class:`_QuotaSample`),
    so the pool needs at most 1.25 times the quotas, 12 bytes a pixel, however many pixels are
    labelled. A class that never outgrows its quota keeps its pixels in labelling order, one
    that does ends in key order.
    """
    rng = np.random.default_rng(random_state)
    samples = [_QuotaSample(int(quota * MAX_TRAINING_PIXELS)) for quota in CLASS_QUOTAS]
    n_nuclei = n_tiles = 0
    for tile in tiles:
        for part in labelling_tiles(tile, microns_per_pixel):
            if is_background(tissue_mask(part)[None])[0]:
                continue
            labels = label_stain_classes(
                part, microns_per_pixel, np.random.default_rng(random_state)
            )
            if labels.n_nuclei <= min_nuclei(*part.shape[:2], microns_per_pixel):
                continue
            n_nuclei += labels.n_nuclei
            n_tiles += 1
            packed = pack_rgb(part)
            for sample, label in zip(samples, _LABELS, strict=True):
                values = packed[labels.labels == label]
                sample.add(values, rng.random(len(values)))
    colours = [sample.pixels() for sample in samples]
    return LabelledPixels(colours=colours, n_nuclei=n_nuclei, n_tiles=n_tiles)


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
    sizes = pool.class_sizes()
    if min(sizes[HEMATOXYLIN], sizes[EOSIN]) < min_class_pixels:
        return None
    statistics = colour_class_statistics(pool.colours)
    # The reference code trains the weighting on every 20th to 50th pixel of its slide-level
    # pool; here every 20th at most, and never fewer than NAIVE_BAYES_MIN_SAMPLES when available.
    stride = max(1, min(20, sum(sizes) // NAIVE_BAYES_MIN_SAMPLES))
    # Every stride-th pixel of the classes laid end to end, taken class by class.
    chosen, classes, offset = [], [], 0
    for k, packed in enumerate(pool.colours):
        chosen.append(packed[(-offset) % stride :: stride])
        classes.append(np.full(len(chosen[-1]), k))
        offset += len(packed)
    hsd = rgb_to_hsd(unpack_rgb(np.concatenate(chosen)))
    tables = fit_naive_bayes(naive_bayes_features(hsd), np.concatenate(classes))
    return WSICSSourceModel(statistics=statistics, tables=tables)


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
    reference's randomized Hough ellipse fit. WSICS was designed for whole slides: its source
    statistics (a :class:`WSICSSourceModel`) are best measured once per slide
    (``source_statistics``, ``transform(X, groups=slide_ids)``) rather than per tile.

    Large images, in bounded memory: as the reference code labels a slide in 2048x2048 tiles
    at about 0.243 um per pixel, an image is labelled in tiles of that area (497.7 um a side,
    at most 2048 pixels; 996 pixels at 0.5 um per pixel), pooled like separate tiles; images
    up to that size are labelled whole as before, larger ones get their own (slightly
    different) statistics. The pool stores packed colours, and a class of more than 2**22
    pixels is summarised by its distinct colours; an image of more than 2**20 pixels is mapped
    through a lookup table over the colours present, strip by strip. ``transform`` of an
    8192x8192 image then peaks below 5 times the image's bytes.

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
    _colour_table = True
    _costly_colours = True

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
        counts = pool.class_sizes()
        if pool.n_tiles == 0 or min(counts[HEMATOXYLIN], counts[EOSIN]) < self.min_class_pixels:
            raise ValueError(
                f"X: WSICS needs target tiles with tissue, nuclei and at least "
                f"{self.min_class_pixels} hematoxylin and eosin pixels; got {pool.n_tiles} of "
                f"{len(tiles)} tiles with enough nuclei and {counts[HEMATOXYLIN]} hematoxylin, "
                f"{counts[EOSIN]} eosin pixels (is microns_per_pixel={self.microns_per_pixel} "
                "right for these tiles?)"
            )
        template = colour_class_statistics(pool.colours)
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

    def _source_context(self, tiles: Tiles) -> WSICSSourceModel:
        """Stain-class statistics and class weighting pooled over ``tiles`` (a slide, a group).

        Raises
        ------
        UnmodelledSource
            If the tiles hold too few nuclei, hematoxylin or eosin pixels.
        """
        model = self._source_model(tiles.images)
        if model is None:
            raise UnmodelledSource(
                f"WSICS: fewer than {self.min_class_pixels} hematoxylin or eosin pixels in tiles "
                f"with enough nuclei (is microns_per_pixel={self.microns_per_pixel} right?)"
            )
        return model

    def _needs_tissue_mask(self) -> bool:
        return False

    def _transform_batch(
        self,
        batch: np.ndarray,
        tissue: np.ndarray | None,
        *,
        context: WSICSSourceModel | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        if context is not None:
            return self._map(batch, context), np.zeros(len(batch), dtype=bool)
        out = np.empty_like(batch)
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
        """Map uint8 RGB ``(..., H, W, 3)`` through the model, once per distinct colour."""
        return map_distinct_colours(
            images, lambda hsd: map_colours(hsd, model.tables, model.statistics, self._template())
        )


#: Images with more pixels than this are mapped through a table over all 2**24 colours.
TABLE_MIN_PIXELS = 1 << 20
#: Distinct colours mapped at once.
COLOUR_CHUNK = 1 << 16


def map_distinct_colours(images: np.ndarray, mapping) -> np.ndarray:
    """Apply a colour mapping to images, evaluating it once per distinct colour.

    Up to :data:`TABLE_MIN_PIXELS` pixels the distinct colours come from ``np.unique``; larger
    images are mapped strip by strip through a table over the 2**24 colours (64 MiB, computed
    as strips hold them), so memory is bounded by the table and a strip, not by the image
    (``np.unique`` needs about 20 bytes a pixel). Both give the same result
    (:func:`stainstyle.color.table.map_distinct`).

    Parameters
    ----------
    images : ndarray of shape (..., H, W, 3), dtype uint8
    mapping : callable
        Maps HSD colours ``(n, 3)`` to uint8 RGB ``(n, 3)``, row by row.

    Returns
    -------
    ndarray of the shape of ``images``, dtype uint8
    """

    def mapped(colours: np.ndarray) -> np.ndarray:
        rgb = colours.reshape(-1, 3)
        out = np.empty(rgb.shape, dtype=np.uint8)
        for start in range(0, len(rgb), COLOUR_CHUNK):
            out[start : start + COLOUR_CHUNK] = mapping(
                rgb_to_hsd(rgb[start : start + COLOUR_CHUNK])
            )
        return out.reshape(colours.shape)

    return map_distinct(mapped, images, TABLE_MIN_PIXELS)
