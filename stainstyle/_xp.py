"""Maths written once for numpy and torch: the array namespace ``xp`` and its shared helpers.

Pixel formulas that have a numpy and a torch form (the augmenters' ``_apply``, the colour spaces
of :mod:`stainstyle.color`, the torch kernels of the classic methods) are written against an
array namespace ``xp``, :mod:`numpy` or :mod:`torch`, using only what the two share (``log``,
``exp``, ``where``, ``minimum``, ``clip``, ``stack``, the ``@`` operator). Constants reach the
data's dtype and device through :func:`constant`. torch is imported only when a tensor is met.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def is_tensor(x: Any) -> bool:
    """Whether ``x`` is a torch tensor (without importing torch)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def is_tensor_input(X: Any) -> bool:
    """Whether ``X`` is a tensor, or a non-empty list or tuple of tensors only."""
    if isinstance(X, (list, tuple)):
        return len(X) > 0 and all(is_tensor(x) for x in X)
    return is_tensor(X)


def namespace(x: Any) -> Any:
    """The array namespace of ``x``: :mod:`torch` for a tensor, :mod:`numpy` otherwise."""
    if is_tensor(x):
        import torch

        return torch
    return np


def constant(xp: Any, values: Any, like: Any) -> Any:
    """A parameter array in the dtype (and device) of ``like``.

    Parameters
    ----------
    xp : module
        :mod:`numpy` or :mod:`torch`.
    values : array-like
        Parameters, usually float64 numpy.
    like : ndarray or torch.Tensor
        The batch the parameters apply to.

    Returns
    -------
    ndarray or torch.Tensor
    """
    if xp is np:
        return np.asarray(values, dtype=like.dtype)
    return xp.as_tensor(np.array(values), dtype=like.dtype, device=like.device)


def channel_extremes(xp: Any, x: Any) -> tuple[Any, Any]:
    """Per-pixel minimum and maximum over the three channels of ``x`` (..., 3)."""
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    return xp.minimum(xp.minimum(r, g), b), xp.maximum(xp.maximum(r, g), b)


def pixels_times(x: Any, matrix: Any) -> Any:
    """Per-tile colour transform: ``x`` (n, H, W, c) times ``matrix`` (n, c, k), as (n, H, W, k).

    Parameters
    ----------
    x : ndarray or torch.Tensor of shape (n, H, W, c)
    matrix : ndarray or torch.Tensor of shape (n, c, k) or (c, k), same dtype

    Returns
    -------
    ndarray or torch.Tensor of shape (n, H, W, k)
    """
    n, height, width, channels = x.shape
    return (x.reshape(n, height * width, channels) @ matrix).reshape(
        n, height, width, matrix.shape[-1]
    )
