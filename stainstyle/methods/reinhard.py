"""Reinhard et al. 2001 colour transfer: match per-channel mean and spread in a Lab space."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from sklearn.utils._param_validation import StrOptions

from stainstyle._fitted import FittedArray
from stainstyle._renamed import DEPRECATED, DEPRECATED_CONSTRAINT, Renamed
from stainstyle._validation import Tiles
from stainstyle._xp import constant, is_tensor, namespace
from stainstyle.base import StainNormalizer
from stainstyle.color.lab import (
    LAB_TO_LOG_LMS,
    LMS_TO_RGB,
    LOG_LMS_TO_LAB,
    RGB_TO_LMS,
    cie_of,
    lab_cie_to_rgb,
    rgb_of_cie,
    rgb_to_lab_cie,
)
from stainstyle.color.quantize import STRIP_PIXELS, float_to_uint8, row_strips
from stainstyle.tissue import masked_pixels

#: Below this source standard deviation a channel is only shifted, not scaled.
_FLAT_STD = 1e-6


def reinhard_stats(lab: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Mean and standard deviation (ddof=0) per channel over the selected pixels.

    Parameters
    ----------
    lab : ndarray of shape (..., 3), float
        Pixels in a Lab space.
    mask : ndarray of shape (...), bool, optional
        Pixels to use; all when None.

    Returns
    -------
    mean, std : ndarray of shape (3,), dtype float64
    """
    pixels = lab.reshape(-1, 3) if mask is None else masked_pixels(lab, mask)
    pixels = pixels.astype(np.float64, copy=False)
    return pixels.mean(axis=0), pixels.std(axis=0)


