"""Sums over pixels that do not depend on the number of threads.

A BLAS product ``a.T @ b`` over many pixels splits the sum among its threads, so its rounding
depends on how many threads the BLAS library runs (``OPENBLAS_NUM_THREADS``, the machine's
cores, a Dask worker's settings). A stain matrix estimated from such a sum moves by a few units
in the last place from one machine to another, and a few pixels of the normalized tile by one
gray level. The sums here run in numpy's own loops, in float64, block by block in a fixed
order: the same bits on every machine.
"""

from __future__ import annotations

import numpy as np

#: Pixels summed per block: bounds the float64 copy of a block to about 1.5 MiB per operand.
BLOCK_PIXELS = 1 << 16


def cross_products(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a.T @ b`` summed in float64 in a fixed order, whatever the thread count.

    Parameters
    ----------
    a : ndarray of shape (n, p), float
        One value per pixel and column (e.g. optical densities, ``p = 3``).
    b : ndarray of shape (n, q), float
        Another, for the same pixels.

    Returns
    -------
    ndarray of shape (p, q), dtype float64
        ``sum_i a[i, :, None] * b[i, None, :]``.
    """
    out = np.zeros((a.shape[1], b.shape[1]), dtype=np.float64)
    for start in range(0, len(a), BLOCK_PIXELS):
        block_a = a[start : start + BLOCK_PIXELS].astype(np.float64, copy=False)
        block_b = b[start : start + BLOCK_PIXELS].astype(np.float64, copy=False)
        out += np.einsum("ni,nj->ij", block_a, block_b)
    return out


def column_sums(a: np.ndarray) -> np.ndarray:
    """Column sums of ``a`` ``(n, p)`` in float64, in a fixed order; shape ``(p,)``."""
    out = np.zeros(a.shape[1], dtype=np.float64)
    for start in range(0, len(a), BLOCK_PIXELS):
        out += a[start : start + BLOCK_PIXELS].sum(axis=0, dtype=np.float64)
    return out


def planar_cross_products(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b.T`` of planar values (one row per channel), in a fixed order.

    The planar layout makes every sum one contiguous numpy reduction (pairwise summation),
    several times faster than :func:`cross_products` on interleaved pixels for few channels.

    Parameters
    ----------
    a : ndarray of shape (p, n), dtype float64
        One row of ``n`` pixel values per channel.
    b : ndarray of shape (q, n), dtype float64
        Another, for the same pixels.

    Returns
    -------
    ndarray of shape (p, q), dtype float64
        ``sum_i a[:, None, i] * b[None, :, i]``.
    """
    out = np.zeros((a.shape[0], b.shape[0]), dtype=np.float64)
    for start in range(0, a.shape[1], BLOCK_PIXELS):
        block = slice(start, start + BLOCK_PIXELS)
        out += (a[:, None, block] * b[None, :, block]).sum(axis=2)
    return out
