"""Write a tiled, pyramidal BigTIFF slide from rows of level-0 tiles, in bounded memory.

:func:`write_pyramid` takes the slide's level 0 as an iterator of rows of tiles, top to bottom,
and does everything else: it encodes each row's tiles into the first TIFF page as they come
and, from the same rows, builds every reduced level at once, each a 2x downsample of the one
above (:func:`downsample_2x`), into raw files in the output's private temporary folder. No
level is ever held in memory: the largest arrays are the caller's row and a row of each reduced
level. Once level 0 is written, the smallest level goes in as the thumbnail page and the
reduced levels follow, read back a row at a time, until a level fits in one tile.

The file follows the layout of Aperio SVS, which OpenSlide, tiffslide, QuPath (through
OpenSlide or Bio-Formats) and most viewers read: page 0 is level 0, page 1 a thumbnail, pages 2
and on the reduced levels; the first page's ImageDescription starts with ``Aperio`` and records
``MPP`` and ``AppMag``, which both readers report as the slide's microns per pixel and objective
power, and every level also carries TIFF resolution tags. Tiles are JPEG (quality 90, YCbCr
with 2x2 chroma subsampling, as scanners write them) by default, or lossless deflate or zstd
with horizontal differencing. Edge tiles are padded by repeating the last row and column, so
that JPEG blocks at the slide's border hold no black.

The file appears under its name only when complete (``stainstyle._atomic.atomic_path``); a
writer that is killed leaves a private temporary folder that
``stainstyle._atomic.remove_stale_temporaries`` removes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stainstyle._atomic import atomic_path
from stainstyle._version import __version__
from stainstyle.wsi._backends import import_optional
from stainstyle.wsi._values import is_integer, mpp_pair, positive

logger = logging.getLogger(__name__)

#: Compressions :func:`write_pyramid` offers, by name, with tifffile's name for each.
COMPRESSIONS = {"jpeg": "jpeg", "deflate": "zlib", "zstd": "zstd"}

_END = object()  # marks the end of the caller's rows (a row may be anything, even None)

#: Raw tiles tifffile may gather for its encoding threads, in bytes.
ENCODER_BUFFER_BYTES = 8 << 20


def downsample_2x(image: np.ndarray) -> np.ndarray:
    """Halve an image: each output pixel the rounded mean of a 2 x 2 block.

    An odd last row or column is repeated first, so its pixels are averaged with themselves.
    Exactly ``(a + b + c + d + 2) // 4`` per channel (OpenCV's area interpolation for a factor
    of 2 computes this).

    Parameters
    ----------
    image : ndarray of shape (H, W, 3), dtype uint8
        Pixels.

    Returns
    -------
    ndarray of shape (ceil(H / 2), ceil(W / 2), 3), dtype uint8
    """
    height, width = image.shape[:2]
    if height % 2 or width % 2:
        image = cv2.copyMakeBorder(image, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)
    size = (image.shape[1] // 2, image.shape[0] // 2)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1)


def pyramid_dimensions(size: Sequence[int], tile_size: int) -> list[tuple[int, int]]:
    """``(width, height)`` of each level: halved (rounding up) until one tile holds a level.

    Parameters
    ----------
    size : tuple of int
        ``(width, height)`` of level 0.
    tile_size : int
        Tile side.

    Returns
    -------
    list of tuple of (int, int)
        Level 0 first.
    """
    levels = [(int(size[0]), int(size[1]))]
    while max(levels[-1]) > tile_size:
        width, height = levels[-1]
        levels.append(((width + 1) // 2, (height + 1) // 2))
    return levels


@dataclass(frozen=True)
class _Layout:
    """What a pyramid looks like: sizes, tiles, compression, and its TIFF page options."""

    path: Path
    levels: list[tuple[int, int]]
    tile_size: int
    compression: str
    jpeg_quality: int
    mpp: tuple[float, float] | None
    magnification: float | None

    def description(self, level: int | None) -> str:
        """Aperio-style ImageDescription of a level (None: the thumbnail)."""
        width, height = self.levels[0]
        tile = f"({self.tile_size}x{self.tile_size})"
        label = {"jpeg": f"JPEG/RGB Q={self.jpeg_quality}", "deflate": "Deflate/RGB"}.get(
            self.compression, "ZSTD/RGB"
        )
        head = f"Aperio Image Library stainstyle {__version__}\r\n{width}x{height}"
        if level == 0:
            fields = [f"{head} {tile} {label}"]
            if self.magnification is not None:
                fields.append(f"AppMag = {self.magnification:g}")
            if self.mpp is not None:
                fields.append(f"MPP = {self.mpp[0]:.6g}")
            return "|".join(fields)
        w, h = self.levels[-1 if level is None else level]
        return (
            f"{head} -> {w}x{h} {label}" if level is None else f"{head} {tile} -> {w}x{h} {label}"
        )

    def page(self, level: int | None) -> dict:
        """Options of tifffile's ``write`` for a level's page (None: the untiled thumbnail)."""
        width, height = self.levels[-1 if level is None else level]
        options = {
            "shape": (height, width, 3),
            "dtype": np.uint8,
            "photometric": "rgb",
            "compression": COMPRESSIONS[self.compression],
            "description": self.description(level),
            "software": f"stainstyle {__version__}",
            "metadata": None,
        }
        if level is not None:
            options.update(tile=(self.tile_size, self.tile_size), buffersize=ENCODER_BUFFER_BYTES)
        if self.compression == "jpeg":
            options["compressionargs"] = {"level": self.jpeg_quality}
        else:
            options["predictor"] = "horizontal"
        if self.mpp is not None:
            full_width, full_height = self.levels[0]
            x = self.mpp[0] * full_width / width
            y = self.mpp[1] * full_height / height
            options.update(resolution=(1e4 / x, 1e4 / y), resolutionunit="CENTIMETER")
        return options


class _LevelFile:
    """A reduced level, built from the rows of the level above and kept in a raw file.

    Rows arrive in bands of any height; an odd last row waits for the next band (or for
    :meth:`finish`), so that every 2 x 2 block is whole. Each band's downsample is appended to
    the file and handed to the next level.
    """

    def __init__(self, path: Path, width: int, height: int, below: _LevelFile | None):
        self.path, self.width, self.height, self.below = path, width, height, below
        self.rows = 0
        self._carry: np.ndarray | None = None
        self._file = open(path, "wb+")  # noqa: SIM115 - closed by close()

    def add(self, rows: np.ndarray) -> None:
        """Take the next rows of the level above."""
        if self._carry is not None:
            rows = np.concatenate([self._carry, rows])
            self._carry = None
        if len(rows) % 2:
            self._carry = rows[-1:].copy()
            rows = rows[:-1]
        if len(rows):
            self._store(downsample_2x(rows))

    def finish(self) -> None:
        """The level above is complete: reduce its last row and finish the levels below."""
        if self._carry is not None:
            self._store(downsample_2x(self._carry))
            self._carry = None
        if self.rows != self.height:
            raise RuntimeError(f"level of height {self.height} received {self.rows} rows")
        if self.below is not None:
            self.below.finish()

    def bands(self, count: int) -> Iterator[np.ndarray]:
        """The level's rows read back, ``count`` at a time."""
        self._file.flush()
        self._file.seek(0)
        for start in range(0, self.height, count):
            rows = min(count, self.height - start)
            data = np.fromfile(self._file, dtype=np.uint8, count=rows * self.width * 3)
            yield data.reshape(rows, self.width, 3)

    def close(self) -> None:
        """Close and delete the file."""
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _store(self, reduced: np.ndarray) -> None:
        self._file.write(np.ascontiguousarray(reduced).data)  # no copy: cv2 output is contiguous
        self.rows += len(reduced)
        if self.below is not None:
            self.below.add(reduced)


