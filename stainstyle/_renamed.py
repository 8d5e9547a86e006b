"""Renamed constructor parameters: the old name stays accepted, deprecated, scikit-learn style.

A class lists its renamed parameters in ``_renamed_params`` (old name -> :class:`Renamed`). Its
constructor keeps the old name as a keyword whose default is :data:`DEPRECATED` ("not given")
and stores it unchanged, so ``clone``, ``get_params`` and ``GridSearchCV`` see both spellings.
When parameters are validated (``fit``, ``transform``), :func:`check_renamed` warns about an
old name that was given and refuses one that contradicts the new name; the methods read the
value in effect through :func:`param_in_effect`. Saved models from before a rename hold only
the old name; :func:`upgrade_saved_params` moves it to the new one when they are loaded.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sklearn.utils._param_validation import Hidden, StrOptions

#: Default of a deprecated constructor parameter: the caller did not give it.
DEPRECATED = "deprecated"

#: The constraint that admits :data:`DEPRECATED`, added to an old name's own constraints
#: (hidden from the messages that list the valid values).
DEPRECATED_CONSTRAINT = Hidden(StrOptions({DEPRECATED}))


@dataclass(frozen=True)
class Renamed:
    """Where a deprecated constructor parameter went.

    Parameters
    ----------
    new : str
        The parameter's name now.
    values : mapping, optional
        Old value -> new value, when the values were respelled too (e.g. ``{"none": False,
        "tissue": True}``); None when they are the same.
    """

    new: str
    values: Mapping[Any, Any] | None = None

    def translate(self, value: Any) -> Any:
        """The new parameter's value that an old one means.

        Parameters
        ----------
        value : object
            A valid value of the old parameter.

        Returns
        -------
        object
        """
        return value if self.values is None else self.values[value]


def _given(value: Any) -> bool:
    return not (isinstance(value, str) and value == DEPRECATED)


def _default(cls: type, name: str) -> Any:
    return inspect.signature(cls.__init__).parameters[name].default


def param_in_effect(estimator: Any, name: str) -> Any:
    """The value of parameter ``name``: what a deprecated old name says, when it was given.

    Parameters
    ----------
    estimator : StainNormalizer
        An estimator whose parameters passed :func:`check_renamed`.
    name : str
        A current parameter name.

    Returns
    -------
    object
    """
    for old, renamed in estimator._renamed_params.items():
        value = getattr(estimator, old)
        if renamed.new == name and _given(value):
            return renamed.translate(value)
    return getattr(estimator, name)


def check_renamed(estimator: Any, stacklevel: int) -> None:
    """Warn about each deprecated parameter given; refuse one that contradicts its new name.

    The old name, when given, wins over the new name's default; given with the new name set to
    another value, it is an error.

    Parameters
    ----------
    estimator : StainNormalizer
        An estimator whose parameters passed their ``_parameter_constraints``.
    stacklevel : int
        Stack level of the warning, counted from the caller of this function.

    Raises
    ------
    ValueError
        If an old name and its new name are both set, to values that disagree.

    Warns
    -----
    FutureWarning
        For each old name given, naming the new one and the value to pass.
    """
    cls = type(estimator)
    for old, renamed in cls._renamed_params.items():
        value = getattr(estimator, old)
        if not _given(value):
            continue
        meant, current = renamed.translate(value), getattr(estimator, renamed.new)
        if current != meant and current != _default(cls, renamed.new):
            raise ValueError(
                f"{old}, {renamed.new}: {cls.__name__} got {old}={value!r} (the deprecated "
                f"spelling of {renamed.new}={meant!r}) and {renamed.new}={current!r}; set "
                f"{renamed.new} only"
            )
        warnings.warn(
            f"{cls.__name__}: the parameter {old!r} is deprecated and will be removed, it was "
            f"renamed {renamed.new!r}: pass {renamed.new}={meant!r} instead of {old}={value!r}",
            FutureWarning,
            stacklevel=stacklevel + 1,
        )


def upgrade_saved_params(cls: type, params: Mapping[str, Any]) -> dict[str, Any]:
    """Saved constructor parameters in today's spelling, for loading a saved model.

    A model saved before a rename holds the old name only: its value moves to the new name and
    the old one is reset to :data:`DEPRECATED`, so the loaded estimator behaves as the saved
    one did and warns about nothing. A model saved since holds both names, as ``get_params``
    gave them; they are kept, so that loading returns the parameters that were saved.

    Parameters
    ----------
    cls : type
        The saved estimator's class.
    params : mapping of str to object
        Its saved parameters.

    Returns
    -------
    dict of str to object
        The parameters to build it with.
    """
    upgraded = dict(params)
    for old, renamed in cls._renamed_params.items():
        value = upgraded.get(old, DEPRECATED)
        if renamed.new in upgraded or not _given(value):
            continue
        try:
            meant = renamed.translate(value)
        except (KeyError, TypeError):
            continue  # not a value of the old parameter: validating the parameters says so
        upgraded[renamed.new], upgraded[old] = meant, DEPRECATED
    return upgraded
