"""Image files in and out: the one reader and the one writer of stainstyle.

Every image file the library and the ``stainstyle`` command read goes through
:func:`read_image_data` (or :func:`read_image`, its pixels only), and every image file they write
goes through :func:`write_image`. The rules:

Reading
    - Only regular files are opened. A FIFO, socket, device or folder is refused without being
      opened for reading (a FIFO would block forever); a dangling symbolic link reads as a
      missing file and a symbolic link loop is named as such.
    - The size is checked from the header, before any pixel is decoded: an image with more
      than ``max_pixels`` pixels (default: Pillow's decompression-bomb limit,
      ``PIL.Image.MAX_IMAGE_PIXELS``, 89,478,485 unless changed) is refused, with its size and
      how to raise the limit. Pillow's ``DecompressionBombError`` and ``DecompressionBombWarning``
      never escape.
    - Multi-page and multi-frame files (TIFF pages, animated GIF and PNG) are refused, naming
      the page count; split them into one file per page. The primary image of a JPEG with
      extra pictures (MPO) is read and written back as JPEG.
    - A truncated or corrupt file is an error; nothing is guessed.
    - EXIF orientation is applied, so the pixels are upright as a viewer shows them.
    - Grayscale is replicated to three channels; palette images are expanded; CMYK and YCbCr
      are converted to RGB.
    - An alpha channel (or transparent palette entry or colour key) is kept separately, for
      writing back, and the pixels are composited onto white: transparent means glass.
    - 16-bit samples (grayscale, RGB, RGBA, gray with alpha) are scaled to 8 bits with
      rounding, ``round(value / 257)``. Pillow reads 16-bit RGB PNG and TIFF files as 8 bits by
      dropping the low byte, so those are decoded with OpenCV, which keeps the 16 bits.
    - Float images (Pillow mode ``"F"``, e.g. 32-bit float grayscale TIFF) are scaled by 255
      when all values lie in [0, 1]; other ranges, NaN and infinities are refused.
    - 32-bit integer images are refused.
    - Every failure raises :class:`ImageReadError`, an ``OSError`` whose message names the file.
      Lossy conversions (bit depth, CMYK) are listed in :attr:`ImageData.notes` and logged at
      DEBUG level.

Writing
    - Outputs have 8 bits per channel, RGB, plus the input's alpha channel when it had one.
    - :func:`write_image` writes in the format of the image it is given ``like`` (or the one its
      suffix names), with the input's resolution (dpi), its ICC profile when that describes RGB,
      and its TIFF compression when Pillow writes it (else LZW). The EXIF orientation is not
      written back: the pixels are already upright.
    - Writes are atomic (``stainstyle._atomic.atomic_path``): a reader sees the previous file
      or the complete new one, and a new file gets the usual mode under the umask.

Pillow's decompression-bomb check is a process-wide setting. While a header is parsed the reader
turns it off, under a lock, and applies ``max_pixels`` itself; parsing a header allocates no
pixels. Pixels are decoded with Pillow's check in place, raised to ``max_pixels`` (under the
lock) only when ``max_pixels`` is above it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from stainstyle._atomic import atomic_path

logger = logging.getLogger(__name__)

#: File suffixes of the images read from folders: PNG, JPEG, TIFF and BMP.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})

#: TIFF compressions written back as they were read; other TIFFs are written with LZW.
TIFF_COMPRESSIONS = frozenset({"raw", "tiff_lzw", "tiff_deflate", "tiff_adobe_deflate", "packbits"})

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ORIENTATION_TAG = 0x0112
_BITS_PER_SAMPLE_TAG = 258
_SAMPLE_FORMAT_TAG = 339

#: Serializes changes of PIL.Image.MAX_IMAGE_PIXELS made by this module.
_PILLOW_LIMIT_LOCK = threading.RLock()


class ImageReadError(OSError):
    """An image file is missing, corrupt, truncated, too large or unsupported.

    Parameters
    ----------
    path : str or path-like
        The file.
    reason : str
        What is wrong with it.

    Attributes
    ----------
    path : str
        The file, as given.
    reason : str
        What is wrong with it; the message is ``"{path}: {reason}"``.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        return type(self), (self.path, self.reason)


