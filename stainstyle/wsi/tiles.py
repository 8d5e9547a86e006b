"""Tiles of a slide at a requested resolution: the grid, the tissue-tile iterator, the sampler.

A :class:`TileGrid` cuts a slide into square cells of ``size`` pixels at ``mpp`` microns per
pixel. It reads from the coarsest level whose resolution is at least the requested one (within
:data:`~stainstyle.wsi.reader.MPP_TOLERANCE`, in which case the level is read as it is) and
resizes with area interpolation otherwise. With ``overlap``, each tile also holds ``overlap``
pixels of its neighbours on every side; beyond the slide's edge tiles are white.

:func:`iter_tiles` yields the tiles that hold enough tissue (by the slide's
:class:`~stainstyle.wsi.tissue.TissueMask`), and :func:`sample_tiles` draws ``n`` of them at
random from one or more slides, for fitting a normalizer in one line::

    MacenkoNormalizer().fit(sample_tiles(["a.svs", "b.svs"], n=256, mpp=0.5))
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from stainstyle.wsi._values import is_integer, positive
from stainstyle.wsi.reader import MPP_TOLERANCE, Slide, SlideRequestError, open_slide
from stainstyle.wsi.tissue import TissueMask, slide_tissue_mask

logger = logging.getLogger(__name__)

#: Fraction of a tile's area that must be tissue (on the slide's mask) for it to count.
MIN_TISSUE = 0.5


class NoTissueError(SlideRequestError):
    """The slides hold no tissue tile, or fewer than requested.

    Parameters
    ----------
    path : str or path-like
        The slide, or the slides separated by commas.
    reason : str
        What was looked for and what was found.
    """


@dataclass(frozen=True, eq=False)
class TileGrid:
    """Square cells over a slide at one resolution. Make one with :func:`tile_grid`.

    Cell ``(row, col)`` covers level pixels ``[col * size * factor, (col + 1) * size *
    factor)`` horizontally (likewise vertically) of ``level``; a tile is the cell with
    ``overlap`` output pixels added on every side.

    Attributes
    ----------
    slide : Slide
        The slide.
    size : int
        Cell side, in output pixels.
    overlap : int
        Pixels added on every side of a cell; tiles have side ``size + 2 * overlap``.
    level : int
        The level read.
    factor : float
        Level pixels per output pixel; exactly 1.0 when the level is read without resampling.
    shape : tuple of (int, int)
        ``(rows, cols)``; the last row and column may extend beyond the slide.
    mpp : tuple of (float, float) or None
        Microns per output pixel ``(x, y)``; None when the slide's are unknown.
    """

    slide: Slide
    size: int
    overlap: int
    level: int
    factor: float
    shape: tuple[int, int]
    mpp: tuple[float, float] | None

    @property
    def tile_size(self) -> int:
        """Side of a tile, ``size + 2 * overlap``."""
        return self.size + 2 * self.overlap

    def cells(self) -> np.ndarray:
        """Level-0 rectangles of all cells (without overlap), row by row.

        Returns
        -------
        ndarray of shape (rows * cols, 4), dtype float64
            ``(x, y, width, height)``.
        """
        rows, cols = np.meshgrid(np.arange(self.shape[0]), np.arange(self.shape[1]), indexing="ij")
        step = self.size * self.factor * self.slide.level_downsamples[self.level]
        corners = np.stack([cols.ravel() * step, rows.ravel() * step], axis=1)
        return np.hstack([corners, np.full((corners.shape[0], 2), step)])

    def tissue_fractions(self, mask: TissueMask) -> np.ndarray:
        """Fraction of tissue in each cell.

        Parameters
        ----------
        mask : TissueMask
            The slide's mask.

        Returns
        -------
        ndarray of shape (rows, cols), dtype float64
        """
        return mask.fractions(self.cells()).reshape(self.shape)

    def read(self, row: int, col: int) -> np.ndarray:
        """The tile of a cell.

        Parameters
        ----------
        row, col : int
            The cell.

        Returns
        -------
        ndarray of shape (tile_size, tile_size, 3), dtype uint8
            RGB; white beyond the slide.
        """
        side = self.tile_size
        x = (col * self.size - self.overlap) * self.factor
        y = (row * self.size - self.overlap) * self.factor
        if self.factor == 1.0:
            return self.slide.read_level(self.level, (int(x), int(y), side, side))
        downsample = self.slide.level_downsamples[self.level]
        extent = side * self.factor * downsample
        box = (x * downsample, y * downsample, extent, extent)
        return self.slide.read_scaled(box, (side, side), level=self.level)


def tile_grid(
    slide: Slide, size: int = 256, mpp: float | None = None, *, overlap: int = 0
) -> TileGrid:
    """The grid of ``size``-pixel tiles over a slide at ``mpp`` microns per pixel.

    Parameters
    ----------
    slide : Slide
        An open slide.
    size : int, default=256
        Side of a cell in output pixels.
    mpp : float, optional
        Microns per output pixel; by default level 0 as it is.
    overlap : int, default=0
        Output pixels of the neighbouring cells added on every side of each tile.

    Returns
    -------
    TileGrid

    Raises
    ------
    SlideRequestError
        For a size or overlap that is not a positive (non-negative) integer, an ``mpp`` that is
        not positive, finer than the slide, or so coarse that the slide would be less than one
        pixel, or an ``mpp`` on a slide whose microns per pixel are unknown.
    """
    size = _integer(slide.path, "size", size, 1)
    overlap = _integer(slide.path, "overlap", overlap, 0)
    if mpp is None:
        level, factor, out_mpp = 0, 1.0, slide.mpp
    else:
        level = slide.best_level_for_mpp(mpp)
        slide_mpp = slide.require_mpp()
        downsample = slide.level_downsamples[level]
        factor = float(mpp) / ((slide_mpp[0] + slide_mpp[1]) / 2.0 * downsample)
        out_mpp = (float(mpp), float(mpp))
        if abs(factor - 1.0) <= MPP_TOLERANCE:
            factor, out_mpp = 1.0, (slide_mpp[0] * downsample, slide_mpp[1] * downsample)
    level_width, level_height = slide.level_dimensions[level]
    if min(level_width, level_height) < factor:
        raise SlideRequestError(
            slide.path,
            f"at {mpp} um/px the slide ({slide.dimensions[0]}x{slide.dimensions[1]} pixels at "
            f"{slide.mpp} um/px) would be less than one pixel",
        )
    cell = size * factor
    shape = (math.ceil(level_height / cell), math.ceil(level_width / cell))
    return TileGrid(slide, size, overlap, level, factor, shape, out_mpp)


@dataclass(frozen=True, eq=False)
class Tile:
    """One tile of a :class:`TileGrid`.

    Attributes
    ----------
    row, col : int
        The cell.
    pixels : ndarray of shape (tile_size, tile_size, 3), dtype uint8
        RGB.
    tissue : float or None
        Fraction of the cell that is tissue on the slide's mask; None when not measured.
    """

    row: int
    col: int
    pixels: np.ndarray
    tissue: float | None


def iter_tiles(
    slide: Slide | str | os.PathLike,
    size: int = 256,
    mpp: float | None = None,
    *,
    overlap: int = 0,
    min_tissue: float = MIN_TISSUE,
    mask: TissueMask | None = None,
) -> Iterator[Tile]:
    """Tiles of a slide that hold enough tissue, row by row.

    Parameters
    ----------
    slide : Slide or str or path-like
        An open slide, or a file to open (and close when the iteration ends).
    size : int, default=256
        Cell side, in output pixels.
    mpp : float, optional
        Microns per output pixel; by default level 0 as it is.
    overlap : int, default=0
        Pixels of the neighbouring cells added on every side; tiles have side
        ``size + 2 * overlap``.
    min_tissue : float, default=0.5
        Fraction of a cell that must be tissue; 0 yields every tile (and measures nothing).
    mask : TissueMask, optional
        The slide's mask; computed with :func:`~stainstyle.wsi.tissue.slide_tissue_mask`
        when needed and not given.

    Yields
    ------
    Tile

    Raises
    ------
    NoTissueError
        After the last cell, when ``min_tissue > 0`` and no cell holds enough tissue.
    SlideRequestError, SlideReadError
        As :func:`tile_grid` and :meth:`TileGrid.read`.
    """
    with _opened(slide) as opened:
        min_tissue = _fraction(opened.path, min_tissue, zero=True)
        grid = tile_grid(opened, size, mpp, overlap=overlap)
        fractions = None
        if min_tissue > 0:
            mask = mask if mask is not None else slide_tissue_mask(opened)
            fractions = grid.tissue_fractions(mask)
        found = 0
        for row in range(grid.shape[0]):
            for col in range(grid.shape[1]):
                tissue = None if fractions is None else float(fractions[row, col])
                if tissue is None or tissue >= min_tissue:
                    found += 1
                    yield Tile(row, col, grid.read(row, col), tissue)
        if not found:
            raise NoTissueError(
                opened.path,
                f"no tile of {size} pixels at {mpp or 'native'} um/px has {min_tissue:.0%} "
                f"tissue (tissue covers {mask.coverage:.1%} of the slide's thumbnail)",
            )


def sample_tiles(
    slides: Slide | str | os.PathLike | Sequence[Slide | str | os.PathLike],
    n: int,
    size: int = 256,
    mpp: float = 0.5,
    *,
    random_state: int | np.random.Generator = 0,
    min_tissue: float = MIN_TISSUE,
) -> np.ndarray:
    """``n`` random tissue tiles from one or more slides, for fitting a normalizer.

    The tiles are spread evenly over the slides (a slide with fewer tissue tiles than its share
    gives all it has and the others make up the difference), drawn without replacement among
    the cells of each slide's grid whose tissue fraction is at least ``min_tissue``, and
    returned in random order. The same arguments give the same tiles.

    Parameters
    ----------
    slides : Slide, str, path-like, or a sequence of them
        Open slides, or files to open (and close before returning).
    n : int
        Number of tiles.
    size : int, default=256
        Tile side, in pixels.
    mpp : float, default=0.5
        Microns per pixel of the tiles.
    random_state : int or numpy.random.Generator, default=0
        Seed.
    min_tissue : float, default=0.5
        Fraction of a tile that must be tissue, in (0, 1].

    Returns
    -------
    ndarray of shape (n, size, size, 3), dtype uint8
        RGB tiles.

    Raises
    ------
    NoTissueError
        When the slides hold fewer than ``n`` tissue tiles together; the message gives each
        slide's count. (No partial sample is returned: lower ``n``, ``size`` or
        ``min_tissue``.)
    SlideRequestError, SlideReadError
        As :func:`tile_grid` and :func:`~stainstyle.wsi.open_slide`.

    Examples
    --------
    >>> from stainstyle import MacenkoNormalizer
    >>> from stainstyle.wsi import sample_tiles
    >>> normalizer = MacenkoNormalizer().fit(sample_tiles("slide.svs", n=256))  # doctest: +SKIP
    """
    sources = [slides] if isinstance(slides, (Slide, str, os.PathLike)) else list(slides)
    if not sources:
        raise ValueError("slides: expected at least one slide, got none")
    if not is_integer(n) or n < 1:
        raise ValueError(f"n: expected a positive integer, got {n!r}")
    rng = np.random.default_rng(random_state)
    with contextlib.ExitStack() as stack:
        opened = [stack.enter_context(_opened(source)) for source in sources]
        min_tissue = _fraction(opened[0].path, min_tissue, zero=False)
        grids = [tile_grid(slide, size, mpp) for slide in opened]
        candidates = [
            np.flatnonzero(grid.tissue_fractions(slide_tissue_mask(grid.slide)) >= min_tissue)
            for grid in grids
        ]
        quotas = _spread(n, [len(c) for c in candidates])
        if quotas.sum() < n:
            counts = ", ".join(
                f"{s.path.name}: {len(c)}" for s, c in zip(opened, candidates, strict=True)
            )
            raise NoTissueError(
                ", ".join(str(s.path) for s in opened),
                f"{n} tiles of {size} pixels at {mpp} um/px with {min_tissue:.0%} tissue "
                f"requested, the slides hold {sum(map(len, candidates))} ({counts})",
            )
        tiles = np.empty((n, size, size, 3), dtype=np.uint8)
        filled = 0
        for grid, cells, quota in zip(grids, candidates, quotas, strict=True):
            for cell in rng.choice(cells, size=quota, replace=False):
                tiles[filled] = grid.read(*divmod(int(cell), grid.shape[1]))
                filled += 1
        logger.info("sampled %d tiles from %d slide(s): %s", n, len(opened), quotas.tolist())
    return tiles[rng.permutation(n)]


def _spread(n: int, available: Sequence[int]) -> np.ndarray:
    """Split ``n`` as evenly as possible over slides with ``available`` tiles each (capped)."""
    available = np.asarray(available, dtype=np.int64)
    quotas = np.zeros_like(available)
    remaining = n
    while remaining > 0:
        open_ = np.flatnonzero(quotas < available)
        if open_.size == 0:
            break
        share = max(1, remaining // open_.size)
        for i in open_:
            give = min(share, available[i] - quotas[i], remaining)
            quotas[i] += give
            remaining -= give
            if remaining == 0:
                break
    return quotas


@contextlib.contextmanager
def _opened(slide: Slide | str | os.PathLike) -> Iterator[Slide]:
    """``slide`` itself, or the file opened for the block and closed after it."""
    if isinstance(slide, Slide):
        yield slide
        return
    with open_slide(slide) as opened:
        yield opened


def _integer(path, name: str, value, low: int) -> int:
    """``value`` as an int of at least ``low``, or an error naming the slide."""
    if not is_integer(value) or value < low:
        raise SlideRequestError(path, f"{name}: expected an integer >= {low}, got {value!r}")
    return int(value)


def _fraction(path, value, *, zero: bool) -> float:
    """``min_tissue`` as a float in [0, 1] (``zero``) or (0, 1], or an error naming the slide."""
    is_zero = isinstance(value, (int, float, np.number)) and value == 0
    number = 0.0 if zero and is_zero else positive(value)
    if number is None or number > 1:
        interval = "[0, 1]" if zero else "(0, 1]"
        raise SlideRequestError(path, f"min_tissue: expected a value in {interval}, got {value!r}")
    return number
