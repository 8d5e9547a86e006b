"""A fitted estimator as a configuration and tensors, and the SHA-256 of both.

:func:`fitted_state` splits an estimator into JSON (class, constructor parameters, JSON-able
fitted attributes, a manifest of the tensors) and tensors (fitted arrays and tensors under their
own names, the ``state_dict`` of each fitted module under ``<attribute>.<key>``).
:func:`check_saveable` refuses a state that loading would refuse, so that a saved model loads.

Imports :mod:`.json_values`, :mod:`.config_schema` and :mod:`.declarations`; torch is imported
when a state is captured.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from stainstyle._persistence.config_schema import FORMAT_VERSION, fitted_sections
from stainstyle._persistence.declarations import (
    machine_local_defaults,
    name_mismatch,
    state_problem,
    value_problem,
)
from stainstyle._persistence.json_values import NotJSONable, from_json, to_json
from stainstyle._version import __version__

# Warnings go to the logger of the public module, the one users configure.
logger = logging.getLogger("stainstyle.hub")

#: Numpy dtypes safetensors stores exactly (via torch).
_TENSOR_KINDS = "biuf"


def fitted_names(estimator: Any) -> list[str]:
    """Names of the fitted attributes of an estimator: public, ending in ``_``.

    Parameters
    ----------
    estimator : object

    Returns
    -------
    list of str
        Sorted.
    """
    return sorted(k for k in vars(estimator) if k.endswith("_") and not k.startswith("_"))


def params_json(estimator: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Constructor parameters as JSON, and a note for each one that is not JSON-able (null).

    Machine-local parameters (``_machine_local_params``: a checkpoint folder, a device) are
    recorded as their defaults.

    Parameters
    ----------
    estimator : StainNormalizer

    Returns
    -------
    params : dict of str to JSON data
    unsaved : dict of str to str
        Parameter name -> why it is saved as null.
    """
    params, unsaved = {}, {}
    machine_local = machine_local_defaults(type(estimator))
    for name, value in estimator.get_params(deep=False).items():
        value = machine_local.get(name, value)
        try:
            params[name] = to_json(value, finite=True)
        except NotJSONable as err:
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

    params, unsaved = params_json(estimator)
    fitted, arrays, modules, tensors = {}, {}, {}, {}
    for name in fitted_names(estimator):
        value = getattr(estimator, name)
        if isinstance(value, torch.nn.Module):
            state = value.state_dict()
            modules[name] = {"class": type(value).__name__, "n_tensors": len(state)}
            for key, tensor in state.items():
                tensors[f"{name}.{key}"] = tensor.detach().cpu().contiguous().clone()
            continue
        captured = _as_tensor(value)
        if captured is None:
            fitted[name] = _json_or_null(estimator, name, value, unsaved)
            continue
        kind, tensor = captured
        # The recorded dtype is the stored one: numpy arrays are stored in native byte order.
        dtype = value.dtype if kind == "tensor" else value.dtype.newbyteorder("=")
        arrays[name] = {"kind": kind, "dtype": str(dtype), "shape": list(tensor.shape)}
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


def _as_tensor(value: Any) -> tuple[str, Any] | None:
    """A tensor or numeric ndarray (or numpy scalar) as (kind, CPU tensor); None otherwise."""
    import torch

    if isinstance(value, torch.Tensor):
        return "tensor", value.detach().cpu().contiguous().clone()
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in _TENSOR_KINDS:
        kind = "ndarray" if isinstance(value, np.ndarray) else "numpy_scalar"
        array = np.array(value, dtype=value.dtype.newbyteorder("="), order="C", copy=True)
        return kind, torch.from_numpy(array)
    return None


def _json_or_null(estimator: Any, name: str, value: Any, unsaved: dict[str, str]) -> Any:
    """A fitted value as JSON; else None, with a note in ``unsaved`` and a logged warning."""
    try:
        return to_json(value)
    except NotJSONable as err:
        unsaved[name] = (
            f"not JSON-serializable ({err}), not an ndarray, tensor or torch module; saved as null"
        )
        logger.warning(
            "%s.%s (%s) is not saved: only JSON-able values, numeric ndarrays, tensors "
            "and torch modules are; it is null in the saved model",
            type(estimator).__name__,
            name,
            err,
        )
        return None


def module_states(names: Any, tensors: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``state_dict`` of each module, from the ``<module>.<key>`` tensors.

    Parameters
    ----------
    names : iterable of str
        Module attribute names.
    tensors : mapping of str to torch.Tensor
        All the tensors of a model.

    Returns
    -------
    dict of str to dict of str to torch.Tensor
    """
    return {
        name: {k[len(name) + 1 :]: t for k, t in tensors.items() if k.startswith(f"{name}.")}
        for name in names
    }


def content_digest(config: Mapping[str, Any], tensors: Mapping[str, Any]) -> str:
    """SHA-256 of a configuration (without its ``content_sha256``) and of the tensors.

    Independent of the file layout: the canonical JSON of the configuration, then for each
    tensor in name order its name, dtype and shape and its bytes.

    Parameters
    ----------
    config : mapping
        The configuration.
    tensors : mapping of str to torch.Tensor
        The tensors.

    Returns
    -------
    str
        64 lowercase hexadecimal digits.
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


def check_saveable(estimator: Any, config: Mapping[str, Any], tensors: Mapping[str, Any]) -> None:
    """Refuse to write a model that loading would refuse, naming the attribute.

    Parameters
    ----------
    estimator : StainNormalizer
        The fitted normalizer.
    config, tensors
        Its :func:`fitted_state`.

    Raises
    ------
    ValueError
        If a fitted attribute is not the declared one, shadows a class attribute, or fails its
        specification.
    """
    klass = type(estimator)
    mismatch = name_mismatch(klass, config)
    if mismatch is not None:
        raise ValueError(f"{klass.__name__}: cannot be saved: {mismatch}")
    states = module_states(config["modules"], tensors)
    for name, section in fitted_sections(config).items():
        if hasattr(klass, name):
            raise ValueError(f"{klass.__name__}.{name}: cannot be saved: a class attribute")
        if section == "modules":
            value = states[name]
        elif section == "arrays":
            value = getattr(estimator, name)
        else:
            value = from_json(config["fitted"][name])
        problem = value_problem(klass, name, section, value)
        if problem is not None:
            raise ValueError(f"{klass.__name__}.{name}: cannot be saved: {problem}")
    problem = state_problem(estimator)
    if problem is not None:
        raise ValueError(
            f"{klass.__name__}: cannot be saved: fitted attributes disagree: {problem}"
        )