def write_pyramid(
    path: str | os.PathLike,
    rows: Iterable[np.ndarray | Sequence[np.ndarray]],
    *,
    size: Sequence[int],
    tile_size: int = 256,
    compression: str = "jpeg",
    jpeg_quality: int = 90,
    mpp: float | tuple[float, float] | None = None,
    magnification: float | None = None,
) -> Path:
    """Write a tiled pyramidal BigTIFF slide from level 0's rows of tiles.

    Parameters
    ----------
    path : str or path-like
        Output file (``.tif``, ``.tiff`` or ``.svs``); its folder must exist. It appears only
        when complete; an existing file is replaced.
    rows : iterable of ndarray or of sequences of ndarray
        Level 0 from top to bottom, ``ceil(height / tile_size)`` rows: each a uint8 array of
        shape ``(tile_size, width, 3)`` (the last one ``height - tile_size * (rows - 1)``
        high), or a sequence of such tiles, left to right, whose widths add up to ``width``.
        Consumed once, one row at a time.
    size : tuple of int
        ``(width, height)`` of level 0.
    tile_size : int, default=256
        Tile side, a multiple of 16 from 16 to 4096 (256 or 512 for viewers).
    compression : {"jpeg", "deflate", "zstd"}, default="jpeg"
        Tile compression; deflate and zstd are lossless.
    jpeg_quality : int, default=90
        JPEG quality, 1 to 100.
    mpp : float or (float, float), optional
        Microns per pixel of level 0 (``x``, ``y``); recorded when given.
    magnification : float, optional
        Objective power of the scan (e.g. 20 or 40); recorded when given.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        For invalid options, or rows of the wrong shape, type or number (the message names
        the file and the row).
    FileNotFoundError
        When the output's folder does not exist.

    See Also
    --------
    downsample_2x : How each level is made from the one above.
    pyramid_dimensions : The levels' sizes.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from stainstyle.wsi import open_slide, write_pyramid
    >>> image = np.full((300, 500, 3), 230, dtype=np.uint8)
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "slide.tif"
    >>> rows = (image[y : y + 256] for y in range(0, 300, 256))
    >>> _ = write_pyramid(out, rows, size=(500, 300), mpp=0.5, magnification=20)
    >>> with open_slide(out) as slide:
    ...     slide.level_dimensions, slide.mpp, slide.objective_power
    (((500, 300), (250, 150)), (0.5, 0.5), 20.0)
    """
    tifffile = import_optional("tifffile")
    import_optional("imagecodecs")
    layout = _layout(Path(path), size, tile_size, compression, jpeg_quality, mpp, magnification)
    started = time.perf_counter()
    with atomic_path(layout.path) as temporary, contextlib.ExitStack() as cleanup:
        reduced = _level_files(temporary.parent, layout.levels[1:])
        for level in reduced:
            cleanup.callback(level.close)
        with tifffile.TiffWriter(temporary, bigtiff=True) as tiff:
            rows = iter(rows)
            first = reduced[0] if reduced else None
            tiff.write(_level0_tiles(rows, layout, first), **layout.page(0))
            if next(rows, _END) is not _END:
                raise ValueError(f"{layout.path}: rows: more than {_row_count(layout)} rows")
            if first is not None:
                first.finish()
                tiff.write(next(reduced[-1].bands(layout.tile_size)), **layout.page(None))
            for index, level in enumerate(reduced, start=1):
                tiff.write(_band_tiles(level.bands(layout.tile_size), layout), **layout.page(index))
                level.close()
    width, height = layout.levels[0]
    seconds = time.perf_counter() - started
    logger.info(
        "wrote %s: %dx%d, %d levels, %s, %.1f MP/s",
        layout.path, width, height, len(layout.levels), compression,
        width * height / 1e6 / max(seconds, 1e-9),
    )  # fmt: skip
    return layout.path