@dataclass(frozen=True, eq=False)
class ImageData:
    """Pixels of an image file and what is needed to write it back in the same format.

    Attributes
    ----------
    rgb : ndarray of shape (H, W, 3), dtype uint8
        Upright pixels; transparent pixels composited onto white.
    format : str
        Pillow format name of the file, e.g. ``"PNG"``, ``"JPEG"``, ``"TIFF"``.
    alpha : ndarray of shape (H, W), dtype uint8, or None
        The alpha channel (255 opaque), restored by :func:`write_image`; None without one.
    save_options : dict
        Pillow save options taken from the file: ``dpi``, ``icc_profile`` (RGB profiles
        only) and the TIFF ``compression``.
    notes : tuple of str
        Lossy conversions made on reading, e.g. ``"16-bit samples scaled to 8 bits"``.
    """

    rgb: np.ndarray
    format: str
    alpha: np.ndarray | None = None
    save_options: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------ reading
def read_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> np.ndarray:
    """Read one image file as uint8 RGB.

    Parameters
    ----------
    path : str or path-like
        Image file (PNG, JPEG, TIFF, BMP or another single-image format Pillow reads).
    max_pixels : int, optional
        Refuse images with more pixels than this, from the header alone. Default: Pillow's
        ``PIL.Image.MAX_IMAGE_PIXELS`` (no limit when that is None).

    Returns
    -------
    ndarray of shape (H, W, 3), dtype uint8
        Upright; grayscale replicated to 3 channels, alpha composited onto white, 16-bit and
        [0, 1] float samples scaled to 8 bits (see the module documentation).

    Raises
    ------
    ImageReadError
        If the file is missing, not a regular file, not an image, corrupt, truncated, larger
        than ``max_pixels``, multi-page, or has samples that cannot be scaled to 8 bits; the
        message names the file.

    See Also
    --------
    read_image_data : The same pixels with the format, alpha channel and save options.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from PIL import Image
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "gray.png"
    >>> Image.fromarray(np.full((2, 3), 7, np.uint8)).save(path)
    >>> read_image(path).shape
    (2, 3, 3)
    """
    return read_image_data(path, max_pixels=max_pixels).rgb


def read_image_data(path: str | os.PathLike, *, max_pixels: int | None = None) -> ImageData:
    """Read one image file: its uint8 RGB pixels and what is needed to write it back.

    Parameters
    ----------
    path : str or path-like
        Image file.
    max_pixels : int, optional
        Refuse images with more pixels than this, from the header alone. Default: Pillow's
        ``PIL.Image.MAX_IMAGE_PIXELS`` (no limit when that is None).

    Returns
    -------
    ImageData
        ``rgb`` of shape (H, W, 3) uint8, the format name, the alpha channel (or None), the
        save options and the notes of lossy conversions.

    Raises
    ------
    ImageReadError
        As :func:`read_image`.
    """
    max_pixels = _check_max_pixels(max_pixels)
    try:
        with _open_regular_file(path) as handle, _open_header(handle, path, max_pixels) as image:
            data = _decode(image, handle, path, max_pixels)
    except ImageReadError:
        raise
    except Exception as error:  # any decoder failure is a property of the file
        raise ImageReadError(
            path, f"cannot read image ({type(error).__name__}: {error})"
        ) from error
    for note in data.notes:
        logger.debug("%s: %s", os.fspath(path), note)
    return data


