"""Plain values of the slide API read once: integers, positive numbers, microns per pixel.

Each function answers None (or False) for a value it does not accept; the caller raises its
own error, naming the file and the argument.
"""

from __future__ import annotations

import math

import numpy as np


def is_integer(value) -> bool:
    """Whether ``value`` is a Python or NumPy integer (not a bool).

    Parameters
    ----------
    value : object
        Anything.

    Returns
    -------
    bool
    """
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def positive(value) -> float | None:
    """``value`` as a positive finite float, or None when it is not one.

    Parameters
    ----------
    value : object
        A number, a numeric string, or anything else.

    Returns
    -------
    float or None
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def mpp_pair(value) -> tuple[float, float] | None:
    """Microns per pixel ``(x, y)`` from one number or a pair, or None when not valid.

    Parameters
    ----------
    value : float or (float, float)
        Both axes, or each.

    Returns
    -------
    tuple of (float, float) or None
        None unless both values are positive and finite.
    """
    pair = (value, value) if np.ndim(value) == 0 else tuple(value)
    values = tuple(positive(v) for v in pair)
    return values if len(values) == 2 and None not in values else None
