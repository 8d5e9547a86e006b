"""The saved configuration: folder format versions, and the schema every configuration meets.

A configuration is checked whole before any of it is used: the keys of its folder format, the
type of every value, the fitted attribute names, the tensor manifest (dtypes from an allowlist,
bounded shapes). Every problem raises ``ValueError`` starting with the file it came from.

Imports :mod:`.json_values` and :mod:`.safetensors_file`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from stainstyle._persistence.json_values import is_int, json_type
from stainstyle._persistence.safetensors_file import DTYPES, MAX_ELEMENTS, MAX_NDIM, is_shape
from stainstyle._version import __version__

#: Version of the folder layout written by ``save_pretrained``.
FORMAT_VERSION = 2
#: Folder layouts that loading reads.
READABLE_FORMATS = (1, 2)

#: Most entries per configuration section.
MAX_ENTRIES = 10_000

#: The sections of a configuration that hold fitted attributes, by where their values are.
FITTED_SECTIONS = ("fitted", "arrays", "modules")

#: Dtype names a manifest may record, per kind of value.
MANIFEST_DTYPES = {
    "ndarray": frozenset(set(DTYPES.values()) - {"bfloat16"}),
    "numpy_scalar": frozenset(set(DTYPES.values()) - {"bfloat16"}),
    "tensor": frozenset(f"torch.{name}" for name in DTYPES.values()),
}

_COMMON_KEYS = ("stainstyle_format", "class", "params", *FITTED_SECTIONS)
_REQUIRED_KEYS = {
    1: frozenset({*_COMMON_KEYS, "weights_sha256"}),
    2: frozenset({*_COMMON_KEYS, "stainstyle_version", "unsaved", "content_sha256"}),
}
_OPTIONAL_KEYS = {1: frozenset({"stainstyle_version", "unsaved"}), 2: frozenset()}
_ARRAY_SPEC_KEYS = frozenset({"kind", "dtype", "shape"})
_MODULE_SPEC_KEYS = frozenset({"class", "n_tensors"})
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check_config(config: Any, where: str) -> dict:
    """Check a whole configuration against the schema of its folder format.

    Parameters
    ----------
    config : object
        The configuration, as parsed from JSON.
    where : str
        Its file, named in every message.

    Returns
    -------
    dict
        ``config``, unchanged.

    Raises
    ------
    ValueError
        Starting with ``where``, at the first problem found.
    """
    version = _check_format(config, where)
    _check_keys(config, version, where)
    params = _check_object(config, "params", where)
    found = _non_finite_path(params, "params")
    if found is not None:
        raise ValueError(f"{where}: {found} is not a finite number")
    unsaved = config.get("unsaved", {})
    if not isinstance(unsaved, dict) or not all(isinstance(v, str) for v in unsaved.values()):
        raise ValueError(f"{where}: 'unsaved' must be an object of strings")
    sections = {key: _check_object(config, key, where) for key in FITTED_SECTIONS}
    _check_fitted_names(sections, where)
    for name, spec in sections["arrays"].items():
        _check_array_spec(name, spec, where)
    for name, spec in sections["modules"].items():
        _check_module_spec(name, spec, where)
    return config


def fitted_sections(config: Mapping[str, Any]) -> dict[str, str]:
    """Where each fitted attribute of a configuration is saved.

    Parameters
    ----------
    config : mapping
        A configuration that passed :func:`check_config`.

    Returns
    -------
    dict of str to str
        Attribute name -> its section (one of :data:`FITTED_SECTIONS`), in section order.
    """
    return {name: section for section in FITTED_SECTIONS for name in config[section]}


def _check_format(config: Any, where: str) -> int:
    """The folder format a configuration says it is, if stainstyle reads it."""
    if not isinstance(config, dict) or "stainstyle_format" not in config:
        raise ValueError(f"{where}: not written by stainstyle's save_pretrained")
    version = config["stainstyle_format"]
    if not is_int(version) or version not in READABLE_FORMATS:
        raise ValueError(
            f"{where}: folder format {json_type(version)} (stainstyle "
            f"{str(config.get('stainstyle_version'))[:40]}); this stainstyle {__version__} reads "
            f"formats {list(READABLE_FORMATS)}"
        )
    return version


def _check_keys(config: dict, version: int, where: str) -> None:
    """The top-level keys of the format, the short strings and the digest."""
    required, optional = _REQUIRED_KEYS[version], _OPTIONAL_KEYS[version]
    missing = sorted(required - set(config))
    if missing:
        raise ValueError(f"{where}: incomplete, lacks the keys {missing}")
    unknown = sorted(set(config) - required - optional)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown[:10]} (folder format {version})")
    for key in ("stainstyle_version", "class"):
        value = config.get(key, "")
        if not isinstance(value, str) or len(value) > 200:
            raise ValueError(f"{where}: {key!r} must be a short string, got {json_type(value)}")
    digest_key = "weights_sha256" if version == 1 else "content_sha256"
    if not isinstance(config[digest_key], str) or not _SHA256.match(config[digest_key]):
        raise ValueError(
            f"{where}: {digest_key!r} must be 64 lowercase hexadecimal digits, got "
            f"{json_type(config[digest_key])}"
        )


def _check_object(config: Mapping[str, Any], key: str, where: str) -> dict:
    value = config[key]
    if not isinstance(value, dict):
        raise ValueError(f"{where}: {key!r} must be an object, got {json_type(value)}")
    if len(value) > MAX_ENTRIES:
        raise ValueError(f"{where}: {key!r} has {len(value)} entries; at most {MAX_ENTRIES}")
    return value


def _non_finite_path(value: Any, path: str) -> str | None:
    """Where a NaN or infinite number sits in JSON data, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, list):
        items = enumerate(value)
    elif isinstance(value, dict):
        items = value.items()
    else:
        return None
    for key, item in items:
        found = _non_finite_path(item, f"{path}[{key!r}]")
        if found is not None:
            return found
    return None


