"""WSICS pixel classification: hematoxylin, eosin and background labels of one tile.

Follows the WSICS reference code (``PixelClassificationHE``, ``MaskGeneration``,
``HE_Classifier``): background by density thresholds, hematoxylin seeds inside detected nuclei,
eosin seeds by low red density outside them, the remaining pixels by k-nearest neighbours on the
z-scored ``(c_x, c_y, D)``, then a 3x3 median filter.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import cKDTree
from skimage.feature import blob_log

from stainstyle.color.hsd import hsd_channel_densities, rgb_to_hsd

#: Class labels of :func:`label_stain_classes` (the reference code's numbering).
LABEL_HEMATOXYLIN, LABEL_EOSIN, LABEL_BACKGROUND = 1, 2, 3

#: Background: mean density at most 0.24 and every channel density at most 0.22 ...
BACKGROUND_DENSITY, BACKGROUND_CHANNEL_DENSITY = 0.24, 0.22
#: ... or mean density above 5.5 (black pixels).
BLACK_DENSITY = 5.5

#: Radius range of a nucleus in micrometres: radii ``[floor(1.94 / s), ceil(4.86 / s)]`` pixels.
NUCLEUS_RADIUS_UM = (1.94, 4.86)

#: A tile is used when it holds more than 150 nuclei per 497.7 x 497.7 square micrometres.
NUCLEI_PER_SQUARE_UM = 150.0 / 247700.0

#: Side in micrometres of the tiles the reference code labels: 2048x2048 pixels at about
#: 0.243 um per pixel (the level it reads), the square its nuclei rule counts 150 nuclei in.
REFERENCE_TILE_UM = 497.7
#: Longest side in pixels of a labelling tile (the reference code's tile).
MAX_LABEL_TILE = 2048

#: Percentile (``index floor((n - 1) p)``) of the nuclei's mean red density below which they are
#: rejected; also the red-density floor of a hematoxylin seed pixel (``hema_percentile``).
HEMATOXYLIN_PERCENTILE = 0.1
#: Percentile of the nuclei's mean density below which they are rejected.
NUCLEUS_DENSITY_PERCENTILE = 0.02
#: Percentile of the candidates' red density below which a pixel is an eosin seed
#: (``eosin_percentile``).
EOSIN_PERCENTILE = 0.2

#: k of the k-nearest-neighbour classifier and the leaf size of its kd-tree.
N_NEIGHBORS, KDTREE_LEAF_SIZE = 7, 50

#: Threshold of the Laplacian-of-Gaussian blob detector, relative to the maximum density, and the
#: most scales it tries between the smallest and largest nucleus radius.
BLOB_THRESHOLD, BLOB_SCALES = 0.1, 6
#: Smallest nucleus radius in pixels the detector works at; larger ones are found on a
#: proportionally shrunk image.
BLOB_MIN_RADIUS = 3


@dataclass(frozen=True)
class StainLabels:
    """Pixel classes of one tile.

    Attributes
    ----------
    labels : ndarray of shape (H, W), dtype uint8
        :data:`LABEL_HEMATOXYLIN`, :data:`LABEL_EOSIN` or :data:`LABEL_BACKGROUND` per pixel, or 0
        where no class could be assigned (no seeds of one of the stains).
    hsd : ndarray of shape (H, W, 3), dtype float64
        ``(c_x, c_y, D)`` of every pixel.
    n_nuclei : int
        Number of nuclei detected.
    """

    labels: np.ndarray
    hsd: np.ndarray
    n_nuclei: int


def lower_percentile(values: np.ndarray, fraction: float) -> float:
    """The order statistic at index ``floor((n - 1) * fraction)``, as ``std::nth_element`` picks.

    Parameters
    ----------
    values : ndarray of shape (n,), n >= 1
    fraction : float in [0, 1]

    Returns
    -------
    float
    """
    index = math.floor((len(values) - 1) * fraction)
    return float(np.partition(values, index)[index])


def background_mask(hsd: np.ndarray) -> np.ndarray:
    """Background pixels by the WSICS density thresholds.

    Parameters
    ----------
    hsd : ndarray of shape (..., 3), dtype float64
        ``(c_x, c_y, D)``.

    Returns
    -------
    ndarray of shape (...), dtype bool
        ``(D <= 0.24 and every D_c <= 0.22) or D > 5.5``.
    """
    channels = hsd_channel_densities(hsd)
    pale = (hsd[..., 2] <= BACKGROUND_DENSITY) & np.all(
        channels <= BACKGROUND_CHANNEL_DENSITY, axis=-1
    )
    return pale | (hsd[..., 2] > BLACK_DENSITY)


def nucleus_radius_range(microns_per_pixel: float) -> tuple[int, int]:
    """Radius range of a nucleus in pixels, ``[floor(1.94 / s), ceil(4.86 / s)]``, at least 1.

    Parameters
    ----------
    microns_per_pixel : float
        Pixel size ``s``.

    Returns
    -------
    (int, int)
    """
    low = max(1, math.floor(NUCLEUS_RADIUS_UM[0] / microns_per_pixel))
    return low, max(low, math.ceil(NUCLEUS_RADIUS_UM[1] / microns_per_pixel))


def min_nuclei(height: int, width: int, microns_per_pixel: float) -> float:
    """Nuclei a tile must exceed to be used: 150 per 497.7 x 497.7 um, scaled to its area.

    Parameters
    ----------
    height, width : int
        Tile size in pixels.
    microns_per_pixel : float
        Pixel size.

    Returns
    -------
    float
        ``H * W * s**2 * 150 / 247700``; the reference code writes ``rows**2`` for its square
        tiles.
    """
    return height * width * microns_per_pixel**2 * NUCLEI_PER_SQUARE_UM


def labelling_tile_side(microns_per_pixel: float) -> int:
    """Side in pixels of the tiles an image is labelled in: the reference tile's area.

    Parameters
    ----------
    microns_per_pixel : float
        Pixel size ``s``.

    Returns
    -------
    int
        ``min(2048, ceil(497.7 / s))``: 996 at 0.5 um per pixel, 2048 at 0.243 or finer.
    """
    return max(1, min(MAX_LABEL_TILE, math.ceil(REFERENCE_TILE_UM / microns_per_pixel)))


def labelling_tiles(image: np.ndarray, microns_per_pixel: float) -> Iterator[np.ndarray]:
    """An image cut into the tiles it is labelled in, row by row.

    The reference code labels a slide tile by tile; so is a large image here, in a grid of
    nearly equal tiles no larger than :func:`labelling_tile_side` on a side. Labelling memory
    (about 50 times a tile's bytes) is then bounded, whatever the image size.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3), dtype uint8
    microns_per_pixel : float
        Pixel size.

    Yields
    ------
    ndarray of shape (h, w, 3), dtype uint8
        The image itself when it fits in one tile, else contiguous copies of its tiles.
    """
    side = labelling_tile_side(microns_per_pixel)
    height, width = image.shape[:2]
    n_rows, n_cols = -(-height // side), -(-width // side)
    if n_rows * n_cols <= 1:
        yield image
        return
    rows = [height * i // n_rows for i in range(n_rows + 1)]
    cols = [width * j // n_cols for j in range(n_cols + 1)]
    for i in range(n_rows):
        for j in range(n_cols):
            yield np.ascontiguousarray(image[rows[i] : rows[i + 1], cols[j] : cols[j + 1]])


def detect_nuclei(density: np.ndarray, microns_per_pixel: float) -> np.ndarray:
    """Detect nuclei as bright blobs of the density image.

    The reference code blurs the density with a 4x4 box, rescales it by its maximum and fits
    ellipses by a restricted randomized Hough transform on its Canny edges. Here the same
    rescaled image goes to a Laplacian-of-Gaussian blob detector over the same radius range
    (sigma = radius / sqrt(2)), and each blob stands for a disc.

    Parameters
    ----------
    density : ndarray of shape (H, W), dtype float64
        Mean optical density ``D``.
    microns_per_pixel : float
        Pixel size.

    Returns
    -------
    ndarray of shape (n, 3), dtype float64
        Row, column and radius in pixels of each nucleus.
    """
    blurred = cv2.blur(density, (4, 4))
    peak = float(blurred.max())
    if peak <= 0.0 or min(density.shape) < 3:
        return np.empty((0, 3))
    r_min, r_max = nucleus_radius_range(microns_per_pixel)
    # Speed: nuclei at least BLOB_MIN_RADIUS px wide in radius are found just as well on an image
    # shrunk by an integer factor (Gaussian scales of at least BLOB_MIN_RADIUS / sqrt(2) px).
    factor = max(1, min(r_min // BLOB_MIN_RADIUS, min(density.shape) // 8))
    image = blurred / peak
    if factor > 1:
        size = (density.shape[1] // factor, density.shape[0] // factor)
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    blobs = blob_log(
        image,
        min_sigma=r_min / factor / math.sqrt(2.0),
        max_sigma=r_max / factor / math.sqrt(2.0),
        num_sigma=min(BLOB_SCALES, r_max - r_min + 1),
        threshold=BLOB_THRESHOLD,
    )
    if len(blobs) == 0:
        return np.empty((0, 3))
    blobs = blobs.astype(np.float64)
    blobs[:, :2] = blobs[:, :2] * factor + (factor - 1) / 2.0
    blobs[:, 2] *= math.sqrt(2.0) * factor
    return blobs


def disc_pixels(shape: tuple[int, int], nuclei: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel indices covered by each disc, vectorized over discs of equal radius.

    Parameters
    ----------
    shape : (int, int)
        Image height and width.
    nuclei : ndarray of shape (n, 3)
        Row, column and radius of each disc.

    Returns
    -------
    disc : ndarray of shape (m,), dtype intp
        Index of the disc each entry belongs to.
    pixel : ndarray of shape (m,), dtype intp
        Flat index ``row * W + column`` of the pixel.
    """
    height, width = shape
    centres = np.rint(nuclei[:, :2]).astype(np.intp)
    radii = np.rint(nuclei[:, 2]).astype(np.intp)
    discs, pixels = [np.empty(0, np.intp)], [np.empty(0, np.intp)]
    for radius in np.unique(radii):
        members = np.flatnonzero(radii == radius)
        dy, dx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
        inside = dy**2 + dx**2 <= radius**2
        rows = centres[members, 0, None] + dy[inside]
        cols = centres[members, 1, None] + dx[inside]
        valid = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        discs.append(np.broadcast_to(members[:, None], rows.shape)[valid])
        pixels.append(rows[valid] * width + cols[valid])
    return np.concatenate(discs), np.concatenate(pixels)


def _seed_masks(
    hsd: np.ndarray, background: np.ndarray, nuclei: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Hematoxylin and eosin seed masks (flat) from nuclei and red density."""
    flat_hsd = hsd.reshape(-1, 3)
    red = hsd_channel_densities(flat_hsd)[:, 0]
    flat_background = background.ravel()
    hema = np.zeros(len(flat_hsd), dtype=bool)
    in_disc = np.zeros(len(flat_hsd), dtype=bool)
    if len(nuclei):
        disc, pixel = disc_pixels(background.shape, nuclei)
        in_disc[pixel] = True
        counts = np.bincount(disc, minlength=len(nuclei))
        valid = counts > 0
        mean_red = np.bincount(disc, weights=red[pixel], minlength=len(nuclei))[valid]
        mean_density = np.bincount(disc, weights=flat_hsd[pixel, 2], minlength=len(nuclei))[valid]
        mean_red, mean_density = mean_red / counts[valid], mean_density / counts[valid]
        t_red = lower_percentile(mean_red, HEMATOXYLIN_PERCENTILE)
        t_density = lower_percentile(mean_density, NUCLEUS_DENSITY_PERCENTILE)
        kept = np.zeros(len(nuclei), dtype=bool)
        kept[np.flatnonzero(valid)] = (mean_density >= t_density) & (mean_red >= t_red)
        # Correction of the reference code: it draws rejected ellipses into the training mask
        # with value 255, so they stay seeds; here rejected nuclei contribute no seeds.
        hema[pixel[kept[disc]]] = True
        hema &= ~flat_background & (red >= t_red)
    candidates = ~flat_background & ~in_disc
    eosin = np.zeros_like(hema)
    if candidates.any():
        t_eosin = lower_percentile(red[candidates], EOSIN_PERCENTILE)
        eosin_index = np.flatnonzero(candidates & (red <= t_eosin))
        n_hema = int(np.count_nonzero(hema))
        if len(eosin_index) > n_hema:
            eosin_index = rng.choice(eosin_index, size=n_hema, replace=False)
        eosin[eosin_index] = True
    return hema, eosin


def _knn_labels(
    rgb: np.ndarray, hsd: np.ndarray, hema: np.ndarray, eosin: np.ndarray, query: np.ndarray
) -> np.ndarray:
    """+1 (hematoxylin) or -1 (eosin) for the ``query`` pixels by a 7-nearest-neighbour vote.

    Features are ``(c_x, c_y, D)`` z-scored over the whole tile. The vote depends on the colour
    only, so it is computed once per distinct colour among the query pixels.
    """
    flat_hsd = hsd.reshape(-1, 3)
    mean, std = flat_hsd.mean(axis=0), flat_hsd.std(axis=0)
    std[std < 1e-12] = 1.0
    train = np.concatenate([flat_hsd[hema], flat_hsd[eosin]])
    sign = np.concatenate([np.ones(np.count_nonzero(hema)), -np.ones(np.count_nonzero(eosin))])
    packed = pack_rgb(rgb.reshape(-1, 3)[query])
    _, first, inverse = np.unique(packed, return_index=True, return_inverse=True)
    colours = flat_hsd[np.flatnonzero(query)[first]]
    tree = cKDTree((train - mean) / std, leafsize=KDTREE_LEAF_SIZE, compact_nodes=False)
    k = min(N_NEIGHBORS, len(train))
    _, neighbours = tree.query((colours - mean) / std, k=k)
    vote = sign[neighbours.reshape(len(colours), k)].sum(axis=1)
    # With an even k a tie goes to eosin; k = 7 unless fewer seeds exist.
    return np.where(vote > 0, 1, -1)[inverse.ravel()]


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """Pack uint8 RGB triplets into 24-bit integers, for ``np.unique`` over colours.

    Parameters
    ----------
    rgb : ndarray of shape (..., 3), dtype uint8

    Returns
    -------
    ndarray of shape (...), dtype int32
        ``R << 16 | G << 8 | B``.
    """
    wide = rgb.astype(np.int32)
    return (wide[..., 0] << 16) | (wide[..., 1] << 8) | wide[..., 2]


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """Unpack 24-bit integers into uint8 RGB triplets, the inverse of :func:`pack_rgb`.

    Parameters
    ----------
    packed : ndarray of shape (...), integer
        ``R << 16 | G << 8 | B``.

    Returns
    -------
    ndarray of shape (..., 3), dtype uint8
    """
    packed = np.asarray(packed)
    return np.stack([packed >> 16, (packed >> 8) & 255, packed & 255], axis=-1).astype(np.uint8)


def label_stain_classes(
    rgb: np.ndarray, microns_per_pixel: float, rng: np.random.Generator
) -> StainLabels:
    """Label each pixel of a tile hematoxylin, eosin or background.

    Parameters
    ----------
    rgb : ndarray of shape (H, W, 3), dtype uint8
        One tile.
    microns_per_pixel : float
        Pixel size, for the nucleus radius range.
    rng : numpy.random.Generator
        Draws the eosin seeds when there are more candidates than hematoxylin seeds.

    Returns
    -------
    StainLabels
        Labels are 0 everywhere except background when the tile has no hematoxylin or no
        eosin seeds.
    """
    hsd = rgb_to_hsd(rgb)
    background = background_mask(hsd)
    nuclei = detect_nuclei(hsd[..., 2], microns_per_pixel)
    hema, eosin = _seed_masks(hsd, background, nuclei, rng)
    labels = np.where(background, LABEL_BACKGROUND, 0).astype(np.uint8).ravel()
    if hema.any() and eosin.any():
        # Priority background > seeds > k-NN (the reference code adds the masks up).
        query = ~background.ravel() & ~hema & ~eosin
        sign = np.zeros(labels.shape, dtype=np.int8)
        sign[hema], sign[eosin] = 1, -1
        if query.any():
            sign[query] = _knn_labels(rgb, hsd, hema, eosin, query)
        # 3x3 median of the label map (hematoxylin 2, background 1, eosin 0); it only changes
        # k-NN pixels, and a background-dominated median keeps their k-NN label.
        smoothed = cv2.medianBlur((sign + 1).astype(np.uint8).reshape(background.shape), 3)
        smoothed = smoothed.ravel().astype(np.int8) - 1
        sign[query] = np.where(smoothed[query] != 0, smoothed[query], sign[query])
        labels[sign > 0] = LABEL_HEMATOXYLIN
        labels[sign < 0] = LABEL_EOSIN
    return StainLabels(labels=labels.reshape(background.shape), hsd=hsd, n_nuclei=len(nuclei))
