"""Input handling at the library boundary: any tile container in, uint8 RGB tiles out, and back.

Every estimator accepts one tile ``(H, W, 3)``, a batch ``(N, H, W, 3)``, or a list of tiles of
different sizes, as numpy arrays or torch tensors, in uint8 or float in [0, 1]. :func:`as_tiles`
checks all of it once and returns a :class:`Tiles` view in the canonical form (uint8 RGB,
read-only views of the caller's data wherever possible); :meth:`Tiles.restore` puts results back
into the caller's container, shape, dtype and device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_FLOAT_KINDS = "f"


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


@dataclass
class _Source:
    """How one input element looked, so that results can be put back into the same form."""

    dtype: Any
    is_tensor: bool = False
    device: Any = None
    original: np.ndarray | None = None  # the float values (H, W, 3), kept for exact passthrough


@dataclass
class Tiles:
    """Validated tiles in canonical form.

    Attributes
    ----------
    images : list of ndarray of shape (H_i, W_i, 3), dtype uint8
        One read-only array per tile.
    layout : {"tile", "batch", "list"}
        The caller's container: one tile, one stacked batch, or a list.
    """

    images: list[np.ndarray]
    layout: str
    sources: list[_Source] = field(repr=False)
    stacked: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: np.ndarray) -> Tiles:
        """The tiles at ``indices``, in that order, as a :class:`Tiles` of the same layout.

        Parameters
        ----------
        indices : ndarray of int of shape (n,), n >= 1
            Tiles to keep.

        Returns
        -------
        Tiles
            Shares the tile arrays (read-only views); a stacked batch stays a view when
            ``indices`` is a contiguous run.
        """
        indices = np.asarray(indices, dtype=np.intp)
        stacked = None
        if self.stacked is not None and len(indices) and np.all(np.diff(indices) == 1):
            stacked = self.stacked[indices[0] : indices[-1] + 1]
        return type(self)(
            images=[self.images[i] for i in indices],
            layout=self.layout,
            sources=[self.sources[i] for i in indices],
            stacked=stacked,
        )

    def shape_groups(self, indices: np.ndarray | None = None) -> list[np.ndarray]:
        """Indices of tiles grouped by spatial shape, in input order within each group.

        Parameters
        ----------
        indices : ndarray of int, optional
            Restrict to these tiles.

        Returns
        -------
        list of ndarray of int
        """
        indices = np.arange(len(self)) if indices is None else np.asarray(indices)
        groups: dict[tuple[int, int], list[int]] = {}
        for i in indices:
            groups.setdefault(self.images[i].shape[:2], []).append(int(i))
        return [np.asarray(g) for g in groups.values()]

    def stack(self, indices: np.ndarray) -> np.ndarray:
        """Tiles of one shape as one array.

        Parameters
        ----------
        indices : ndarray of int
            Tiles of identical shape.

        Returns
        -------
        ndarray of shape (n, H, W, 3), dtype uint8
            A read-only view when the input was one stacked batch and ``indices`` is a contiguous
            run, otherwise a copy.
        """
        if self.stacked is not None and len(indices) and np.all(np.diff(indices) == 1):
            return self.stacked[indices[0] : indices[-1] + 1]
        return np.stack([self.images[i] for i in indices])

    def batches(
        self, batch_size: int, indices: np.ndarray | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Iterate over same-shape batches of at most ``batch_size`` tiles.

        Parameters
        ----------
        batch_size : int
            Maximum number of tiles per batch.
        indices : ndarray of int, optional
            Restrict to these tiles.

        Yields
        ------
        indices : ndarray of int of shape (n,)
        batch : ndarray of shape (n, H, W, 3), dtype uint8
        """
        for group in self.shape_groups(indices):
            for start in range(0, len(group), batch_size):
                chunk = group[start : start + batch_size]
                yield chunk, self.stack(chunk)

    def restore(self, results: Sequence[np.ndarray | None]) -> Any:
        """Put per-tile results back into the caller's container, dtype and device.

        Parameters
        ----------
        results : sequence of (ndarray of shape (H_i, W_i, 3), dtype uint8) or None
            One entry per tile; None means "unchanged" and returns the caller's tile as it was.

        Returns
        -------
        ndarray, torch.Tensor or list
            Same layout, shape and dtype as the input (tensors on their original device).
        """
        out = [self._restore_one(i, r) for i, r in enumerate(results)]
        if self.layout == "tile":
            return out[0]
        if self.layout == "list":
            return out
        source = self.sources[0]
        if source.is_tensor:
            import torch

            return torch.stack(out)
        return np.stack(out)

    def _restore_one(self, i: int, result: np.ndarray | None) -> Any:
        source = self.sources[i]
        if result is None:
            values = source.original if source.original is not None else self.images[i]
            values = values.copy()
        elif source.original is not None:
            values = result.astype(source.original.dtype) / source.original.dtype.type(255)
        else:
            values = result
        if not source.is_tensor:
            return values
        import torch

        return torch.from_numpy(values).to(device=source.device, dtype=source.dtype)


def _to_numpy(x: Any, name: str) -> tuple[np.ndarray, _Source]:
    if _is_tensor(x):
        import torch

        tensor = x.detach()
        if tensor.is_floating_point() and tensor.dtype not in (
            torch.float16,
            torch.float32,
            torch.float64,
        ):
            tensor = tensor.float()
        return tensor.cpu().numpy(), _Source(dtype=x.dtype, is_tensor=True, device=x.device)
    if isinstance(x, np.ndarray):
        return x, _Source(dtype=x.dtype)
    raise ValueError(
        f"{name}: expected a numpy array, a torch tensor, or a list of them, got {type(x).__name__}"
    )


