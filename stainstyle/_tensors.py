"""Torch tensors at the library boundary: tiles that stay on their device, and back.

:func:`as_tensor_tiles` is the torch twin of :func:`stainstyle._validation.as_tiles`: it checks
tensor input with the same rules (shape, channels, dtype, NaN, range, opaque alpha) on the
tensor's own device and returns a :class:`TensorTiles`, whose tiles are uint8 tensors
``(H, W, 3)`` on that device. No pixel is copied to numpy: the estimators' torch kernels compute
on these tensors, and :meth:`TensorTiles.restore` puts their results back into the caller's
layout, dtype and device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from stainstyle._validation import Tiles, _Source


def check_tensor_values(x: torch.Tensor, name: str) -> None:
    """The value checks of :func:`stainstyle._validation.as_tiles`, on the tensor's device.

    Raises
    ------
    ValueError
        If ``x`` is empty, of a dtype other than uint8 or float, holds NaN or infinite values,
        or float values outside [0, 1].
    """
    if 0 in x.shape:
        raise ValueError(f"{name}: empty input, got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return
    if not x.is_floating_point():
        raise ValueError(
            f"{name}: expected dtype uint8 (0-255) or float in [0, 1], got {x.dtype}; "
            "convert with .to(torch.uint8) if the values are 0-255 intensities"
        )
    n_bad = int((~torch.isfinite(x)).sum())
    if n_bad:
        raise ValueError(f"{name}: contains {n_bad} NaN or infinite values")
    low, high = float(x.min()), float(x.max())
    if low < 0.0 or high > 1.0:
        hint = " (looks like 0-255 data: divide by 255 or cast to uint8)" if high > 1.0 else ""
        raise ValueError(
            f"{name}: float input must lie in [0, 1], got values in [{low:g}, {high:g}]{hint}"
        )


def _uint8_rgb(x: torch.Tensor, name: str) -> torch.Tensor:
    """Checked ``(..., H, W, 3|4)`` tensor data as uint8 RGB on the same device."""
    if x.shape[-1] not in (3, 4):
        raise ValueError(
            f"{name}: expected 3 (RGB) or 4 (RGBA) channels in the last axis, "
            f"got shape {tuple(x.shape)}"
        )
    check_tensor_values(x, name)
    if x.dtype == torch.uint8:
        quantized = x
    else:  # in float64, as numpy quantizes: rint(x * 255)
        quantized = torch.round(x.to(torch.float64) * 255.0).to(torch.uint8)
    if x.shape[-1] == 4:
        opaque = x[..., 3] == (255 if x.dtype == torch.uint8 else 1.0)
        n_transparent = int((~opaque).sum())
        if n_transparent:
            raise ValueError(
                f"{name}: RGBA input is accepted only when alpha is fully opaque; "
                f"{n_transparent} pixels are transparent"
            )
        quantized = quantized[..., :3]
    return quantized


class TensorTiles(Tiles):
    """Validated tensor tiles in canonical form, on the caller's device.

    As :class:`~stainstyle._validation.Tiles`, with ``images`` uint8 tensors ``(H_i, W_i, 3)``
    (and ``stacked`` a uint8 tensor ``(N, H, W, 3)`` for a batch); ``sources[i].original`` holds
    the caller's float tensor of a float tile, returned bit for bit when the tile passes through.
    """

    def stack(self, indices: np.ndarray) -> torch.Tensor:
        """Tiles of one shape as one uint8 tensor ``(n, H, W, 3)`` (a view when possible)."""
        if self.stacked is not None and len(indices) and np.all(np.diff(indices) == 1):
            return self.stacked[indices[0] : indices[-1] + 1]
        return torch.stack([self.images[i] for i in indices])

    def restore(self, results: list[torch.Tensor | None]) -> Any:
        """Put per-tile uint8 results back into the caller's layout, dtype and device.

        Parameters
        ----------
        results : list of (uint8 tensor (H_i, W_i, 3)) or None
            One entry per tile; None returns the caller's tile unchanged (copied, never a view
            of the caller's tensor).

        Returns
        -------
        torch.Tensor or list of torch.Tensor
        """
        out = [self._restore_one(i, r) for i, r in enumerate(results)]
        if self.layout == "tile":
            return out[0]
        if self.layout == "list":
            return out
        # Copied tile by tile: torch.stack of uint8 views is many times slower on the CPU.
        batch = torch.empty((len(out), *out[0].shape), dtype=out[0].dtype, device=out[0].device)
        for i, tile in enumerate(out):
            batch[i] = tile
        return batch

    def _restore_one(self, i: int, result: torch.Tensor | None) -> torch.Tensor:
        source = self.sources[i]
        if result is None:
            values = source.original if source.original is not None else self.images[i]
            return values.clone()
        if source.original is not None:
            work = source.original.dtype
            if work not in (torch.float32, torch.float64):
                work = torch.float32
            return (result.to(work) / 255.0).to(source.dtype)
        return result


def as_tensor_tiles(X: Any, name: str = "X") -> TensorTiles:
    """Validate tensor tiles and convert them to uint8 RGB on their device.

    Parameters
    ----------
    X : torch.Tensor or list of torch.Tensor
        One tile ``(H, W, 3)``, a batch ``(N, H, W, 3)`` or a list of tiles ``(H_i, W_i, 3)``,
        channels last as every estimator takes them; uint8 (0-255) or float in [0, 1]; 4
        channels (RGBA) when alpha is fully opaque.
    name : str
        Argument name used in error messages.

    Returns
    -------
    TensorTiles

    Raises
    ------
    ValueError
        As :func:`stainstyle._validation.as_tiles`: for the container, shape, channels, dtype
        or values, naming what was received.
    """
    if isinstance(X, (list, tuple)):
        if len(X) == 0:
            raise ValueError(f"{name}: empty input, got an empty {type(X).__name__}")
        images, sources = [], []
        for i, element in enumerate(X):
            label = f"{name}[{i}]"
            if element.ndim != 3:
                raise ValueError(
                    f"{label}: expected one tile of shape (H, W, 3), got shape "
                    f"{tuple(element.shape)}"
                )
            images.append(_uint8_rgb(element.detach(), label))
            sources.append(_source_of(element, element.detach()))
        return TensorTiles(images=images, layout="list", sources=sources)
    x = X.detach()
    if x.ndim not in (3, 4):
        raise ValueError(
            f"{name}: expected one tile (H, W, 3) or a batch (N, H, W, 3), got shape "
            f"{tuple(x.shape)}"
        )
    rgb = _uint8_rgb(x, name)
    if x.ndim == 3:
        source = _source_of(X, x)
        return TensorTiles(images=[rgb], layout="tile", sources=[source], stacked=rgb[None])
    sources = [_source_of(X, x[i]) for i in range(len(x))]
    return TensorTiles(images=list(rgb), layout="batch", sources=sources, stacked=rgb)


def _source_of(X: torch.Tensor, values: torch.Tensor) -> _Source:
    """How one input tile looked: dtype, device, and its float values (kept, not copied)."""
    original = None if values.dtype == torch.uint8 else values[..., :3]
    return _Source(dtype=X.dtype, is_tensor=True, device=X.device, original=original)
