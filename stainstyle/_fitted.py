"""Declarations of fitted state: the attributes ``fit`` sets, with their shapes and ranges.

Each normalizer class declares its fitted attributes in a class attribute
``_fitted_attributes``, a dict from attribute name to one of the specifications below, e.g.

.. code-block:: python

    _fitted_attributes = {
        "target_means_": FittedArray((3,), maximum_abs=1e3),
        "target_stds_": FittedArray((3,), minimum=0, maximum=1e3),
    }

:mod:`stainstyle.hub` checks a saved model against the declaration before anything is built
(names must match exactly; each value must fit its specification), and constructors of already
fitted normalizers (:meth:`~stainstyle.methods.MacenkoNormalizer.from_reference`) check their
arguments with the same specifications. Two more class attributes complete a declaration:

``_fit_dependent_params``
    Constructor parameters the fitted state was computed with (a Reinhard model's colour
    ``space``): loading refuses to override them, since the statistics would no longer match.
``_machine_local_params``
    Constructor parameters that describe the machine or the run rather than the model (a
    checkpoint folder, a device): they are saved as their defaults and a loaded model gets the
    defaults unless the caller passes them.

A class whose fitted attributes must agree with each other (as many rows of statistics as
colour spaces) also defines ``_fitted_state_problem(self) -> str | None``; saving and loading
call it once every attribute is set.

Every specification is a :class:`FittedSpec`: it has a ``storage`` (where
:func:`stainstyle.hub.fitted_state` puts such a value: ``"fitted"`` for JSON values,
``"arrays"`` for ndarrays, ``"modules"`` for torch modules) and a ``problem(value)`` method that
returns None for a valid value, else a short description of what is wrong, for the caller to
prefix with the attribute or file it checked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Any, ClassVar

import numpy as np

#: Largest number of records a :class:`FittedRecords` value may hold.
MAX_RECORDS = 1_000_000


def _bounds_problem(
    low: float, high: float, minimum: float | None, maximum: float | None, exclusive: bool
) -> str | None:
    if minimum is not None and (low <= minimum if exclusive else low < minimum):
        relation = ">" if exclusive else ">="
        return f"expected values {relation} {minimum}, got a minimum of {low:.6g}"
    if maximum is not None and high > maximum:
        return f"expected values <= {maximum}, got a maximum of {high:.6g}"
    return None


class FittedSpec:
    """Base of the specifications: where a fitted value is saved, and what makes it invalid.

    Attributes
    ----------
    storage : {"fitted", "arrays", "modules"}
        Where :func:`stainstyle.hub.fitted_state` puts such a value.
    """

    storage: ClassVar[str]

    def problem(self, value: Any) -> str | None:
        """Describe what makes ``value`` invalid.

        Parameters
        ----------
        value : object
            Candidate attribute value, as fitted or as read from a saved model; for a
            :class:`FittedModule`, the module's ``state_dict`` (mapping of str to torch.Tensor).

        Returns
        -------
        str or None
            None when ``value`` is valid.
        """
        return self._problem(value)

    def _problem(self, value: Any) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class FittedArray(FittedSpec):
    """A fitted ``numpy.ndarray`` of fixed shape.

    Parameters
    ----------
    shape : tuple of int or None
        Exact shape; a None entry accepts any length along that axis (relations between
        attributes are checked by the class's ``_fitted_state_problem``).
    kinds : str, default="f"
        Accepted numpy dtype kinds (``"f"`` float, ``"iu"`` integer).
    minimum, maximum : float, optional
        Bounds of every element (inclusive, unless ``exclusive_minimum``).
    exclusive_minimum : bool, default=False
        Require elements strictly greater than ``minimum``.
    maximum_abs : float, optional
        Bound of every element's magnitude.
    rule : callable, optional
        Further check, ``rule(array) -> str | None`` (None when the array is valid).

    Notes
    -----
    Float arrays must be finite.
    """

    storage: ClassVar[str] = "arrays"

    shape: tuple[int | None, ...]
    kinds: str = "f"
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    maximum_abs: float | None = None
    rule: Callable[[np.ndarray], str | None] | None = None

    def _problem(self, value: Any) -> str | None:
        if not isinstance(value, np.ndarray):
            return f"expected an ndarray of shape {self.shape}, got {type(value).__name__}"
        if len(value.shape) != len(self.shape) or any(
            want is not None and got != want
            for got, want in zip(value.shape, self.shape, strict=True)
        ):
            expected = tuple("any" if n is None else n for n in self.shape)
            return f"expected shape {expected}, got {value.shape}"
        if value.dtype.kind not in self.kinds:
            return f"expected a dtype of kind {self.kinds!r}, got {value.dtype}"
        if value.size == 0:
            return None
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            return "expected finite values, got NaN or infinity"
        low, high = value.min().item(), value.max().item()
        problem = _bounds_problem(low, high, self.minimum, self.maximum, self.exclusive_minimum)
        if problem is None and self.maximum_abs is not None:
            largest = max(abs(low), abs(high))
            if largest > self.maximum_abs:
                problem = f"expected magnitudes <= {self.maximum_abs}, got {largest:.6g}"
        if problem is None and self.rule is not None:
            problem = self.rule(value)
        return problem


@dataclass(frozen=True)
class FittedInt(FittedSpec):
    """A fitted Python ``int`` (not a bool), saved as JSON.

    Parameters
    ----------
    minimum, maximum : int
        Inclusive bounds.
    power_of_two : bool, default=False
        Also require a power of two.
    """

    storage: ClassVar[str] = "fitted"

    minimum: int
    maximum: int
    power_of_two: bool = False

    def _problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected an int, got {type(value).__name__} {_short(value)}"
        if not self.minimum <= value <= self.maximum:
            return f"expected an int in [{self.minimum}, {self.maximum}], got {_short(value)}"
        if self.power_of_two and value & (value - 1):
            return f"expected a power of two, got {value}"
        return None


@dataclass(frozen=True)
class FittedFloat(FittedSpec):
    """A fitted finite Python ``float`` (an ``int`` is accepted, not a bool), saved as JSON.

    Parameters
    ----------
    minimum, maximum : float
        Inclusive bounds.
    """

    storage: ClassVar[str] = "fitted"

    minimum: float
    maximum: float

    def _problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected a number, got {type(value).__name__} {_short(value)}"
        if not (math.isfinite(value) and self.minimum <= value <= self.maximum):
            return f"expected a number in [{self.minimum}, {self.maximum}], got {_short(value)}"
        return None


@dataclass(frozen=True)
class FittedNames(FittedSpec):
    """A fitted tuple of distinct names from a fixed set, saved as JSON.

    Parameters
    ----------
    choices : tuple of str
        The names allowed.
    """

    storage: ClassVar[str] = "fitted"

    choices: tuple[str, ...]

    def _problem(self, value: Any) -> str | None:
        if not isinstance(value, tuple) or not value:
            return f"expected a non-empty tuple of names, got {type(value).__name__}"
        if any(name not in self.choices for name in value) or len(set(value)) != len(value):
            return f"expected distinct names among {self.choices}, got {_short(value)}"
        return None


@dataclass(frozen=True)
class FittedBool(FittedSpec):
    """A fitted ``bool``, saved as JSON."""

    storage: ClassVar[str] = "fitted"

    def _problem(self, value: Any) -> str | None:
        if not isinstance(value, bool):
            return f"expected a bool, got {type(value).__name__} {_short(value)}"
        return None


@dataclass(frozen=True)
class FittedRecords(FittedSpec):
    """A fitted list of records (dicts of str to number or None), saved as JSON.

    Training histories: the numbers may be non-finite (a PSNR of a perfect reconstruction is
    infinite) since nothing is computed from them.
    """

    storage: ClassVar[str] = "fitted"

    def _problem(self, value: Any) -> str | None:
        if not isinstance(value, list):
            return f"expected a list of records, got {type(value).__name__}"
        if len(value) > MAX_RECORDS:
            return f"expected at most {MAX_RECORDS} records, got {len(value)}"
        for i, record in enumerate(value):
            if not isinstance(record, dict):
                return f"record {i}: expected a dict, got {type(record).__name__}"
            for key, number in record.items():
                valid = number is None or (
                    isinstance(number, Real) and not isinstance(number, bool)
                )
                if not isinstance(key, str) or not valid:
                    return (
                        f"record {i}: expected str keys and numbers, got {key!r}: {_short(number)}"
                    )
        return None


@dataclass(frozen=True)
class FittedUnsaved(FittedSpec):
    """A fitted object that is not saved (a trained classifier): saved as null, loaded as None."""

    storage: ClassVar[str] = "fitted"

    def _problem(self, value: Any) -> str | None:
        if value is not None:
            return f"expected null (this attribute is never saved), got {_short(value)}"
        return None


@dataclass(frozen=True)
class FittedModule(FittedSpec):
    """A fitted ``torch.nn.Module``, rebuilt by the estimator's ``_build_modules()``.

    Its architecture is checked against the saved tensors by building it on the ``meta`` device;
    :meth:`problem` checks the values of a ``state_dict``.

    Parameters
    ----------
    maximum_abs : float, default=1e8
        Bound of the magnitude of every floating-point parameter and buffer; they must also be
        finite.
    """

    storage: ClassVar[str] = "modules"

    maximum_abs: float = 1e8

    def _problem(self, value: Mapping[str, Any]) -> str | None:
        import torch

        for key, tensor in value.items():
            if not torch.is_floating_point(tensor) or tensor.numel() == 0:
                continue
            if not bool(torch.isfinite(tensor).all()):
                return f"tensor {key!r}: expected finite values, got NaN or infinity"
            largest = float(tensor.abs().max())
            if largest > self.maximum_abs:
                return (
                    f"tensor {key!r}: expected magnitudes <= {self.maximum_abs}, got {largest:.6g}"
                )
        return None


#: Specification of the arrays and modules of a class that declares nothing (a custom class
#: registered with :func:`stainstyle.hub.register_normalizer`): finite floating-point values.
GENERIC_MODULE = FittedModule(maximum_abs=math.inf)


def generic_array_problem(value: Any) -> str | None:
    """Check an array or tensor of an undeclared attribute: floating-point values are finite.

    Parameters
    ----------
    value : ndarray, numpy scalar or torch.Tensor

    Returns
    -------
    str or None
        None when valid.
    """
    import torch

    if isinstance(value, torch.Tensor):
        finite = not torch.is_floating_point(value) or bool(torch.isfinite(value).all())
    else:
        array = np.asarray(value)
        finite = array.dtype.kind != "f" or bool(np.all(np.isfinite(array)))
    return None if finite else "expected finite values, got NaN or infinity"


# ------------------------------------------------------------------------------- rules
def columns_of_positive_norm(array: np.ndarray) -> str | None:
    """Rule: every column has a positive Euclidean norm (a stain vector, not zero).

    Parameters
    ----------
    array : ndarray of shape (M, K)

    Returns
    -------
    str or None
    """
    norms = np.linalg.norm(array, axis=0)
    if np.any(norms <= 1e-12):
        return f"expected columns of positive norm, got column norms {norms.tolist()}"
    return None


def positive_totals(limit: float = 2.0**53) -> Callable[[np.ndarray], str | None]:
    """Rule: every histogram (last axis) has a positive total, at most ``limit``.

    Parameters
    ----------
    limit : float, default=2**53
        Largest total, so that cumulative sums stay exact in float64.

    Returns
    -------
    callable
        The rule.
    """

    def rule(array: np.ndarray) -> str | None:
        totals = array.astype(np.float64).sum(axis=-1)
        if np.any(totals <= 0) or np.any(totals > limit):
            return f"expected histograms with totals in (0, {limit:.0f}], got {totals.tolist()}"
        return None

    return rule


def non_decreasing(array: np.ndarray) -> str | None:
    """Rule: values do not decrease along the last axis (ordered percentiles).

    Parameters
    ----------
    array : ndarray

    Returns
    -------
    str or None
    """
    if np.any(np.diff(array, axis=-1) < 0):
        return "expected values that do not decrease along the last axis"
    return None


def positive_entries(*indices: int) -> Callable[[np.ndarray], str | None]:
    """Rule: the entries at ``indices`` of a 1-d array are positive.

    Parameters
    ----------
    *indices : int

    Returns
    -------
    callable
        The rule.
    """

    def rule(array: np.ndarray) -> str | None:
        if np.any(array[list(indices)] <= 0):
            return f"expected positive entries at {list(indices)}, got {array.tolist()}"
        return None

    return rule


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long for repr
        return f"<{type(value).__name__} too long to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "FittedArray",
    "FittedBool",
    "FittedInt",
    "FittedModule",
    "FittedRecords",
    "FittedSpec",
    "FittedUnsaved",
    "columns_of_positive_norm",
    "generic_array_problem",
    "non_decreasing",
    "positive_entries",
    "positive_totals",
]
