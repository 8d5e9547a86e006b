"""The two slide readers behind :class:`~stainstyle.wsi.Slide`: tiffslide and OpenSlide.

Each backend opens one file, checks it, and then answers in the same terms: level sizes and
downsamples, microns per pixel, objective power, properties as strings, and regions of a level
in that level's pixel coordinates, as uint8 RGB inside the level's bounds (the caller handles
what lies outside). Any failure of the underlying library becomes a ``BackendError`` with a
one-line reason; :mod:`stainstyle.wsi.reader` turns it into an error naming the file.

Both libraries are imported when a slide is opened, so that ``stainstyle.wsi`` imports without
the ``wsi`` extra installed.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import threading
from collections.abc import Iterator, Mapping
from types import ModuleType
from xml.etree import ElementTree

import numpy as np

from stainstyle.data.images import _composite_on_white
from stainstyle.wsi._values import mpp_pair, positive

logger = logging.getLogger(__name__)

#: Largest stored tile (or strip) a level may have, in pixels; larger ones are refused on
#: opening, since reading any pixel of a tile decodes all of it.
MAX_TILE_PIXELS = 1 << 26


class BackendError(Exception):
    """A backend cannot open or read a file; the message says why, without the file name."""


def import_optional(name: str) -> ModuleType:
    """Import a module of the ``wsi`` extra, or say how to install it.

    Parameters
    ----------
    name : str
        Module name, e.g. ``"tiffslide"``.

    Returns
    -------
    module

    Raises
    ------
    ImportError
        When the module is not installed; the message names the extra.
    """
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ImportError(
            f"stainstyle.wsi needs {name!r}, which is not installed: pip install 'stainstyle[wsi]'"
        ) from error


def _to_rgb(pixels: np.ndarray) -> np.ndarray:
    """uint8 (h, w, C) with C in {1, 3, 4} as uint8 RGB; alpha composited onto white."""
    channels = pixels.shape[-1]
    if channels == 3:
        return pixels
    if channels == 1:
        return np.repeat(pixels, 3, axis=-1)
    return _composite_on_white(pixels[..., :3], pixels[..., 3])


class TiffSlideBackend:
    """The file at ``path`` read with tiffslide (tifffile and zarr): SVS, generic and OME-TIFF.

    Opening raises :class:`BackendError` when tiffslide cannot open the file or it fails the
    checks of :meth:`_check_pages`.
    """

    name = "tiffslide"

    def __init__(self, path: str):
        tiffslide = import_optional("tiffslide")
        import_optional("imagecodecs")
        self._slide = None
        try:
            with _tifffile_log(path) as problems:
                self._slide = tiffslide.TiffSlide(path)
                probe = self._load(os.path.getsize(path))
            if problems:
                raise BackendError(f"broken chain of TIFF pages (truncated file?): {problems[0]}")
            if probe.dtype != np.uint8 or probe.ndim != 3 or probe.shape[-1] not in (1, 3, 4):
                raise BackendError(
                    f"{probe.dtype} samples with {probe.shape[-1]} channels; only 8-bit RGB, "
                    "RGBA and grayscale slides are read"
                )
        except Exception as error:
            if self._slide is not None:
                self._slide.close()
            if isinstance(error, BackendError):
                raise
            raise BackendError(f"{type(error).__name__}: {error}") from error
        properties = self._slide.properties
        self.vendor = properties.get("tiffslide.vendor") or "generic-tiff"
        self.mpp = mpp_pair(
            (properties.get("tiffslide.mpp-x"), properties.get("tiffslide.mpp-y"))
        ) or _ome_mpp(self._slide.ts_tifffile)
        self.objective_power = positive(properties.get("tiffslide.objective-power"))
        self.properties = {k: str(v) for k, v in properties.items() if v is not None}

    def _load(self, file_size: int) -> np.ndarray:
        """Check every page, read the levels, and decode one pixel of the smallest level."""
        self._check_pages(file_size)
        self.level_dimensions = tuple((int(w), int(h)) for w, h in self._slide.level_dimensions)
        self.level_downsamples = tuple(float(d) for d in self._slide.level_downsamples)
        smallest = len(self.level_dimensions) - 1
        return self._slide.read_region((0, 0), smallest, (1, 1), as_array=True)

    def _check_pages(self, file_size: int) -> None:
        """Refuse a TIFF whose pages are missing, truncated, inconsistent or have huge tiles."""
        pages = list(self._slide.ts_tifffile.pages)
        if not pages:
            raise BackendError("no readable image in the TIFF (truncated or corrupt file)")
        for page in pages:
            if page.is_tiled:
                width, height = page.tilewidth, page.tilelength
            else:
                width, height = page.imagewidth, min(page.rowsperstrip, page.imagelength)
            if height * width > MAX_TILE_PIXELS:
                raise BackendError(
                    f"page {page.index} stores tiles of {width}x{height} pixels, more than "
                    f"{MAX_TILE_PIXELS} (absurd header, or an untiled image: save it tiled)"
                )
            expected = math.prod(page.chunked)
            if len(page.dataoffsets) != expected:
                raise BackendError(
                    f"page {page.index} claims {page.shape[1]}x{page.shape[0]} pixels in "
                    f"{expected} tiles but lists {len(page.dataoffsets)} (corrupt header)"
                )
            end = max(
                (o + c for o, c in zip(page.dataoffsets, page.databytecounts, strict=True)),
                default=0,
            )
            if end > file_size:
                raise BackendError(
                    f"page {page.index} has data up to byte {end} but the file has "
                    f"{file_size} bytes (truncated file)"
                )

    def read(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """Pixels of a region inside a level, as uint8 RGB (height, width, 3)."""
        location = _level0_location(x, y, self.level_downsamples[level], truncate=True)
        try:
            pixels = self._slide.read_region(location, level, (width, height), as_array=True)
        except Exception as error:
            raise BackendError(f"{type(error).__name__}: {error}") from error
        return _to_rgb(pixels)

    def close(self) -> None:
        """Release the file."""
        self._slide.close()


#: Microns per unit of the OME ``PhysicalSize`` units read (the OME default is the micron).
_OME_UNITS = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3}


def _ome_mpp(tiff) -> tuple[float, float] | None:
    """Microns per pixel from the OME-XML of an OME-TIFF's first image, or None."""
    if not tiff.is_ome:
        return None
    try:
        pixels = ElementTree.fromstring(tiff.ome_metadata).find(".//{*}Pixels")
    except ElementTree.ParseError:
        return None
    if pixels is None:
        return None
    sizes = []
    for axis in ("X", "Y"):
        scale = _OME_UNITS.get(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        size = positive(pixels.get(f"PhysicalSize{axis}"))
        sizes.append(None if scale is None or size is None else size * scale)
    return mpp_pair(sizes)


class OpenSlideBackend:
    """The file at ``path`` read with OpenSlide: every vendor format (NDPI, MRXS, SCN, ...).

    Opening raises :class:`BackendError` when OpenSlide cannot open the file. After its first
    read error an OpenSlide handle refuses every later read; the error says so.
    """

    name = "openslide"

    def __init__(self, path: str):
        openslide = import_optional("openslide")
        try:
            self._slide = openslide.OpenSlide(path)
            properties: Mapping[str, str] = self._slide.properties
            self.level_dimensions = tuple((int(w), int(h)) for w, h in self._slide.level_dimensions)
            self.level_downsamples = tuple(float(d) for d in self._slide.level_downsamples)
        except Exception as error:
            raise BackendError(f"{type(error).__name__}: {error}") from error
        for level in range(len(self.level_dimensions)):
            tile = (
                positive(properties.get(f"openslide.level[{level}].tile-width")) or 0,
                positive(properties.get(f"openslide.level[{level}].tile-height")) or 0,
            )
            if tile[0] * tile[1] > MAX_TILE_PIXELS:
                self._slide.close()
                raise BackendError(
                    f"level {level} stores tiles of {tile[0]:.0f}x{tile[1]:.0f} pixels, more "
                    f"than {MAX_TILE_PIXELS} (absurd header)"
                )
        self.vendor = properties.get("openslide.vendor")
        self.mpp = mpp_pair((properties.get("openslide.mpp-x"), properties.get("openslide.mpp-y")))
        self.objective_power = positive(properties.get("openslide.objective-power"))
        self.properties = dict(properties)

    def read(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """Pixels of a region inside a level, as uint8 RGB (height, width, 3)."""
        location = _level0_location(x, y, self.level_downsamples[level], truncate=False)
        try:
            image = self._slide.read_region(location, level, (width, height))
        except Exception as error:
            raise BackendError(f"{type(error).__name__}: {error}") from error
        return _to_rgb(np.asarray(image))

    def close(self) -> None:
        """Release the file."""
        self._slide.close()


class _ThreadRecords(logging.Handler):
    """Collects the log records of one thread."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.thread = threading.get_ident()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.records.append(record)


@contextlib.contextmanager
def _tifffile_log(path: str) -> Iterator[list[str]]:
    """Catch what tifffile logs in this thread while a file is opened.

    Yields a list that receives the messages that mean a broken file (tifffile's errors, and
    a first page beyond the end of the file), filled when the block ends; other messages are
    logged again here at WARNING level with the file's name. (While a handler is attached,
    Python's last-resort handler no longer prints tifffile's messages to stderr.)
    """
    handler = _ThreadRecords()
    tifffile_logger = logging.getLogger("tifffile")
    problems: list[str] = []
    tifffile_logger.addHandler(handler)
    try:
        yield problems
    finally:
        tifffile_logger.removeHandler(handler)
        for record in handler.records:
            message = record.getMessage()
            if record.levelno >= logging.ERROR or "invalid offset to first page" in message:
                problems.append(message)
            else:
                logger.warning("%s: tifffile: %s", path, message)


def _level0_location(x: int, y: int, downsample: float, truncate: bool) -> tuple[int, int]:
    """Level-0 location of level pixel ``(x, y)`` as the backend maps it back.

    tiffslide maps a level-0 coordinate ``b`` to level pixel ``int(b / downsample)``
    (``truncate``); OpenSlide scales by the downsample without truncating. The nearest level-0
    pixel is taken, and for tiffslide moved until it maps back to exactly ``(x, y)``.
    """
    located = []
    for value in (x, y):
        base = round(value * downsample)
        if truncate:
            while int(base / downsample) < value:
                base += 1
            while base > 0 and int(base / downsample) > value:
                base -= 1
        located.append(base)
    return located[0], located[1]


def detect_vendor(path: str) -> str | None:
    """OpenSlide's name for the format of a file, or None when it does not know it.

    Parameters
    ----------
    path : str
        The file.

    Returns
    -------
    str or None
        E.g. ``"aperio"``, ``"generic-tiff"``, ``"hamamatsu"``, ``"mirax"``.
    """
    try:
        openslide = importlib.import_module("openslide")
        return openslide.OpenSlide.detect_format(path)
    except Exception:  # not installed, or a file it cannot even identify
        return None
