"""Colour mappings computed colour by colour: in padded batches, and through a 2**24 table.

When a mapping of uint8 RGB images is a function of each pixel's colour alone (a method with
fixed source statistics), :func:`compute_colours` evaluates it on a list of colours, and
:class:`ColourTable` computes each colour only once: the colours of each image it has not met
yet, stored in a table over the ``2**24`` colours, every image then mapped with one gather.
Without a table that lasts, :func:`map_pixels` computes every pixel of some images, and
:func:`map_distinct` each of their distinct colours once (for a function that costs much more
than finding them).

A colour's value must not depend on the colours computed with it. Vector kernels (the SIMD loops
of OpenCV and NumPy) may compute the last elements of an array by scalar code whose result can
differ in the last bit, which after rounding changes a pixel by one level in rare cases. So the
function is always called on batches padded with repeats of their last colour to a whole number
of :data:`FILL_QUANTUM` colours and at least one more, no longer than the
:data:`~stainstyle.color.quantize.STRIP_PIXELS` the methods cut their float work into: each
colour is computed inside the kernels' vector loops, whatever its position, and has the same
value whichever batch it was in. The three ways therefore agree bit for bit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import cv2
import numpy as np

from stainstyle.color.quantize import STRIP_PIXELS, row_strips

#: Number of 24-bit RGB colours.
N_COLOURS = 1 << 24

#: Each batch of colours is padded to a multiple of this many, plus at least one.
FILL_QUANTUM = 256

#: Most colours in one padded batch: one strip of the methods' float kernels.
FILL_PIXELS = STRIP_PIXELS

#: :func:`map_distinct` maps images of more pixels than this through a table made for them.
TABLE_MIN_PIXELS = 1 << 20

#: A table entry at or above this (fourth byte 255) holds a computed colour.
_KNOWN = np.uint32(0xFF000000)

#: ``cv2.mixChannels`` pairs copying R, G and B into the low three bytes of a wider pixel.
_RGB_INTO_LOW_BYTES = [0, 0, 1, 1, 2, 2]

#: A colour function: colours ``(n, 1, 3)`` uint8, an image one pixel wide, to their images.
ColourFunction = Callable[[np.ndarray], np.ndarray]


def colour_keys(pixels: np.ndarray, wide: np.ndarray | None = None) -> np.ndarray:
    """Table index of each pixel: ``R + 256 * G + 65536 * B``.

    Parameters
    ----------
    pixels : ndarray of shape (n, 3), dtype uint8
        RGB pixels.
    wide : ndarray of shape (m, 8), dtype uint8, m >= n, optional
        Scratch space whose last five columns are zero, reused across calls; allocated when
        None.

    Returns
    -------
    ndarray of shape (n,), dtype int64
        Keys in ``[0, 2**24)``; a view of ``wide`` when given.
    """
    n = len(pixels)
    wide = np.zeros((n, 8), dtype=np.uint8) if wide is None else wide[:n]
    # OpenCV copies the channels into the zeroed 8-byte pixels, which read as little-endian
    # int64 are the keys: several times faster than shifting and or-ing in NumPy.
    cv2.mixChannels(
        [np.ascontiguousarray(pixels).reshape(1, n, 3)],
        [wide.reshape(1, n, 8)],
        _RGB_INTO_LOW_BYTES,
    )
    return wide.view("<i8").reshape(n)


def key_colours(keys: np.ndarray) -> np.ndarray:
    """RGB colours of table keys, the inverse of :func:`colour_keys`.

    Parameters
    ----------
    keys : ndarray of shape (n,), integer
        Keys in ``[0, 2**24)``.

    Returns
    -------
    ndarray of shape (n, 3), dtype uint8
    """
    return keys.astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3]


def compute_colours(compute: ColourFunction, colours: np.ndarray) -> np.ndarray:
    """``compute`` of a list of colours, called on padded batches (see the module docstring).

    Parameters
    ----------
    compute : callable
        Maps colours ``(m, 1, 3)`` uint8 to their images ``(m, 1, 3)`` uint8, each row a
        function of the same row alone; called with ``m`` a multiple of :data:`FILL_QUANTUM`,
        at most :data:`FILL_PIXELS`.
    colours : ndarray of shape (n, 3), dtype uint8
        Colours, in any order, repeats allowed.

    Returns
    -------
    ndarray of shape (n, 3), dtype uint8
        Their images.
    """
    out = np.empty((len(colours), 3), dtype=np.uint8)
    step = FILL_PIXELS - FILL_QUANTUM  # padded, a batch holds at most FILL_PIXELS colours
    for start in range(0, len(colours), step):
        batch = colours[start : start + step]
        n = len(batch)
        padded = np.empty(((n // FILL_QUANTUM + 1) * FILL_QUANTUM, 1, 3), dtype=np.uint8)
        padded[:n, 0] = batch
        padded[n:, 0] = batch[-1]
        out[start : start + n] = compute(padded)[:n, 0]
    return out


def map_pixels(compute: ColourFunction, images: np.ndarray) -> np.ndarray:
    """Map images through a colour function, every pixel computed (no table).

    Equal to :meth:`ColourTable.map` with the same function, which computes each colour once;
    this costs no table, but computes a colour as often as it occurs.

    Parameters
    ----------
    compute : callable
        As for :func:`compute_colours`.
    images : ndarray of shape (..., 3), dtype uint8
        Pixels in any layout.

    Returns
    -------
    ndarray of the shape of ``images``, dtype uint8
    """
    pixels = np.ascontiguousarray(images).reshape(-1, 3)
    return compute_colours(compute, pixels).reshape(images.shape)


def map_distinct(
    compute: ColourFunction, images: np.ndarray, table_min_pixels: int = TABLE_MIN_PIXELS
) -> np.ndarray:
    """Map images through a colour function, each distinct colour computed once.

    Up to ``table_min_pixels`` pixels the distinct colours come from ``np.unique`` (about 20
    bytes a pixel); larger images go through a :class:`ColourTable` made for the call (64
    MiB), strip by strip. Equal to :func:`map_pixels`.

    Parameters
    ----------
    compute : callable
        As for :func:`compute_colours`.
    images : ndarray of shape (..., H, W, 3), dtype uint8
        Images.
    table_min_pixels : int, default=TABLE_MIN_PIXELS
        Images with more pixels go through a table.

    Returns
    -------
    ndarray of the shape of ``images``, dtype uint8
    """
    if images.size // 3 > table_min_pixels:
        return ColourTable(compute).map(images)
    pixels = np.ascontiguousarray(images).reshape(-1, 3)
    keys, inverse = np.unique(colour_keys(pixels), return_inverse=True)
    return compute_colours(compute, key_colours(keys))[inverse.ravel()].reshape(images.shape)


class ColourTable:
    """A colour-to-colour lookup table of uint8 RGB, computed once per colour when first met.

    Parameters
    ----------
    compute : callable
        As for :func:`compute_colours`; never called twice for one colour. Picklable if the
        table is to be.

    Notes
    -----
    Memory: 64 MiB (``2**24`` entries of 4 bytes), allocated at the first :meth:`map`; a
    colour's fourth byte is 255 once it has been computed, so one read tells both. Pages of
    the table are made resident by the operating system as colours are stored.

    Thread safety: :meth:`map` may be called from several threads at once; computing colours is
    serialized by a lock, reading the table is not (a colour's four bytes are stored at once).

    Pickling keeps ``compute`` and leaves the table out: an unpickled table starts empty and
    fills again as it maps.
    """

    def __init__(self, compute: ColourFunction):
        self.compute = compute
        self._lock = threading.Lock()
        self._entries: np.ndarray | None = None
        self._n_computed = 0

    @property
    def n_computed(self) -> int:
        """Distinct colours computed so far."""
        return self._n_computed

    def map(self, images: np.ndarray) -> np.ndarray:
        """Map every pixel through the table, computing the colours not met yet.

        Parameters
        ----------
        images : ndarray of shape (..., H, W, 3), dtype uint8
            Images, read strip by strip: a strided view is not copied whole.

        Returns
        -------
        ndarray of the shape of ``images``, dtype uint8

        Raises
        ------
        ValueError
            If ``images`` is not of shape (..., H, W, 3).
        """
        if images.ndim < 3 or images.shape[-1] != 3:
            raise ValueError(f"images: expected shape (..., H, W, 3), got {images.shape}")
        out = np.empty(images.shape, dtype=np.uint8)
        if out.size == 0:
            return out
        entries = self._table()
        strips = row_strips(images.shape[-3:])
        # Strip by strip, so the keys and entries stay cache-sized.
        most = (strips[0].stop - strips[0].start) * images.shape[-2]
        wide = np.zeros((most, 8), dtype=np.uint8)
        values = np.empty(most, dtype="<u4")
        for index in np.ndindex(images.shape[:-3]):
            for rows in strips:
                keys = colour_keys(images[index][rows].reshape(-1, 3), wide)
                n = len(keys)
                np.take(entries, keys, out=values[:n])
                if values[:n].min() < _KNOWN:
                    self._fill(keys)
                    np.take(entries, keys, out=values[:n])
                rgba = values[:n].view(np.uint8).reshape(1, n, 4)
                cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB, dst=out[index][rows].reshape(1, n, 3))
        return out

    def _table(self) -> np.ndarray:
        """The entries ``(2**24,)`` little-endian uint32, allocated at the first call."""
        if self._entries is None:
            with self._lock:
                if self._entries is None:
                    self._entries = np.zeros(N_COLOURS, dtype="<u4")
        return self._entries

    def _fill(self, keys: np.ndarray) -> None:
        """Compute and store the colours of ``keys`` that are not in the table."""
        with self._lock:  # another thread may have computed some meanwhile: look again
            entries = self._entries
            missing = keys[np.take(entries, keys) < _KNOWN]
            if len(missing) == 0:
                return
            # The distinct keys, without sorting: each key's entry is marked with the position
            # of one of its occurrences (whichever write lands last), so exactly one position
            # per key finds its own mark. Marks are below _KNOWN: the keys still read as new.
            marks = np.arange(1, len(missing) + 1, dtype=entries.dtype)
            entries[missing] = marks
            missing = missing[np.take(entries, missing) == marks]
            mapped = compute_colours(self.compute, key_colours(missing))
            rgba = cv2.cvtColor(mapped.reshape(1, -1, 3), cv2.COLOR_RGB2RGBA)
            entries[missing] = rgba.view("<u4").reshape(len(missing))
            self._n_computed += len(missing)

    def __getstate__(self) -> dict:
        return {"compute": self.compute}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["compute"])
