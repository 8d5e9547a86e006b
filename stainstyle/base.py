"""The estimator contract every stainstyle method shares.

:class:`StainNormalizer` is a scikit-learn transformer. It owns everything that is not a method's
own algorithm: input validation (:mod:`stainstyle._validation`), the background policy
(:mod:`stainstyle.tissue`), batching, and torch device selection. A method subclasses it and
implements two hooks on canonical data:

``_fit(tiles, y)``
    Learn the target style from a :class:`~stainstyle._validation.Tiles` of uint8 RGB tiles;
    iterate over ``self._fit_batches(tiles)`` for ``(batch, tissue)`` pairs.
``_transform_batch(batch, tissue)``
    Map a batch ``(n, H, W, 3)`` uint8 of tiles that all hold tissue; return the mapped batch and
    a boolean ``(n,)`` array flagging tiles the method could not normalize (degenerate).
    ``tissue`` holds the tiles' tissue masks ``(n, H, W)``, or is None when the method's
    ``_needs_tissue_mask()`` says it does not use them (they are not computed then).
"""

from __future__ import annotations

import warnings
from numbers import Integral
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from stainstyle._validation import Tiles, as_tiles
from stainstyle.hub import NormalizerHubMixin
from stainstyle.tissue import MIN_TISSUE_PIXELS, min_tissue_pixels, screen_tiles, tissue_mask

#: Per-tile status: the tile was normalized.
STATUS_OK = "ok"
#: Per-tile status: too little tissue, returned unchanged.
STATUS_BACKGROUND = "passthrough_background"
#: Per-tile status: tissue present but the method's model does not fit it (e.g. one stain only),
#: returned unchanged.
STATUS_DEGENERATE = "passthrough_degenerate"


class BackgroundTileWarning(UserWarning):
    """Some tiles were returned unchanged because they hold too little tissue or are degenerate."""


def resolve_device(device: str):
    """Turn a ``device`` parameter into a :class:`torch.device`.

    Parameters
    ----------
    device : {"cpu", "cuda", "auto"} or str
        ``"auto"`` picks CUDA when available, else the CPU. Any string torch accepts
        (``"cuda:1"``) is passed through.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If CUDA is asked for and not available.
    """
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available on this machine; "
            "use device='cpu' or device='auto'"
        )
    return resolved


def describe_device(device) -> str:
    """A one-line description of a torch device, for benchmark reports.

    Parameters
    ----------
    device : torch.device
        A resolved device (see :func:`resolve_device`).

    Returns
    -------
    str
        The GPU's name, or the CPU's architecture, core count and torch thread count.
    """
    import os
    import platform

    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return (
        f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads"
    )


def _caller_stacklevel() -> int:
    """Stack level of the first frame outside stainstyle and scikit-learn, for warnings."""
    import os
    import sys

    import sklearn

    internal = (
        os.path.dirname(os.path.dirname(__file__)) + os.sep + "stainstyle",
        os.path.dirname(sklearn.__file__),
    )
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(internal):
        frame, level = frame.f_back, level + 1
    return level


