"""Running a trained generator: gray tiles in, colour tiles out, in blended windows.

Inference is bound by the generator's convolutions, so what matters for speed is that the
generator sees large windows (few windows, little overlap computed twice, little blending) and,
on CUDA, runs in bfloat16 with channels-last tensors and cuDNN's fastest algorithms
(:func:`prepare_generator`, :func:`colorize`). In eval mode a BatchNorm layer is an affine map
per channel, so :func:`fold_batchnorm` folds it into the convolution before it, which removes a
pass over every feature map. A tile no larger than the window goes through the
generator whole and is written out directly, with no blending at all.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from stainstyle.sst._torch import to_tensor, to_uint8

#: Side of the inference windows when none is asked for: tiles up to this size go through the
#: generator whole. Larger windows cost more memory and gain little more speed.
DEFAULT_WINDOW = 512
#: Most pixels per forward pass (32 windows of 256 x 256), whatever the window size.
PASS_PIXELS = 32 * 256 * 256


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Start offsets of windows covering ``[0, length)`` with at least ``overlap`` shared pixels.

    Parameters
    ----------
    length : int
        Side of the image.
    window : int
        Side of the window.
    overlap : int
        Minimum overlap between neighbouring windows, ``0 <= overlap < window``.

    Returns
    -------
    list of int
        ``[0]`` when the image fits in one window; otherwise evenly spaced starts, the last one
        at ``length - window``.
    """
    if length <= window:
        return [0]
    n = int(np.ceil((length - overlap) / (window - overlap)))
    return np.linspace(0, length - window, n).round().astype(int).tolist()


def blend_weights(window: int, overlap: int) -> np.ndarray:
    """Separable weights that fade a window's border in over ``overlap`` pixels.

    Parameters
    ----------
    window, overlap : int
        Window side and overlap, as in :func:`window_starts`.

    Returns
    -------
    ndarray of shape (window, window), dtype float32
        Positive everywhere (the border weight is small, not zero, so pixels covered by a single
        window keep their value), 1 in the interior.
    """
    ramp = np.ones(window, dtype=np.float32)
    if overlap > 0:
        rise = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        ramp[:overlap] = rise
        ramp[window - overlap :] = rise[::-1]
    return np.outer(ramp, ramp)


class _RowBands:
    """Blends the windows of one band of rows at a time and writes finished rows out as uint8.

    Windows arrive tile by tile, then row of windows by row of windows (a band: the windows
    sharing one top offset), left to right. A band's weighted sums live in a buffer as tall as
    a window; when the next band starts, the rows above its top are touched by no later window,
    so they are divided by their summed weights, rounded into ``out`` and dropped from the
    buffer. Memory is bounded by one band, not by the image, and every pixel sees the same
    additions in the same order as with a whole-image accumulator, so the result is identical.
    """

    def __init__(self, out: np.ndarray, weights: torch.Tensor):
        self.out = out
        self.weights = weights
        height, width = weights.shape[0], out.shape[2]
        self.accum = torch.zeros(3, height, width, device=weights.device)
        self.total = torch.zeros(height, width, device=weights.device)
        self.tile: int | None = None
        self.top = 0

    def add(self, tile: int, top: int, left: int, patch: torch.Tensor) -> None:
        """Add one window's colour, ``patch`` of shape (3, h, w) in [0, 1], at (top, left)."""
        if tile != self.tile:
            self.finish()
            self.tile, self.top = tile, top
        elif top != self.top:
            self._flush(top - self.top)
            self.top = top
        w = self.weights.shape[1]
        self.accum[:, :, left : left + w] += patch * self.weights
        self.total[:, left : left + w] += self.weights

    def finish(self) -> None:
        """Write out all rows of the current tile still in the buffer."""
        if self.tile is not None:
            self._flush(min(self.accum.shape[1], self.out.shape[1] - self.top))
            self.tile = None

    def _flush(self, rows: int) -> None:
        """Write the buffer's first ``rows`` rows to ``out`` and shift the rest up."""
        done = self.accum[:, :rows].div_(self.total[:rows])  # these rows leave the buffer
        self.out[self.tile, self.top : self.top + rows] = to_uint8(done[None])[0]
        for buffer in (self.accum, self.total):
            rest = buffer[..., rows:, :].clone()
            buffer[..., : rest.shape[-2], :] = rest
            buffer[..., rest.shape[-2] :, :] = 0.0


def fold_batchnorm(generator: nn.Module) -> nn.Module:
    """An eval-mode copy with each BatchNorm folded into the convolution just before it.

    Wherever a ``torch.nn.Sequential`` holds a ``Conv2d`` or ``ConvTranspose2d`` followed by a
    ``BatchNorm2d``, the convolution's weights and bias absorb the normalization (with its
    running statistics) and the BatchNorm becomes an identity. The copy computes what the
    generator computes in eval mode, up to float rounding.

    Parameters
    ----------
    generator : torch.nn.Module
        Left as it is.

    Returns
    -------
    torch.nn.Module
        The folded copy, in eval mode.
    """
    folded = copy.deepcopy(generator).eval()
    for sequence in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(sequence) - 1):
            conv, norm = sequence[i], sequence[i + 1]
            if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(
                norm, nn.BatchNorm2d
            ):
                transpose = isinstance(conv, nn.ConvTranspose2d)
                sequence[i] = fuse_conv_bn_eval(conv, norm, transpose=transpose)
                sequence[i + 1] = nn.Identity()
    return folded


