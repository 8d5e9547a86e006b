"""JSON values of a saved configuration: a tagged encoding, and parsing within bounds.

Tuples are encoded as ``{"__tuple__": [...]}`` so that they come back as tuples. Text is parsed
only after its size and nesting depth are checked, so that hostile input can exhaust neither
memory nor the recursion limit of :func:`json.loads`.

This module imports no other stainstyle module.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

#: Largest configuration (characters of JSON) and deepest JSON nesting that are read.
MAX_CONFIG_CHARS = 4 << 20
MAX_JSON_DEPTH = 32

_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


class NotJSONable(TypeError):
    """A value with no JSON encoding; the message says what the value is."""


def to_json(value: Any, finite: bool = False) -> Any:
    """Encode a value as JSON data; tuples are tagged so that they come back as tuples.

    Parameters
    ----------
    value : object
        None, bool, int, float, str, numeric numpy scalar, or a tuple, list or dict (str keys)
        of those.
    finite : bool, default=False
        Refuse NaN and infinite floats (constructor parameters).

    Returns
    -------
    object
        JSON data (None, bool, int, float, str, list or dict).

    Raises
    ------
    NotJSONable
        If the value, or a value inside it, has no encoding.
    """
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if finite and not math.isfinite(value):
            raise NotJSONable(f"non-finite float {value}")
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [to_json(v, finite) for v in value]}
    if isinstance(value, list):
        return [to_json(v, finite) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        if "__tuple__" in value:
            raise NotJSONable("dict with the reserved key '__tuple__'")
        return {k: to_json(v, finite) for k, v in value.items()}
    raise NotJSONable(type(value).__name__)


def from_json(value: Any) -> Any:
    """Decode JSON data written by :func:`to_json` (tagged tuples become tuples again).

    Parameters
    ----------
    value : object
        JSON data.

    Returns
    -------
    object
    """
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"__tuple__"} and isinstance(value["__tuple__"], list):
            return tuple(from_json(v) for v in value["__tuple__"])
        return {k: from_json(v) for k, v in value.items()}
    return value


def json_depth(text: str) -> int:
    """Deepest nesting of ``[`` and ``{`` in JSON text, without parsing it (no recursion).

    Parameters
    ----------
    text : str

    Returns
    -------
    int
    """
    skeleton = _JSON_STRING.sub("", text).encode("utf-8", "surrogatepass")
    codes = np.frombuffer(skeleton, dtype=np.uint8)
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int64)
    steps -= np.isin(codes, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def parse_json(text: str, where: str, limit: int = MAX_CONFIG_CHARS) -> Any:
    """Parse JSON of bounded size and nesting depth.

    Parameters
    ----------
    text : str
        JSON text.
    where : str
        The file the text came from, for messages.
    limit : int, default=MAX_CONFIG_CHARS
        Most characters read.

    Returns
    -------
    object
        The parsed JSON data.

    Raises
    ------
    ValueError
        Starting with ``where``, if the text is too long, too deeply nested or not valid JSON.
    """
    if len(text) > limit:
        raise ValueError(f"{where}: JSON of {len(text)} characters; at most {limit} are read")
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(
            f"{where}: JSON nested {depth} levels deep; at most {MAX_JSON_DEPTH} are read"
        )
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:  # JSONDecodeError, too long an int
        raise ValueError(f"{where}: not valid JSON ({err})") from None


def is_int(value: Any) -> bool:
    """Whether a JSON value is an integer (a bool is not).

    Parameters
    ----------
    value : object

    Returns
    -------
    bool
    """
    return isinstance(value, int) and not isinstance(value, bool)


def json_type(value: Any) -> str:
    """Describe a JSON value for a message: its type, or a short number itself.

    Parameters
    ----------
    value : object

    Returns
    -------
    str
        E.g. ``"null"``, ``"an object"``, ``"the number 3"``.
    """
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if is_int(value) or isinstance(value, float):
        return f"the number {value!r}" if len(repr(value)) < 40 else "a number"
    return names.get(type(value), type(value).__name__)