def pool_stats(
    counts: np.ndarray, means: np.ndarray, stds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the union of several pixel sets, from their statistics.

    Equal to :func:`reinhard_stats` on the concatenated pixels (so the spread includes the
    variation between tiles), without holding them in memory.

    Parameters
    ----------
    counts : ndarray of shape (K,), int
        Pixels in each set.
    means, stds : ndarray of shape (K, 3), float
        Per-set mean and standard deviation (ddof=0).

    Returns
    -------
    mean, std : ndarray of shape (3,), dtype float64
    """
    weights = counts[:, None] / counts.sum()
    mean = (weights * means).sum(axis=0)
    second_moment = (weights * (stds**2 + means**2)).sum(axis=0)
    return mean, np.sqrt(np.maximum(second_moment - mean**2, 0.0))


def reinhard_scale(source_std: np.ndarray, target_std: np.ndarray) -> np.ndarray:
    """Per-channel scale ``target_std / source_std``, 1 where the source is flat.

    Parameters
    ----------
    source_std, target_std : ndarray or torch.Tensor of shape (..., 3)
        Both numpy or both torch.

    Returns
    -------
    ndarray or torch.Tensor of shape (..., 3), dtype float64
    """
    xp = namespace(source_std)
    flat = source_std < _FLAT_STD
    return xp.where(flat, 1.0, target_std / xp.where(flat, 1.0, source_std))


#: The colour-space matrices in the dtype of the OpenCV kernels, converted once.
_RGB_TO_LMS_F32 = RGB_TO_LMS.astype(np.float32)
_LOG_LMS_TO_LAB_F32 = LOG_LMS_TO_LAB.astype(np.float32)
_LMS_TO_RGB_F32 = LMS_TO_RGB.astype(np.float32)


#: Ones to clamp a strip of uint8 pixels with (see :func:`_at_least_one`).
_ONES = np.ones(STRIP_PIXELS * 3, dtype=np.uint8)


def _at_least_one(pixels: np.ndarray) -> np.ndarray:
    """``max(pixels, 1)`` for uint8 pixels ``(..., 3)``, so that black pixels have a finite log.

    OpenCV's ``cv2.max(pixels, (1, 1, 1, 1))`` is fast, but it reads a one-pixel array
    ``(1, 1, 3)`` as the scalar and returns the tuple as a ``(4, 1)`` array. Two arrays of one
    shape and dtype are never ambiguous, at the same speed.
    """
    n = pixels.size
    ones = _ONES[:n] if n <= len(_ONES) else np.ones(n, dtype=np.uint8)
    return cv2.max(pixels, ones.reshape(pixels.shape))


class _RudermanPixels:
    """One tile in Ruderman lαβ, computed with OpenCV float32 kernels.

    Work is done in strips of rows small enough to stay in the CPU cache, so a 2048x2048 image
    runs as fast per pixel as a batch of small tiles.
    """

    def __init__(self, tile: np.ndarray):
        self.lab = np.empty(tile.shape, dtype=np.float32)
        for rows in row_strips(tile.shape):
            rgb = _at_least_one(tile[rows]).astype(np.float32)
            log_lms = cv2.log(cv2.transform(rgb, _RGB_TO_LMS_F32))
            self.lab[rows] = cv2.transform(log_lms, _LOG_LMS_TO_LAB_F32)

    def stats(self, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        mean, std = cv2.meanStdDev(self.lab, mask=None if mask is None else mask.view(np.uint8))
        return mean.ravel(), std.ravel()

    def mapped(self, scale: np.ndarray, shift: np.ndarray, out: np.ndarray) -> None:
        """Write ``lab * scale + shift`` per channel, back in uint8 RGB, into ``out``."""
        affine = np.hstack([LAB_TO_LOG_LMS * scale[None, :], (LAB_TO_LOG_LMS @ shift)[:, None]])
        affine = affine.astype(np.float32)
        for rows in row_strips(out.shape):
            lms = cv2.exp(cv2.transform(self.lab[rows], affine))
            out[rows] = float_to_uint8(cv2.transform(lms, _LMS_TO_RGB_F32))


class _CiePixels:
    """One tile in CIE L*a*b*, through the float64 scikit-image reference conversion."""

    def __init__(self, tile: np.ndarray):
        self.lab = rgb_to_lab_cie(tile)

    def stats(self, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return reinhard_stats(self.lab, mask)

    def mapped(self, scale: np.ndarray, shift: np.ndarray, out: np.ndarray) -> None:
        """Write ``lab * scale + shift`` per channel, back in uint8 RGB, into ``out``."""
        out[...] = float_to_uint8(lab_cie_to_rgb(self.lab * scale + shift))


@dataclass(frozen=True)
class ReinhardSource:
    """Reinhard's source statistics of a slide or group: what ``transform`` maps from.

    Attributes
    ----------
    means, stds : ndarray of shape (3,), dtype float64
        Mean and standard deviation (ddof=0) of each Lab channel over the pooled source pixels
        (tissue pixels with ``tissue_only``).
    """

    means: np.ndarray
    stds: np.ndarray


_SPACES = {"lab_ruderman": _RudermanPixels, "lab_cie": _CiePixels}


class _RudermanTensors:
    """A batch of uint8 tensor tiles seen in log-LMS, the torch twin of :class:`_RudermanPixels`.

    lαβ is a linear map of log-LMS (:data:`LOG_LMS_TO_LAB`), so the statistics of lαβ come from
    the mean and covariance of log-LMS, and the mapping is one affine map per tile in log-LMS:
    the lαβ values themselves are never formed. Nor are the log-LMS values of the whole batch:
    each pass converts the pixels block by block
    (:func:`~stainstyle._torch_ops.pixel_blocks`, cache-sized on the CPU).
    """

    def __init__(self, batch: Any):
        import torch

        self.shape = batch.shape
        self.rgb = batch.reshape(len(batch), -1, 3)
        self.to_lms = torch.as_tensor(RGB_TO_LMS.T, dtype=torch.float32, device=batch.device)

    def log_lms(self, rgb: Any) -> Any:
        """``log(LMS)`` ``(n, b, 3)`` float32 of uint8 pixels ``(n, b, 3)``, zeros as ones."""
        import torch

        return (rgb.clamp(min=1).to(torch.float32) @ self.to_lms).log_()

    def stats(self, mask: Any) -> tuple[Any, Any]:
        import torch

        from stainstyle._torch_ops import masked_covariance

        _, mean, covariance = masked_covariance(self.rgb, mask, self.log_lms)
        to_lab = constant(torch, LOG_LMS_TO_LAB, mean)
        variance = (to_lab @ covariance @ to_lab.T).diagonal(dim1=1, dim2=2)
        return mean @ to_lab.T, variance.clamp(min=0).sqrt()

    def mapped(self, scale: Any, shift: Any) -> Any:
        """``lab * scale + shift`` per tile and channel ``(n, 3)``, back in uint8 RGB."""
        import torch

        from stainstyle._torch_ops import per_tile_product, pixel_blocks, to_uint8

        to_log_lms = constant(torch, LAB_TO_LOG_LMS, scale)
        matrix = (to_log_lms * scale[:, None, :]) @ constant(torch, LOG_LMS_TO_LAB, scale)
        bias = shift @ to_log_lms.T
        # one map per tile, or one for all (given statistics)
        matrix = matrix.transpose(1, 2).to(torch.float32)
        bias = bias[:, None].to(torch.float32)
        to_rgb = constant(torch, LMS_TO_RGB.T, self.to_lms)
        out = torch.empty(self.rgb.shape, dtype=torch.uint8, device=self.rgb.device)
        for block in pixel_blocks(*self.rgb.shape[:2], self.rgb.device):
            lms = per_tile_product(self.log_lms(self.rgb[:, block]), matrix).add_(bias).exp_()
            out[:, block] = to_uint8(lms @ to_rgb)
        return out.reshape(self.shape)


class _CieTensors:
    """A batch of uint8 tensor tiles in CIE L*a*b*, float64, the twin of :class:`_CiePixels`."""

    def __init__(self, batch: Any):
        import torch

        self.lab = cie_of(torch, batch.to(torch.float64))

    def stats(self, mask: Any) -> tuple[Any, Any]:
        from stainstyle._torch_ops import masked_moments

        n = len(self.lab)
        _, mean, std = masked_moments(self.lab.reshape(n, -1, 3), mask)
        return mean, std

    def mapped(self, scale: Any, shift: Any) -> Any:
        """``lab * scale + shift`` per tile and channel ``(n, 3)``, back in uint8 RGB."""
        import torch

        from stainstyle._torch_ops import to_uint8

        return to_uint8(rgb_of_cie(torch, self.lab * scale[:, None, None] + shift[:, None, None]))


_TENSOR_SPACES = {"lab_ruderman": _RudermanTensors, "lab_cie": _CieTensors}


class ReinhardNormalizer(StainNormalizer):
    """Reinhard colour transfer: z-score each Lab channel to the target's mean and spread.

    ``y_c = (x_c - mean_c^src) * std_c^tgt / std_c^src + mean_c^tgt`` in Ruderman's lαβ space
    (default, as in the paper) or CIE L*a*b*, with statistics over tissue pixels.

    Parameters
    ----------
    space : {"lab_ruderman", "lab_cie"}, default="lab_ruderman"
        Colour space. ``"lab_cie"`` uses float CIE L*a*b* (sRGB, D65) like torchstain.
    tissue_only : bool, default=True
        Compute the statistics over tissue pixels only (optical density >= 0.15 in some
        channel, see :mod:`stainstyle.tissue`). False uses every pixel, as torchstain and
        staintools do.
    passthrough_background : bool, default=False
        Return non-tissue pixels with their original colour, as HistomicsTK does.
    background : {"passthrough", "raise"}, default="passthrough"
        Policy for tiles with too little tissue (see :class:`~stainstyle.base.StainNormalizer`).
    batch_size : int, default=32
        Tiles processed at once.
    tissue_mask : bool, deprecated
        The former name of ``tissue_only``; accepted with a ``FutureWarning``.

    Attributes
    ----------
    target_means_ : ndarray of shape (3,), dtype float64
        Mean of each Lab channel over the pooled target pixels.
    target_stds_ : ndarray of shape (3,), dtype float64
        Standard deviation (ddof=0) of each Lab channel over the pooled target pixels.

    See Also
    --------
    reinhard_stats : The statistics, as a function.
    stainstyle.color.rgb_to_lab_ruderman : The colour space.

    Notes
    -----
    ``fit`` pools the pixels of all target tiles (as HistomicsTK's ``reinhard_stats``) rather
    than averaging per-tile statistics, so the target spread includes between-tile variation.
    Source statistics are computed per tile, or once for a slide or group
    (``source_statistics``, ``transform(X, groups=...)``), pooled the same way: a
    :class:`ReinhardSource`.

    References
    ----------
    Reinhard, Ashikhmin, Gooch & Shirley, "Color transfer between images", IEEE CG&A 21(5),
    34-41, 2001.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> target = rng.integers(60, 200, size=(2, 32, 32, 3), dtype=np.uint8)
    >>> source = rng.integers(40, 180, size=(32, 32, 3), dtype=np.uint8)
    >>> ReinhardNormalizer().fit(target).transform(source).shape
    (32, 32, 3)
    """

    _parameter_constraints: dict = {
        **StainNormalizer._parameter_constraints,
        "space": [StrOptions({"lab_ruderman", "lab_cie"})],
        "tissue_only": ["boolean"],
        "passthrough_background": ["boolean"],
        "tissue_mask": ["boolean", DEPRECATED_CONSTRAINT],
    }
    _fitted_attributes: dict = {
        "target_means_": FittedArray((3,), maximum_abs=1e3),
        "target_stds_": FittedArray((3,), minimum=0, maximum=1e3),
    }
    _fit_dependent_params = ("space", "tissue_only", "tissue_mask")
    _machine_local_params = ()
    _colour_table = True
    _tensor_kernels = True
    _renamed_params: dict = {"tissue_mask": Renamed("tissue_only")}

    def __init__(
        self,
        *,
        space: str = "lab_ruderman",
        tissue_only: bool = True,
        passthrough_background: bool = False,
        background: str = "passthrough",
        batch_size: int = 32,
        tissue_mask: bool | str = DEPRECATED,
    ):
        self.space = space
        self.tissue_only = tissue_only
        self.passthrough_background = passthrough_background
        self.background = background
        self.batch_size = batch_size
        self.tissue_mask = tissue_mask

    def _fit(self, tiles: Tiles, y: Any) -> None:
        # Every tile holds tissue: the base fit keeps only those.
        pooled = self._pooled_stats(tiles)
        self.target_means_, self.target_stds_ = pooled.means, pooled.stds

    def _source_context(self, tiles: Tiles) -> ReinhardSource:
        """Mean and spread of each channel over the pooled pixels of ``tiles`` (a slide)."""
        return self._pooled_stats(tiles)

    def _pooled_stats(self, tiles: Tiles) -> ReinhardSource:
        """Per-channel mean and spread of the tiles' pixels together (tissue only if asked)."""
        tissue_only = self._param("tissue_only")
        counts, means, stds = [], [], []
        for batch, tissue in self._fit_batches(tiles):
            if is_tensor(batch):
                counts_, means_, stds_ = self._tensor_stats(batch, tissue)
                counts += counts_
                means += means_
                stds += stds_
                continue
            for i, tile in enumerate(batch):
                mask = tissue[i] if tissue_only else None
                counts.append(
                    tile.shape[0] * tile.shape[1] if mask is None else np.count_nonzero(mask)
                )
                mean, std = _SPACES[self.space](tile).stats(mask)
                means.append(mean)
                stds.append(std)
        mean, std = pool_stats(np.array(counts), np.array(means), np.array(stds))
        return ReinhardSource(means=mean, stds=std)

    def _tensor_stats(self, batch: Any, tissue: Any) -> tuple[list, list, list]:
        """Per-tile pixel counts, means and spreads of a uint8 tensor batch, as lists."""
        from stainstyle._torch_ops import count_true

        n = len(batch)
        mask = tissue.reshape(n, -1) if self._param("tissue_only") else None
        pixels = batch.shape[1] * batch.shape[2]
        counts = [pixels] * n if mask is None else count_true(mask).tolist()
        mean, std = _TENSOR_SPACES[self.space](batch).stats(mask)
        return counts, mean.tolist(), std.tolist()

    def _needs_tissue_mask(self) -> bool:
        return self._param("tissue_only") or self.passthrough_background

    def _transform_batch(
        self,
        batch: np.ndarray,
        tissue: np.ndarray | None,
        *,
        context: ReinhardSource | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        tissue_only = self._param("tissue_only")
        out = np.empty_like(batch)
        for i, tile in enumerate(batch):
            pixels = _SPACES[self.space](tile)
            if context is None:
                mean, std = pixels.stats(tissue[i] if tissue_only else None)
            else:
                mean, std = context.means, context.stds
            scale = reinhard_scale(std, self.target_stds_)
            pixels.mapped(scale, self.target_means_ - mean * scale, out=out[i])
        if self.passthrough_background:
            out[~tissue] = batch[~tissue]
        return out, np.zeros(len(batch), dtype=bool)

    def _transform_tensors(
        self, batch: Any, tissue: Any, *, context: ReinhardSource | None = None
    ) -> tuple[Any, np.ndarray]:
        import torch

        n = len(batch)
        pixels = _TENSOR_SPACES[self.space](batch)
        if context is None:
            mask = tissue.reshape(n, -1) if self._param("tissue_only") else None
            mean, std = pixels.stats(mask)
        else:
            mean = torch.as_tensor(context.means, device=batch.device)[None]
            std = torch.as_tensor(context.stds, device=batch.device)[None]
        target_means = torch.as_tensor(self.target_means_, device=batch.device)
        scale = reinhard_scale(std, torch.as_tensor(self.target_stds_, device=batch.device))
        out = pixels.mapped(scale, target_means - mean * scale)
        if self.passthrough_background:
            out = torch.where(tissue[..., None], out, batch)
        return out, np.zeros(n, dtype=bool)
