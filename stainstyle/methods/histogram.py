"""Histogram specification: match each RGB channel's distribution to the target's."""

from __future__ import annotations

import sys
from typing import Any

import cv2
import numpy as np
from sklearn.utils._param_validation import StrOptions

from stainstyle._fitted import FittedArray, positive_totals
from stainstyle._renamed import DEPRECATED, DEPRECATED_CONSTRAINT, Renamed
from stainstyle._validation import Tiles
from stainstyle._xp import is_tensor
from stainstyle.base import StainNormalizer
from stainstyle.color.quantize import float_to_uint8
from stainstyle.sources import UnmodelledSource


def channel_histograms(tiles: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Pixel counts of each uint8 value per channel.

    Parameters
    ----------
    tiles : ndarray or torch.Tensor of shape (..., H, W, 3), dtype uint8
        Images; a tensor is counted by torch on its device.
    mask : ndarray or torch.Tensor of shape (..., H, W), bool, optional
        Pixels to count; all when None.

    Returns
    -------
    ndarray of shape (3, 256), dtype int64
    """
    if is_tensor(tiles):
        counts = _tile_histograms(
            tiles.reshape(1, -1, 3), None if mask is None else mask.reshape(1, -1)
        )
        return counts[0].cpu().numpy()
    image = np.ascontiguousarray(tiles).reshape(-1, 1, 3)
    mask8 = None if mask is None else np.ascontiguousarray(mask).reshape(-1, 1).view(np.uint8)
    return np.stack(
        [cv2.calcHist([image], [c], mask8, [256], [0, 256]).ravel() for c in range(3)]
    ).astype(np.int64)


def match_cdf_lut(source_counts: np.ndarray, target_counts: np.ndarray) -> np.ndarray:
    """Lookup table mapping source values to target values with equal cumulative frequency.

    For each source value ``v``, ``f(v) = interp(q_s(v), q_t, v_t)``, where ``q_s`` is the
    source CDF and ``(q_t, v_t)`` the target CDF at the values the target contains, as
    scikit-image's ``_match_cumulative_cdf``; rounded (not truncated) to uint8.

    Parameters
    ----------
    source_counts, target_counts : ndarray of shape (256,), int
        Histograms of one channel. The target must not be empty.

    Returns
    -------
    ndarray of shape (256,), dtype uint8
    """
    source_quantiles = np.cumsum(source_counts) / max(source_counts.sum(), 1)
    present = np.flatnonzero(target_counts)
    target_quantiles = np.cumsum(target_counts[present]) / target_counts.sum()
    mapped = np.interp(source_quantiles, target_quantiles, present.astype(np.float64))
    return float_to_uint8(mapped)


def _tile_histograms(pixels: Any, mask: Any, per_tile: bool | None = None) -> Any:
    """Per-tile channel histograms of uint8 tensor pixels, by ``torch.bincount``.

    On the CPU, each tile's (masked) pixels are counted channel by channel, the uint8 values
    as they are. On an accelerator, one ``bincount`` counts the whole batch, each value moved
    to its tile's and channel's bins (:func:`_blocks_of_bins`): few kernel launches, where the
    CPU would pay two passes more over int32 bins.

    Parameters
    ----------
    pixels : torch.Tensor of shape (n, P, 3), dtype uint8
    mask : torch.Tensor of shape (n, P), bool, or None
    per_tile : bool, optional
        Count tile by tile; by default on the CPU only.

    Returns
    -------
    torch.Tensor of shape (n, 3, 256), dtype int64
    """
    import torch

    n = len(pixels)
    if per_tile is None:
        per_tile = pixels.device.type == "cpu"
    if per_tile:
        counts = torch.empty((n, 3, 256), dtype=torch.int64, device=pixels.device)
        for i, tile in enumerate(pixels):
            used = tile if mask is None else tile[mask[i]]
            for channel in range(3):
                counts[i, channel] = torch.bincount(used[:, channel], minlength=256)
        return counts
    outside = 3 * 256 * n  # the bin of masked-out values, dropped
    counts = torch.zeros(outside + 1, dtype=torch.int64, device=pixels.device)
    for block, bins in _blocks_of_bins(pixels):
        if mask is not None:
            bins = torch.where(mask[:, block, None], bins, outside)
        counts += torch.bincount(bins.reshape(-1), minlength=outside + 1)
    return counts[:outside].reshape(n, 3, 256)


def _blocks_of_bins(pixels: Any):
    """Yield ``(block, bins)`` over blocks of pixels ``(n, P, 3)`` uint8.

    ``bins`` ``(n, B, 3)`` int32 holds each value's bin ``256 * (3 * tile + channel) + value``,
    the index of its entry in per-tile lookup tables ``(n, 3, 256)`` flattened (int32 moves
    half the memory of int64). The bin offsets are laid out once, for the first block (the
    widest), so that each block's addition is a plain elementwise one.
    """
    import torch

    from stainstyle._torch_ops import pixel_blocks

    n = len(pixels)
    tile_offsets = torch.arange(0, 3 * 256 * n, 256, dtype=torch.int32, device=pixels.device)
    offsets = None
    for block in pixel_blocks(n, pixels.shape[1], pixels.device):
        values = pixels[:, block]
        if offsets is None:
            offsets = tile_offsets.reshape(n, 1, 3).expand(values.shape).contiguous()
        yield block, values.int().add_(offsets[:, : values.shape[1]])


#: Tiles of at least this many pixels are looked up two bytes at a time on the CPU (tables of
#: byte pairs, 0.8 ms to build per tile, halve the lookups; below this the build costs more).
PAIR_LOOKUP_PIXELS = 1 << 20


def _apply_luts(luts: Any, pixels: Any) -> Any:
    """Per-tile lookup tables ``(n, 3, 256)`` uint8 applied to pixels ``(n, P, 3)`` uint8."""
    import torch

    out = torch.empty_like(pixels)
    if _pairs_fit(pixels):
        for lut, tile, mapped in zip(luts, pixels, out, strict=True):
            _apply_lut_by_pairs(lut, tile, mapped)
        return out
    table = luts.reshape(-1)
    for block, bins in _blocks_of_bins(pixels):
        # index_select: several times faster than advanced indexing on the CPU
        out[:, block] = torch.index_select(table, 0, bins.reshape(-1)).reshape(bins.shape)
    return out


def _pairs_fit(pixels: Any) -> bool:
    """Whether tiles ``(n, P, 3)`` are looked up by byte pairs.

    They are when they are large CPU tiles whose bytes read as whole 16-bit pairs: an even
    number of them, starting at an even offset, on a little-endian machine (the first byte of
    a pair is its low byte).
    """
    return (
        sys.byteorder == "little"
        and pixels.device.type == "cpu"
        and pixels.shape[1] >= PAIR_LOOKUP_PIXELS
        and pixels.shape[1] % 2 == 0
        and pixels.is_contiguous()
        and pixels.storage_offset() % 2 == 0
    )


def _apply_lut_by_pairs(lut: Any, tile: Any, out: Any) -> None:
    """One tile's lookup table ``(3, 256)`` applied to its pixels ``(P, 3)``, two bytes at a time.

    The result is written into ``out`` ``(P, 3)``, contiguous.

    Read as 16-bit values, the tile's bytes are pairs of neighbouring channels, ``(R, G)``,
    ``(B, R)``, ``(G, B)`` in turn; each pair is looked up in a table of 65536 pairs of output
    bytes for its two channels.
    """
    import torch

    pair = torch.arange(65536, dtype=torch.int32)
    low, high = pair & 255, pair >> 8  # the first and second byte of a pair, little-endian
    pairs = tile.reshape(-1).view(torch.uint16)
    out_pairs = out.reshape(-1).view(torch.int16)
    for start in range(3):  # pairs start, 3 pairs apart, at the channels 0, 2, 1 in turn
        first = 2 * start % 3
        table = lut[first].int()[low] | (lut[(first + 1) % 3].int()[high] << 8)
        table = table.to(torch.uint16).view(torch.int16)
        for block in _pair_blocks(len(pairs), start):
            out_pairs[block] = torch.index_select(table, 0, pairs[block].int())


def _pair_blocks(n_pairs: int, start: int) -> list[slice]:
    """Strided slices ``start::3`` of ``n_pairs`` pairs, 2^20 of them a block."""
    step = 3 << 20
    return [slice(origin + start, origin + step, 3) for origin in range(0, n_pairs, step)]


def _match_cdf_luts(source_counts: Any, target_counts: np.ndarray) -> Any:
    """:func:`match_cdf_lut` of each tile and channel, in torch: ``(n, 3, 256)`` uint8.

    Parameters
    ----------
    source_counts : torch.Tensor of shape (n, 3, 256), int64
    target_counts : ndarray of shape (3, 256), int
        Every channel with some count.

    Returns
    -------
    torch.Tensor of shape (n, 3, 256), dtype uint8
        Equal to :func:`match_cdf_lut` of the same counts.
    """
    import torch

    from stainstyle._torch_ops import interp, to_uint8

    device = source_counts.device
    totals = source_counts.sum(-1, keepdim=True).clamp(min=1).to(torch.float64)
    quantiles = source_counts.cumsum(-1).to(torch.float64) / totals
    mapped = torch.empty(quantiles.shape, dtype=torch.float64, device=device)
    for c in range(3):
        present = np.flatnonzero(target_counts[c])
        levels = np.cumsum(target_counts[c][present]) / target_counts[c].sum()
        mapped[:, c] = interp(
            quantiles[:, c],
            torch.as_tensor(levels, device=device),
            torch.as_tensor(present, dtype=torch.float64, device=device),
        )
    return to_uint8(mapped)


class HistogramSpecification(StainNormalizer):
    """Histogram specification (matching) of each RGB channel to a pooled target histogram.

    Parameters
    ----------
    tissue_only : bool, default=False
        Build both histograms from tissue pixels only (see :mod:`stainstyle.tissue`) and return
        background pixels unchanged, so that a mostly-background tile does not get over-stained
        tissue. False uses every pixel, as ``skimage.exposure.match_histograms`` does.
    background : {"passthrough", "raise"}, default="passthrough"
        Policy for tiles with too little tissue (see :class:`~stainstyle.base.StainNormalizer`).
    batch_size : int, default=32
        Tiles processed at once.
    mask : {"none", "tissue"}, deprecated
        The former spelling of ``tissue_only`` (``"tissue"`` is ``tissue_only=True``); accepted
        with a ``FutureWarning``.

    Attributes
    ----------
    target_counts_ : ndarray of shape (3, 256), dtype int64
        Pooled target histogram per channel (the sum over target tiles, which equals the
        histogram of all target pixels together).

    Notes
    -----
    The source histogram is counted per tile, or once for a slide or group
    (``source_statistics``, ``transform(X, groups=...)``); the statistics carried are then the
    lookup table ``(256, 3)`` uint8 it gives.

    See Also
    --------
    match_cdf_lut : The per-channel mapping, as a function.
    skimage.exposure.match_histograms : The single-reference equivalent (which truncates).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> target = rng.integers(80, 220, size=(4, 32, 32, 3), dtype=np.uint8)
    >>> source = rng.integers(20, 160, size=(32, 32, 3), dtype=np.uint8)
    >>> out = HistogramSpecification().fit(target).transform(source)
    >>> bool(out.mean() > source.mean())
    True
    """

    _parameter_constraints: dict = {
        **StainNormalizer._parameter_constraints,
        "tissue_only": ["boolean"],
        "mask": [StrOptions({"none", "tissue"}), DEPRECATED_CONSTRAINT],
    }
    _fitted_attributes: dict = {
        "target_counts_": FittedArray((3, 256), kinds="iu", minimum=0, rule=positive_totals()),
    }
    _fit_dependent_params = ("tissue_only", "mask")
    _machine_local_params = ()
    _tensor_kernels = True
    _renamed_params: dict = {"mask": Renamed("tissue_only", {"none": False, "tissue": True})}

    def __init__(
        self,
        *,
        tissue_only: bool = False,
        background: str = "passthrough",
        batch_size: int = 32,
        mask: str = DEPRECATED,
    ):
        self.tissue_only = tissue_only
        self.background = background
        self.batch_size = batch_size
        self.mask = mask

    def _fit(self, tiles: Tiles, y: Any) -> None:
        self.target_counts_ = self._pooled_counts(tiles)

    def _source_context(self, tiles: Tiles) -> np.ndarray:
        """Lookup table ``(256, 3)`` uint8 from the pooled histogram of ``tiles`` (a slide).

        Raises
        ------
        UnmodelledSource
            If the tiles hold no pixel to count (no tissue pixel with ``tissue_only``).
        """
        counts = self._pooled_counts(tiles)
        if counts[0].sum() == 0:
            raise UnmodelledSource("histogram specification: no tissue pixel to count")
        return self._lut(counts)

    def _pooled_counts(self, tiles: Tiles) -> np.ndarray:
        """Histogram ``(3, 256)`` of the tiles' pixels together (tissue only if asked)."""
        counts = np.zeros((3, 256), dtype=np.int64)
        for batch, tissue in self._fit_batches(tiles):
            counts += channel_histograms(batch, tissue)
        return counts

    def _lut(self, source_counts: np.ndarray) -> np.ndarray:
        """Per-channel lookup table ``(256, 3)`` uint8 from source counts to the target's."""
        return np.stack(
            [match_cdf_lut(source_counts[c], self.target_counts_[c]) for c in range(3)], axis=-1
        )

    def _needs_tissue_mask(self) -> bool:
        return self._param("tissue_only")  # else ``tissue`` is None: every pixel counts

    def _transform_batch(
        self, batch: np.ndarray, tissue: np.ndarray | None, *, context: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        out = np.empty_like(batch)
        for i, tile in enumerate(batch):
            mask = None if tissue is None else tissue[i]
            lut = self._lut(channel_histograms(tile, mask)) if context is None else context
            out[i] = cv2.LUT(tile, lut[None])
            if mask is not None:
                np.copyto(out[i], tile, where=~mask[..., None])
        return out, np.zeros(len(batch), dtype=bool)

    def _transform_tensors(
        self, batch: Any, tissue: Any, *, context: np.ndarray | None = None
    ) -> tuple[Any, np.ndarray]:
        import torch

        n = len(batch)
        pixels = batch.reshape(n, -1, 3)
        mask = None if tissue is None else tissue.reshape(n, -1)
        if context is None:
            luts = _match_cdf_luts(_tile_histograms(pixels, mask), self.target_counts_)
        else:
            luts = torch.as_tensor(context.T, device=batch.device).expand(n, 3, 256)
        out = _apply_luts(luts.contiguous(), pixels)
        if mask is not None:
            out = torch.where(mask[..., None], out, pixels)
        return out.reshape(batch.shape), np.zeros(n, dtype=bool)
