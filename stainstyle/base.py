"""The estimator contract every stainstyle method shares.

:class:`StainNormalizer` is a scikit-learn transformer. It owns everything that is not a method's
own algorithm: input validation (:mod:`stainstyle._validation`), the background policy
(:mod:`stainstyle.tissue`), batching, and torch device selection. A method subclasses it and
implements two hooks on canonical data:

``_fit(tiles, y)``
    Learn the target style from a :class:`~stainstyle._validation.Tiles` of uint8 RGB tiles,
    each holding tissue with colour variation (``fit`` screens the targets and raises when none
    does); iterate over ``self._fit_batches(tiles)`` for ``(batch, tissue)`` pairs (``tissue``
    as for ``_transform_batch``).
``_transform_batch(batch, tissue, *, context=None)``
    Map a batch ``(n, H, W, 3)`` uint8 of tiles that all hold tissue; return the mapped batch and
    a boolean ``(n,)`` array flagging tiles the method could not normalize (degenerate).
    ``tissue`` holds the tiles' tissue masks ``(n, H, W)``, or is None when the method's
    ``_needs_tissue_mask()`` says it does not use them (they are not computed then).
    ``context`` is the method's source statistics for the batch (what ``_source_context``
    returned for the batch's slide or group), passed by keyword when ``transform`` is called
    with ``source`` or ``groups``; None otherwise, when each tile is measured on its own.

A method with torch kernels sets ``_tensor_kernels = True`` and implements
``_transform_tensors(batch, tissue, *, context=None)``, the twin of ``_transform_batch`` on a
uint8 tensor batch on its device (``tissue`` a boolean tensor or None; the mapped batch a uint8
tensor; ``degenerate`` a numpy array); its ``_fit`` and ``_source_context`` then also receive
:class:`~stainstyle._tensors.TensorTiles`, whose batches are tensors. Tensor input then never
goes through numpy: validation, screening and tissue masks run in torch too
(:func:`~stainstyle.tissue.screen_tensors`, :func:`~stainstyle.tissue.tissue_mask_tensor`).
Other methods (WSICS) get tensors copied to numpy and their results copied back.

A method whose mapping depends on statistics of the source tiles (see
:mod:`stainstyle.sources`) also implements ``_source_context(tiles)``: measure them on a
:class:`~stainstyle._validation.Tiles` of tissue tiles and return them, or raise
:class:`~stainstyle.sources.UnmodelledSource`. The default returns None (no statistics).

A method whose mapping with fixed statistics is a function of each pixel's colour alone,
computed by float kernels that a table lookup beats, and whose ``_transform_batch`` then flags no
tile degenerate, sets ``_colour_table = True``. With fixed statistics (``source``, ``groups``,
:meth:`StainNormalizer.fixed_mapping`) its pixels are then mapped as colours: by
``_transform_batch`` of an image one pixel wide (with its tissue mask), in the padded batches of
:mod:`stainstyle.color.table`, so that a colour's value does not depend on the tile it is in; and
:meth:`StainNormalizer.fixed_mapping` computes each distinct colour once, into a
:class:`~stainstyle.color.table.ColourTable`. A method whose colours cost much more to map than to
find among others (WSICS) also sets ``_costly_colours = True``: ``transform`` with fixed
statistics then computes each distinct colour of a batch once, rather than every pixel. Other
methods map tiles with fixed statistics by their own code, the mapping included: stain-style
transfer, which is not a function of the pixel's colour, and histogram specification and gray
normalization, whose mappings are exact integer lookups per channel already, faster than any
colour table.
"""

from __future__ import annotations

import copy
import functools
import logging
import warnings
from collections.abc import Callable, Iterable
from numbers import Integral
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import _safe_indexing
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from stainstyle._renamed import check_renamed, param_in_effect
from stainstyle._validation import Tiles, as_tiles
from stainstyle._xp import is_tensor, is_tensor_input
from stainstyle.color.table import ColourFunction, ColourTable, map_distinct, map_pixels
from stainstyle.hub import NormalizerHubMixin
from stainstyle.sources import SourceStatistics, UnmodelledSource, group_members
from stainstyle.tissue import (
    UNIFORM_MAX_STD,
    min_tissue_pixels,
    screen_tensors,
    screen_tiles,
    tissue_mask,
    tissue_mask_tensor,
)

