"""Normalize one whole slide with one fixed mapping, tile by tile, into a pyramidal BigTIFF.

:func:`normalize_slide` measures the normalizer's source statistics once per slide, on a random
sample of its tissue tiles (:func:`tissue_sample`), and maps every tile of the slide with that
one mapping (:meth:`~stainstyle.base.StainNormalizer.fixed_mapping`), so neighbouring tiles
never get different mappings and the output has no seams. The tiles stream through in rows,
at the requested resolution, straight into :func:`~stainstyle.wsi.write_pyramid`: memory holds
one row of tiles, whatever the slide's size.

Tiles that hold no tissue on the slide's tissue mask (glass) are written unchanged without going
through the normalizer. The pixelwise methods (Reinhard, Macenko, Vahadane, histogram
specification, WSICS, gray normalization) map each tile on its own: Reinhard, Macenko, Vahadane
and WSICS through a colour table that the slide's tiles fill as they come (each distinct colour
computed once), the others by their own per-channel lookups. Stain-style transfer colours its
input in overlapping windows; each tile is read with a margin of its neighbours' pixels
(:func:`context_margin`), coloured, and cropped, so that the windows blend across tile borders
as they do inside a tile.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stainstyle.sources import SourceStatistics
from stainstyle.wsi._values import is_integer
from stainstyle.wsi.reader import Slide
from stainstyle.wsi.tiles import (
    MIN_TISSUE,
    NoTissueError,
    TileGrid,
    _opened,
    sample_tiles,
    tile_grid,
)
from stainstyle.wsi.tissue import TissueMask, slide_tissue_mask
from stainstyle.wsi.writer import write_pyramid

logger = logging.getLogger(__name__)

#: Status of a slide whose output was written.
WRITTEN = "written"
#: Status of a slide whose output existed already and was left as it was.
SKIPPED = "skipped"
#: Status of a slide that could not be normalized; its error says why.
FAILED = "failed"

#: Per-tile status of :meth:`~stainstyle.base.StainNormalizer.transform_with_status` for a tile
#: that was normalized.
_TILE_OK = "ok"

#: A fixed mapping: tiles ``(n, H, W, 3)`` uint8 to the normalized tiles and their status.
Mapping = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class SlideResult:
    """What happened to one slide: written, skipped or failed, with its numbers.

    Attributes
    ----------
    input : pathlib.Path
        The slide.
    output : pathlib.Path
        The normalized slide (written, or left as it was when skipped).
    status : {"written", "skipped", "failed"}
        ``"skipped"``: the output existed and ``overwrite`` was False.
    seconds : float
        Wall time spent on the slide.
    tiles : int
        Tiles of the output's grid (rows x columns at the output resolution).
    passthrough_tiles : int
        Tiles written unchanged: glass on the tissue mask, and tissue tiles the normalizer
        passed through (too little tissue, or not modelled).
    statistics : SourceStatistics or None
        The slide's source statistics; None unless measured.
    error : str
        Why the slide failed (the slide is ``input``); empty otherwise.
    """

    input: Path
    output: Path
    status: str
    seconds: float = 0.0
    tiles: int = 0
    passthrough_tiles: int = 0
    statistics: SourceStatistics | None = None
    error: str = ""


def _check_count(name: str, value) -> int:
    """``value`` as a positive int, or a ``ValueError`` naming the argument and the value.

    Parameters
    ----------
    name : str
        The argument, for the message.
    value : object
        What was given.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        Unless ``value`` is an integer (not a bool) of at least 1.
    """
    if not is_integer(value) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def context_margin(normalizer) -> int:
    """Pixels of its neighbours a tile needs on every side for a seamless output.

    Stain-style transfer colours an image in overlapping windows of ``window_size`` pixels
    (its training crop size by default), blended over a quarter of a window. A tile read with
    a quarter of a window of its neighbours on every side has its border pixels coloured, like
    its inner pixels, by windows whose blending zones lie inside the read. The pixelwise
    methods need no margin.

    Parameters
    ----------
    normalizer : StainNormalizer
        A fitted normalizer.

    Returns
    -------
    int
        A quarter of the inference window for stain-style transfer, 0 for every other method.
    """
    window = getattr(normalizer, "window_size", None) or getattr(normalizer, "crop_size_", None)
    return int(window) // 4 if window else 0


def tissue_sample(
    slide: Slide,
    n: int,
    size: int = 256,
    mpp: float | None = None,
    *,
    random_state: int | np.random.Generator = 0,
    mask: TissueMask | None = None,
) -> np.ndarray:
    """Up to ``n`` random tissue tiles of one slide: all it has when it has fewer.

    :func:`~stainstyle.wsi.sample_tiles` on one slide, asking for no more tiles than the slide
    holds; for measuring a slide's source statistics. Tiles count when at least half of them
    is tissue on the slide's mask; on a pale slide where no tile is, the tiles with the most
    tissue count (those with at least the largest fraction any tile has).

    Parameters
    ----------
    slide : Slide
        An open slide.
    n : int
        Most tiles, at least 1.
    size : int, default=256
        Tile side, in pixels.
    mpp : float, optional
        Microns per pixel of the tiles; by default level 0 as it is.
    random_state : int or numpy.random.Generator, default=0
        Seed of the draw.
    mask : TissueMask, optional
        The slide's tissue mask, when already computed.

    Returns
    -------
    ndarray of shape (m, size, size, 3), dtype uint8
        ``m = min(n, tissue tiles)`` RGB tiles.

    Raises
    ------
    NoTissueError
        When the slide's mask shows no tissue in any tile.
    SlideRequestError, SlideReadError
        As :func:`~stainstyle.wsi.sample_tiles`.
    """
    _check_count("n", n)
    mask = mask if mask is not None else slide_tissue_mask(slide)
    fractions = tile_grid(slide, size, mpp).tissue_fractions(mask)
    if not fractions.max() > 0:
        raise NoTissueError(
            slide.path,
            f"no tissue: the slide's tissue mask covers none of its tiles of {size} pixels at "
            f"{mpp or 'native'} um/px",
        )
    threshold = min(MIN_TISSUE, float(fractions.max()))
    available = int(np.count_nonzero(fractions >= threshold))
    return sample_tiles(
        slide, min(n, available), size, mpp, random_state=random_state, min_tissue=threshold
    )


def normalize_slide(
    slide: Slide | str | os.PathLike,
    normalizer,
    out: str | os.PathLike,
    *,
    mpp: float | None = None,
    tile_size: int = 256,
    compression: str = "jpeg",
    jpeg_quality: int = 90,
    sample: int = 256,
    random_state: int = 0,
    overwrite: bool = False,
    progress: bool | None = None,
) -> SlideResult:
    """Normalize a whole slide with one fixed mapping and write it as a pyramidal BigTIFF.

    Steps: the slide's tissue mask; ``sample`` random tissue tiles (:func:`tissue_sample`);
    ``normalizer.source_statistics`` on them; then every tile of the grid at ``mpp``, row by
    row, through the slide's fixed mapping into :func:`~stainstyle.wsi.write_pyramid`. Tiles
    without tissue on the mask are written unchanged. The output records the microns per
    pixel of the tiles and the matching magnification (the input's objective power scaled by
    the change of resolution).

    When the sample holds nothing the method can model (e.g. Macenko on a single stain), the
    normalizer's ``background`` parameter decides: ``"passthrough"`` (the default) writes the
    slide unchanged, every tile counted as passed through, with a warning; ``"raise"`` raises.

    Parameters
    ----------
    slide : Slide or str or path-like
        An open slide, or a file to open (and close before returning).
    normalizer : StainNormalizer
        A fitted normalizer.
    out : str or path-like
        Output file (``.tif``, ``.tiff`` or ``.svs``); its folder must exist. Written atomically.
    mpp : float, optional
        Microns per pixel of the output; by default level 0 at its own resolution.
    tile_size : int, default=256
        Side of the tiles normalized and of the output's TIFF tiles; a multiple of 16.
    compression : {"jpeg", "deflate", "zstd"}, default="jpeg"
        Tile compression of the output; deflate and zstd are lossless.
    jpeg_quality : int, default=90
        JPEG quality, 1 to 100.
    sample : int, default=256
        Most tissue tiles the source statistics are measured on.
    random_state : int, default=0
        Seed of the sample.
    overwrite : bool, default=False
        Replace an existing output; when False an existing output is left as it is and the
        slide is skipped without being opened.
    progress : bool or None, default=None
        Progress bar over the rows; None shows it only on a terminal.

    Returns
    -------
    SlideResult
        Status ``"written"`` or ``"skipped"``.

    Raises
    ------
    SlideReadError
        When the slide cannot be read (missing, not a slide, corrupt, truncated).
    SlideRequestError
        For an ``mpp`` the slide cannot give (finer than level 0, or unknown microns per pixel).
    NoTissueError
        When the slide holds no tissue.
    ValueError
        For invalid options, an ``out`` that is the input or not a file, or a slide the method
        cannot model with ``background="raise"``.

    See Also
    --------
    normalize_slides : Many slides, one per task on a Dask cluster.

    Examples
    --------
    >>> from stainstyle import MacenkoNormalizer
    >>> from stainstyle.wsi import normalize_slide, sample_tiles
    >>> normalizer = MacenkoNormalizer().fit(sample_tiles("target.svs", n=256))  # doctest: +SKIP
    >>> normalize_slide("slide.svs", normalizer, "slide-normalized.tiff")  # doctest: +SKIP
    SlideResult(... status='written', ...)
    """
    started = time.perf_counter()
    out = Path(out)
    source = slide.path if isinstance(slide, Slide) else Path(slide)
    if out.resolve() == source.resolve():
        raise ValueError(f"out: {out} is the input slide; write the output to another file")
    _check_count("sample", sample)
    if out.exists() and not out.is_file():
        raise ValueError(f"out: {out} exists and is not a file; name the output file")
    if out.exists() and not overwrite:
        logger.info("skipped %s: %s exists (overwrite=False)", source, out)
        return SlideResult(source, out, SKIPPED)
    with _opened(slide) as opened:
        grid = tile_grid(opened, tile_size, mpp, overlap=context_margin(normalizer))
        mask = slide_tissue_mask(opened)
        tiles = tissue_sample(opened, sample, tile_size, mpp, random_state=random_state, mask=mask)
        statistics = _slide_statistics(normalizer, tiles, opened)
        width, height = _output_size(grid)
        out_mpp, magnification = _output_scale(opened, grid)
        counts = _Counts()
        rows = _normalized_rows(
            grid,
            (width, height),
            grid.tissue_fractions(mask) > 0,
            normalizer.fixed_mapping(statistics).transform_with_status,
            counts,
            progress,
        )
        write_pyramid(
            out,
            rows,
            size=(width, height),
            tile_size=tile_size,
            compression=compression,
            jpeg_quality=jpeg_quality,
            mpp=out_mpp,
            magnification=magnification,
        )
    seconds = time.perf_counter() - started
    logger.info(
        "normalized %s into %s: %d tiles, %d passed through unchanged, %.1f s",
        source, out, counts.tiles, counts.passthrough, seconds,
    )  # fmt: skip
    return SlideResult(source, out, WRITTEN, seconds, counts.tiles, counts.passthrough, statistics)


def _slide_statistics(normalizer, tiles: np.ndarray, slide: Slide) -> SourceStatistics:
    """The slide's source statistics; an unmodelled slide as the ``background`` policy says."""
    statistics = normalizer.source_statistics(tiles)
    if not statistics.modelled:
        message = (
            f"{slide.path}: {type(normalizer).__name__} cannot model the slide's tissue "
            f"({statistics.reason})"
        )
        if getattr(normalizer, "background", "passthrough") == "raise":
            raise ValueError(f"{message}; background='raise'")
        logger.warning("%s; the slide is written unchanged", message)
    return statistics