def read_image_header(path: str | os.PathLike, *, max_pixels: int | None = None) -> tuple[int, int]:
    """Check that a file is a single image within the size limit, without decoding pixels.

    Parameters
    ----------
    path : str or path-like
        Image file.
    max_pixels : int, optional
        As in :func:`read_image`.

    Returns
    -------
    (height, width) : tuple of int
        As the file stores them (before EXIF orientation).

    Raises
    ------
    ImageReadError
        If the file is missing, not a regular file, not an image, larger than ``max_pixels`` or
        multi-page. A file corrupt past its header passes; :func:`read_image` finds it.
    """
    max_pixels = _check_max_pixels(max_pixels)
    try:
        with _open_regular_file(path) as handle, _open_header(handle, path, max_pixels) as image:
            width, height = image.size
    except ImageReadError:
        raise
    except Exception as error:
        raise ImageReadError(
            path, f"cannot read image ({type(error).__name__}: {error})"
        ) from error
    return height, width


def file_kind(mode: int) -> str:
    """Name the kind of a file that is not a regular file, from its ``st_mode``.

    Parameters
    ----------
    mode : int
        ``os.stat_result.st_mode``.

    Returns
    -------
    str
        ``"a folder"``, ``"a FIFO (named pipe)"``, ``"a socket"``, ``"a character device"``,
        ``"a block device"``, or ``"a regular file"``.
    """
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISREG, "a regular file"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def missing_reason(path: str | os.PathLike, error: OSError) -> str:
    """Why ``os.stat(path)`` failed, in words: missing, dangling link, link loop, or the error.

    Parameters
    ----------
    path : str or path-like
        The path that could not be examined.
    error : OSError
        The error ``os.stat`` raised.

    Returns
    -------
    str
        E.g. ``"dangling symbolic link to 'gone.png'"`` or ``"symbolic link loop"``.
    """
    if error.errno == errno.ELOOP:
        return "symbolic link loop"
    if isinstance(error, FileNotFoundError):
        if os.path.islink(path):
            return f"dangling symbolic link to {os.readlink(path)!r}"
        return "file not found"
    return error.strerror or str(error)


@contextlib.contextmanager
def _open_regular_file(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """Open ``path`` for binary reading if, and only if, it is a regular file."""
    try:
        info = os.stat(path)
    except OSError as error:
        raise ImageReadError(path, missing_reason(path, error)) from None
    if not stat.S_ISREG(info.st_mode):
        raise ImageReadError(path, f"is {file_kind(info.st_mode)}, not an image file")
    # O_NONBLOCK: if the path was replaced by a FIFO since the check, open() must not block.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        raise ImageReadError(path, missing_reason(path, error)) from None
    with os.fdopen(descriptor, "rb") as handle:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise ImageReadError(path, f"is {file_kind(mode)}, not an image file")
        yield handle


def _check_max_pixels(max_pixels: int | None) -> int | None:
    """``max_pixels`` validated; None becomes Pillow's current limit (None: no limit)."""
    if max_pixels is None:
        return _pillow_limit()
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)):
        raise TypeError(f"max_pixels: expected a positive integer or None, got {max_pixels!r}")
    if max_pixels < 1:
        raise ValueError(f"max_pixels: expected a positive integer or None, got {max_pixels}")
    return int(max_pixels)


def _pillow_limit() -> int | None:
    """Pillow's limit, read under the lock: never a value this module set for a moment."""
    from PIL import Image

    with _PILLOW_LIMIT_LOCK:
        return Image.MAX_IMAGE_PIXELS


@contextlib.contextmanager
def _pillow_pixel_limit(limit: int | None) -> Iterator[None]:
    """Set Pillow's decompression-bomb limit for the block, under the module's lock."""
    from PIL import Image

    with _PILLOW_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = limit
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


