"""A saved configuration and its tensors back to a fitted estimator, checking everything first.

The steps, in order: the class is resolved through :mod:`stainstyle.registry`; the fitted
attribute names and JSON values are checked against the class's declaration; the constructor
parameters are checked (a parameter the fitted state depends on cannot be overridden) and the
estimator is built; the tensor manifest and the networks, built on the meta device, are compared
with the safetensors header; only then are the tensors read, the content digest compared, and
the arrays checked and set, the relations between the fitted attributes checked (the
class's ``_fitted_state_problem``), and the networks built and filled.

Imports :mod:`stainstyle.registry` and the modules of this package below it: every module but
:mod:`.folder`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stainstyle._persistence.capture import content_digest, module_states
from stainstyle._persistence.config_schema import fitted_sections
from stainstyle._persistence.declarations import (
    machine_local_defaults,
    name_mismatch,
    state_problem,
    value_problem,
)
from stainstyle._persistence.json_values import from_json
from stainstyle._persistence.networks import Layout, check_network_sizes, load_networks
from stainstyle._persistence.safetensors_file import SafetensorsFile
from stainstyle._renamed import upgrade_saved_params
from stainstyle.registry import normalizer_class


@dataclass
class SavedModel:
    """A schema-checked configuration and the open ``model.safetensors`` it describes.

    Parameters
    ----------
    config : dict
        The configuration; it passed :func:`~.config_schema.check_config`.
    where : str
        The file the configuration came from, for messages.
    weights : SafetensorsFile
        ``model.safetensors``, open.
    embedded : bool
        The configuration came from the header of ``model.safetensors`` (folder format 2),
        and its ``content_sha256`` covers the tensors.
    """

    config: dict
    where: str
    weights: SafetensorsFile
    embedded: bool

    @property
    def weights_path(self) -> Path:
        """Path of ``model.safetensors``."""
        return self.weights.path

    def fail(self, message: str) -> ValueError:
        """An error about the configuration, naming its file.

        Parameters
        ----------
        message : str

        Returns
        -------
        ValueError
        """
        return ValueError(f"{self.where}: {message}")


def restore_estimator(saved: SavedModel, cls: type | None, overrides: Mapping[str, Any]) -> Any:
    """Check everything, then build the estimator; no network is built before the checks.

    Parameters
    ----------
    saved : SavedModel
        The configuration and the tensors' file.
    cls : type or None
        Expected class (or base class) of the saved normalizer; any registered class if None.
    overrides : mapping of str to object
        Constructor parameters replacing the saved ones.

    Returns
    -------
    StainNormalizer
        The fitted normalizer, networks in eval mode on the CPU.

    Raises
    ------
    ValueError
        Naming the file, at the first check that fails.
    TypeError
        If the saved class is not ``cls`` or a subclass of it.
    """
    klass = _saved_class(saved, cls)
    estimator = _construct(klass, saved, overrides)
    tensors = _read_tensors(estimator, saved)
    for name, spec in saved.config["arrays"].items():
        value = _array_value(tensors[name], spec)
        problem = value_problem(klass, name, "arrays", value)
        if problem is not None:
            raise ValueError(f"{saved.weights_path}: fitted attribute {name!r}: {problem}")
        setattr(estimator, name, value)
    problem = state_problem(estimator)
    if problem is not None:
        raise saved.fail(f"fitted attributes disagree: {problem}")
    if saved.config["modules"]:
        states = module_states(saved.config["modules"], tensors)
        load_networks(estimator, states, saved.weights_path)
    return estimator


def _saved_class(saved: SavedModel, cls: type | None) -> type:
    """The class the configuration names, resolved through the registry."""
    try:
        klass = normalizer_class(saved.config["class"])
    except ValueError as err:
        raise saved.fail(str(err)) from None
    if cls is not None and not issubclass(klass, cls):
        article = "an" if cls.__name__[0] in "AEIOU" else "a"
        raise TypeError(
            f"{saved.where}: holds a {klass.__name__}, not {article} {cls.__name__}; use "
            "stainstyle.load to load any saved model"
        )
    return klass


def _construct(klass: type, saved: SavedModel, overrides: Mapping[str, Any]) -> Any:
    """The estimator with its parameters and JSON-able fitted attributes, all checked."""
    _check_names(klass, saved)
    fitted = from_json(saved.config["fitted"])
    for name, value in fitted.items():
        problem = value_problem(klass, name, "fitted", value)
        if problem is not None:
            raise saved.fail(f"fitted attribute {name!r}: {problem}")
    params = _constructor_params(klass, saved, overrides)
    try:
        estimator = klass(**params)
        estimator._validate_params()
    except (TypeError, ValueError) as err:
        raise saved.fail(f"invalid parameters for {klass.__name__}: {err}") from err
    for name, value in fitted.items():
        setattr(estimator, name, value)
    return estimator


def _check_names(klass: type, saved: SavedModel) -> None:
    """Fitted attribute names: never a class attribute; exactly the declared ones, if any."""
    for name in fitted_sections(saved.config):
        if hasattr(klass, name):
            raise saved.fail(f"{name!r} is an attribute of {klass.__name__}, not fitted state")
    mismatch = name_mismatch(klass, saved.config)
    if mismatch is not None:
        raise saved.fail(mismatch)


def _same(a: Any, b: Any) -> bool:
    try:
        equal = a == b
    except Exception:  # noqa: BLE001 - any comparison failure means "not the same"
        return False
    return equal if isinstance(equal, bool) else False


def _constructor_params(
    klass: type, saved: SavedModel, overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """Constructor arguments: saved, machine-local ones reset, then the allowed overrides."""
    params = upgrade_saved_params(klass, from_json(saved.config["params"]))
    names = set(klass._get_param_names())
    missing, unknown = sorted(names - set(params)), sorted(set(params) - names)
    if missing or unknown:
        raise saved.fail(
            f"invalid parameters for {klass.__name__}: missing {missing}, unknown {unknown[:10]}"
        )
    params.update(machine_local_defaults(klass))
    for name in getattr(klass, "_fit_dependent_params", ()):
        if name in overrides and not _same(overrides[name], params[name]):
            raise ValueError(
                f"{name}: the {klass.__name__} in {saved.weights_path.parent} was fitted with "
                f"{name}={params[name]!r}, and its fitted state depends on it; {name}="
                f"{overrides[name]!r} cannot be set when loading: fit a new model with it instead"
            )
    return {**params, **overrides}


def _read_tensors(estimator: Any, saved: SavedModel) -> dict[str, Any]:
    """Every tensor of the file, once the header matches the configuration; digest checked."""
    config = saved.config
    header = saved.weights.layout()
    _check_array_header(saved, header)
    covered = check_network_sizes(
        estimator, config["modules"], header, saved.where, saved.weights_path
    )
    unlisted = sorted(set(header) - covered - set(config["arrays"]))
    if unlisted:
        raise ValueError(
            f"{saved.weights_path}: holds tensors not listed in its configuration: {unlisted[:10]}"
        )
    tensors = {key: saved.weights.get_tensor(key) for key in header}
    if saved.embedded and content_digest(config, tensors) != config["content_sha256"]:
        raise ValueError(
            f"{saved.weights_path}: its SHA-256 does not match the one recorded in it "
            "(content_sha256); the file is corrupt or was modified"
        )
    return tensors


def _check_array_header(saved: SavedModel, header: Layout) -> None:
    """Each listed array is in the header, with the dtype and shape the manifest records."""
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


def _array_value(tensor: Any, spec: Mapping[str, Any]) -> Any:
    """The fitted value of a saved tensor: the tensor, an ndarray or a numpy scalar."""
    if spec["kind"] == "tensor":
        return tensor
    value = tensor.numpy()
    return value[()] if spec["kind"] == "numpy_scalar" else value
