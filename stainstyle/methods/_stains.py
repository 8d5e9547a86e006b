"""What the stain-matrix methods (Macenko, Vahadane) share: their source statistics and maps.

Both model a tile by a stain matrix (columns H, E) and the 99th-percentile concentrations of
its two stains (:class:`StainSource`), estimated per tile or once per slide or group; both
give the H and E concentration maps of tiles in that basis
(:meth:`StainSeparationMixin.stain_concentrations`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from stainstyle._validation import Tiles, as_tiles
from stainstyle._xp import is_tensor, namespace
from stainstyle.base import STATUS_BACKGROUND, STATUS_DEGENERATE, STATUS_OK
from stainstyle.separation import ClosedFormLasso, tile_concentrations
from stainstyle.sources import SourceStatistics, UnmodelledSource
from stainstyle.tissue import MIN_TISSUE_PIXELS, min_tissue_pixels, screen_tiles, tissue_mask

#: A source's maximum concentration at or below this is an absent stain: it is not rescaled.
MIN_CONCENTRATION = 1e-6


def concentration_scale(source_maxc: Any, target_maxc: np.ndarray) -> Any:
    """Per-stain scale ``target / source`` of the maximum concentrations, 1 for absent stains.

    Parameters
    ----------
    source_maxc : ndarray of shape (2,) or torch.Tensor of shape (n, 2), float64
        The source's 99th-percentile H and E concentrations (per tile for a tensor).
    target_maxc : ndarray of shape (2,), dtype float64
        The target's.

    Returns
    -------
    ndarray or torch.Tensor of the shape of ``source_maxc``, float64
        On ``source_maxc``'s device; 1 where the source maximum is at most
        :data:`MIN_CONCENTRATION`.
    """
    xp = namespace(source_maxc)
    if xp is not np:
        target_maxc = xp.as_tensor(target_maxc, dtype=xp.float64, device=source_maxc.device)
    flat = source_maxc <= MIN_CONCENTRATION
    return xp.where(flat, 1.0, target_maxc / xp.where(flat, 1.0, source_maxc))


@dataclass(frozen=True)
class StainSource:
    """Source statistics of a stain-matrix method for a slide or group (or one tile).

    Attributes
    ----------
    stain_matrix : ndarray of shape (3, 2), dtype float64
        Source stain vectors (columns H, E; rows R, G, B).
    max_concentrations : ndarray of shape (2,), dtype float64
        Source 99th-percentile concentrations of H and E.
    """

    stain_matrix: np.ndarray
    max_concentrations: np.ndarray


def pooled_images(tiles: Tiles) -> list[np.ndarray]:
    """The tiles' images grouped by shape (the order a pooled estimate reads them in)."""
    return [tiles.images[i] for group in tiles.shape_groups() for i in group]