@contextlib.contextmanager
def _open_header(handle: IO[bytes], path, max_pixels: int | None):
    """Pillow image of ``handle`` with its header checked: one frame, at most ``max_pixels``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with _pillow_pixel_limit(None):  # the limit is applied below, from the header
            image = Image.open(handle)
            n_frames = getattr(image, "n_frames", 1)
    except UnidentifiedImageError:
        size = os.fstat(handle.fileno()).st_size
        reason = "empty file (0 bytes)" if size == 0 else "not an image, or an unknown format"
        raise ImageReadError(path, f"cannot read image ({reason})") from None
    with image:
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            raise ImageReadError(
                path,
                f"{width} x {height} = {width * height:,} pixels is above the limit of "
                f"{max_pixels:,} pixels (a guard against decompression bombs); if the image is "
                "genuine, raise the limit: max_pixels= in Python, --max-pixels on the command "
                "line",
            )
        if width * height == 0:
            raise ImageReadError(path, f"image of {width} x {height} pixels has no pixels")
        if n_frames > 1 and image.format != "MPO":
            unit = "pages" if image.format == "TIFF" else "frames"
            raise ImageReadError(
                path,
                f"{image.format} file with {n_frames} {unit}; stainstyle reads single images: "
                f"split it into one file per {unit[:-1]}",
            )
        yield image


@contextlib.contextmanager
def _decoding_limit(max_pixels: int | None) -> Iterator[None]:
    """Pillow's own checks while decoding: raised to ``max_pixels`` if that is above them."""
    pillow = _pillow_limit()
    if pillow is not None and (max_pixels is None or max_pixels > pillow):
        with _pillow_pixel_limit(max_pixels):
            yield
    else:
        yield


def _declared_bits(image, handle: IO[bytes]) -> int | None:
    """Bits per sample stated by a PNG or TIFF header, else None."""
    if image.format == "PNG":
        handle.seek(0)
        head = handle.read(26)
        if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
            return head[24]
    elif image.format == "TIFF":
        bits = image.tag_v2.get(_BITS_PER_SAMPLE_TAG)
        if bits:
            return max(bits) if isinstance(bits, tuple) else int(bits)
    return None


def _orientation(image) -> int:
    """EXIF orientation (1-8) of a Pillow image; 1 when absent or unreadable."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # a malformed EXIF block does not make the pixels unreadable
        return 1
    return value if value in range(1, 9) else 1


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation 1-8 to an (H, W, ...) array, as a viewer displays it."""
    flips = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(flips[orientation](array))


def _scale_16_bit(samples: np.ndarray) -> np.ndarray:
    """uint16 samples to uint8: ``round(value / 257)``, exact in integers."""
    return ((samples.astype(np.uint32) + 128) // 257).astype(np.uint8)


_SIXTEEN_BIT_NOTE = "16-bit samples scaled to 8 bits (round(value / 257))"


def _decode(image, handle: IO[bytes], path, max_pixels: int | None) -> ImageData:
    """Pixels, alpha and save options of an opened, header-checked Pillow image."""
    notes: list[str] = []
    bits = _declared_bits(image, handle)
    deep_colour = bits is not None and bits > 8 and image.mode in ("RGB", "RGBA", "LA", "L")
    options = _save_options(image)
    file_format = "JPEG" if image.format == "MPO" else image.format
    with _decoding_limit(max_pixels):
        if deep_colour:
            orientation = _orientation(image)  # before load: Pillow may apply it to its pixels
            image.load()  # finds a truncated or corrupt file, with Pillow's clear message
            rgb, alpha = _decode_16_bit_colour(handle, path)
            rgb, alpha = _orient(rgb, orientation), _orient_optional(alpha, orientation)
            notes.append(_SIXTEEN_BIT_NOTE)
        else:
            image.load()
            orientation = _orientation(image)
            rgb, alpha = _pillow_pixels(image, bits, path, notes)
            rgb, alpha = _orient(rgb, orientation), _orient_optional(alpha, orientation)
    if image.format == "MPO":
        notes.append("multi-picture JPEG (MPO): only the primary image is read")
    if alpha is not None:
        rgb = _composite_on_white(rgb, alpha)
    return ImageData(rgb, file_format, alpha, options, tuple(notes))


def _orient_optional(array: np.ndarray | None, orientation: int) -> np.ndarray | None:
    return None if array is None else _orient(array, orientation)


def _decode_16_bit_colour(handle: IO[bytes], path) -> tuple[np.ndarray, np.ndarray | None]:
    """A 16-bit colour (or gray with alpha) PNG or TIFF, decoded by OpenCV to keep 16 bits."""
    import cv2

    handle.seek(0)
    buffer = np.frombuffer(handle.read(), dtype=np.uint8)
    array = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if array is None or array.dtype != np.uint16 or array.ndim not in (2, 3):
        raise ImageReadError(path, "cannot decode its 16-bit samples")
    array = _scale_16_bit(array)
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=-1), None
    channels = array.shape[-1]
    if channels == 2:  # gray, alpha
        return np.repeat(array[..., :1], 3, axis=-1), array[..., 1].copy()
    if channels == 3:
        return array[..., ::-1].copy(), None  # OpenCV's BGR
    if channels == 4:
        return array[..., 2::-1].copy(), array[..., 3].copy()
    raise ImageReadError(path, f"16-bit image with {channels} channels is not supported")


