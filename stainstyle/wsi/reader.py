"""Open a whole-slide image and read its pixels: levels, microns per pixel, regions, thumbnails.

:func:`open_slide` opens SVS, generic tiled TIFF and OME-TIFF files with ``tiffslide`` (pure
Python on ``tifffile``) and every other vendor format (NDPI, MRXS, SCN, BIF, ...) with
OpenSlide (``openslide-python`` and the ``openslide-bin`` wheel); it chooses by OpenSlide's
format detection and the file's suffix, and tries the other library when the first one cannot
read the file. Both come with the ``wsi`` extra: ``pip install 'stainstyle[wsi]'``.

Every read returns NumPy uint8 RGB ``(H, W, 3)``, channels last, like the rest of the library.
Transparent pixels are composited onto white and areas outside the slide are white, as on
glass. Coordinates follow OpenSlide: ``(x, y)`` and sizes ``(width, height)``, with level-0
locations for :meth:`Slide.read_region` and level pixels for :meth:`Slide.read_level`.

Errors name the file: :class:`SlideReadError` (an ``OSError``) when the file cannot be read
(missing, empty, not a slide, corrupt, truncated, or a header claiming absurd sizes, refused
before any pixel is allocated), :class:`SlideRequestError` (a ``ValueError``) when a request
does not fit the slide (a level it does not have, an impossible microns per pixel, a region too
large to hold in memory).

A :class:`Slide` can be read from several threads at once.
"""

from __future__ import annotations

import logging
import math
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from stainstyle.data.images import ImageReadError, file_kind, missing_reason
from stainstyle.wsi._backends import (
    BackendError,
    OpenSlideBackend,
    TiffSlideBackend,
    detect_vendor,
)
from stainstyle.wsi._values import is_integer, mpp_pair, positive

logger = logging.getLogger(__name__)

#: Suffixes of the TIFF family, read with tiffslide first (``.ome.tif`` ends in ``.tif``).
TIFF_SUFFIXES = frozenset({".svs", ".tif", ".tiff", ".btf", ".tf8"})

#: OpenSlide format names that tiffslide reads as well, so that it is tried first.
TIFFSLIDE_VENDORS = frozenset({"aperio", "generic-tiff"})

#: Largest region one read returns, in pixels (512 MiB of RGB): a guard against requests that
#: would exhaust memory, not a limit of the slides that can be read.
MAX_REGION_PIXELS = 1 << 27

#: Largest number of level pixels one resampled read (:meth:`Slide.read_scaled`, thumbnails)
#: may decode; a single-level slide larger than this has no thumbnail.
MAX_SCALED_PIXELS = 1 << 32

#: Resampled reads decode at most about this many level pixels at a time.
BAND_PIXELS = 1 << 22

#: A level whose microns per pixel are within this relative distance of a request is read
#: as it is, without resampling (a 0.499 um/px level serves 0.5 um/px).
MPP_TOLERANCE = 0.02

_BACKENDS = {"tiffslide": TiffSlideBackend, "openslide": OpenSlideBackend}


class SlideReadError(ImageReadError):
    """A slide file is missing, empty, unsupported, corrupt or truncated.

    An :class:`~stainstyle.data.images.ImageReadError` (so an ``OSError``): ``path`` and
    ``reason`` as there, the message ``"{path}: {reason}"``.
    """