class StainSeparationMixin:
    """Fit, source statistics, transform and stain maps of a method with a stain matrix.

    The class provides ``_estimate(images, needed) -> (StainSource, ...)``, raising
    :class:`~stainstyle.sources.UnmodelledSource` when the pixels cannot be modelled;
    ``_transform_tile(tile, source)``, the mapped tile or None when it cannot be modelled; the
    parameter ``io``; and ``_separation_penalty()``, the l1 penalty of its concentrations.
    """

    _tensor_kernels = True

    def _separation_penalty(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def _tensor_stains(self, od: Any, pixels: Any, needed: int) -> Any:  # pragma: no cover
        """The method's estimate per tile of tensor pixels: a ``TensorStains``."""
        raise NotImplementedError

    def _tensor_mapped(self, od: Any, source: Any) -> Any:  # pragma: no cover - abstract
        """The mapped uint8 pixels ``(n, P, 3)`` of optical densities with a ``TensorStains``."""
        raise NotImplementedError

    def _pooled_estimate(self, tiles: Tiles, needed: int) -> StainSource:
        """The estimate of the pooled pixels of ``tiles``, numpy or torch.

        Raises
        ------
        UnmodelledSource
            If the pixels cannot be modelled.
        """
        images = pooled_images(tiles)
        if not is_tensor(images[0]):
            return self._estimate(images, needed)[0]
        import torch

        from stainstyle.methods._stain_tensors import optical_density

        pixels = torch.cat([image.reshape(-1, 3) for image in images])[None]
        found = self._tensor_stains(optical_density(pixels, self.io), pixels, needed)
        if found.n_tissue[0] < needed:
            raise UnmodelledSource(
                f"hold {found.n_tissue[0]} pixels that pass the stain filter (an optical density "
                f"of at least beta={self.beta}), at least {needed} are needed; are they pale or "
                "blank?"
            )
        if found.degenerate[0]:
            raise UnmodelledSource("hold a single stain (the two estimated stain vectors coincide)")
        return StainSource(
            stain_matrix=found.stain_matrix[0].cpu().numpy(),
            max_concentrations=found.max_concentrations[0].cpu().numpy(),
        )

    def _transform_tensors(
        self, batch: Any, tissue: Any, *, context: StainSource | None = None
    ) -> tuple[Any, np.ndarray]:
        from stainstyle.methods._stain_tensors import TensorStains, optical_density

        n = len(batch)
        pixels = batch.reshape(n, -1, 3)
        od = optical_density(pixels, self.io)
        if context is None:
            source = self._tensor_stains(od, pixels, min_tissue_pixels(*batch.shape[1:3]))
        else:
            source = TensorStains.of(
                context.stain_matrix, context.max_concentrations, n, batch.device
            )
        return self._tensor_mapped(od, source).reshape(batch.shape), source.degenerate

    def _fit(self, tiles: Tiles, y: Any) -> None:
        try:
            target = self._pooled_estimate(tiles, MIN_TISSUE_PIXELS)
        except UnmodelledSource as problem:
            raise ValueError(
                f"{type(self).__name__}: the target tiles {problem}; fit on H&E-stained tissue"
            ) from None
        self.stain_matrix_ = target.stain_matrix
        self.max_concentrations_ = target.max_concentrations

    def _source_context(self, tiles: Tiles) -> StainSource:
        """Stain matrix and maximum concentrations of ``tiles`` pooled (a slide, a group).

        Raises
        ------
        UnmodelledSource
            If the tiles hold too few stained pixels or a single stain.
        """
        return self._pooled_estimate(tiles, MIN_TISSUE_PIXELS)

    def _transform_tile(
        self, tile: np.ndarray, source: StainSource | None
    ) -> np.ndarray | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _transform_batch(
        self,
        batch: np.ndarray,
        tissue: np.ndarray | None,
        *,
        context: StainSource | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        out = np.empty_like(batch)
        degenerate = np.zeros(len(batch), dtype=bool)
        for i, tile in enumerate(batch):
            mapped = self._transform_tile(tile, context)
            if mapped is None:
                degenerate[i] = True
            else:
                out[i] = mapped
        return out, degenerate

    def stain_concentrations(
        self, X: Any, groups: Any = None, *, source: SourceStatistics | None = None
    ) -> np.ndarray | list[np.ndarray]:
        """The H and E concentration maps of tiles, in each tile's own stain basis.

        Each tile is separated with the stain matrix estimated on it (as ``transform`` does),
        or with one estimate per group (``groups``) or given statistics (``source``), so that
        the maps of a slide's tiles share one basis and are comparable. Concentrations are the
        exact non-negative lasso of :func:`stainstyle.separation.separate_stains`, with the
        method's penalty (0 for Macenko, ``lambda_lasso`` for Vahadane).

        Parameters
        ----------
        X : ndarray of shape (N, H, W, 3) or (H, W, 3), torch.Tensor, or list of such tiles
            Tiles, uint8 or float in [0, 1].
        groups : array-like of shape (N,), optional
            Group id per tile, as for ``transform``.
        source : SourceStatistics, optional
            Statistics from ``source_statistics`` for every tile, as for ``transform``.

        Returns
        -------
        ndarray of shape (N, H, W, 2) or (H, W, 2), dtype float32, or list of them
            H (``[..., 0]``) and E (``[..., 1]``) concentrations, >= 0, in the layout of ``X``.
            0 on pixels that are not tissue (:func:`stainstyle.tissue.tissue_mask`), and on
            every pixel of tiles that are passed through by ``transform`` (too little tissue,
            one stain, unmodelled ``source``).

        Warns
        -----
        BackgroundTileWarning
            Once per call when some tiles got all-zero maps (``background="raise"`` raises).
        """
        check_is_fitted(self)
        self._validate_params()
        tiles = as_tiles(X)
        maps = [np.zeros((*img.shape[:2], 2), dtype=np.float32) for img in tiles.images]
        status = np.full(len(tiles), STATUS_OK, dtype=object)
        for members, statistics in self._plan(tiles, groups, source):
            for indices, batch in tiles.batches(self.batch_size, members):
                background, uniform = screen_tiles(batch)
                status[indices[background]] = STATUS_BACKGROUND
                status[indices[uniform]] = STATUS_DEGENERATE
                for j in np.flatnonzero(~(background | uniform)):
                    stains = self._stains_of(batch[j], statistics)
                    if stains is None:
                        status[indices[j]] = STATUS_DEGENERATE
                        continue
                    lasso = ClosedFormLasso.of(stains.stain_matrix, self._separation_penalty())
                    maps[indices[j]] = tile_concentrations(
                        batch[j], lasso, self.io, tissue_mask(batch[j])
                    )
        self._apply_background_policy(status.astype(str), tiles)
        if tiles.layout == "tile":
            return maps[0]
        return maps if tiles.layout == "list" else np.stack(maps)

    def _stains_of(
        self, tile: np.ndarray, statistics: SourceStatistics | None
    ) -> StainSource | None:
        """The stains a tile is separated with: the statistics', else its own; None if none."""
        if statistics is not None:
            return statistics.statistics if statistics.modelled else None
        try:
            return self._estimate([tile], min_tissue_pixels(*tile.shape[:2]))[0]
        except UnmodelledSource:
            return None