def _pillow_pixels(
    image, bits: int | None, path, notes: list[str]
) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 RGB and alpha of a loaded Pillow image, by mode."""
    mode = image.mode
    if mode == "F":
        notes.append("float samples in [0, 1] scaled to 8 bits (round(value * 255))")
        return _gray_to_rgb(_float_to_uint8(np.asarray(image), path)), None
    if mode.startswith("I;16") or mode == "I":
        notes.append(_SIXTEEN_BIT_NOTE)
        return _gray_to_rgb(_integer_to_uint8(image, bits, path)), None
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        notes.append(f"{mode} converted to RGB")
    if image.has_transparency_data:
        rgba = np.asarray(image.convert("RGBA"))
        return rgba[..., :3].copy(), rgba[..., 3].copy()
    return np.asarray(image.convert("RGB")).copy(), None


def _integer_to_uint8(image, bits: int | None, path) -> np.ndarray:
    """Unsigned 16-bit grayscale as uint8; 32-bit and signed samples are refused."""
    if not (image.mode.startswith("I;16") or bits == 16):
        raise ImageReadError(
            path,
            f"{bits or 32}-bit integer samples are not supported; convert the image to 8 or 16 "
            "bits per sample",
        )
    sample_format = image.tag_v2.get(_SAMPLE_FORMAT_TAG, 1) if image.format == "TIFF" else 1
    samples = np.asarray(image)
    signed = 2 in np.atleast_1d(sample_format) or image.mode.endswith("S")
    if signed or samples.min() < 0 or samples.max() > 65535:
        raise ImageReadError(
            path, "signed 16-bit samples are not supported; convert the image to unsigned"
        )
    return _scale_16_bit(samples)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=-1)


def _float_to_uint8(samples: np.ndarray, path) -> np.ndarray:
    """Float samples in [0, 1] as uint8; anything else is refused."""
    if not np.all(np.isfinite(samples)):
        raise ImageReadError(path, "float image with NaN or infinite values")
    low, high = float(samples.min()), float(samples.max())
    if low < 0.0 or high > 1.0:
        raise ImageReadError(
            path,
            f"float image with values from {low:g} to {high:g}; only float images with values in "
            "[0, 1] are read: scale it to [0, 1] or convert it to 8 bits",
        )
    return np.rint(samples.astype(np.float64) * 255.0).astype(np.uint8)


def _composite_on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``rgb * a + 255 * (1 - a)`` with ``a = alpha / 255``, rounded: transparent is glass."""
    if np.all(alpha == 255):
        return rgb
    a = alpha.astype(np.uint32)[..., None]
    blended = (rgb.astype(np.uint32) * a + 255 * (255 - a) + 127) // 255
    return blended.astype(np.uint8)