logger = logging.getLogger(__name__)

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

    Subclasses implement ``_fit`` and ``_transform_batch``. A subclass with parameters of its own
    declares its own ``__init__`` (keyword-only, storing each argument unchanged, ``background``
    and ``batch_size`` included), as scikit-learn requires; one without keeps this one.

    Parameters
    ----------
    background : {"passthrough", "raise"}, default="passthrough"
        What to do with a tile that holds too little tissue (fewer than ``max(100, 0.5 %)`` of
        its pixels with optical density >= 0.15 in some channel, see :mod:`stainstyle.tissue`)
        or that the method cannot model: return it unchanged and emit one
        :class:`BackgroundTileWarning` per call that counts such tiles, or raise ``ValueError``.
    batch_size : int, default=32
        Number of tiles processed at once; bounds the memory used by ``transform``.

    Notes
    -----
    ``fit`` screens the target tiles with the rule ``transform`` applies: background tiles and
    uniform tiles (tissue of one flat colour) are left out, so no method learns from a blank
    tile, and a ``ValueError`` names the counts and the rule when no target tile is left (all
    white, all black, a few pixels, one colour). A method whose own model is stricter (e.g.
    Macenko's stain filter, WSICS's nuclei) raises its own error on the tiles left.

    Inputs: one tile ``(H, W, 3)``, a batch ``(N, H, W, 3)`` or a list of tiles of different
    sizes; numpy arrays or torch tensors; uint8 or float in [0, 1]. The output has the input's
    container, shape and dtype (tensors stay on their device). Float input is quantized to uint8
    for the computation; tiles passed through are returned bit for bit. Methods with torch
    kernels (Reinhard, Macenko, Vahadane, histogram specification, gray normalization) compute
    tensors in torch on their device, within a gray level of the numpy path; :meth:`as_module`
    wraps a fitted normalizer as a ``torch.nn.Module``.
    """

    def __init__(self, *, background: str = "passthrough", batch_size: int = 32):
        self.background = background
        self.batch_size = batch_size

    def __init_subclass__(cls, **kwargs):
        # Outputs are images, not feature tables: opt every method out of set_output wrapping.
        super().__init_subclass__(auto_wrap_output_keys=None, **kwargs)

    _parameter_constraints: dict = {
        "background": [StrOptions({"passthrough", "raise"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
    }
    #: Deprecated constructor parameters: old name -> :class:`~stainstyle._renamed.Renamed`.
    _renamed_params: dict = {}
    #: Whether a fixed mapping keeps a colour table (see the module docstring).
    _colour_table: bool = False
    #: Whether a colour costs much more to map than to find among others (WSICS): then a call
    #: with fixed statistics computes each distinct colour of a batch once, not every pixel.
    _costly_colours: bool = False
    #: Whether the method has torch kernels (``_transform_tensors``): tensors then stay tensors
    #: on their device through ``fit``, ``transform`` and ``source_statistics``.
    _tensor_kernels: bool = False

    def fit(self, X: Any, y: Any = None) -> StainNormalizer:
        """Learn the target stain style from the target tiles that hold tissue.

        Tiles are screened as ``transform`` screens them: background tiles (too little tissue)
        and uniform tiles (tissue without colour variation, e.g. one flat colour) are left out,
        so the method learns from tissue tiles only.

        Parameters
        ----------
        X : ndarray of shape (N, H, W, 3) or (H, W, 3), torch.Tensor, or list of such tiles
            Target-style tiles, uint8 or float in [0, 1]. Never modified.
        y : array-like of shape (N,), optional
            Tile labels, for methods that use them (restricted to the tiles kept); ignored
            otherwise.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            If no target tile holds tissue with colour variation (all white, all black,
            too small or a single colour), or if ``y`` does not hold one label per tile.
        """
        self._validate_params()
        tiles, y = self._tissue_targets(X, y)
        self._fit(tiles, y)
        return self

    def transform(self, X: Any, groups: Any = None, *, source: SourceStatistics | None = None):
        """Map tiles into the learned target stain style.

        By default each tile's source statistics (its means, stain vectors, histogram...) are
        measured on the tile itself. With ``groups`` they are measured once per group, and with
        ``source`` they are given (:meth:`source_statistics`), so that every tile of a slide gets
        the same mapping and neighbouring tiles join without seams.

        Parameters
        ----------
        X : ndarray of shape (N, H, W, 3) or (H, W, 3), torch.Tensor, or list of such tiles
            Tiles to normalize, uint8 or float in [0, 1].
        groups : array-like of shape (N,), optional
            Group id per tile (e.g. the slide id): the statistics are measured on each group's
            tissue tiles, equal to ``transform(X[g], source=source_statistics(X[g]))`` per
            group ``g``. Any hashable ids (str, int, None, tuples, mixed); unhashable ones
            (lists, arrays) raise ``ValueError``.
        source : SourceStatistics, optional
            Statistics from :meth:`source_statistics` of this normalizer (or one with the same
            class and fit-dependent parameters), applied to every tile. Not with ``groups``.

        Returns
        -------
        Same type, shape and dtype as ``X``
            Normalized tiles; background and degenerate tiles unchanged.

        Warns
        -----
        BackgroundTileWarning
            Once per call, when some tiles were passed through unchanged.

        Notes
        -----
        With ``source`` or ``groups``, Reinhard, Macenko and WSICS map each pixel as a colour,
        as :meth:`fixed_mapping` does, and the result is the same bit for bit; the mapping
        computes each distinct colour once, which makes it the faster way to map a slide's
        tiles over many calls. Tensors given to a method with torch kernels are mapped by them,
        pixel by pixel on their device, with the same statistics (within a gray level).
        """
        tiles = self._as_tiles(X)
        results, status = self._normalize(tiles, True, groups, source)
        self._apply_background_policy(status, tiles)
        return tiles.restore(results)

    def transform_with_status(
        self, X: Any, groups: Any = None, *, source: SourceStatistics | None = None
    ) -> tuple[Any, np.ndarray]:
        """Map tiles into the target style and report each tile's status, in one pass.

        What :meth:`transform` followed by :func:`tile_status` would return, without running
        the method twice. The status replaces the warning: no :class:`BackgroundTileWarning` is
        emitted, whatever ``background`` says.

        Parameters
        ----------
        X : ndarray of shape (N, H, W, 3) or (H, W, 3), torch.Tensor, or list of such tiles
            Tiles to normalize, uint8 or float in [0, 1].
        groups : array-like of shape (N,), optional
            Group id per tile, as for :meth:`transform`.
        source : SourceStatistics, optional
            Statistics for every tile, as for :meth:`transform`.

        Returns
        -------
        tiles : same type, shape and dtype as ``X``
            Normalized tiles; background and degenerate tiles unchanged.
        status : ndarray of shape (N,), dtype str
            ``"ok"``, ``"passthrough_background"`` or ``"passthrough_degenerate"`` per tile
            (N = 1 for a single tile).
        """
        tiles = self._as_tiles(X)
        results, status = self._normalize(tiles, True, groups, source)
        return tiles.restore(results), status

    def source_statistics(self, X: Any) -> SourceStatistics:
        """Measure the source statistics of a set of tiles once, for one fixed mapping.

        Typically on a sample of one slide's tissue tiles (``stainstyle.wsi.sample_tiles``);
        then ``transform(tile, source=statistics)`` maps every tile of the slide the same way,
        and :meth:`fixed_mapping` ``(statistics)`` does so faster, each colour computed once.
        Background and uniform tiles of ``X`` are left out, as ``fit`` leaves them out.

        Parameters
        ----------
        X : ndarray of shape (N, H, W, 3) or (H, W, 3), torch.Tensor, or list of such tiles
            Source tiles, uint8 or float in [0, 1]. Never modified.

        Returns
        -------
        SourceStatistics
            With ``modelled=False`` (and the reason) when the tiles hold nothing the method can
            measure: every tile transformed with them is then passed through as degenerate.
        """
        check_is_fitted(self)
        self._validate_params()
        return self._measure_source(self._as_tiles(X))

    def fixed_mapping(self, source: SourceStatistics) -> FixedMapping:
        """The one fixed mapping of a slide's tiles, from its source statistics, made once.

        ``fixed_mapping(source).transform_with_status(X)`` returns what
        ``transform_with_status(X, source=source)`` returns, bit for bit, for every method.
        For Reinhard, Macenko, Vahadane and WSICS the mapping is a lookup table over the 2**24
        RGB colours, each computed once when a tile first holds it: after a slide's first tiles,
        normalizing a tile is a table lookup, WSICS's included. Histogram specification and
        gray normalization map by per-channel lookups already, and stain-style transfer by its
        network: their mappings run their own code with the statistics.

        Parameters
        ----------
        source : SourceStatistics
            From :meth:`source_statistics` of this normalizer (or one with the same class and
            fit-dependent parameters).

        Returns
        -------
        FixedMapping
            Holds a copy of this normalizer: refitting it or changing its parameters later does
            not change the mapping.

        Raises
        ------
        ValueError
            If ``source`` was measured by another class or with other parameters.
        sklearn.exceptions.NotFittedError
            If the normalizer is not fitted.

        Notes
        -----
        Memory: a colour table takes 64 MiB (``2**24`` entries of 4 bytes), allocated at the
        first transform. ``transform(X, source=...)`` needs no table: it computes every pixel.

        Examples
        --------
        >>> import numpy as np
        >>> from stainstyle import ReinhardNormalizer
        >>> rng = np.random.default_rng(0)
        >>> target = rng.integers(60, 200, size=(2, 32, 32, 3), dtype=np.uint8)
        >>> slide_tiles = rng.integers(40, 180, size=(4, 32, 32, 3), dtype=np.uint8)
        >>> normalizer = ReinhardNormalizer().fit(target)
        >>> mapping = normalizer.fixed_mapping(normalizer.source_statistics(slide_tiles))
        >>> out, status = mapping.transform_with_status(slide_tiles)
        >>> out.shape, status.tolist()
        ((4, 32, 32, 3), ['ok', 'ok', 'ok', 'ok'])
        """
        check_is_fitted(self)
        self._validate_params()
        self._check_source(source)
        return FixedMapping(copy.deepcopy(self), source)

    def as_module(self):
        """The fitted normalizer as a ``torch.nn.Module``, for batches in a training step.

        Returns
        -------
        stainstyle._module.NormalizerModule
            Its ``forward(x)`` is ``transform(x)`` without gradients, for tensors ``(N, 3, H, W)``
            (torchvision's layout) or ``(N, H, W, 3)``, uint8 or float in [0, 1], on their device.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the normalizer is not fitted.

        Examples
        --------
        >>> import torch
        >>> from stainstyle import MacenkoNormalizer
        >>> normalize = MacenkoNormalizer.from_reference().as_module()
        >>> batch = torch.randint(40, 200, (4, 3, 64, 64), dtype=torch.uint8)
        >>> normalize(batch).shape
        torch.Size([4, 3, 64, 64])
        """
        check_is_fitted(self)
        from stainstyle._module import NormalizerModule

        return NormalizerModule(self)

    def _validate_params(self) -> None:
        """Check the parameters against ``_parameter_constraints``, then the renamed ones.

        Called when ``fit`` and ``transform`` start. A deprecated spelling that was given
        (``_renamed_params``, see :mod:`stainstyle._renamed`) is accepted with a warning.

        Raises
        ------
        sklearn.utils._param_validation.InvalidParameterError
            If a parameter breaks its constraints (a ``ValueError``).
        ValueError
            If a deprecated parameter and its new name are set to values that disagree.

        Warns
        -----
        FutureWarning
            For each deprecated parameter given, naming its new name.
        """
        super()._validate_params()
        check_renamed(self, stacklevel=_caller_stacklevel())

    def _param(self, name: str) -> Any:
        """The value of parameter ``name`` in effect: a deprecated spelling's, when it was given."""
        return param_in_effect(self, name)

    # ------------------------------------------------------------------ hooks for subclasses
    def _fit(self, tiles: Tiles, y: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _transform_batch(
        self, batch: np.ndarray, tissue: np.ndarray | None, *, context: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _transform_tensors(
        self, batch: Any, tissue: Any, *, context: Any = None
    ) -> tuple[Any, np.ndarray]:  # pragma: no cover - abstract
        """``_transform_batch`` on uint8 tensors, for methods with ``_tensor_kernels``."""
        raise NotImplementedError

    def _needs_tissue_mask(self) -> bool:
        """Whether ``_transform_batch`` uses its ``tissue`` masks (else it gets None)."""
        return True

    def _source_context(self, tiles: Tiles) -> Any:
        """The method's source statistics, measured on ``tiles`` (all holding tissue).

        Methods whose mapping depends on source-side statistics override this; what it returns
        reaches ``_transform_batch`` as ``context``. Raise
        :class:`~stainstyle.sources.UnmodelledSource` when the tiles cannot be modelled.

        Returns
        -------
        object or None
            None here: the mapping does not depend on the source tiles.
        """
        return None

    # ------------------------------------------------------------------ shared machinery
    def _as_tiles(self, X: Any) -> Tiles:
        """Validated tiles: tensors stay on their device when the method has torch kernels.

        Returns a :class:`~stainstyle._tensors.TensorTiles` for tensor input (or a list of
        tensors) to a method with ``_tensor_kernels``, a numpy
        :class:`~stainstyle._validation.Tiles` otherwise.
        """
        if self._tensor_kernels and is_tensor_input(X):
            from stainstyle._tensors import as_tensor_tiles

            return as_tensor_tiles(X)
        return as_tiles(X)

    def _fit_batches(self, tiles: Tiles):
        """Yield ``(batch, tissue)`` over all fit tiles, ``batch_size`` tiles at a time.

        Yields
        ------
        batch : ndarray of shape (n, H, W, 3), dtype uint8, read-only
        tissue : ndarray of shape (n, H, W), dtype bool, or None
            None when ``_needs_tissue_mask()`` is False, as for ``_transform_batch``.
        """
        needs_tissue = self._needs_tissue_mask()
        for _, batch in tiles.batches(self.batch_size):
            yield batch, _tissue_of(batch) if needs_tissue else None

    def _tissue_targets(self, X: Any, y: Any) -> tuple[Tiles, Any]:
        """Validate target tiles and keep those that hold tissue with colour variation.

        The one screening of every fitting entry point (``fit``, and ``partial_fit`` where a
        method has it): the rule of ``transform`` (:func:`~stainstyle.tissue.screen_tiles`).

        Parameters
        ----------
        X : ndarray, torch.Tensor, or list of them
            Target tiles, as for ``fit``.
        y : array-like of shape (N,) or None
            Tile labels.

        Returns
        -------
        tiles : Tiles
            The tissue tiles, in input order.
        y : array-like of shape (n,) or None
            The labels of those tiles.

        Raises
        ------
        ValueError
            If no tile holds tissue with colour variation, or ``y`` has not one label per tile.
        """
        tiles = self._as_tiles(X)
        _check_labels(y, len(tiles))
        background, uniform = self._screen(tiles)
        keep = np.flatnonzero(~(background | uniform))
        if len(keep) == 0:
            raise ValueError(
                f"X: {type(self).__name__} cannot learn a stain style from these target tiles: "
                f"none of the {len(tiles)} holds tissue with colour variation "
                f"({np.count_nonzero(background)} with too little tissue, i.e. fewer tissue "
                f"pixels than {_needed_tissue(tiles)}; {np.count_nonzero(uniform)} uniform, "
                f"i.e. at most {UNIFORM_MAX_STD} gray levels of standard deviation over their "
                f"tissue in every channel). {_TISSUE_RULE} Fit on H&E-stained tissue tiles."
            )
        if len(keep) < len(tiles):
            logger.info(
                "%s.fit: %d of %d target tiles left out (%d with too little tissue, %d uniform)",
                type(self).__name__,
                len(tiles) - len(keep),
                len(tiles),
                np.count_nonzero(background),
                np.count_nonzero(uniform),
            )
            tiles = tiles.subset(keep)
            y = None if y is None else _safe_indexing(y, keep)
        return tiles, y

    def _screen(self, tiles: Tiles) -> tuple[np.ndarray, np.ndarray]:
        """Background and uniform flags ``(N,)`` of all tiles (:func:`screen_tiles`)."""
        background = np.zeros(len(tiles), dtype=bool)
        uniform = np.zeros(len(tiles), dtype=bool)
        for indices, batch in tiles.batches(self.batch_size):
            background[indices], uniform[indices] = _screen_batch(batch)
        return background, uniform

    def _measure_source(self, tiles: Tiles) -> SourceStatistics:
        """:meth:`source_statistics` of validated tiles, on their tissue tiles."""
        background, uniform = self._screen(tiles)
        keep = np.flatnonzero(~(background | uniform))
        found = {
            "method": type(self).__name__,
            "params": self._source_params(),
            "n_tiles": len(keep),
            "n_left_out": len(tiles) - len(keep),
        }
        if len(keep) == 0:
            reason = f"none of the {len(tiles)} tiles holds tissue with colour variation"
            return SourceStatistics(**found, modelled=False, reason=reason)
        try:
            statistics = self._source_context(tiles.subset(keep))
        except UnmodelledSource as problem:
            return SourceStatistics(**found, modelled=False, reason=str(problem))
        return SourceStatistics(**found, statistics=statistics)

    def _source_params(self) -> dict[str, Any]:
        """The parameters source statistics depend on: the fit-dependent ones."""
        params = self.get_params(deep=False)
        return {name: params[name] for name in getattr(self, "_fit_dependent_params", ())}

    def _check_source(self, source: SourceStatistics) -> None:
        """Refuse statistics measured by another class or with other parameters."""
        if not isinstance(source, SourceStatistics):
            raise ValueError(
                f"source: expected SourceStatistics from {type(self).__name__}.source_statistics"
                f", got {type(source).__name__}"
            )
        if source.method != type(self).__name__ or source.params != self._source_params():
            raise ValueError(
                f"source: measured by a {source.method} with {source.params}, this is a "
                f"{type(self).__name__} with {self._source_params()}; measure them with this "
                "normalizer's source_statistics"
            )

    def _plan(
        self, tiles: Tiles, groups: Any, source: SourceStatistics | None
    ) -> list[tuple[np.ndarray | None, SourceStatistics | None]]:
        """Which tiles are mapped with which source statistics (None: each tile its own)."""
        if source is not None:
            if groups is not None:
                raise ValueError("groups, source: give one of them; source applies to all tiles")
            self._check_source(source)
            return [(None, source)]
        if groups is None:
            return [(None, None)]
        members = group_members(groups, len(tiles))
        return [(group, self._measure_source(tiles.subset(group))) for group in members]

    def _normalize(
        self,
        tiles: Tiles,
        produce_output: bool,
        groups: Any = None,
        source: SourceStatistics | None = None,
    ) -> tuple[list[np.ndarray | None], np.ndarray]:
        """Run the method over all tissue tiles, with the source statistics of :meth:`_plan`.

        Returns per-tile results (None means unchanged) and the per-tile status.
        """
        check_is_fitted(self)
        self._validate_params()
        tensors = is_tensor(tiles.images[0])
        plan = [
            (members, self._batch_mapping(statistics, tensors))
            for members, statistics in self._plan(tiles, groups, source)
        ]
        return self._map_tiles(tiles, plan, produce_output)

    def _batch_mapping(
        self, statistics: SourceStatistics | None, tensors: bool = False
    ) -> BatchMapping:
        """How batches of tissue tiles are mapped with ``statistics`` (None: each tile's own).

        Fixed statistics that are not modelled flag every tile degenerate; a method with a
        colour table computes every pixel, or every distinct colour, through its colour
        function (:meth:`_colour_function`). Tensors (``tensors``) are mapped by the method's
        torch kernels with the statistics, pixel by pixel, without a colour table.
        """
        if statistics is None:
            return self._transform_tissue
        if not statistics.modelled:
            return _all_degenerate
        colours = None if tensors else self._colour_function(statistics)
        if colours is None:
            return functools.partial(self._transform_tissue, context=statistics.statistics)
        map_images = map_distinct if self._costly_colours else map_pixels
        return functools.partial(_none_degenerate, functools.partial(map_images, colours))

    def _colour_function(self, statistics: SourceStatistics) -> ColourFunction | None:
        """The method's mapping of colours with fixed statistics; None without a colour table."""
        if not (self._colour_table and statistics.modelled):
            return None
        return functools.partial(self._map_colours, statistics.statistics)

    def _transform_tissue(self, batch: Any, **context: Any) -> tuple[Any, np.ndarray]:
        """``_transform_batch`` of tissue tiles, with their masks when the method uses them.

        A uint8 tensor batch goes to the method's torch kernels, ``_transform_tensors`` (same
        arguments and results, as tensors on the batch's device; ``degenerate`` stays numpy).
        """
        tissue = _tissue_of(batch) if self._needs_tissue_mask() else None
        if is_tensor(batch):
            return self._transform_tensors(batch, tissue, **context)
        return self._transform_batch(batch, tissue, **context)

    def _map_colours(self, context: Any, colours: np.ndarray) -> np.ndarray:
        """The mapping of colours ``(n, 1, 3)`` uint8 with fixed statistics, as one image."""
        mapped, _ = self._transform_tissue(colours[None], context=context)
        return mapped[0]

    def _map_tiles(
        self,
        tiles: Tiles,
        plan: Iterable[tuple[np.ndarray | None, BatchMapping]],
        produce_output: bool,
    ) -> tuple[list[np.ndarray | None], np.ndarray]:
        """Screen the tiles and map the tissue tiles of each part of ``plan`` (None: all tiles).

        Returns per-tile results (None means unchanged) and the per-tile status.
        """
        status = np.full(len(tiles), STATUS_OK, dtype=object)
        results: list[np.ndarray | None] = [None] * len(tiles)
        for members, map_batch in plan:
            for indices, batch in tiles.batches(self.batch_size, members):
                background, uniform = _screen_batch(batch)
                status[indices[background]] = STATUS_BACKGROUND
                status[indices[uniform]] = STATUS_DEGENERATE
                keep = ~(background | uniform)
                if not keep.any():
                    continue
                if not keep.all():
                    batch = batch[np.flatnonzero(keep)]
                mapped, degenerate = map_batch(batch)
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
        reasons = []
        if n_background:
            reasons.append(
                f"{n_background} as background ({STATUS_BACKGROUND!r}): too little tissue, "
                f"fewer tissue pixels than {_needed_tissue(tiles)}"
            )
        if n_degenerate:
            reasons.append(
                f"{n_degenerate} as degenerate ({STATUS_DEGENERATE!r}): tissue without colour "
                "variation, or colours the method could not model (e.g. a single stain)"
            )
        message = (
            f"{type(self).__name__}: {n_background + n_degenerate} of {len(status)} tiles "
            f"passed through unchanged, {'; '.join(reasons)}. "
            "Use stainstyle.tile_status(normalizer, X) to see which."
        )
        if self.background == "raise":
            bad = np.flatnonzero(status != STATUS_OK)[:10].tolist()
            raise ValueError(f"{message} background='raise'; first offending indices: {bad}")
        warnings.warn(message, BackgroundTileWarning, stacklevel=_caller_stacklevel())


def _tissue_of(batch: Any) -> Any:
    """Tissue masks ``(n, H, W)`` of a uint8 batch, numpy or torch (on its device)."""
    return tissue_mask_tensor(batch) if is_tensor(batch) else tissue_mask(batch)


def _screen_batch(batch: Any) -> tuple[np.ndarray, np.ndarray]:
    """Background and uniform flags ``(n,)`` of a uint8 batch, numpy or torch."""
    return screen_tensors(batch) if is_tensor(batch) else screen_tiles(batch)


#: Maps a batch ``(n, H, W, 3)`` uint8 of tissue tiles: the mapped batch and degenerate ``(n,)``.
BatchMapping = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _all_degenerate(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every tile degenerate: the mapping of statistics that could not be modelled."""
    return batch, np.ones(len(batch), dtype=bool)


def _none_degenerate(
    map_images: Callable[[np.ndarray], np.ndarray], batch: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A batch mapping through colours: the images mapped, no tile degenerate."""
    return map_images(batch), np.zeros(len(batch), dtype=bool)


class FixedMapping:
    """One fixed mapping of a fitted normalizer, for all tiles of a slide or group.

    Made by :meth:`StainNormalizer.fixed_mapping`; not built directly. Its
    :meth:`transform_with_status` returns what ``normalizer.transform_with_status(X,
    source=source)`` returns, bit for bit: the same screening of background and uniform tiles,
    the same statuses, the same pixels.

    For Reinhard, Macenko, Vahadane and WSICS (``has_table``) the mapping is a lookup table over
    the 2**24 RGB colours (:class:`~stainstyle.color.table.ColourTable`), filled as tiles come: each
    distinct colour is computed once, through the method's own code, and every tile after that
    costs a table lookup. ``transform(X, source=...)`` computes every pixel through the same
    code, in the same padded batches of colours (:mod:`stainstyle.color.table`), which is what
    makes the two equal: a colour's value does not depend on the tile or the position it is
    met in. The other methods run their own code with the statistics, as ``transform`` does.

    Parameters
    ----------
    normalizer : StainNormalizer
        A fitted normalizer, owned by the mapping (:meth:`StainNormalizer.fixed_mapping` passes
        a copy).
    source : SourceStatistics
        Statistics from ``normalizer.source_statistics``, already checked against it.

    Attributes
    ----------
    source : SourceStatistics
        The statistics of the mapping.

    Notes
    -----
    Memory: 64 MiB for a colour table, allocated at the first transform.

    Threads: one mapping may transform tiles in several threads at once (e.g. Dask's threaded
    workers); computing new colours is serialized, looking them up is not.

    Pickling sends the normalizer and the statistics, not the table: an unpickled mapping (e.g.
    in another Dask worker process) fills its own table again as it goes.
    """

    def __init__(self, normalizer: StainNormalizer, source: SourceStatistics):
        self._normalizer = normalizer
        self.source = source
        colours = normalizer._colour_function(source)
        self._table = None if colours is None else ColourTable(colours)
        self._map_batch = (
            normalizer._batch_mapping(source)
            if self._table is None
            else functools.partial(_none_degenerate, self._table.map)
        )

    @property
    def has_table(self) -> bool:
        """Whether tiles are mapped through a colour table (not for unmodelled statistics)."""
        return self._table is not None

    @property
    def n_colours(self) -> int:
        """Distinct colours computed so far (0 without a table)."""
        return 0 if self._table is None else self._table.n_computed

    def transform(self, X: Any) -> Any:
        """Map tiles with the fixed mapping.

        Parameters
        ----------
        X : ndarray of shape (N, H, W, 3) or (H, W, 3), torch.Tensor, or list of such tiles
            Tiles to normalize, uint8 or float in [0, 1].

        Returns
        -------
        Same type, shape and dtype as ``X``
            Normalized tiles; background and degenerate tiles unchanged.

        Warns
        -----
        BackgroundTileWarning
            Once per call, when some tiles were passed through unchanged (or ``ValueError``
            with ``background="raise"``), as the normalizer's ``transform``.
        """
        tiles, results, status = self._mapped(X)
        self._normalizer._apply_background_policy(status, tiles)
        return tiles.restore(results)

    def transform_with_status(self, X: Any) -> tuple[Any, np.ndarray]:
        """Map tiles with the fixed mapping and report each tile's status.

        Parameters
        ----------
        X : ndarray of shape (N, H, W, 3) or (H, W, 3), torch.Tensor, or list of such tiles
            Tiles to normalize, uint8 or float in [0, 1].

        Returns
        -------
        tiles : same type, shape and dtype as ``X``
            Normalized tiles; background and degenerate tiles unchanged.
        status : ndarray of shape (N,), dtype str
            ``"ok"``, ``"passthrough_background"`` or ``"passthrough_degenerate"`` per tile
            (N = 1 for a single tile); no warning is emitted.
        """
        tiles, results, status = self._mapped(X)
        return tiles.restore(results), status

    def _mapped(self, X: Any) -> tuple[Tiles, list[np.ndarray | None], np.ndarray]:
        tiles = as_tiles(X)
        results, status = self._normalizer._map_tiles(tiles, [(None, self._map_batch)], True)
        return tiles, results, status

    def __repr__(self) -> str:
        kind = f"colour table, {self.n_colours} colours" if self.has_table else "per tile"
        return f"FixedMapping({type(self._normalizer).__name__}, {kind})"


def _needed_tissue(tiles: Tiles) -> str:
    """The tissue pixels a tile needs, per tile size present, for messages."""
    shapes = sorted({img.shape[:2] for img in tiles.images})
    return ", ".join(f"{min_tissue_pixels(*shape)} for {shape[0]}x{shape[1]}" for shape in shapes)


#: The tissue rule in words, for error messages.
_TISSUE_RULE = (
    "A tissue pixel has an optical density of at least 0.15 in some channel (an intensity of "
    "at most 205) and is not black (every channel at most 8); a tile needs max(100, 0.5 %) of "
    "its pixels to be tissue."
)


def _check_labels(y: Any, n_tiles: int) -> None:
    """Raise ``ValueError`` unless ``y`` is None or holds one label per tile."""
    if y is None:
        return
    try:
        n_labels = len(y)
    except TypeError:
        raise ValueError(
            f"y: expected one label per tile, an array-like of length {n_tiles}, "
            f"got {type(y).__name__}"
        ) from None
    if n_labels != n_tiles:
        raise ValueError(f"y: expected one label per tile ({n_tiles}), got {n_labels} labels")


def tile_status(
    normalizer: StainNormalizer,
    X: Any,
    groups: Any = None,
    *,
    source: SourceStatistics | None = None,
) -> np.ndarray:
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
    source : SourceStatistics, optional
        Source statistics, as for ``normalizer.transform(X, source=...)``.

    Returns
    -------
    ndarray of shape (N,), dtype str
        ``"ok"``, ``"passthrough_background"`` or ``"passthrough_degenerate"`` per tile (N = 1
        for a single tile).
    """
    _, status = normalizer._normalize(normalizer._as_tiles(X), False, groups, source)
    return status
