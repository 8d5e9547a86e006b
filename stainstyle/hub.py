"""Persistence of fitted normalizers: one folder format, local or on the Hugging Face Hub.

Every :class:`~stainstyle.base.StainNormalizer` inherits :class:`NormalizerHubMixin`, built on
:class:`huggingface_hub.ModelHubMixin`, so every method, classic or neural, is saved and loaded
the same way. A saved model (folder format 2) is a folder with three files:

``model.safetensors``
    Every fitted ``numpy.ndarray`` (and numpy scalar) attribute under its own name, every fitted
    ``torch.Tensor``, and the ``state_dict`` of every fitted ``torch.nn.Module`` with keys
    prefixed ``<attribute>.``. Its header metadata holds the complete configuration under
    ``"stainstyle_config"``: the class name, the constructor parameters
    (``get_params(deep=False)``), the stainstyle version, the JSON-able fitted attributes, a
    manifest of the tensors, and ``content_sha256``, a SHA-256 of the configuration and the
    tensors. A value that fits none of the kinds above (a fitted classifier object, say) is
    recorded as null with a note under ``"unsaved"``.
``config.json``
    The same configuration, for people and for the Hub. Loading does not depend on it: when it
    differs from the embedded one, a warning is logged and the embedded one is used.
``README.md``
    A model card with Hub metadata (``library_name: stainstyle``).

Saving is atomic. ``model.safetensors`` is the single commit point: it is written to a
temporary file and renamed over the old one, then ``config.json`` and ``README.md`` are
replaced the same way; no file is deleted before its replacement is complete. Loading reads
the configuration and the tensors from one open of ``model.safetensors``, so a reader sees
either the previous complete model or the new one, even while another process saves into the
folder, and a process killed at any moment of a save leaves a folder that loads (the old model
or the new). The alternative, writing a new folder and swapping it for the old one, was not
chosen: it would delete or displace the other files a user keeps in a model folder (the
``.git`` of a cloned Hub repository, a licence) and break a process whose working directory is
that folder, and it is not atomic on every filesystem.

Loading reads JSON and safetensors only, never unpickles, and instantiates only classes of the
method registry (:mod:`stainstyle.registry`): built-in methods by their import path (imported
lazily), and classes added with :func:`~stainstyle.registry.register_normalizer`. Before
anything is built, the whole configuration is checked against a schema (bounded size and JSON
nesting depth; types of every key; array dtypes from an allowlist), the fitted attributes
against the class's declaration (:mod:`stainstyle._fitted`: names, shapes, finiteness, ranges,
network sizes), and the tensor manifest against the safetensors header (names, dtypes, shapes,
without reading any data).
Networks are built first on the ``meta`` device, which allocates nothing, and compared with the
header, so a configuration can never make the loader allocate more than the tensors the file
holds; they are then rebuilt by the estimator's ``_build_modules()`` hook and filled with
``load_state_dict(strict=True)``. Every problem raises ``ValueError`` naming the file.
Folders of format 1 (configuration only in ``config.json``, with the file's SHA-256 under
``weights_sha256``) still load, checked by the same schema.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from huggingface_hub import ModelHubMixin, constants, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError
from sklearn.utils.validation import check_is_fitted

from stainstyle._atomic import atomic_path, atomic_write_text, remove_stale_temporaries
from stainstyle._fitted import GENERIC_MODULE, FittedModule, generic_array_problem
from stainstyle._modelcard import render_model_card
from stainstyle._renamed import upgrade_saved_params
from stainstyle._version import __version__
from stainstyle.registry import (  # noqa: F401  (re-exported: the persistence API names them)
    BUILTIN_METHODS,
    method_class,
    method_name,
    normalizer_class,
    register_normalizer,
)

logger = logging.getLogger(__name__)

#: Names of the files of a saved model.
CONFIG_NAME = constants.CONFIG_NAME
WEIGHTS_NAME = constants.SAFETENSORS_SINGLE_FILE
CARD_NAME = "README.md"

#: Version of the folder layout written by :meth:`NormalizerHubMixin.save_pretrained`.
FORMAT_VERSION = 2
#: Folder layouts that loading reads.
READABLE_FORMATS = (1, 2)

#: Key of the configuration in the header metadata of ``model.safetensors``.
CONFIG_METADATA_KEY = "stainstyle_config"

#: Largest configuration (characters of JSON), larger safetensors header (bytes), deepest JSON
#: nesting, most entries per configuration section, most array dimensions and elements.
MAX_CONFIG_CHARS = 4 << 20
MAX_HEADER_BYTES = 16 << 20
MAX_JSON_DEPTH = 32
MAX_ENTRIES = 10_000
MAX_NDIM = 8
MAX_ELEMENTS = 1 << 40

#: Suffixes of pickle-based checkpoints, which are never loaded.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")

#: Numpy dtypes safetensors stores exactly (via torch).
_TENSOR_KINDS = "biuf"

#: safetensors dtype codes and the numpy dtype names of the arrays they hold.
_SAFETENSORS_DTYPES = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "I16": "int16",
    "U16": "uint16",
    "I32": "int32",
    "U32": "uint32",
    "I64": "int64",
    "U64": "uint64",
    "F16": "float16",
    "BF16": "bfloat16",
    "F32": "float32",
    "F64": "float64",
}

#: Dtype names a manifest may record, per kind of value.
_MANIFEST_DTYPES = {
    "ndarray": frozenset(set(_SAFETENSORS_DTYPES.values()) - {"bfloat16"}),
    "numpy_scalar": frozenset(set(_SAFETENSORS_DTYPES.values()) - {"bfloat16"}),
    "tensor": frozenset(f"torch.{name}" for name in _SAFETENSORS_DTYPES.values()),
}

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# ------------------------------------------------------------------------------ JSON values
class _NotJSONable(TypeError):
    pass


def _to_json(value: Any, finite: bool = False) -> Any:
    """Encode a value as JSON data; tuples are tagged so that they come back as tuples.

    With ``finite``, NaN and infinite floats are refused (constructor parameters).
    """
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if finite and not math.isfinite(value):
            raise _NotJSONable(f"non-finite float {value}")
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [_to_json(v, finite) for v in value]}
    if isinstance(value, list):
        return [_to_json(v, finite) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        if "__tuple__" in value:
            raise _NotJSONable("dict with the reserved key '__tuple__'")
        return {k: _to_json(v, finite) for k, v in value.items()}
    raise _NotJSONable(type(value).__name__)


def _from_json(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"__tuple__"} and isinstance(value["__tuple__"], list):
            return tuple(_from_json(v) for v in value["__tuple__"])
        return {k: _from_json(v) for k, v in value.items()}
    return value


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def _json_depth(text: str) -> int:
    """Deepest nesting of ``[`` and ``{`` in JSON text, without parsing it (no recursion)."""
    skeleton = _JSON_STRING.sub("", text).encode("utf-8", "surrogatepass")
    codes = np.frombuffer(skeleton, dtype=np.uint8)
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int64)
    steps -= np.isin(codes, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def _parse_json(text: str, where: str, limit: int = MAX_CONFIG_CHARS) -> Any:
    """Parse JSON of bounded size and nesting depth; ``ValueError`` naming ``where``."""
    if len(text) > limit:
        raise ValueError(f"{where}: JSON of {len(text)} characters; at most {limit} are read")
    depth = _json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(
            f"{where}: JSON nested {depth} levels deep; at most {MAX_JSON_DEPTH} are read"
        )
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:  # JSONDecodeError, too long an int
        raise ValueError(f"{where}: not valid JSON ({err})") from None


# -------------------------------------------------------------------------------- saving
def _fitted_names(estimator: Any) -> list[str]:
    return sorted(k for k in vars(estimator) if k.endswith("_") and not k.startswith("_"))


def _declaration(cls: type) -> dict[str, Any] | None:
    """The class's ``_fitted_attributes``, or None for a class that declares nothing."""
    declared = getattr(cls, "_fitted_attributes", None)
    return dict(declared) if isinstance(declared, Mapping) else None


def _param_defaults(cls: type, names: Any) -> dict[str, Any]:
    parameters = inspect.signature(cls.__init__).parameters
    return {name: parameters[name].default for name in names if name in parameters}


def _machine_local_defaults(cls: type) -> dict[str, Any]:
    """Defaults of the parameters that describe the machine or the run, not the model."""
    return _param_defaults(cls, getattr(cls, "_machine_local_params", ()))


def _params_json(estimator: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Constructor parameters as JSON, and a note for each one that is not JSON-able (null).

    Machine-local parameters (``_machine_local_params``: a checkpoint folder, a device) are
    recorded as their defaults.
    """
    params, unsaved = {}, {}
    machine_local = _machine_local_defaults(type(estimator))
    for name, value in estimator.get_params(deep=False).items():
        value = machine_local.get(name, value)
        try:
            params[name] = _to_json(value, finite=True)
        except _NotJSONable as err:
            params[name] = None
            unsaved[name] = (
                f"not JSON-serializable ({err}); saved as null, pass {name}=... to "
                "from_pretrained to restore it"
            )
    return params, unsaved


def fitted_state(estimator: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split an estimator into its saved configuration and its tensors.

    Parameters
    ----------
    estimator : StainNormalizer
        A fitted normalizer.

    Returns
    -------
    config : dict
        JSON-able configuration, the content of ``config.json`` (without ``content_sha256``).
    tensors : dict of str to torch.Tensor
        Contiguous CPU tensors for ``model.safetensors``.

    Raises
    ------
    TypeError
        If the estimator has fitted torch modules but no ``_build_modules()`` hook.

    Notes
    -----
    A parameter or fitted attribute that is none of JSON-able, a numeric or boolean ndarray, a
    tensor or a ``torch.nn.Module`` (e.g. a fitted classifier object) is recorded as null, with
    a note under ``"unsaved"`` in the config and a logged warning. Machine-local parameters
    (``_machine_local_params`` of the class) are recorded as their defaults.
    """
    import torch

    params, unsaved = _params_json(estimator)
    fitted, arrays, modules, tensors = {}, {}, {}, {}
    for name in _fitted_names(estimator):
        value = getattr(estimator, name)
        if isinstance(value, torch.nn.Module):
            state = value.state_dict()
            modules[name] = {"class": type(value).__name__, "n_tensors": len(state)}
            for key, tensor in state.items():
                tensors[f"{name}.{key}"] = tensor.detach().cpu().contiguous().clone()
            continue
        if isinstance(value, torch.Tensor):
            kind, tensor = "tensor", value.detach().cpu().contiguous().clone()
        elif isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in _TENSOR_KINDS:
            kind = "ndarray" if isinstance(value, np.ndarray) else "numpy_scalar"
            array = np.array(value, dtype=value.dtype.newbyteorder("="), order="C", copy=True)
            tensor = torch.from_numpy(array)
        else:
            try:
                fitted[name] = _to_json(value)
            except _NotJSONable as err:
                fitted[name] = None
                unsaved[name] = (
                    f"not JSON-serializable ({err}), not an ndarray, tensor or torch module; "
                    "saved as null"
                )
                logger.warning(
                    "%s.%s (%s) is not saved: only JSON-able values, numeric ndarrays, tensors "
                    "and torch modules are; it is null in the saved model",
                    type(estimator).__name__,
                    name,
                    err,
                )
            continue
        dtype = str(value.dtype)
        arrays[name] = {"kind": kind, "dtype": dtype, "shape": list(tensor.shape)}
        tensors[name] = tensor
    if modules and not hasattr(estimator, "_build_modules"):
        raise TypeError(
            f"{type(estimator).__name__}: has fitted torch modules {sorted(modules)} but no "
            "_build_modules() method to rebuild them when loading"
        )
    config = {
        "stainstyle_format": FORMAT_VERSION,
        "stainstyle_version": __version__,
        "class": type(estimator).__name__,
        "params": params,
        "unsaved": unsaved,
        "fitted": fitted,
        "arrays": arrays,
        "modules": modules,
    }
    return config, tensors


def _content_digest(config: Mapping[str, Any], tensors: Mapping[str, Any]) -> str:
    """SHA-256 of a configuration (without its ``content_sha256``) and of the tensors.

    Independent of the file layout: the canonical JSON of the configuration, then for each
    tensor in name order its name, dtype and shape and its bytes.
    """
    import torch

    digest = hashlib.sha256()
    body = {k: v for k, v in config.items() if k != "content_sha256"}
    digest.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        entry = [name, str(tensor.dtype), list(tensor.shape)]
        digest.update(b"\n" + json.dumps(entry).encode("utf-8") + b"\n")
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


# ---------------------------------------------------------------------------- configuration
_COMMON_KEYS = ("stainstyle_format", "class", "params", "fitted", "arrays", "modules")
_REQUIRED_KEYS = {
    1: frozenset({*_COMMON_KEYS, "weights_sha256"}),
    2: frozenset({*_COMMON_KEYS, "stainstyle_version", "unsaved", "content_sha256"}),
}
_OPTIONAL_KEYS = {1: frozenset({"stainstyle_version", "unsaved"}), 2: frozenset()}
_ARRAY_SPEC_KEYS = frozenset({"kind", "dtype", "shape"})
_MODULE_SPEC_KEYS = frozenset({"class", "n_tensors"})


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"the number {value!r}" if len(repr(value)) < 40 else "a number"
    return names.get(type(value), type(value).__name__)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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


def _check_object(config: Mapping[str, Any], key: str, where: str) -> dict:
    value = config[key]
    if not isinstance(value, dict):
        raise ValueError(f"{where}: {key!r} must be an object, got {_json_type(value)}")
    if len(value) > MAX_ENTRIES:
        raise ValueError(f"{where}: {key!r} has {len(value)} entries; at most {MAX_ENTRIES}")
    return value


def _check_array_spec(name: str, spec: Any, where: str) -> None:
    prefix = f"{where}: arrays[{name!r}]"
    if not isinstance(spec, dict) or set(spec) != _ARRAY_SPEC_KEYS:
        shown = sorted(spec) if isinstance(spec, dict) else _json_type(spec)
        raise ValueError(
            f"{prefix}: expected an object with the keys {sorted(_ARRAY_SPEC_KEYS)}, got {shown}"
        )
    kind, dtype, shape = spec["kind"], spec["dtype"], spec["shape"]
    if not isinstance(kind, str) or kind not in _MANIFEST_DTYPES:
        raise ValueError(
            f"{prefix}: 'kind' must be one of {sorted(_MANIFEST_DTYPES)}, got {_json_type(kind)}"
        )
    if not isinstance(dtype, str) or dtype not in _MANIFEST_DTYPES[kind]:
        raise ValueError(
            f"{prefix}: 'dtype' must be one of {sorted(_MANIFEST_DTYPES[kind])} for kind "
            f"{kind!r}, got {_json_type(dtype)}"
        )
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_NDIM
        or not all(_is_int(d) and 0 <= d <= MAX_ELEMENTS for d in shape)
        or math.prod(shape) > MAX_ELEMENTS
    ):
        raise ValueError(
            f"{prefix}: 'shape' must be a list of at most {MAX_NDIM} non-negative ints with at "
            f"most {MAX_ELEMENTS} elements in all, got {_json_type(shape)}"
        )
    if kind == "numpy_scalar" and shape:
        raise ValueError(f"{prefix}: a numpy_scalar has shape [], got {shape}")


def _check_config(config: Any, where: str) -> dict:
    """Schema check of a whole configuration before anything is used; returns it.

    Raises ``ValueError`` starting with ``where`` (the file the configuration came from).
    """
    if not isinstance(config, dict) or "stainstyle_format" not in config:
        raise ValueError(f"{where}: not written by stainstyle's save_pretrained")
    version = config["stainstyle_format"]
    if not _is_int(version) or version not in READABLE_FORMATS:
        raise ValueError(
            f"{where}: folder format {_json_type(version)} (stainstyle "
            f"{str(config.get('stainstyle_version'))[:40]}); this stainstyle {__version__} reads "
            f"formats {list(READABLE_FORMATS)}"
        )
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
            raise ValueError(f"{where}: {key!r} must be a short string, got {_json_type(value)}")
    digest_key = "weights_sha256" if version == 1 else "content_sha256"
    if not isinstance(config[digest_key], str) or not _SHA256.match(config[digest_key]):
        raise ValueError(
            f"{where}: {digest_key!r} must be 64 lowercase hexadecimal digits, got "
            f"{_json_type(config[digest_key])}"
        )
    params = _check_object(config, "params", where)
    found = _non_finite_path(params, "params")
    if found is not None:
        raise ValueError(f"{where}: {found} is not a finite number")
    unsaved = config.get("unsaved", {})
    if not isinstance(unsaved, dict) or not all(isinstance(v, str) for v in unsaved.values()):
        raise ValueError(f"{where}: 'unsaved' must be an object of strings")
    sections = {key: _check_object(config, key, where) for key in ("fitted", "arrays", "modules")}
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
    for name, spec in sections["arrays"].items():
        _check_array_spec(name, spec, where)
    for name, spec in sections["modules"].items():
        if (
            not isinstance(spec, dict)
            or set(spec) != _MODULE_SPEC_KEYS
            or not isinstance(spec["class"], str)
            or not _is_int(spec["n_tensors"])
            or not 0 <= spec["n_tensors"] <= MAX_ENTRIES
        ):
            raise ValueError(
                f"{where}: modules[{name!r}] must be an object with a 'class' string and an "
                f"'n_tensors' int in [0, {MAX_ENTRIES}]"
            )
    return config


# -------------------------------------------------------------------------------- loading
def _pickle_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)


def _read_text(path: Path) -> str:
    """A UTF-8 configuration file of at most :data:`MAX_CONFIG_CHARS` bytes."""
    with open(path, "rb") as f:
        data = f.read(MAX_CONFIG_CHARS + 1)
    if len(data) > MAX_CONFIG_CHARS:
        raise ValueError(f"{path}: larger than {MAX_CONFIG_CHARS} bytes; not a saved configuration")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not valid JSON (not UTF-8 text: {err})") from None


def _read_config_file(path: Path) -> dict:
    """The configuration in ``config.json`` of a format-1 folder, schema-checked."""
    if not path.is_file():
        folder = path.parent
        pickles = _pickle_files(folder)
        hint = (
            f" (it holds pickle files {pickles}, which stainstyle never loads)" if pickles else ""
        )
        raise FileNotFoundError(f"{path}: not found; {folder} is not a saved model{hint}")
    return _check_config(_parse_json(_read_text(path), str(path)), str(path))


#: Bytes per element of each safetensors dtype code.
_ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


class _WeightsFile:
    """``model.safetensors`` read through one open file: the header first, tensors on demand.

    Everything comes from the file opened once, so a concurrent save that renames a new file
    over the path cannot mix two files (``safetensors.safe_open`` opens the path more than
    once). The header is parsed with the bounds of a configuration and checked as safetensors
    does (known dtypes, sizes that match the shapes, data that covers the file exactly), so a
    tensor is only ever allocated with the size of the bytes the file holds.
    """

    def __init__(self, path: Path):
        self.path = path
        try:
            self._file = open(path, "rb")  # noqa: SIM115 - closed by close() / __exit__
        except OSError as err:
            raise ValueError(f"{path}: cannot be read ({err})") from err
        try:
            self._read_header()
        except BaseException:
            self._file.close()
            raise

    def __enter__(self) -> _WeightsFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._file.close()

    def _fail(self, reason: str) -> ValueError:
        return ValueError(f"{self.path}: not a readable safetensors file ({reason})")

    def _read_header(self) -> None:
        size = os.fstat(self._file.fileno()).st_size
        head = self._file.read(8)
        if len(head) < 8:
            raise self._fail(f"{len(head)} bytes long")
        length = int.from_bytes(head, "little")
        if length > MAX_HEADER_BYTES or 8 + length > size:
            raise self._fail(f"a header of {length} bytes in a file of {size} bytes")
        try:
            text = self._file.read(length).decode("utf-8")
        except UnicodeDecodeError as err:
            raise self._fail(f"header not UTF-8: {err}") from None
        try:
            header = _parse_json(text, "header", limit=MAX_HEADER_BYTES)
        except ValueError as err:
            raise self._fail(str(err)) from None
        if not isinstance(header, dict):
            raise self._fail("its header is not a JSON object")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise self._fail("its metadata is not an object of strings")
        self._metadata = metadata
        self._entries: dict[str, tuple[str, list[int], int, int]] = {}
        for name, entry in header.items():
            self._entries[name] = self._entry(name, entry)
        self._data_start = 8 + length
        covered = 0
        for _, _, begin, end in sorted(self._entries.values(), key=lambda e: e[2:]):
            if begin != covered:
                raise self._fail("its tensors do not cover the data without gaps or overlaps")
            covered = end
        if covered != size - self._data_start:
            raise self._fail(f"its tensors hold {covered} bytes, the file {size - 8 - length}")

    def _entry(self, name: str, entry: Any) -> tuple[str, list[int], int, int]:
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise self._fail(f"tensor {name!r} is not described by dtype, shape, data_offsets")
        code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if code not in _ITEMSIZE:
            raise self._fail(f"tensor {name!r} has unsupported dtype {code!r}")
        if not (
            isinstance(shape, list)
            and len(shape) <= MAX_NDIM
            and all(_is_int(d) and 0 <= d <= MAX_ELEMENTS for d in shape)
            and isinstance(offsets, list)
            and len(offsets) == 2
            and all(_is_int(o) for o in offsets)
            and 0 <= offsets[0] <= offsets[1]
        ):
            raise self._fail(f"tensor {name!r} has an invalid shape or data offsets")
        if math.prod(shape) * _ITEMSIZE[code] != offsets[1] - offsets[0]:
            raise self._fail(f"tensor {name!r}: its shape {shape} does not match its byte size")
        return _SAFETENSORS_DTYPES[code], shape, offsets[0], offsets[1]

    def metadata(self) -> dict[str, str]:
        """Header metadata (``__metadata__``)."""
        return self._metadata

    def layout(self) -> dict[str, tuple[str, list[int]]]:
        """Name -> (dtype name, shape) of every tensor, from the header only."""
        return {name: (dtype, shape) for name, (dtype, shape, _, _) in self._entries.items()}

    def get_tensor(self, name: str) -> Any:
        """Read one tensor (a new CPU tensor, of exactly the bytes the file holds for it)."""
        import torch

        dtype, shape, begin, end = self._entries[name]
        tensor = torch.empty(shape, dtype=getattr(torch, dtype))
        if end > begin:
            buffer = memoryview(tensor.reshape(-1).view(torch.uint8).numpy())
            self._file.seek(self._data_start + begin)
            filled = 0
            while filled < end - begin:
                count = self._file.readinto(buffer[filled:])
                if not count:
                    raise self._fail(f"tensor {name!r} ends early")
                filled += count
        return tensor

    def sha256(self) -> str:
        """SHA-256 of the whole file (folder format 1)."""
        digest = hashlib.sha256()
        self._file.seek(0)
        for block in iter(lambda: self._file.read(1 << 20), b""):
            digest.update(block)
        return digest.hexdigest()


def _warn_if_config_json_differs(path: Path, text: str, config: Mapping[str, Any]) -> None:
    """Log a warning when ``config.json`` is missing or says something else than ``text``."""
    if not path.is_file():
        logger.warning(
            "%s: not found; loading the configuration embedded in %s", path, WEIGHTS_NAME
        )
        return
    try:
        content = _read_text(path)
        same = content.strip() == text.strip() or _parse_json(content, str(path)) == config
    except (OSError, ValueError):
        same = False
    if not same:
        logger.warning(
            "%s: differs from the configuration embedded in %s (edited by hand, or a save in "
            "progress); loading the embedded one",
            path,
            WEIGHTS_NAME,
        )


class _Saved:
    """A configuration and the open ``model.safetensors`` it describes."""

    def __init__(self, config: dict, where: str, weights: _WeightsFile, embedded: bool):
        self.config = config
        self.where = where  # the file the configuration came from, for messages
        self.weights = weights
        self.weights_path = weights.path
        self.embedded = embedded

    def fail(self, message: str) -> ValueError:
        return ValueError(f"{self.where}: {message}")


def _name_mismatch(klass: type, config: Mapping[str, Any]) -> str | None:
    """How the fitted attribute names of a configuration differ from the class's declaration."""
    declared = _declaration(klass)
    if declared is None:
        return None
    present = {
        name: section for section in ("fitted", "arrays", "modules") for name in config[section]
    }
    missing = sorted(set(declared) - set(present))
    unknown = sorted(set(present) - set(declared))
    if missing or unknown:
        return (
            f"fitted attributes do not match those {klass.__name__} declares "
            f"(_fitted_attributes): missing {missing}, unknown {unknown[:10]}"
        )
    for name, section in present.items():
        if declared[name].storage != section:
            return (
                f"fitted attribute {name!r} is saved under {section!r}, {klass.__name__} "
                f"declares it under {declared[name].storage!r}"
            )
    return None


def _value_problem(klass: type, name: str, section: str, value: Any) -> str | None:
    """What is wrong with one fitted value (a JSON value, an array, a module's tensors)."""
    spec = (_declaration(klass) or {}).get(name)
    if section == "modules":
        return (spec if isinstance(spec, FittedModule) else GENERIC_MODULE).problem(value)
    if spec is not None:
        return spec.problem(value)
    return generic_array_problem(value) if section == "arrays" else None


def _module_states(names: Any, tensors: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``state_dict`` of each module, from the ``<module>.<key>`` tensors."""
    return {
        name: {k[len(name) + 1 :]: t for k, t in tensors.items() if k.startswith(f"{name}.")}
        for name in names
    }


def _check_names(klass: type, config: Mapping[str, Any], saved: _Saved) -> None:
    """Fitted attribute names: never a class attribute; exactly the declared ones, if any."""
    present = {
        name: section for section in ("fitted", "arrays", "modules") for name in config[section]
    }
    for name in present:
        if hasattr(klass, name):
            raise saved.fail(f"{name!r} is an attribute of {klass.__name__}, not fitted state")
    mismatch = _name_mismatch(klass, config)
    if mismatch is not None:
        raise saved.fail(mismatch)


def _same(a: Any, b: Any) -> bool:
    try:
        equal = a == b
    except Exception:  # noqa: BLE001 - any comparison failure means "not the same"
        return False
    return equal if isinstance(equal, bool) else False


def _params(klass: type, saved: _Saved, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor arguments: saved, machine-local ones reset, then the allowed overrides."""
    params = upgrade_saved_params(klass, _from_json(saved.config["params"]))
    names = set(klass._get_param_names())
    missing, unknown = sorted(names - set(params)), sorted(set(params) - names)
    if missing or unknown:
        raise saved.fail(
            f"invalid parameters for {klass.__name__}: missing {missing}, unknown {unknown[:10]}"
        )
    params.update(_machine_local_defaults(klass))
    for name in getattr(klass, "_fit_dependent_params", ()):
        if name in overrides and not _same(overrides[name], params[name]):
            raise ValueError(
                f"{name}: the {klass.__name__} in {saved.weights_path.parent} was fitted with "
                f"{name}={params[name]!r}, and its fitted state depends on it; {name}="
                f"{overrides[name]!r} cannot be set when loading: fit a new model with it instead"
            )
    return {**params, **overrides}


def _check_array_header(saved: _Saved, header: Mapping[str, tuple[str, list[int]]]) -> None:
    for name, spec in saved.config["arrays"].items():
        if name not in header:
            raise ValueError(
                f"{saved.weights_path}: lacks tensor {name!r} listed in its configuration"
            )
        dtype, shape = header[name]
        expected = spec["dtype"].removeprefix("torch.")
        if dtype != expected or shape != spec["shape"]:
            raise ValueError(
                f"{saved.weights_path}: tensor {name!r} has dtype {dtype} and shape {shape}, "
                f"its configuration expects dtype {expected} and shape {spec['shape']}"
            )


def _check_module_header(
    estimator: Any, saved: _Saved, header: Mapping[str, tuple[str, list[int]]]
) -> set[str]:
    """Build the networks on the meta device (no memory) and compare them with the header.

    Returns the tensor names the modules account for.
    """
    import torch

    listed = saved.config["modules"]
    if not listed:
        return set()
    klass = type(estimator)
    if not hasattr(estimator, "_build_modules"):
        raise saved.fail(f"lists modules {sorted(listed)}, {klass.__name__} has no networks")
    try:
        with torch.device("meta"):
            built = estimator._build_modules()
    except Exception as err:  # noqa: BLE001 - a class hook fed saved sizes; report, do not crash
        raise saved.fail(f"{klass.__name__} cannot build its networks from it: {err}") from err
    if set(built) != set(listed):
        raise saved.fail(
            f"lists modules {sorted(listed)}, {klass.__name__}._build_modules() builds "
            f"{sorted(built)}"
        )
    covered = set()
    for name, module in built.items():
        prefix = f"{name}."
        expected = {
            prefix + key: (str(t.dtype).removeprefix("torch."), list(t.shape))
            for key, t in module.state_dict().items()
        }
        actual = {key: value for key, value in header.items() if key.startswith(prefix)}
        spec = listed[name]
        problem = None
        if spec["class"] != type(module).__name__:
            problem = f"its configuration names the class {spec['class']!r}"
        elif spec["n_tensors"] != len(expected):
            problem = f"its configuration lists {spec['n_tensors']} tensors, it has {len(expected)}"
        elif set(actual) != set(expected):
            lacking, extra = (
                sorted(set(expected) - set(actual)),
                sorted(set(actual) - set(expected)),
            )
            problem = f"missing tensors {lacking[:5]}, unexpected tensors {extra[:5]}"
        else:
            for key, value in expected.items():
                if actual[key] != value:
                    problem = (
                        f"tensor {key!r} has dtype {actual[key][0]} and shape {actual[key][1]}, "
                        f"the network built from the configuration has {value[0]} and {value[1]}"
                    )
                    break
        if problem is not None:
            raise ValueError(
                f"{saved.weights_path}: its tensors do not fit module {name!r} "
                f"({type(module).__name__}): {problem}"
            )
        covered |= set(expected)
    return covered


def _array_value(tensor: Any, spec: Mapping[str, Any]) -> Any:
    if spec["kind"] == "tensor":
        return tensor
    value = tensor.numpy()
    return value[()] if spec["kind"] == "numpy_scalar" else value


def _restore_estimator(saved: _Saved, cls: type | None, overrides: Mapping[str, Any]) -> Any:
    """Check everything, then build the estimator; no network is built before the checks."""
    import torch

    config = saved.config
    try:
        klass = normalizer_class(config["class"])
    except ValueError as err:
        raise saved.fail(str(err)) from None
    if cls is not None and not issubclass(klass, cls):
        raise TypeError(
            f"{saved.where}: holds a {klass.__name__}, not a {cls.__name__}; use "
            "stainstyle.load to load any normalizer"
        )
    _check_names(klass, config, saved)
    fitted = _from_json(config["fitted"])
    for name, value in fitted.items():
        problem = _value_problem(klass, name, "fitted", value)
        if problem is not None:
            raise saved.fail(f"fitted attribute {name!r}: {problem}")
    params = _params(klass, saved, overrides)
    try:
        estimator = klass(**params)
        estimator._validate_params()
    except (TypeError, ValueError) as err:
        raise saved.fail(f"invalid parameters for {klass.__name__}: {err}") from err
    for name, value in fitted.items():
        setattr(estimator, name, value)

    header = saved.weights.layout()
    _check_array_header(saved, header)
    covered = _check_module_header(estimator, saved, header) | set(config["arrays"])
    unlisted = sorted(set(header) - covered)
    if unlisted:
        raise ValueError(
            f"{saved.weights_path}: holds tensors not listed in its configuration: {unlisted[:10]}"
        )
    tensors = {key: saved.weights.get_tensor(key) for key in header}
    if saved.embedded and _content_digest(config, tensors) != config["content_sha256"]:
        raise ValueError(
            f"{saved.weights_path}: its SHA-256 does not match the one recorded in it "
            "(content_sha256); the file is corrupt or was modified"
        )

    for name, spec in config["arrays"].items():
        value = _array_value(tensors[name], spec)
        problem = _value_problem(klass, name, "arrays", value)
        if problem is not None:
            raise ValueError(f"{saved.weights_path}: fitted attribute {name!r}: {problem}")
        setattr(estimator, name, value)
    if config["modules"]:
        states = _module_states(config["modules"], tensors)
        for name, state in states.items():
            problem = _value_problem(klass, name, "modules", state)
            if problem is not None:
                raise ValueError(f"{saved.weights_path}: module {name!r}: {problem}")
        with torch.random.fork_rng(devices=[]):  # building must not move the caller's seed
            built = estimator._build_modules()
        for name, module in built.items():
            try:
                module.load_state_dict(states[name], strict=True)
            except RuntimeError as err:
                raise ValueError(
                    f"{saved.weights_path}: its tensors do not fit module {name!r} "
                    f"({type(module).__name__}): {err}"
                ) from err
            setattr(estimator, name, module.eval())
    return estimator


def load_folder(folder: str | os.PathLike, cls: type | None = None, **overrides: Any) -> Any:
    """Load a fitted normalizer from a local folder written by ``save_pretrained``.

    Parameters
    ----------
    folder : str or path
        Folder holding ``model.safetensors`` (and ``config.json``).
    cls : type, optional
        Expected class (or base class) of the saved normalizer; any registered class if None.
    **overrides
        Constructor parameters replacing the saved ones (e.g. ``device="cuda"``), or
        restoring parameters saved as null. Parameters the fitted state depends on (the
        class's ``_fit_dependent_params``, e.g. Reinhard's ``space``) cannot be changed.

    Returns
    -------
    StainNormalizer
        The fitted normalizer, networks in eval mode on the CPU. Machine-local parameters (the
        class's ``_machine_local_params``, e.g. a checkpoint folder or a device) have their
        defaults unless given in ``overrides``.

    Raises
    ------
    FileNotFoundError
        If ``model.safetensors`` is missing, or ``config.json`` of a format-1 folder (naming
        the file).
    ValueError
        If a file is corrupt, modified, not valid JSON or safetensors, too large or too deeply
        nested; if the configuration fails its schema, names an unknown class, or holds fitted
        attributes that do not match the class's declaration (names, shapes, finite values,
        ranges, network sizes); if tensors' names, dtypes or shapes do not match; if the folder
        holds only pickle checkpoints; if an override changes a parameter the fitted state
        depends on (naming the parameter).
    TypeError
        If the saved class is not ``cls`` or a subclass of it.
    """
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not weights_path.is_file():
        if not config_path.is_file():
            _read_config_file(config_path)  # raises FileNotFoundError naming config.json
        pickles = _pickle_files(folder)
        if pickles:
            raise ValueError(
                f"{weights_path}: not found, and the folder holds pickle files {pickles}; "
                "stainstyle loads weights only from safetensors and never unpickles"
            )
        raise FileNotFoundError(f"{weights_path}: not found")
    with _WeightsFile(weights_path) as weights:
        text = weights.metadata().get(CONFIG_METADATA_KEY)
        if text is not None:
            where = f"{weights_path} (embedded configuration)"
            config = _check_config(_parse_json(text, where), where)
            if config["stainstyle_format"] != FORMAT_VERSION:
                raise ValueError(
                    f"{where}: says folder format {config['stainstyle_format']}; an embedded "
                    f"configuration is format {FORMAT_VERSION}"
                )
            _warn_if_config_json_differs(config_path, text, config)
            saved = _Saved(config, where, weights, embedded=True)
        else:
            config = _read_config_file(config_path)
            if config["stainstyle_format"] != 1:
                raise ValueError(
                    f"{config_path}: says folder format {config['stainstyle_format']}, but "
                    f"{weights_path} holds no embedded configuration (it was replaced, or written "
                    "by another program)"
                )
            if weights.sha256() != config["weights_sha256"]:
                raise ValueError(
                    f"{weights_path}: its SHA-256 does not match the one recorded in "
                    f"{CONFIG_NAME}; the file is corrupt or was modified"
                )
            saved = _Saved(config, str(config_path), weights, embedded=False)
        return _restore_estimator(saved, cls, overrides)


def _check_saveable(estimator: Any, config: Mapping[str, Any], tensors: Mapping[str, Any]) -> None:
    """Refuse to write a model that loading would refuse, naming the attribute."""
    klass = type(estimator)
    mismatch = _name_mismatch(klass, config)
    if mismatch is not None:
        raise ValueError(f"{klass.__name__}: cannot be saved: {mismatch}")
    states = _module_states(config["modules"], tensors)
    for section in ("fitted", "arrays", "modules"):
        for name in config[section]:
            if hasattr(klass, name):
                raise ValueError(f"{klass.__name__}.{name}: cannot be saved: a class attribute")
            if section == "modules":
                value = states[name]
            elif section == "arrays":
                value = getattr(estimator, name)
            else:
                value = _from_json(config["fitted"][name])
            problem = _value_problem(klass, name, section, value)
            if problem is not None:
                raise ValueError(f"{klass.__name__}.{name}: cannot be saved: {problem}")


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name
    )


# ---------------------------------------------------------------------------------- mixin
class NormalizerHubMixin(ModelHubMixin):
    """Save, load and share fitted normalizers; inherited by every ``StainNormalizer``.

    Built on :class:`huggingface_hub.ModelHubMixin`, which provides the Hub download, cache
    and upload logic; this class defines the folder format (see the module docstring).

    See Also
    --------
    load : Load any saved normalizer, whatever its class.
    """

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        model_card_kwargs: dict[str, Any] | None = None,
        push_to_hub: bool = False,
        repo_id: str | None = None,
        **push_to_hub_kwargs: Any,
    ) -> str | None:
        """Save the fitted normalizer to a folder, atomically.

        Writes ``model.safetensors`` (tensors and the complete configuration), then
        ``config.json`` and a model card ``README.md`` into ``save_directory`` (created if
        needed), each to a temporary file renamed over the old one. Other files in the folder
        are left alone; temporaries left by a killed save are removed.

        Parameters
        ----------
        save_directory : str or path
            Target folder.
        model_card_kwargs : dict, optional
            Passed to the model card: ``training_data`` (str), ``benchmark`` (dict of metric
            name to value), ``datasets`` (list of Hub dataset ids), ``license`` (str),
            ``repo_id`` (str).
        push_to_hub : bool, default=False
            Also push the folder to the Hub (see :meth:`push_to_hub`).
        repo_id : str, optional
            Hub repository when ``push_to_hub``; defaults to the folder name.
        **push_to_hub_kwargs
            Passed to :meth:`push_to_hub`.

        Returns
        -------
        str or None
            The commit URL when pushed, else None.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the normalizer is not fitted.
        ValueError
            If its fitted attributes do not meet the class's declaration (``_fitted_attributes``;
            loading would refuse them), or its configuration is too large.

        Notes
        -----
        A reader loading the folder during the save gets the previous model or the new one,
        and a process killed during the save leaves a folder that loads (see the module
        docstring).
        """
        check_is_fitted(self)
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(save_directory)
        self._save_pretrained(save_directory)
        card = self.generate_model_card(**(model_card_kwargs or {}))
        atomic_write_text(save_directory / CARD_NAME, str(card))
        if not push_to_hub:
            return None
        # Pushed here rather than by ModelHubMixin, which would pass it a `config` argument.
        return self.push_to_hub(
            repo_id or save_directory.name,
            model_card_kwargs=model_card_kwargs,
            **push_to_hub_kwargs,
        )

    def _save_pretrained(self, save_directory: Path) -> None:
        from safetensors.torch import save_file

        config, tensors = fitted_state(self)
        _check_saveable(self, config, tensors)
        config["content_sha256"] = _content_digest(config, tensors)
        text = json.dumps(config, indent=2, sort_keys=True)
        if len(text) > MAX_CONFIG_CHARS or _json_depth(text) > MAX_JSON_DEPTH:
            raise ValueError(
                f"{type(self).__name__}: its configuration is too large to save ({len(text)} "
                f"characters, at most {MAX_CONFIG_CHARS}; nesting at most {MAX_JSON_DEPTH} deep)"
            )
        # model.safetensors is the commit point: once renamed into place, the new model loads.
        # One metadata key only: safetensors writes metadata in hash order, and a second key would
        # make two saves of one model differ byte for byte.
        with atomic_path(save_directory / WEIGHTS_NAME) as temporary:
            save_file(tensors, str(temporary), metadata={CONFIG_METADATA_KEY: text})
        atomic_write_text(save_directory / CONFIG_NAME, text + "\n")

    def generate_model_card(self, **kwargs: Any):
        """Model card of this normalizer.

        Parameters
        ----------
        **kwargs
            ``training_data``, ``benchmark``, ``datasets``, ``license``, ``repo_id``; see
            :func:`stainstyle._modelcard.render_model_card`.

        Returns
        -------
        huggingface_hub.ModelCard
        """
        return render_model_card(
            class_name=type(self).__name__,
            method=method_name(type(self)),
            version=__version__,
            params=_params_json(self)[0],
            **kwargs,
        )

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str = "Upload stainstyle normalizer",
        branch: str | None = None,
        create_pr: bool | None = None,
        model_card_kwargs: dict[str, Any] | None = None,
    ) -> str:
        """Save the fitted normalizer and upload the folder to a Hub repository in one commit.

        Parameters
        ----------
        repo_id : str
            ``"namespace/name"``; created if it does not exist.
        private : bool, optional
            Visibility of a newly created repository (the account default when None).
        token : str, optional
            Hub token; the logged-in token when None.
        commit_message : str
            Commit message.
        branch : str, optional
            Branch to push to; ``main`` when None.
        create_pr : bool, optional
            Open a pull request instead of committing to the branch.
        model_card_kwargs : dict, optional
            See :meth:`save_pretrained`; ``repo_id`` defaults to ``repo_id``.

        Returns
        -------
        str
            URL of the commit.
        """
        check_is_fitted(self)
        return super().push_to_hub(
            repo_id,
            private=private,
            token=token,
            commit_message=commit_message,
            branch=branch,
            create_pr=create_pr,
            model_card_kwargs={"repo_id": repo_id, **(model_card_kwargs or {})},
        )

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        **overrides: Any,
    ):
        """Load a fitted normalizer from a local folder or a Hub repository.

        Parameters
        ----------
        pretrained_model_name_or_path : str or path
            A folder written by :meth:`save_pretrained`, or a Hub repository id
            ``"namespace/name"``. With ``HF_HUB_OFFLINE=1`` a repository already in the local
            Hub cache loads without network access.
        revision : str, optional
            Branch, tag or commit id of a Hub repository; pin a commit id for reproducibility.
        cache_dir : str or path, optional
            Hub cache folder (``HF_HUB_CACHE`` when None).
        force_download : bool, default=False
            Download again even when cached.
        local_files_only : bool, default=False
            Use only the local Hub cache.
        token : str or bool, optional
            Hub token for private repositories.
        **overrides
            Constructor parameters replacing the saved ones (e.g. ``device="cuda"``).

        Returns
        -------
        StainNormalizer
            The fitted normalizer, of the saved class; networks in eval mode on the CPU.

        Raises
        ------
        FileNotFoundError
            If the folder or one of its files does not exist.
        OSError
            If the repository cannot be fetched from the Hub or found in the cache.
        ValueError, TypeError
            See :func:`load_folder`.
        """
        name = str(pretrained_model_name_or_path)
        if not os.path.isdir(name):
            if os.path.exists(name):
                raise FileNotFoundError(f"{name}: expected a model folder, got a file")
            if _looks_like_path(name):
                raise FileNotFoundError(f"{name}: no such model folder")
        elif revision is not None:
            raise ValueError(
                f"revision={revision!r}: applies to Hub repositories; {name} is a folder"
            )
        # ModelHubMixin.from_pretrained is bypassed: it would download config.json separately and
        # pass its keys to the constructor; here config and weights are read from one snapshot.
        try:
            return cls._from_pretrained(
                model_id=name,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                local_files_only=local_files_only,
                token=token,
                **overrides,
            )
        except (EntryNotFoundError, HfHubHTTPError) as err:
            raise OSError(
                f"{name!r} (revision {revision or 'main'}): cannot be fetched from the Hugging "
                f"Face Hub or found in the local cache: {err}"
            ) from err

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        **overrides: Any,
    ):
        if os.path.isdir(model_id):
            folder = model_id
        else:
            # One snapshot, so config and weights come from the same commit.
            folder = snapshot_download(
                repo_id=model_id,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                local_files_only=local_files_only,
                token=token,
                allow_patterns=[CONFIG_NAME, WEIGHTS_NAME],
            )
        return load_folder(folder, cls, **overrides)


def load(path_or_repo_id: str | os.PathLike, revision: str | None = None, **kwargs: Any):
    """Load any saved normalizer; the class comes from its saved configuration.

    Parameters
    ----------
    path_or_repo_id : str or path
        A folder written by ``save_pretrained`` or a Hub repository id ``"namespace/name"``.
    revision : str, optional
        Branch, tag or commit id of a Hub repository.
    **kwargs
        Passed to :meth:`NormalizerHubMixin.from_pretrained` (``cache_dir``,
        ``local_files_only``, ``token``, constructor overrides).

    Returns
    -------
    StainNormalizer
        The fitted normalizer.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from stainstyle import GrayNormalizer
    >>> tile = np.full((32, 32, 3), (150, 60, 160), dtype=np.uint8)
    >>> folder = tempfile.mkdtemp()
    >>> _ = GrayNormalizer().fit(tile).save_pretrained(folder)
    >>> type(load(folder)).__name__
    'GrayNormalizer'
    """
    return NormalizerHubMixin.from_pretrained(path_or_repo_id, revision=revision, **kwargs)
