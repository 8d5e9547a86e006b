"""Saved fitted state against the class's declaration of it.

A normalizer class declares its fitted attributes (``_fitted_attributes``, a dict of the
specifications of :mod:`stainstyle._fitted`), the parameters its fitted state depends on
(``_fit_dependent_params``) and those that describe the machine rather than the model
(``_machine_local_params``). Saving and loading both check a configuration against it here, so
that a model is saved only if it loads. A class that declares no ``_fitted_attributes`` (a
registered custom class) gets the generic checks: finite floating-point values.

Imports :mod:`stainstyle._fitted` and :mod:`.config_schema`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from stainstyle._fitted import GENERIC_MODULE, FittedModule, generic_array_problem
from stainstyle._persistence.config_schema import fitted_sections


def _declaration(cls: type) -> dict[str, Any] | None:
    """The class's ``_fitted_attributes``, or None for a class that declares nothing."""
    declared = getattr(cls, "_fitted_attributes", None)
    return dict(declared) if isinstance(declared, Mapping) else None


def machine_local_defaults(cls: type) -> dict[str, Any]:
    """Defaults of the parameters that describe the machine or the run, not the model.

    Parameters
    ----------
    cls : type
        A normalizer class; its ``_machine_local_params`` name the parameters.

    Returns
    -------
    dict of str to object
        Parameter name -> default of ``cls.__init__``.
    """
    parameters = inspect.signature(cls.__init__).parameters
    names = getattr(cls, "_machine_local_params", ())
    return {name: parameters[name].default for name in names if name in parameters}


def name_mismatch(klass: type, config: Mapping[str, Any]) -> str | None:
    """How the fitted attribute names of a configuration differ from the class's declaration.

    Parameters
    ----------
    klass : type
        The normalizer class.
    config : mapping
        A configuration that passed the schema check.

    Returns
    -------
    str or None
        None when the names and their sections are the declared ones, or the class declares
        nothing.
    """
    declared = _declaration(klass)
    if declared is None:
        return None
    present = fitted_sections(config)
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


def value_problem(klass: type, name: str, section: str, value: Any) -> str | None:
    """What is wrong with one fitted value (a JSON value, an array, a module's tensors).

    Parameters
    ----------
    klass : type
        The normalizer class.
    name : str
        The fitted attribute.
    section : {"fitted", "arrays", "modules"}
        Where it is saved.
    value : object
        The value; for a module, its ``state_dict``.

    Returns
    -------
    str or None
        None when the value meets the class's declaration (or the generic checks).
    """
    spec = (_declaration(klass) or {}).get(name)
    if section == "modules":
        return (spec if isinstance(spec, FittedModule) else GENERIC_MODULE).problem(value)
    if spec is not None:
        return spec.problem(value)
    return generic_array_problem(value) if section == "arrays" else None


def state_problem(estimator: Any) -> str | None:
    """What is wrong between the fitted attributes of an estimator, all of them set.

    Parameters
    ----------
    estimator : object
        A fitted estimator; its class's ``_fitted_state_problem()``, when defined, relates the
        attributes (e.g. as many rows of statistics as fitted colour spaces).

    Returns
    -------
    str or None
        None when they agree, or the class defines no relation.
    """
    check = getattr(type(estimator), "_fitted_state_problem", None)
    return None if check is None else check(estimator)