def _save_options(image) -> dict[str, Any]:
    """``dpi``, an RGB ``icc_profile`` and the TIFF ``compression`` of a Pillow image."""
    options: dict[str, Any] = {}
    if "dpi" in image.info:
        options["dpi"] = image.info["dpi"]
    profile = image.info.get("icc_profile")
    if isinstance(profile, bytes) and profile[16:20] == b"RGB ":  # the profile's colour space
        options["icc_profile"] = profile
    if image.format == "TIFF":
        compression = image.info.get("compression")
        options["compression"] = compression if compression in TIFF_COMPRESSIONS else "tiff_lzw"
    return options


# ------------------------------------------------------------------------------------ writing
def write_image(
    path: str | os.PathLike,
    rgb: np.ndarray,
    *,
    like: ImageData | None = None,
    jpeg_quality: int = 95,
) -> None:
    """Write uint8 RGB pixels to an image file, atomically, in the format of ``like``.

    Parameters
    ----------
    path : str or path-like
        Destination; its folder is created if needed. A reader sees either the previous file
        or the complete new one, and a new file gets mode ``0o666`` minus the umask.
    rgb : ndarray of shape (H, W, 3), dtype uint8
        Pixels, upright. The file has 8 bits per channel.
    like : ImageData, optional
        The image read from the input: its format, alpha channel (which must match ``rgb`` in
        height and width), dpi, RGB ICC profile and TIFF compression are written. Default: the
        format named by the suffix of ``path``, without extras.
    jpeg_quality : int, default=95
        Quality of a JPEG file, 1 (worst) to 100 (best).

    Raises
    ------
    ValueError
        If ``rgb`` is not (H, W, 3) uint8, the alpha channel of ``like`` has another size,
        ``jpeg_quality`` is outside 1-100, or no format is known for ``path``.
    OSError
        If the file cannot be written; the message names it.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "out.png"
    >>> write_image(path, np.zeros((4, 5, 3), np.uint8))
    >>> read_image(path).shape
    (4, 5, 3)
    """
    from PIL import Image

    if not (
        isinstance(rgb, np.ndarray)
        and rgb.dtype == np.uint8
        and rgb.ndim == 3
        and rgb.shape[2] == 3
    ):
        raise ValueError(
            f"rgb: expected an ndarray of shape (H, W, 3) and dtype uint8, got "
            f"{type(rgb).__name__} of shape {getattr(rgb, 'shape', None)} and dtype "
            f"{getattr(rgb, 'dtype', None)}"
        )
    if isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, (int, np.integer)):
        raise ValueError(f"jpeg_quality: expected an integer from 1 to 100, got {jpeg_quality!r}")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality: expected an integer from 1 to 100, got {jpeg_quality}")
    path = Path(path)
    file_format = like.format if like is not None else _format_of_suffix(path)
    Image.init()
    if file_format not in Image.SAVE:
        raise ValueError(f"{path}: Pillow cannot write {file_format} files")
    pil = Image.fromarray(rgb)
    alpha = like.alpha if like is not None else None
    if alpha is not None:
        if alpha.shape != rgb.shape[:2]:
            raise ValueError(
                f"like.alpha: shape {alpha.shape} does not match rgb of shape {rgb.shape}"
            )
        pil.putalpha(Image.fromarray(alpha))
    options = dict(like.save_options) if like is not None else {}
    if file_format == "JPEG":
        options["quality"] = int(jpeg_quality)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as temporary:
            pil.save(temporary, format=file_format, **options)
    except Exception as error:  # Pillow's encoders raise many types; name the file
        raise OSError(
            f"{path}: cannot write as {file_format} ({type(error).__name__}: {error})"
        ) from error


def _format_of_suffix(path: Path) -> str:
    from PIL import Image

    file_format = Image.registered_extensions().get(path.suffix.lower())
    if file_format is None:
        raise ValueError(f"{path}: no image format for the suffix {path.suffix!r}")
    return file_format