def _layout(path, size, tile_size, compression, jpeg_quality, mpp, magnification) -> _Layout:
    """The arguments of :func:`write_pyramid` checked, as a :class:`_Layout`."""
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: the folder {path.parent} does not exist")
    values = tuple(size)
    if len(values) != 2 or not all(is_integer(v) and v >= 1 for v in values):
        raise ValueError(f"{path}: size: expected (width, height), positive integers, got {size!r}")
    if not (is_integer(tile_size) and 16 <= tile_size <= 4096 and tile_size % 16 == 0):
        raise ValueError(
            f"{path}: tile_size: expected a multiple of 16 in [16, 4096], got {tile_size!r}"
        )
    if compression not in COMPRESSIONS:
        raise ValueError(
            f"{path}: compression: expected one of {sorted(COMPRESSIONS)}, got {compression!r}"
        )
    if not (is_integer(jpeg_quality) and 1 <= jpeg_quality <= 100):
        raise ValueError(
            f"{path}: jpeg_quality: expected an integer in [1, 100], got {jpeg_quality!r}"
        )
    pair = None if mpp is None else mpp_pair(mpp)
    if mpp is not None and pair is None:
        raise ValueError(f"{path}: mpp: expected a positive number or (x, y) pair, got {mpp!r}")
    if magnification is not None and positive(magnification) is None:
        raise ValueError(
            f"{path}: magnification: expected a positive number, got {magnification!r}"
        )
    return _Layout(
        path,
        pyramid_dimensions(values, int(tile_size)),
        int(tile_size),
        compression,
        int(jpeg_quality),
        pair,
        None if magnification is None else float(magnification),
    )


