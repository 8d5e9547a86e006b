"""The torch kernels of the stain-matrix methods (Macenko, Vahadane), batched over tiles.

The torch twins of :mod:`stainstyle.methods.macenko`'s and :mod:`stainstyle.methods.vahadane`'s
numpy estimates and mappings, on uint8 tensor pixels ``(n, P, 3)`` of ``n`` tiles (or of one
pooled set of tiles, ``n = 1``) on their device. Macenko's estimate is batched through: the
moments, a batched ``eigh``, the angle and concentration percentiles
(:func:`stainstyle._torch_ops.masked_percentiles`, exact order statistics). Vahadane's
dictionary is learned per tile by the numpy solver the numpy path uses
(:func:`stainstyle.methods.vahadane._ordered_stains`) on the same random sample of at most
``n_pixels`` tissue pixels, the only values that leave the device; its concentrations, their
percentiles and the mapping are computed in torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from stainstyle._torch_ops import (
    count_true,
    masked_covariance,
    masked_percentiles,
    per_tile_product,
    to_uint8,
)
from stainstyle.methods._stains import concentration_scale
from stainstyle.separation import ClosedFormLasso
from stainstyle.tissue import tissue_mask_tensor

#: Stain matrix put in place of a degenerate tile's, so that batched solves stay finite.
_PLACEHOLDER = np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]])


@dataclass
class TensorStains:
    """Stain estimates of a batch of tiles, on their device.

    Attributes
    ----------
    stain_matrix : torch.Tensor of shape (n, 3, 2), dtype float64
    max_concentrations : torch.Tensor of shape (n, 2), dtype float64
    degenerate : ndarray of shape (n,), dtype bool
        Tiles the method cannot model (too few stained pixels, one stain): their rows hold
        placeholders and must not be used.
    n_tissue : ndarray of shape (n,), dtype int, or None
        Pixels that passed the method's filter (None for given statistics).
    concentrations : torch.Tensor of shape (n, P, 2), float32, or None
        Vahadane's concentrations of every pixel, kept for the mapping.
    """

    stain_matrix: Any
    max_concentrations: Any
    degenerate: np.ndarray
    n_tissue: np.ndarray | None = None
    concentrations: Any = None

    @classmethod
    def of(cls, stain_matrix: np.ndarray, max_concentrations: np.ndarray, n: int, device: Any):
        """Given (source) statistics, the same for ``n`` tiles."""
        matrix = torch.as_tensor(stain_matrix, dtype=torch.float64, device=device)
        maxc = torch.as_tensor(max_concentrations, dtype=torch.float64, device=device)
        return cls(matrix.expand(n, 3, 2), maxc.expand(n, 2), np.zeros(n, dtype=bool))


def optical_density(pixels: Any, io: float) -> Any:
    """Optical density ``ln(io) - ln(I + 1)`` of uint8 tensor pixels, float32.

    The values of :func:`stainstyle.color.od.od_lut`, computed rather than looked up (a table
    lookup costs twice as much on the CPU): each within a float32 rounding (1e-6) of the
    table's.
    """
    od = pixels.to(torch.float32).add_(1.0).log_()
    return od.neg_().add_(float(np.log(io)))


def _pseudo_angles(points: Any) -> Any:
    """The torch twin of :func:`stainstyle.methods.macenko._pseudo_angles`, points (..., 2)."""
    x, y = points[..., 0], points[..., 1]
    return torch.copysign(1.0 - x / (x.abs() + y.abs()), y)


def _pseudo_to_angle(p: Any) -> Any:
    """The torch twin of :func:`stainstyle.methods.macenko._pseudo_to_angle`."""
    r = 1.0 - p.abs()
    return torch.arctan2(torch.copysign(1.0 - r.abs(), p), r)


def macenko_stains(
    od: Any,
    pixels: Any,
    *,
    io: float,
    beta: float,
    alpha: float,
    tissue_only: bool,
    needed: int,
    max_cosine: float,
    min_angle_range: float,
) -> TensorStains:
    """Macenko's steps 1 to 7 per tile, the twin of ``MacenkoNormalizer._estimate``.

    Parameters
    ----------
    od : torch.Tensor of shape (n, P, 3), float32
        Optical densities of the pixels (:func:`optical_density`).
    pixels : torch.Tensor of shape (n, P, 3), dtype uint8
        The pixels, for Macenko's every-channel filter.
    io, beta, alpha, tissue_only
        The normalizer's parameters.
    needed : int
        Fewest filtered pixels a tile needs.
    max_cosine, min_angle_range : float
        Macenko's single-stain limits.

    Returns
    -------
    TensorStains
    """
    tissue = tissue_mask_tensor(pixels, io, beta, every_channel=True)
    # ddof=0 (the numpy twin divides by n - 1): a positive factor, the same eigenvectors
    count, mean, covariance = masked_covariance(od, tissue)
    few = count < needed
    covariance[few] = torch.eye(3, dtype=torch.float64, device=od.device)
    mean = torch.where(few[:, None], 1.0, mean)
    _, vectors = torch.linalg.eigh(covariance)
    plane = vectors[..., 1:]
    plane = plane * torch.where((mean[:, None] @ plane) < 0, -1.0, 1.0)
    pseudo = _pseudo_angles(per_tile_product(od, plane.to(od.dtype)))
    angles = masked_percentiles(pseudo, tissue, [alpha, 100.0 - alpha], _pseudo_to_angle)
    angles = torch.nan_to_num(angles)
    directions = torch.stack([angles.cos(), angles.sin()], 1)  # (n, 2, 2): [cos; sin] x [min, max]
    v_min, v_max = (plane @ directions).unbind(-1)
    h_first = (v_min[:, 0] > v_max[:, 0])[:, None]
    stains = torch.stack(
        [torch.where(h_first, v_min, v_max), torch.where(h_first, v_max, v_min)], -1
    )
    stains = stains * torch.where(stains.sum(1, keepdim=True) < 0, -1.0, 1.0)
    stains = stains / torch.linalg.vector_norm(stains, dim=1, keepdim=True)
    single = ((stains[:, :, 0] * stains[:, :, 1]).sum(1).abs() > max_cosine) | (
        angles[:, 1] - angles[:, 0] < min_angle_range
    )
    degenerate = (few | single).cpu().numpy()
    n_tissue = count.long().cpu().numpy()
    stains = _placeholders(stains, degenerate)
    projection = torch.linalg.pinv(stains)  # (n, 2, 3)
    concentrations = per_tile_product(od, projection.transpose(1, 2).to(od.dtype))
    maxc = torch.stack(
        [
            masked_percentiles(concentrations[..., k], tissue if tissue_only else None, [99.0])[
                :, 0
            ]
            for k in range(2)
        ],
        1,
    )
    return TensorStains(stains, maxc, degenerate, n_tissue)


def _placeholders(stains: Any, degenerate: np.ndarray) -> Any:
    """``stains`` with the rows of degenerate tiles replaced by a valid matrix."""
    if not degenerate.any():
        return stains
    rows = torch.as_tensor(degenerate, device=stains.device)[:, None, None]
    return torch.where(rows, torch.as_tensor(_PLACEHOLDER, device=stains.device), stains)


def macenko_mapped(
    od: Any,
    source: TensorStains,
    stain_matrix: np.ndarray,
    max_concentrations: np.ndarray,
    io: float,
) -> Any:
    """``io * exp(-HE_target @ diag(scale) @ pinv(HE_source) @ OD)`` per tile, uint8.

    Parameters
    ----------
    od : torch.Tensor of shape (n, P, 3), float32
    source : TensorStains
        The tiles' own stains, or given statistics.
    stain_matrix, max_concentrations : ndarray
        The target's.
    io : float

    Returns
    -------
    torch.Tensor of shape (n, P, 3), dtype uint8
    """
    device = od.device
    target = torch.as_tensor(stain_matrix, dtype=torch.float64, device=device)
    scale = concentration_scale(source.max_concentrations, max_concentrations)
    mix = (target * scale[:, None, :]) @ torch.linalg.pinv(source.stain_matrix)
    log_intensity = per_tile_product(od, (-mix).transpose(1, 2).to(od.dtype))
    log_intensity.add_(float(np.log(io)))
    return to_uint8(log_intensity.exp_())


def lasso_concentrations(od: Any, stain_matrix: Any, lambda1: float) -> Any:
    """:class:`~stainstyle.separation.ClosedFormLasso` per tile, in torch.

    Parameters
    ----------
    od : torch.Tensor of shape (n, P, 3), float32
    stain_matrix : torch.Tensor of shape (n, 3, 2), float64
        Valid (not parallel) stain matrices.
    lambda1 : float

    Returns
    -------
    torch.Tensor of shape (n, P, 2), float32
        Non-negative H and E concentrations, as ``ClosedFormLasso.of(S, lambda1)(od)``.
    """
    solvers = [ClosedFormLasso.of(matrix, lambda1) for matrix in stain_matrix.cpu().numpy()]
    affine = torch.as_tensor(np.stack([s.affine for s in solvers]), device=od.device)
    ratios = torch.as_tensor(np.stack([s.ratios for s in solvers]), device=od.device)
    affine = affine.to(od.dtype)
    free = per_tile_product(od, affine[:, :, :3].transpose(1, 2)).add_(affine[:, None, :, 3])
    bounded = free.clamp(max=0).flip(-1)
    free.add_(bounded * ratios[:, None].to(od.dtype))
    return free.clamp_(min=0)


def vahadane_stains(
    od: Any,
    pixels: Any,
    *,
    io: float,
    beta: float,
    lambda_lasso: float,
    n_pixels: int,
    random_state: int | None,
    tissue_only: bool,
    needed: int,
    sample_ranks: Any,
    learn: Any,
) -> TensorStains:
    """Vahadane's steps 1 to 6 per tile, the twin of ``VahadaneNormalizer._estimate``.

    Parameters
    ----------
    od : torch.Tensor of shape (n, P, 3), float32
    pixels : torch.Tensor of shape (n, P, 3), dtype uint8
    io, beta, lambda_lasso, n_pixels, random_state, tissue_only
        The normalizer's parameters.
    needed : int
        Fewest tissue pixels a tile needs.
    sample_ranks : callable
        ``(n_tissue, n_pixels, rng) -> ranks or None``, the numpy path's pixel sample.
    learn : callable
        ``sample (m, 3) float32 ndarray -> (stain_matrix (3, 2), degenerate)``, the numpy
        path's dictionary learning.

    Returns
    -------
    TensorStains
        With the concentrations of every pixel.
    """
    n = len(od)
    tissue = tissue_mask_tensor(pixels, io, beta, every_channel=False)
    n_tissue = count_true(tissue).cpu().numpy()
    matrices = np.tile(_PLACEHOLDER, (n, 1, 1))
    degenerate = n_tissue < needed
    for i in np.flatnonzero(~degenerate):
        ranks = sample_ranks(int(n_tissue[i]), n_pixels, np.random.default_rng(random_state))
        tissue_od = od[i][tissue[i]]
        sample = tissue_od if ranks is None else tissue_od[torch.as_tensor(ranks, device=od.device)]
        matrices[i], degenerate[i] = learn(sample.cpu().numpy())
    stains = _placeholders(torch.as_tensor(matrices, device=od.device), degenerate)
    concentrations = lasso_concentrations(od, stains, lambda_lasso)
    mask = tissue if tissue_only else None
    maxc = torch.stack(
        [masked_percentiles(concentrations[..., k], mask, [99.0])[:, 0] for k in range(2)], 1
    )
    return TensorStains(stains, maxc, degenerate, n_tissue, concentrations)


def vahadane_mapped(
    od: Any,
    source: TensorStains,
    stain_matrix: np.ndarray,
    max_concentrations: np.ndarray,
    io: float,
    lambda_lasso: float,
) -> Any:
    """``io * exp(-S_target @ (c * scale))`` per tile, uint8 ``(n, P, 3)``.

    Parameters
    ----------
    od : torch.Tensor of shape (n, P, 3), float32
    source : TensorStains
        The tiles' own stains (with their concentrations), or given statistics.
    stain_matrix, max_concentrations : ndarray
        The target's.
    io, lambda_lasso : float

    Returns
    -------
    torch.Tensor of shape (n, P, 3), dtype uint8
    """
    concentrations = source.concentrations
    if concentrations is None:
        concentrations = lasso_concentrations(od, source.stain_matrix, lambda_lasso)
    target = torch.as_tensor(stain_matrix, dtype=torch.float64, device=od.device)
    scale = concentration_scale(source.max_concentrations, max_concentrations)
    rebuild = -(target[None] * scale[:, None, :])  # (n, 3, 2)
    log_intensity = per_tile_product(concentrations, rebuild.transpose(1, 2).to(od.dtype))
    return to_uint8(log_intensity.add_(float(np.log(io))).exp_())