class StainNormalizer(
    TransformerMixin, BaseEstimator, NormalizerHubMixin, auto_wrap_output_keys=None
):
    """Base class of every stain normalizer: validation, background policy and batching.

    Subclasses declare their own ``__init__`` (keyword-only, storing each argument unchanged, and
    including ``background`` and ``batch_size``) and implement ``_fit`` and ``_transform_batch``.

    Parameters
    ----------
    background : {"passthrough", "raise"}, default="passthrough"
        What to do with a tile that holds too little tissue (fewer than ``max(100, 0.5 %)`` of
        its pixels with optical density >= 0.15 in every channel) or that the method cannot
        model: return it unchanged and emit one :class:`BackgroundTileWarning` per call that
        counts such tiles, or raise ``ValueError``.
    batch_size : int, default=32
        Number of tiles processed at once; bounds the memory used by ``transform``.

    Notes
    -----
    Inputs: one tile ``(H, W, 3)``, a batch ``(N, H, W, 3)`` or a list of tiles of different
    sizes; numpy arrays or torch tensors; uint8 or float in [0, 1]. The output has the input's
    container, shape and dtype (tensors stay on their device). Float input is quantized to uint8
    for the computation; tiles passed through are returned bit for bit.
    """

    def __init_subclass__(cls, **kwargs):
        # Outputs are images, not feature tables: opt every method out of set_output wrapping.
        super().__init_subclass__(auto_wrap_output_keys=None, **kwargs)

    _parameter_constraints: dict = {
        "background": [StrOptions({"passthrough", "raise"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
    }

    def fit(self, X: Any, y: Any = None) -> StainNormalizer:
        """Learn the target stain style from target tiles.

        Parameters
        ----------
        X : ndarray of shape (N, H, W, 3) or (H, W, 3), torch.Tensor, or list of such tiles
            Target-style tiles, uint8 or float in [0, 1]. Never modified.
        y : None
            Ignored; present for scikit-learn compatibility.

        Returns
        -------
        self
        """
        self._validate_params()
        tiles = as_tiles(X)
        self._fit(tiles, y)
        return self

    def transform(self, X: Any, groups: Any = None) -> Any:
        """Map tiles into the learned target stain style.

        Parameters
        ----------
        X : ndarray of shape (N, H, W, 3) or (H, W, 3), torch.Tensor, or list of such tiles
            Tiles to normalize, uint8 or float in [0, 1].
        groups : array-like of shape (N,), optional
            Group id per tile (e.g. the slide id), for methods that pool source statistics per
            group; methods that do not raise ``ValueError`` when it is given.

        Returns
        -------
        Same type, shape and dtype as ``X``
            Normalized tiles; background and degenerate tiles unchanged.

        Warns
        -----
        BackgroundTileWarning
            Once per call, when some tiles were passed through unchanged.
        """
        tiles = as_tiles(X)
        results, status = self._normalize(tiles, produce_output=True, groups=groups)
        self._apply_background_policy(status, tiles)
        return tiles.restore(results)

    # ------------------------------------------------------------------ hooks for subclasses
    def _fit(self, tiles: Tiles, y: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _transform_batch(
        self, batch: np.ndarray, tissue: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _needs_tissue_mask(self) -> bool:
        """Whether ``_transform_batch`` uses its ``tissue`` masks (else it gets None)."""
        return True

    def _group_context(self, tiles: Tiles, members: np.ndarray) -> Any:
        """Source statistics pooled over the tiles ``members`` of one group.

        Only methods supporting ``transform(X, groups=...)`` override this; their
        ``_transform_batch(batch, tissue, context)`` then receives the returned object for every
        batch of the group.
        """
        raise ValueError(
            f"groups: {type(self).__name__} does not pool statistics over groups of tiles; "
            "call transform(X) without groups"
        )

    # ------------------------------------------------------------------ shared machinery
    def _fit_batches(self, tiles: Tiles):
        """Yield ``(batch, tissue)`` over all fit tiles, ``batch_size`` tiles at a time.

        Yields
        ------
        batch : ndarray of shape (n, H, W, 3), dtype uint8, read-only
        tissue : ndarray of shape (n, H, W), dtype bool
        """
        for _, batch in tiles.batches(self.batch_size):
            yield batch, tissue_mask(batch)

    def _normalize(
        self, tiles: Tiles, produce_output: bool, groups: Any = None
    ) -> tuple[list[np.ndarray | None], np.ndarray]:
        """Run the method over all tissue tiles, group by group when ``groups`` is given.

        Returns per-tile results (None means unchanged) and the per-tile status.
        """
        check_is_fitted(self)
        self._validate_params()
        status = np.full(len(tiles), STATUS_OK, dtype=object)
        results: list[np.ndarray | None] = [None] * len(tiles)
        for members in _group_members(groups, len(tiles)):
            context = () if groups is None else (self._group_context(tiles, members),)
            for indices, batch in tiles.batches(self.batch_size, members):
                background, uniform = screen_tiles(batch)
                status[indices[background]] = STATUS_BACKGROUND
                status[indices[uniform]] = STATUS_DEGENERATE
                keep = ~(background | uniform)
                if not keep.any():
                    continue
                if not keep.all():
                    batch = batch[keep]
                tissue = tissue_mask(batch) if self._needs_tissue_mask() else None
                mapped, degenerate = self._transform_batch(batch, tissue, *context)
                kept = indices[keep]
                status[kept[degenerate]] = STATUS_DEGENERATE
                if produce_output:
                    for j, i in enumerate(kept):
                        if not degenerate[j]:
                            results[i] = mapped[j]
        return results, status.astype(str)

    def _apply_background_policy(self, status: np.ndarray, tiles: Tiles) -> None:
        n_background = int(np.count_nonzero(status == STATUS_BACKGROUND))
        n_degenerate = int(np.count_nonzero(status == STATUS_DEGENERATE))
        if n_background + n_degenerate == 0:
            return
        shapes = {img.shape[:2] for img in tiles.images}
        needed = ", ".join(f"{min_tissue_pixels(*s)} for {s[0]}x{s[1]}" for s in sorted(shapes))
        message = (
            f"{type(self).__name__}: {n_background + n_degenerate} of {len(status)} tiles "
            f"passed through unchanged ({n_background} with too little tissue, i.e. fewer "
            f"tissue pixels than {needed}; {n_degenerate} without colour variation or that "
            "the method could not model). "
            "Use stainstyle.tile_status(normalizer, X) to see which."
        )
        if self.background == "raise":
            bad = np.flatnonzero(status != STATUS_OK)[:10].tolist()
            raise ValueError(f"{message} background='raise'; first offending indices: {bad}")
        warnings.warn(message, BackgroundTileWarning, stacklevel=_caller_stacklevel())


def _group_members(groups: Any, n_tiles: int) -> list[np.ndarray | None]:
    """Tile indices per group, in order of first appearance; ``[None]`` (all tiles) without groups.

    Raises
    ------
    ValueError
        If ``groups`` does not hold one id per tile.
    """
    if groups is None:
        return [None]
    ids = np.asarray(groups)
    if ids.shape != (n_tiles,):
        raise ValueError(
            f"groups: expected one group id per tile, shape ({n_tiles},), got shape {ids.shape}"
        )
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first)
    return [np.flatnonzero(inverse.ravel() == g) for g in order]


def tile_status(normalizer: StainNormalizer, X: Any, groups: Any = None) -> np.ndarray:
    """Report, per tile, whether a fitted normalizer would normalize it or pass it through.

    The estimator is not changed and no warning is emitted.

    Parameters
    ----------
    normalizer : StainNormalizer
        A fitted normalizer.
    X : ndarray of shape (N, H, W, 3) or (H, W, 3), torch.Tensor, or list of such tiles
        Tiles, uint8 or float in [0, 1].
    groups : array-like of shape (N,), optional
        Group ids, as for ``normalizer.transform(X, groups)``.

    Returns
    -------
    ndarray of shape (N,), dtype str
        ``"ok"``, ``"passthrough_background"`` or ``"passthrough_degenerate"`` per tile (N = 1
        for a single tile).
    """
    _, status = normalizer._normalize(as_tiles(X), produce_output=False, groups=groups)
    return status


def require_tissue(n_pixels: int, what: str, needed: int = MIN_TISSUE_PIXELS) -> None:
    """Raise a clear error when fitting data holds too little tissue.

    Parameters
    ----------
    n_pixels : int
        Tissue pixels found.
    what : str
        What was being fitted, for the message.
    needed : int, default=100
        Tissue pixels required.

    Raises
    ------
    ValueError
        If ``n_pixels < needed``.
    """
    if n_pixels < needed:
        raise ValueError(
            f"{what}: the target tiles hold {n_pixels} tissue pixels, at least {needed} are "
            "needed (tissue = optical density >= 0.15 in every channel); are they blank or "
            "background?"
        )