def prepare_generator(
    generator: nn.Module, device: torch.device, *, compile: bool = False
) -> nn.Module:
    """The generator as :func:`colorize` runs it best on ``device``.

    A copy with its BatchNorm layers folded into the convolutions (:func:`fold_batchnorm`), on
    the device; on CUDA with channels-last weights (the layout of cuDNN's fastest bfloat16
    convolutions), and compiled with ``torch.compile`` when asked. The trained generator is left
    as it is.

    Parameters
    ----------
    generator : torch.nn.Module
        The trained generator.
    device : torch.device
        Where inference runs.
    compile : bool, default=False
        Compile the CUDA copy with ``torch.compile`` (slow to start, faster per tile; the
        first call per tile shape compiles).

    Returns
    -------
    torch.nn.Module
    """
    prepared = fold_batchnorm(generator).to(device)
    if device.type != "cuda":
        return prepared
    prepared = prepared.to(memory_format=torch.channels_last)
    return torch.compile(prepared) if compile else prepared


@contextlib.contextmanager
def _fast_kernels(device: torch.device) -> Iterator[None]:
    """On CUDA, let cuDNN pick the fastest convolution algorithm per shape for the block."""
    if device.type != "cuda":
        yield
        return
    with torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False):
        yield


@torch.no_grad()
def colorize(
    generator: nn.Module,
    gray: np.ndarray,
    *,
    window: int,
    overlap: int,
    device: torch.device,
    batch_size: int = 32,
    autocast: bool = False,
) -> np.ndarray:
    """Colour gray tiles with a generator, window by window, blending the overlaps.

    Tiles no larger than ``window`` go through the generator whole, as many per forward pass as
    ``batch_size`` and :data:`PASS_PIXELS` allow, and are written out directly. Larger tiles are
    cut into overlapping ``window x window`` patches; their outputs are averaged with weights
    that fall off towards each patch's border (:func:`blend_weights`), so no seams are visible.

    The windows are processed one row of windows at a time and rows of pixels are rounded to
    uint8 as soon as no later window touches them, so besides the output the memory used is
    that of one row of windows (``16 * window * W`` bytes) and one batch of patches, whatever
    the image size.

    Parameters
    ----------
    generator : torch.nn.Module
        Maps (n, 1, h, w) in [-1, 1] to (n, 3, h, w) in [-1, 1]; used as given (call ``eval()``
        first).
    gray : ndarray of shape (N, H, W), dtype uint8
        Gray tiles.
    window : int
        Side of the patches.
    overlap : int
        Overlap of neighbouring patches, ``0 <= overlap < window``.
    device : torch.device
        Where to run the generator.
    batch_size : int, default=32
        Most patches per forward pass; fewer when they would exceed :data:`PASS_PIXELS`.
    autocast : bool, default=False
        Run under bfloat16 autocast (CUDA). On CUDA the patches are also passed channels-last
        and cuDNN picks its fastest algorithms (see :func:`prepare_generator`).

    Returns
    -------
    ndarray of shape (N, H, W, 3), dtype uint8

    Raises
    ------
    ValueError
        If ``gray`` is not a uint8 array of shape (N, H, W), or ``window``, ``overlap`` or
        ``batch_size`` is out of range.
    """
    if not isinstance(gray, np.ndarray) or gray.ndim != 3 or gray.dtype != np.uint8:
        got = f"shape {gray.shape}, dtype {gray.dtype}" if hasattr(gray, "dtype") else type(gray)
        raise ValueError(f"gray: expected a uint8 array of shape (N, H, W), got {got}")
    if window < 1 or not 0 <= overlap < window:
        raise ValueError(
            f"window, overlap: expected window >= 1 and 0 <= overlap < window, "
            f"got window={window}, overlap={overlap}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size: expected an int >= 1, got {batch_size}")
    n, height, width = gray.shape
    tops, lefts = window_starts(height, window, overlap), window_starts(width, window, overlap)
    ph, pw = min(window, height), min(window, width)
    per_pass = max(1, min(batch_size, PASS_PIXELS // (ph * pw)))
    out = np.empty((n, height, width, 3), dtype=np.uint8)
    whole = len(tops) * len(lefts) == 1
    weights = torch.from_numpy(blend_weights(window, overlap)[:ph, :pw]).to(device)
    bands = _RowBands(out, weights)
    patches = itertools.product(range(n), tops, lefts)
    with _fast_kernels(device):
        while chunk := list(itertools.islice(patches, per_pass)):
            if whole:  # one window per tile: the chunk is a run of whole tiles
                y = _run(generator, gray[chunk[0][0] : chunk[-1][0] + 1], device, autocast)
                out[chunk[0][0] : chunk[-1][0] + 1] = to_uint8(y)
                continue
            batch = np.stack([gray[i, t : t + ph, s : s + pw] for i, t, s in chunk])
            y = _run(generator, batch, device, autocast)
            for (i, t, s), patch in zip(chunk, y, strict=True):
                bands.add(i, t, s, patch)
    bands.finish()
    return out


def _run(generator: nn.Module, gray: np.ndarray, device: torch.device, autocast: bool):
    """Colour in [0, 1], (n, 3, h, w) float32 on ``device``, of uint8 gray images (n, h, w)."""
    x = to_tensor(gray, device).mul_(2).sub_(1)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
        y = generator(x)
    return y.float().add_(1).div_(2)
