"""Splits that never put one slide in two parts, and leave-one-domain-out splits.

Tiles of one slide share its stain, scanner run and patient, so a split that scatters them
leaks information between training and evaluation. Everything here works on the ``(domain,
slide)`` pairs of a :class:`~stainstyle.data.loaders.Groups` (or a plain array of slide ids).
For k-fold schemes, pass ``groups.slide_ids()`` to scikit-learn's ``GroupKFold`` or
``StratifiedGroupKFold``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stainstyle.data.loaders import Groups


def _slide_ids(groups: Groups | Sequence | np.ndarray) -> np.ndarray:
    if isinstance(groups, Groups):
        return groups.slide_ids()
    array = np.asarray(groups)
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(f"groups: expected a Groups or a non-empty 1-D array, got {array.shape}")
    return np.unique(array.astype(str), return_inverse=True)[1].ravel()


def split_by_slide(
    groups: Groups | Sequence | np.ndarray,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> tuple[np.ndarray, ...]:
    """Split tiles into parts of about the given sizes, keeping every slide in one part.

    Slides are visited in random order, and each goes to the part that is furthest below its
    share of tiles. scikit-learn's ``GroupShuffleSplit`` makes two parts sized by their number
    of *slides*; with slides of very different sizes that gives parts far from the wanted
    number of tiles, hence this greedy assignment.

    Parameters
    ----------
    groups : Groups or array-like of shape (N,)
        Group of each tile: a :class:`Groups` (a slide is a ``(domain, slide)`` pair) or any
        array of slide ids.
    fractions : sequence of float, default=(0.7, 0.15, 0.15)
        Wanted share of tiles per part, each > 0; normalized to sum to 1.
    seed : int, default=0
        Seed of the slide order.

    Returns
    -------
    tuple of ndarray of int
        One sorted array of tile indices per part; together they hold every tile once.

    Raises
    ------
    ValueError
        If a fraction is not positive, or there are fewer slides than parts.

    Examples
    --------
    >>> train, test = split_by_slide(["a", "a", "b", "c", "c", "d"], (0.5, 0.5))
    >>> sorted(set(train) | set(test)) == list(range(6))
    True
    """
    slide = _slide_ids(groups)
    weights = np.asarray(fractions, dtype=np.float64)
    if weights.ndim != 1 or len(weights) < 1 or np.any(~(weights > 0)):
        raise ValueError(f"fractions: expected positive numbers, got {fractions!r}")
    n_slides = int(slide.max()) + 1
    if n_slides < len(weights):
        raise ValueError(
            f"groups: {n_slides} slides cannot fill {len(weights)} parts; use fewer fractions"
        )
    weights = weights / weights.sum()
    counts = np.bincount(slide, minlength=n_slides)
    order = np.random.default_rng(seed).permutation(n_slides)
    target = weights * len(slide)
    filled = np.zeros(len(weights))
    part_of = np.empty(n_slides, dtype=np.int64)
    # The first slides go one to each part, so that no part stays empty.
    for rank, s in enumerate(order):
        part = rank if rank < len(weights) else int(np.argmax((target - filled) / target))
        part_of[s] = part
        filled[part] += counts[s]
    tile_part = part_of[slide]
    return tuple(np.flatnonzero(tile_part == k) for k in range(len(weights)))


def leave_domain_out(groups: Groups, domain: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the tiles outside one domain (train) and inside it (test).

    Parameters
    ----------
    groups : Groups
        Domains of the tiles.
    domain : str
        The held-out domain.

    Returns
    -------
    train, test : ndarray of int
        Sorted tile indices.

    Raises
    ------
    ValueError
        If no tile belongs to ``domain``.
    """
    inside = groups.domain == str(domain)
    if not inside.any():
        raise ValueError(
            f"domain: {domain!r} not found; the domains are {sorted(set(groups.domain))}"
        )
    return np.flatnonzero(~inside), np.flatnonzero(inside)