def _check_dtype(array: np.ndarray, name: str) -> None:
    """Reject dtypes the methods cannot interpret."""
    if array.dtype != np.uint8 and array.dtype.kind not in _FLOAT_KINDS:
        raise ValueError(
            f"{name}: expected dtype uint8 (0-255) or float in [0, 1], got {array.dtype}; "
            "convert with .astype(np.uint8) if the values are 0-255 intensities"
        )


def _checked_uint8(array: np.ndarray, name: str) -> np.ndarray:
    """Float values in [0, 1] of ``(..., H, W, C)`` data, checked and quantized to uint8.

    Strip by strip, so that the float64 temporaries stay strip-sized whatever the image size.

    Raises
    ------
    ValueError
        If some values are NaN or infinite, or outside [0, 1].
    """
    from stainstyle.color.quantize import row_strips

    out = np.empty(array.shape, dtype=np.uint8)
    n_bad, low, high = 0, np.inf, -np.inf
    for index in np.ndindex(array.shape[:-3]):
        image = array[index]
        for rows in row_strips(image.shape):
            strip = image[rows]
            finite = np.isfinite(strip)
            n_bad += strip.size - int(np.count_nonzero(finite))
            if n_bad:
                continue
            low, high = min(low, float(strip.min())), max(high, float(strip.max()))
            if low >= 0.0 and high <= 1.0:
                out[index][rows] = np.rint(strip.astype(np.float64) * 255.0)
    if n_bad:
        raise ValueError(f"{name}: contains {n_bad} NaN or infinite values")
    if low < 0.0 or high > 1.0:
        hint = " (looks like 0-255 data: divide by 255 or cast to uint8)" if high > 1.0 else ""
        raise ValueError(
            f"{name}: float input must lie in [0, 1], got values in [{low:g}, {high:g}]{hint}"
        )
    return out


def _to_uint8_rgb(array: np.ndarray, name: str) -> np.ndarray:
    """Check channels, values and alpha of (..., H, W, C) data and return uint8 RGB."""
    if array.shape[-1] not in (3, 4):
        raise ValueError(
            f"{name}: expected 3 (RGB) or 4 (RGBA) channels in the last axis, "
            f"got shape {array.shape}"
        )
    if 0 in array.shape:
        raise ValueError(f"{name}: empty input, got shape {array.shape}")
    _check_dtype(array, name)
    quantized = array if array.dtype == np.uint8 else _checked_uint8(array, name)
    if array.shape[-1] == 4:
        opaque = array[..., 3] == (255 if array.dtype == np.uint8 else 1.0)
        if not np.all(opaque):
            raise ValueError(
                f"{name}: RGBA input is accepted only when alpha is fully opaque; "
                f"{opaque.size - np.count_nonzero(opaque)} pixels are transparent"
            )
        quantized = quantized[..., :3]
    return quantized


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


def _list_tiles(X: list | tuple, name: str) -> Tiles:
    """:func:`as_tiles` of a list of tiles, each ``(H_i, W_i, 3)``."""
    if len(X) == 0:
        raise ValueError(f"{name}: empty input, got an empty {type(X).__name__}")
    images, sources = [], []
    for i, element in enumerate(X):
        array, source = _to_numpy(element, f"{name}[{i}]")
        if array.ndim != 3:
            raise ValueError(
                f"{name}[{i}]: expected one tile of shape (H, W, 3), got shape {array.shape}"
            )
        rgb = _to_uint8_rgb(array, f"{name}[{i}]")
        if array.dtype != np.uint8:
            source.original = array[..., :3]  # read only; restore copies what it returns
        images.append(_read_only(rgb))
        sources.append(source)
    return Tiles(images=images, layout="list", sources=sources)


def as_tiles(X: Any, name: str = "X") -> Tiles:
    """Validate tiles and convert them to the canonical uint8 RGB form.

    Parameters
    ----------
    X : ndarray, torch.Tensor, or list of them
        One tile of shape (H, W, 3), a batch of shape (N, H, W, 3), or a list of tiles of shape
        (H_i, W_i, 3). dtype uint8 (0-255) or float in [0, 1]; 4 channels (RGBA) are accepted when
        alpha is fully opaque.
    name : str
        Argument name used in error messages.

    Returns
    -------
    Tiles
        The validated tiles; never a writable view of the caller's data.

    Raises
    ------
    ValueError
        If the container, shape, channel count, dtype or values are not as described, naming
        what was received.
    """
    if isinstance(X, (list, tuple)):
        return _list_tiles(X, name)
    array, source = _to_numpy(X, name)
    if array.ndim not in (3, 4):
        raise ValueError(
            f"{name}: expected one tile (H, W, 3) or a batch (N, H, W, 3), got shape {array.shape}"
        )
    rgb = _read_only(_to_uint8_rgb(array, name))
    float_values = array[..., :3] if array.dtype != np.uint8 else None
    if array.ndim == 3:
        source.original = float_values
        return Tiles(images=[rgb], layout="tile", sources=[source], stacked=rgb[None])
    sources = [
        _Source(
            dtype=source.dtype,
            is_tensor=source.is_tensor,
            device=source.device,
            original=None if float_values is None else float_values[i],
        )
        for i in range(len(rgb))
    ]
    return Tiles(images=list(rgb), layout="batch", sources=sources, stacked=rgb)