def _is_fitted_name(name: Any) -> bool:
    return (
        isinstance(name, str)
        and name.isidentifier()
        and name.endswith("_")
        and not name.startswith("_")
    )


def _check_fitted_names(sections: Mapping[str, dict], where: str) -> None:
    """Every name is a fitted attribute name, listed in one section only."""
    seen: dict[str, str] = {}
    for key, section in sections.items():
        for name in section:
            if not _is_fitted_name(name):
                raise ValueError(
                    f"{where}: {key}[{name!r}] is not a fitted attribute name (an identifier "
                    "ending in '_' and not starting with '_')"
                )
            if name in seen:
                raise ValueError(
                    f"{where}: {name!r} is listed under both {seen[name]!r} and {key!r}"
                )
            seen[name] = key


def _check_array_spec(name: str, spec: Any, where: str) -> None:
    prefix = f"{where}: arrays[{name!r}]"
    if not isinstance(spec, dict) or set(spec) != _ARRAY_SPEC_KEYS:
        shown = sorted(spec) if isinstance(spec, dict) else json_type(spec)
        raise ValueError(
            f"{prefix}: expected an object with the keys {sorted(_ARRAY_SPEC_KEYS)}, got {shown}"
        )
    kind, dtype, shape = spec["kind"], spec["dtype"], spec["shape"]
    if not isinstance(kind, str) or kind not in MANIFEST_DTYPES:
        raise ValueError(
            f"{prefix}: 'kind' must be one of {sorted(MANIFEST_DTYPES)}, got {json_type(kind)}"
        )
    if not isinstance(dtype, str) or dtype not in MANIFEST_DTYPES[kind]:
        raise ValueError(
            f"{prefix}: 'dtype' must be one of {sorted(MANIFEST_DTYPES[kind])} for kind "
            f"{kind!r}, got {json_type(dtype)}"
        )
    if not is_shape(shape) or math.prod(shape) > MAX_ELEMENTS:
        raise ValueError(
            f"{prefix}: 'shape' must be a list of at most {MAX_NDIM} non-negative ints with at "
            f"most {MAX_ELEMENTS} elements in all, got {json_type(shape)}"
        )
    if kind == "numpy_scalar" and shape:
        raise ValueError(f"{prefix}: a numpy_scalar has shape [], got {shape}")


def _check_module_spec(name: str, spec: Any, where: str) -> None:
    if (
        not isinstance(spec, dict)
        or set(spec) != _MODULE_SPEC_KEYS
        or not isinstance(spec["class"], str)
        or not is_int(spec["n_tensors"])
        or not 0 <= spec["n_tensors"] <= MAX_ENTRIES
    ):
        raise ValueError(
            f"{where}: modules[{name!r}] must be an object with a 'class' string and an "
            f"'n_tensors' int in [0, {MAX_ENTRIES}]"
        )