def _output_size(grid: TileGrid) -> tuple[int, int]:
    """``(width, height)`` of the read level at the grid's resolution."""
    width, height = grid.slide.level_dimensions[grid.level]
    if grid.factor == 1.0:
        return width, height
    # A hair below the exact quotient so that 1000.0000001 stays 1000, not 1001.
    return (
        max(1, math.ceil(width / grid.factor - 1e-6)),
        max(1, math.ceil(height / grid.factor - 1e-6)),
    )


def _output_scale(slide: Slide, grid: TileGrid) -> tuple[tuple[float, float] | None, float | None]:
    """Microns per pixel and magnification of the output; None where the input records none."""
    magnification = slide.objective_power
    if magnification is not None and grid.mpp is not None and slide.mpp is not None:
        magnification = magnification * slide.mpp[0] / grid.mpp[0]
    return grid.mpp, magnification


@dataclass
class _Counts:
    """Tiles written so far, and how many of them unchanged."""

    tiles: int = 0
    passthrough: int = 0


def _normalized_rows(
    grid: TileGrid,
    size: tuple[int, int],
    tissue: np.ndarray,
    mapping: Mapping,
    counts: _Counts,
    progress: bool | None,
) -> Iterator[list[np.ndarray]]:
    """The output's rows of tiles, top to bottom, for :func:`write_pyramid`.

    Each row's tissue tiles (``tissue[row, col]``) go through ``mapping`` together; each tile
    is cropped to its cell (the margin of :func:`context_margin` removed) and to the output.
    """
    from tqdm.auto import tqdm

    width, height = size
    step, margin = grid.size, grid.overlap
    rows, cols = math.ceil(height / step), math.ceil(width / step)
    bar = tqdm(total=rows, unit="row", desc=grid.slide.path.name, disable=_disabled(progress))
    with bar:
        for row in range(rows):
            tiles = np.stack([grid.read(row, col) for col in range(cols)])
            keep = np.flatnonzero(tissue[row, :cols])
            passed = cols - len(keep)
            if len(keep):
                mapped, status = mapping(tiles[keep])
                tiles[keep] = mapped
                passed += int(np.count_nonzero(status != _TILE_OK))
            counts.tiles += cols
            counts.passthrough += passed
            bottom = min(step, height - row * step)
            yield [
                tiles[
                    col, margin : margin + bottom, margin : margin + min(step, width - col * step)
                ]
                for col in range(cols)
            ]
            bar.update()


def _disabled(progress: bool | None) -> bool | None:
    """The ``disable`` argument of tqdm: None (a bar on terminals only), else not ``progress``."""
    return None if progress is None else not progress
