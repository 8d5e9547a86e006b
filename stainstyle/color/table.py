"""A lookup table over the 2**24 RGB colours, filled lazily by a per-colour function.

When a mapping of uint8 RGB images is a function of each pixel's colour alone (a method with
fixed source statistics), it need be computed only once per distinct colour: :class:`ColourTable`
computes the colours of each image it has not seen yet, stores them, and maps the image with
one gather. The table holds ``2**24`` four-byte entries (64 MiB, allocated on first use); a
colour's fourth byte is 255 once it has been computed, so one read tells both.

A colour's value must not depend on the other colours computed with it: vector kernels (OpenCV
and NumPy SIMD loops) may compute the last elements of an array with scalar code whose result
can differ in the last bit, which after rounding changes a pixel by one level in rare cases.
So every batch of colours is padded with repeats of its last colour to a whole number of
:data:`FILL_QUANTUM` colours and at least one more: each colour is computed in the kernels'
vector loops, at any position, and its value is the same whichever images filled the table.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import cv2
import numpy as np

from stainstyle.color.quantize import row_strips

#: Number of 24-bit RGB colours.
N_COLOURS = 1 << 24

#: Colours computed at once, at most (a multiple of :data:`FILL_QUANTUM`).
FILL_CHUNK = 1 << 16

#: Each batch of colours is padded to a multiple of this many, plus at least one.
FILL_QUANTUM = 256

#: A table entry at or above this (fourth byte 255) holds a computed colour.
_KNOWN = np.uint32(0xFF000000)

#: ``cv2.mixChannels`` pairs copying R, G and B into the low three bytes of a wider pixel.
_RGB_INTO_LOW_BYTES = [0, 0, 1, 1, 2, 2]


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


def _padded(keys: np.ndarray) -> np.ndarray:
    """``keys`` followed by repeats of the last, to a multiple of ``FILL_QUANTUM``, at least one."""
    length = (len(keys) // FILL_QUANTUM + 1) * FILL_QUANTUM
    return np.concatenate([keys, np.full(length - len(keys), keys[-1], dtype=keys.dtype)])


class ColourTable:
    """A colour-to-colour lookup table of uint8 RGB, computed once per colour when first met.

    Parameters
    ----------
    compute : callable
        ``compute(colours)`` maps colours ``(n, 1, 3)`` uint8 (an image one pixel wide) to
        their images ``(n, 1, 3)`` uint8, each row a function of the same row alone. It is
        called with ``n`` a multiple of :data:`FILL_QUANTUM`, at most :data:`FILL_CHUNK` plus
        one quantum, and never twice for one colour. Picklable if the table is to be.

    Notes
    -----
    Memory: 64 MiB (``2**24`` entries of 4 bytes), allocated at the first :meth:`map`. Pages
    of the table are made resident by the operating system as colours are stored.

    Thread safety: :meth:`map` may be called from several threads at once; computing colours is
    serialized by a lock, reading the table is not (a colour's four bytes are stored at once).

    Pickling keeps ``compute`` and leaves the table out: an unpickled table starts empty and
    fills again as it maps.
    """

    def __init__(self, compute: Callable[[np.ndarray], np.ndarray]):
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
        """
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
            missing = keys[np.take(self._entries, keys) < _KNOWN]
            missing = np.unique(missing)
            for start in range(0, len(missing), FILL_CHUNK):
                chunk = missing[start : start + FILL_CHUNK]
                colours = key_colours(_padded(chunk)).reshape(-1, 1, 3)
                mapped = np.ascontiguousarray(self.compute(colours)[: len(chunk)])
                rgba = cv2.cvtColor(mapped.reshape(1, len(chunk), 3), cv2.COLOR_RGB2RGBA)
                self._entries[chunk] = rgba.view("<u4").reshape(len(chunk))
                self._n_computed += len(chunk)

    def __getstate__(self) -> dict:
        return {"compute": self.compute}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["compute"])
