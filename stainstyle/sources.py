"""Source statistics: what a method measures on the tiles it normalizes, once per slide.

Reinhard's means and spreads, Macenko's stain matrix and maximum concentrations, the histogram
of histogram specification, WSICS's stain-class distributions and stain-style transfer's gray
histogram (with ``gray_matching="histogram"``) are *source-side* statistics: ``transform(X)``
measures them on each tile, so two neighbouring tiles of one slide can get different mappings
and the normalized slide shows seams. :meth:`StainNormalizer.source_statistics
<stainstyle.base.StainNormalizer.source_statistics>` measures them once, on a sample of a
slide's tissue tiles, and ``transform(tiles, source=statistics)`` then applies that one fixed
mapping to every tile of the slide. ``transform(X, groups=slide_ids)`` does the same for each
group of in-memory tiles.

A method keeps its statistics in an object of its own (documented with the method), carried by
:class:`SourceStatistics`; a method without source-side statistics (gray normalization,
stain-style transfer without gray matching) carries None and maps every tile the same way
anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class UnmodelledSource(ValueError):
    """The tiles hold too little of what a method needs to measure its source statistics.

    A method's ``_source_context`` raises it (one stain only, too few stained pixels, no nuclei
    for WSICS); the tiles normalized with such statistics are passed through as degenerate.
    """


@dataclass(frozen=True)
class SourceStatistics:
    """Source-side statistics of one set of tiles (one slide, one group), for one fixed mapping.

    Returned by :meth:`StainNormalizer.source_statistics
    <stainstyle.base.StainNormalizer.source_statistics>`; pass it to ``transform(X,
    source=...)``, ``transform_with_status`` or :func:`~stainstyle.base.tile_status`. Picklable,
    so it can be sent to another process.

    Attributes
    ----------
    method : str
        Class name of the normalizer that measured them; another class refuses them.
    params : dict
        That normalizer's parameters the statistics depend on (its ``_fit_dependent_params``);
        a normalizer whose parameters differ refuses them.
    statistics : object or None
        The method's own statistics, e.g. ``MacenkoSource`` with the source stain matrix; None
        for methods without source-side statistics, or when ``modelled`` is False.
    modelled : bool
        False when the tiles could not be modelled (no tissue tile, a single stain, ...): every
        tile transformed with these statistics is passed through as degenerate.
    reason : str
        Why they could not be modelled; empty when ``modelled``.
    n_tiles : int
        Tiles measured: those holding tissue with colour variation.
    n_left_out : int
        Tiles left out as background or uniform.
    """

    method: str
    params: dict = field(default_factory=dict)
    statistics: Any = None
    modelled: bool = True
    reason: str = ""
    n_tiles: int = 0
    n_left_out: int = 0


#: Stands for every NaN group id: NaN is not equal to itself, but all NaNs are one group.
_NAN_GROUP = object()


def group_members(groups: Any, n_tiles: int) -> list[np.ndarray | None]:
    """Tile indices per group, in order of first appearance; ``[None]`` (all tiles) without groups.

    Parameters
    ----------
    groups : array-like of shape (n_tiles,) or None
        One hashable group id per tile.
    n_tiles : int
        Number of tiles.

    Returns
    -------
    list of (ndarray of int, or None)
        The member indices of each group, in input order.

    Ids are grouped by equality and hash (a dict), never sorted, so any hashable ids work:
    str, int, None, tuples, or a mix of them. Equal numbers are one group (``1``, ``1.0``,
    ``np.int64(1)``), and so are all NaNs.

    Raises
    ------
    ValueError
        If ``groups`` does not hold one id per tile, or an id is not hashable.
    """
    if groups is None:
        return [None]
    if isinstance(groups, (str, bytes)) or not hasattr(groups, "__len__"):
        raise ValueError(
            f"groups: expected one group id per tile, shape ({n_tiles},), "
            f"got {type(groups).__name__}"
        )
    if hasattr(groups, "shape") and hasattr(groups, "tolist"):  # numpy array, torch tensor
        shape = tuple(groups.shape)
        if shape != (n_tiles,):
            raise ValueError(
                f"groups: expected one group id per tile, shape ({n_tiles},), got shape {shape}"
            )
        ids = groups.tolist()
    else:
        ids = list(groups)
        if len(ids) != n_tiles:
            raise ValueError(
                f"groups: expected one group id per tile, shape ({n_tiles},), "
                f"got shape ({len(ids)},)"
            )
    members: dict[Any, list[int]] = {}
    for i, group in enumerate(ids):
        if isinstance(group, (float, np.floating)) and group != group:
            group = _NAN_GROUP
        try:
            members.setdefault(group, []).append(i)
        except TypeError:
            raise ValueError(
                f"groups: ids must be hashable (str, int, None, tuple, ...), got "
                f"{type(group).__name__} {group!r:.50} at index {i}"
            ) from None
    return [np.asarray(indices, dtype=np.intp) for indices in members.values()]