def _level_files(folder: Path, levels: list[tuple[int, int]]) -> list[_LevelFile]:
    """Raw files of the reduced levels in ``folder``, each feeding the next."""
    files: list[_LevelFile] = []
    below = None
    for index in range(len(levels), 0, -1):
        width, height = levels[index - 1]
        below = _LevelFile(folder / f"level-{index}.raw", width, height, below)
        files.append(below)
    return files[::-1]


def _row_count(layout: _Layout) -> int:
    return math.ceil(layout.levels[0][1] / layout.tile_size)


def _level0_tiles(
    rows: Iterator, layout: _Layout, first: _LevelFile | None
) -> Iterator[np.ndarray]:
    """Tiles of level 0 from the caller's rows, each row also handed to the first reduced level."""
    width, height = layout.levels[0]
    expected = _row_count(layout)
    for index in range(expected):
        row = next(rows, _END)
        if row is _END:
            raise ValueError(f"{layout.path}: rows: got {index}, expected {expected}")
        row_height = min(layout.tile_size, height - index * layout.tile_size)
        row = _check_row(row, (row_height, width, 3), index, layout.path)
        if first is not None:
            first.add(row)
        yield from _row_tiles(row, layout.tile_size)
        del row  # not held while the caller makes the next one


def _band_tiles(bands: Iterator[np.ndarray], layout: _Layout) -> Iterator[np.ndarray]:
    """Tiles of a reduced level, from its rows read back a tile high."""
    for band in bands:
        yield from _row_tiles(band, layout.tile_size)


def _row_tiles(row: np.ndarray, tile_size: int) -> Iterator[np.ndarray]:
    """The tiles of a row, left to right; edge tiles padded by repeating the last row/column."""
    height, width = row.shape[:2]
    for x in range(0, width, tile_size):
        tile = row[:, x : x + tile_size]
        pad_bottom, pad_right = tile_size - height, tile_size - tile.shape[1]
        if pad_bottom or pad_right:
            tile = cv2.copyMakeBorder(
                np.ascontiguousarray(tile), 0, pad_bottom, 0, pad_right, cv2.BORDER_REPLICATE
            )
        yield np.ascontiguousarray(tile)


def _check_row(row, shape: tuple[int, int, int], index: int, path: Path) -> np.ndarray:
    """A row of the caller's as a uint8 array of ``shape``, or an error naming file and row."""
    if not isinstance(row, np.ndarray) and isinstance(row, Sequence):
        tiles = list(row)
        if tiles and all(isinstance(t, np.ndarray) and t.ndim == 3 for t in tiles):
            row = np.concatenate(tiles, axis=1) if len(tiles) > 1 else tiles[0]
    if not isinstance(row, np.ndarray) or row.dtype != np.uint8 or row.shape != shape:
        got = (
            f"{row.dtype} array of shape {row.shape}"
            if isinstance(row, np.ndarray)
            else type(row).__name__
        )
        raise ValueError(f"{path}: row {index}: expected uint8 of shape {shape}, got {got}")
    return row