class SlideRequestError(ValueError):
    """A request does not fit a slide: no such level, an impossible mpp, a region too large.

    Parameters
    ----------
    path : str or path-like
        The slide (or slides) concerned.
    reason : str
        What does not fit.

    Attributes
    ----------
    path : str
        The slide, as given.
    reason : str
        What does not fit; the message is ``"{path}: {reason}"``.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = os.fspath(path), reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        return type(self), (self.path, self.reason)


class Slide:
    """An open whole-slide image, read through tiffslide or OpenSlide. Use :func:`open_slide`.

    Parameters
    ----------
    path : pathlib.Path
        The file.
    reader : TiffSlideBackend or OpenSlideBackend
        The open file.
    mpp : tuple of float, optional
        Microns per pixel of level 0 ``(x, y)`` to use instead of the file's.

    Attributes
    ----------
    path : pathlib.Path
        The file.
    backend : {"tiffslide", "openslide"}
        The library reading it.
    vendor : str or None
        The format, e.g. ``"aperio"``, ``"generic-tiff"``, ``"hamamatsu"``.
    level_dimensions : tuple of (int, int)
        ``(width, height)`` of each level, level 0 the largest.
    level_downsamples : tuple of float
        Level-0 pixels per pixel of each level.
    mpp : tuple of (float, float) or None
        Microns per pixel of level 0 ``(x, y)``; None when the file does not record it.
    objective_power : float or None
        Magnification of the scan (e.g. 20.0, 40.0); None when unknown.
    properties : dict of str to str
        The backend's metadata (``tiffslide.*`` or ``openslide.*``, and the vendor's).
    """

    def __init__(self, path: Path, reader, mpp: tuple[float, float] | None = None):
        self.path = path
        self._reader = reader
        self._closed = False
        self.backend = reader.name
        self.vendor = reader.vendor
        self.level_dimensions = reader.level_dimensions
        self.level_downsamples = reader.level_downsamples
        self.mpp = mpp if mpp is not None else reader.mpp
        self.objective_power = reader.objective_power
        self.properties = reader.properties

    # ---------------------------------------------------------------------------- description
    @property
    def dimensions(self) -> tuple[int, int]:
        """``(width, height)`` of level 0."""
        return self.level_dimensions[0]

    @property
    def level_count(self) -> int:
        """Number of levels."""
        return len(self.level_dimensions)

    def __repr__(self) -> str:
        width, height = self.dimensions
        return (
            f"Slide({str(self.path)!r}, backend={self.backend!r}, {width}x{height}, "
            f"levels={self.level_count}, mpp={self.mpp})"
        )

    def best_level_for_downsample(self, downsample: float) -> int:
        """The coarsest level that is not coarser than ``downsample`` (within the tolerance).

        Parameters
        ----------
        downsample : float
            Level-0 pixels per pixel wanted, positive.

        Returns
        -------
        int
            The level with the largest downsample at most ``downsample * (1 + MPP_TOLERANCE)``;
            level 0 when every level is coarser (the request is finer than the slide).
        """
        downsample = self._positive("downsample", downsample)
        limit = downsample * (1.0 + MPP_TOLERANCE)
        fitting = [i for i, ds in enumerate(self.level_downsamples) if ds <= limit]
        return max(fitting, key=lambda i: self.level_downsamples[i], default=0)

    def best_level_for_mpp(self, mpp: float) -> int:
        """The coarsest level whose microns per pixel are at most ``mpp`` (within the tolerance).

        Parameters
        ----------
        mpp : float
            Microns per pixel wanted, positive.

        Returns
        -------
        int
            The level to read and resample from.

        Raises
        ------
        SlideRequestError
            When ``mpp`` is not a positive number, the slide records no microns per pixel,
            or ``mpp`` is finer than level 0 by more than :data:`MPP_TOLERANCE`.
        """
        mpp = self._positive("mpp", mpp)
        slide_mpp = self.require_mpp()
        native = (slide_mpp[0] + slide_mpp[1]) / 2.0
        if mpp * (1.0 + MPP_TOLERANCE) < native:
            raise SlideRequestError(
                self.path,
                f"{mpp:g} um/px requested, finer than level 0 ({native:g} um/px); the slide "
                "is not upsampled",
            )
        return self.best_level_for_downsample(mpp / native)

    def require_mpp(self) -> tuple[float, float]:
        """Microns per pixel of level 0, or an error saying how to state them.

        Returns
        -------
        tuple of (float, float)
            ``(x, y)`` microns per pixel.

        Raises
        ------
        SlideRequestError
            When the file records none and none was given to :func:`open_slide`.
        """
        if self.mpp is None:
            raise SlideRequestError(
                self.path,
                "the file records no microns per pixel; state them with open_slide(path, mpp=...)",
            )
        return self.mpp

    # ---------------------------------------------------------------------------- reading
    def read_level(self, level: int, box: Sequence[int]) -> np.ndarray:
        """Pixels of a rectangle of one level, in that level's pixel coordinates.

        Parameters
        ----------
        level : int
            The level, from 0 to ``level_count - 1``.
        box : tuple of int
            ``(x, y, width, height)`` in pixels of ``level``; it may extend beyond the level.

        Returns
        -------
        ndarray of shape (height, width, 3), dtype uint8
            RGB; white outside the level.

        Raises
        ------
        SlideRequestError
            For a level the slide does not have, a non-positive size, or more than
            :data:`MAX_REGION_PIXELS` pixels.
        SlideReadError
            When the pixels cannot be decoded (corrupt or truncated tile data).
        """
        level = self._check_level(level)
        x, y, width, height = self._check_box(box)
        level_width, level_height = self.level_dimensions[level]
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + width, level_width), min(y + height, level_height)
        if (x0, y0, x1, y1) == (x, y, x + width, y + height):
            return self._read(level, x, y, width, height)
        out = np.full((height, width, 3), 255, dtype=np.uint8)
        if x1 > x0 and y1 > y0:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = self._read(level, x0, y0, x1 - x0, y1 - y0)
        return out

    def read_region(self, location: Sequence[int], level: int, size: Sequence[int]) -> np.ndarray:
        """Pixels of a region, located in level-0 coordinates, as ``OpenSlide.read_region``.

        Parameters
        ----------
        location : tuple of int
            ``(x, y)`` of the top-left corner in level-0 pixels; the region starts at pixel
            ``floor(x / downsample), floor(y / downsample)`` of ``level``.
        level : int
            The level to read.
        size : tuple of int
            ``(width, height)`` in pixels of ``level``.

        Returns
        -------
        ndarray of shape (height, width, 3), dtype uint8
            RGB; white outside the slide.

        Raises
        ------
        SlideRequestError, SlideReadError
            As :meth:`read_level`.
        """
        level = self._check_level(level)
        x, y = self._integers("location", location, 2)
        downsample = self.level_downsamples[level]
        box = (math.floor(x / downsample), math.floor(y / downsample), *size)
        return self.read_level(level, box)

    def read_scaled(
        self, box: Sequence[float], size: Sequence[int], *, level: int | None = None
    ) -> np.ndarray:
        """A level-0 rectangle resampled to ``size`` pixels, read from the best level.

        The rectangle is read from ``level`` (by default the coarsest level not coarser than
        the output, :meth:`best_level_for_downsample`) and resized with OpenCV's area
        interpolation, in bands of about :data:`BAND_PIXELS` level pixels, so memory stays
        bounded whatever the rectangle covers (each band starts on a whole level row, so rows
        may move by up to half a level pixel against one resize of the whole). When the
        level's pixels already have the output's size, they are returned as read. Parts
        outside the slide are white.

        Parameters
        ----------
        box : tuple of float
            ``(x, y, width, height)`` in level-0 pixels; width and height positive.
        size : tuple of int
            ``(width, height)`` of the output.
        level : int, optional
            The level to read from.

        Returns
        -------
        ndarray of shape (size[1], size[0], 3), dtype uint8
            RGB.

        Raises
        ------
        SlideRequestError
            For an empty box or output, an output above :data:`MAX_REGION_PIXELS` pixels, or a
            read that would decode more than :data:`MAX_SCALED_PIXELS` level pixels.
        SlideReadError
            When the pixels cannot be decoded.
        """
        x, y, width, height = self._check_rectangle(box)
        out_width, out_height = self._check_box((0, 0, *size))[2:]
        if level is None:
            level = self.best_level_for_downsample(min(width / out_width, height / out_height))
        level = self._check_level(level)
        downsample = self.level_downsamples[level]
        columns = _span(
            x / downsample, width / downsample, out_width, self.level_dimensions[level][0]
        )
        rows = _span(
            y / downsample, height / downsample, out_height, self.level_dimensions[level][1]
        )
        out = np.full((out_height, out_width, 3), 255, dtype=np.uint8)
        if columns is None or rows is None:
            return out
        (ox0, ox1, lx0, lx1), (oy0, oy1, ly0, ly1) = columns, rows
        if (lx1 - lx0) * (ly1 - ly0) > MAX_SCALED_PIXELS:
            raise SlideRequestError(
                self.path,
                f"reading {lx1 - lx0}x{ly1 - ly0} pixels of level {level} (more than "
                f"{MAX_SCALED_PIXELS}) to make {out_width}x{out_height}: the slide has no "
                "level coarse enough; add a pyramid (stainstyle.wsi.write_pyramid)",
            )
        step = (ly1 - ly0) / (oy1 - oy0)  # level rows per output row
        band = max(1, int(BAND_PIXELS / ((lx1 - lx0) * step)))
        for r0 in range(0, oy1 - oy0, band):
            r1 = min(r0 + band, oy1 - oy0)
            a, b = ly0 + round(r0 * step), ly0 + round(r1 * step)
            pixels = self._read(level, lx0, a, lx1 - lx0, max(b - a, 1))
            if pixels.shape[:2] != (r1 - r0, ox1 - ox0):
                pixels = cv2.resize(pixels, (ox1 - ox0, r1 - r0), interpolation=cv2.INTER_AREA)
            out[oy0 + r0 : oy0 + r1, ox0:ox1] = pixels
        return out

    def thumbnail(self, max_side: int = 1024) -> np.ndarray:
        """The whole slide, at most ``max_side`` pixels on its longer side (never enlarged).

        Parameters
        ----------
        max_side : int, default=1024
            Longest side of the thumbnail.

        Returns
        -------
        ndarray of shape (h, w, 3), dtype uint8
            RGB, with the slide's aspect ratio; the slide itself when it is smaller.

        Raises
        ------
        SlideRequestError, SlideReadError
            As :meth:`read_scaled`.
        """
        (max_side,) = self._integers("max_side", (max_side,), 1)
        if max_side < 1:
            raise SlideRequestError(self.path, f"max_side: expected >= 1, got {max_side}")
        width, height = self.dimensions
        scale = max(1.0, max(width, height) / max_side)
        size = (max(1, round(width / scale)), max(1, round(height / scale)))
        return self.read_scaled((0, 0, width, height), size)

    # ---------------------------------------------------------------------------- closing
    def close(self) -> None:
        """Release the file; reads then fail."""
        if not self._closed:
            self._closed = True
            self._reader.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ---------------------------------------------------------------------------- checks
    def _read(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """Backend read of a rectangle inside a level, errors naming the file."""
        if self._closed:
            raise SlideReadError(self.path, "the slide is closed")
        try:
            return self._reader.read(level, x, y, width, height)
        except BackendError as error:
            raise SlideReadError(
                self.path,
                f"cannot read {width}x{height} pixels at ({x}, {y}) of level {level} "
                f"(corrupt or truncated file?): {error}",
            ) from None

    def _check_level(self, level) -> int:
        if not is_integer(level):
            raise SlideRequestError(self.path, f"level: expected an integer, got {level!r}")
        if not 0 <= level < self.level_count:
            raise SlideRequestError(
                self.path,
                f"level {level} does not exist; the slide has {self.level_count} level(s), "
                f"0 to {self.level_count - 1}",
            )
        return int(level)

    def _check_box(self, box) -> tuple[int, int, int, int]:
        x, y, width, height = self._integers("box", box, 4)
        if width < 1 or height < 1:
            raise SlideRequestError(self.path, f"size: expected positive, got {width}x{height}")
        if width * height > MAX_REGION_PIXELS:
            raise SlideRequestError(
                self.path,
                f"a region of {width}x{height} pixels is more than {MAX_REGION_PIXELS}; read "
                "it in parts",
            )
        return x, y, width, height

    def _check_rectangle(self, box) -> tuple[float, float, float, float]:
        try:
            x, y, width, height = (float(v) for v in box)
        except (TypeError, ValueError):
            x = y = width = height = math.nan
        if not all(map(math.isfinite, (x, y, width, height))) or width <= 0 or height <= 0:
            raise SlideRequestError(self.path, f"box: expected a non-empty rectangle, got {box!r}")
        return x, y, width, height

    def _integers(self, name: str, values, count: int) -> tuple[int, ...]:
        values = tuple(values)
        if len(values) != count or not all(map(is_integer, values)):
            raise SlideRequestError(self.path, f"{name}: expected {count} integers, got {values!r}")
        return tuple(int(v) for v in values)

    def _positive(self, name: str, value) -> float:
        number = positive(value)
        if number is None:
            raise SlideRequestError(
                self.path, f"{name}: expected a positive finite number, got {value!r}"
            )
        return number


def _span(
    start: float, length: float, out_length: int, level_length: int
) -> tuple[int, int, int, int] | None:
    """Along one axis: the output pixels ``[o0, o1)`` inside the level, and level pixels to read.

    ``start`` and ``length`` are in level pixels (fractional); the output maps ``length`` onto
    ``out_length`` pixels. Returns ``(o0, o1, l0, l1)``, or None when nothing lies inside.
    """
    scale = length / out_length  # level pixels per output pixel
    o0 = max(0, math.ceil(-start / scale - 1e-9))
    o1 = min(out_length, math.floor((level_length - start) / scale + 1e-9))
    if o1 <= o0:
        return None
    l0 = min(max(round(start + o0 * scale), 0), level_length - 1)
    l1 = min(max(round(start + o1 * scale), l0 + 1), level_length)
    return o0, o1, l0, l1


def _check_file(path: Path) -> None:
    """Refuse what is not a non-empty regular file, before any library opens it."""
    try:
        info = os.stat(path)
    except OSError as error:
        raise SlideReadError(path, missing_reason(path, error)) from None
    if not stat.S_ISREG(info.st_mode):
        raise SlideReadError(path, f"is {file_kind(info.st_mode)}, not a slide file")
    if info.st_size == 0:
        raise SlideReadError(path, "empty file (0 bytes)")


def _check_mpp(path: Path, mpp) -> tuple[float, float] | None:
    """The ``mpp`` argument of :func:`open_slide` as ``(x, y)``, validated."""
    pair = None if mpp is None else mpp_pair(mpp)
    if mpp is not None and pair is None:
        raise SlideRequestError(
            path, f"mpp: expected a positive number or (x, y) pair, got {mpp!r}"
        )
    return pair


def _backend_order(path: Path, backend: str | None) -> list[str]:
    """Backends to try, in order: tiffslide first for the TIFF family, OpenSlide otherwise."""
    if backend is not None:
        if backend not in _BACKENDS:
            raise ValueError(
                f"backend: expected one of {sorted(_BACKENDS)} or None, got {backend!r}"
            )
        return [backend]
    vendor = detect_vendor(str(path))
    tiff = vendor in TIFFSLIDE_VENDORS or (vendor is None and path.suffix.lower() in TIFF_SUFFIXES)
    return ["tiffslide", "openslide"] if tiff else ["openslide", "tiffslide"]


def open_slide(
    path: str | os.PathLike,
    *,
    mpp: float | tuple[float, float] | None = None,
    backend: str | None = None,
) -> Slide:
    """Open a whole-slide image with the library that reads its format.

    Parameters
    ----------
    path : str or path-like
        The slide file (for MRXS, the ``.mrxs`` file beside its folder).
    mpp : float or (float, float), optional
        Microns per pixel of level 0, ``x`` and ``y``; overrides the file's value, and is
        needed for requests in microns per pixel when the file records none.
    backend : {"tiffslide", "openslide"}, optional
        Force one library; by default tiffslide for Aperio SVS and generic TIFF (also
        OME-TIFF), OpenSlide for every other format, each falling back to the other.

    Returns
    -------
    Slide
        Open; close it (or use it as a context manager) to release the file.

    Raises
    ------
    SlideReadError
        When the file is missing, not a regular file, empty, in no format either library
        reads, corrupt, truncated, or claims tiles too large to decode.
    SlideRequestError
        For an ``mpp`` that is not positive.

    Examples
    --------
    >>> from stainstyle.wsi import open_slide
    >>> with open_slide("slide.svs") as slide:  # doctest: +SKIP
    ...     thumbnail = slide.thumbnail(512)
    """
    path = Path(path)
    _check_file(path)
    override = _check_mpp(path, mpp)
    reasons = []
    for name in _backend_order(path, backend):
        try:
            opened = _BACKENDS[name](str(path))
        except (BackendError, ImportError) as error:
            reasons.append(f"{name}: {error}")
            continue
        slide = Slide(path, opened, override)
        logger.debug("opened %r", slide)
        return slide
    raise SlideReadError(path, "not a slide this library can read (" + "; ".join(reasons) + ")")
