"""The method registry: every normalizer and augmenter stainstyle can build by name or load.

Built-in methods are listed by short name (the command line's ``--method``, the benchmarks'
rosters, a model card's tag) with the import path of their class, imported on first use so that
the classic methods load without torch; so are the built-in stain augmenters
(:data:`BUILTIN_AUGMENTERS`). Custom classes join with :func:`register_normalizer` and
:func:`register_augmenter`. Loading a saved model (a normalizer or an augmenter) resolves the
class name in its configuration here and nowhere else: a saved file names a class, it never
says what to import.

This module imports no other stainstyle module; the classes are imported by path when asked for.
"""

from __future__ import annotations

import importlib

from stainstyle._version import __version__

#: Built-in methods: short name -> ``"module:Class"``, in the order tables list them.
BUILTIN_METHODS = {
    "gray": "stainstyle.methods.gray:GrayNormalizer",
    "reinhard": "stainstyle.methods.reinhard:ReinhardNormalizer",
    "macenko": "stainstyle.methods.macenko:MacenkoNormalizer",
    "vahadane": "stainstyle.methods.vahadane:VahadaneNormalizer",
    "histogram": "stainstyle.methods.histogram:HistogramSpecification",
    "wsics": "stainstyle.methods.wsics:WSICSNormalizer",
    "sst": "stainstyle.sst.estimator:StainStyleTransfer",
}

#: Built-in stain augmenters: short name -> ``"module:Class"``.
BUILTIN_AUGMENTERS = {
    "hed": "stainstyle.augment.hed:HEDJitter",
    "stain": "stainstyle.augment.stains:StainAugmenter",
    "randstainna": "stainstyle.augment.randstainna:RandStainNA",
}

#: Built-in methods that train a neural network (need torch, and minutes to fit).
NEURAL_METHODS = frozenset({"sst"})

#: Built-in methods that do not need torch: the classic stain normalization methods.
CLASSIC_METHODS = tuple(name for name in BUILTIN_METHODS if name not in NEURAL_METHODS)

_BUILTIN = {**BUILTIN_METHODS, **BUILTIN_AUGMENTERS}
_BUILTIN_BY_CLASS = {path.split(":")[1]: name for name, path in _BUILTIN.items()}
_REGISTERED: dict[str, type] = {}


def _register(cls: type, kind: str, methods: tuple[str, ...]) -> type:
    """Register ``cls`` by its name if it has the ``methods`` of a ``kind``."""
    if not (isinstance(cls, type) and all(callable(getattr(cls, m, None)) for m in methods)):
        raise TypeError(f"cls: expected a {kind} subclass, got {cls!r}")
    name = cls.__name__
    taken = _REGISTERED.get(name)
    if name in _BUILTIN_BY_CLASS or (taken is not None and taken is not cls):
        raise ValueError(f"cls: a class named {name!r} is already registered")
    _REGISTERED[name] = cls
    return cls


def register_normalizer(cls: type) -> type:
    """Make a custom normalizer class loadable by :func:`stainstyle.load` and ``from_pretrained``.

    Loading instantiates only registered classes; ``config.json`` names a class, it never says
    what to import. Built-in methods are registered already. Usable as a class decorator.

    Parameters
    ----------
    cls : type
        A subclass of :class:`~stainstyle.base.StainNormalizer`.

    Returns
    -------
    type
        ``cls``, unchanged.

    Raises
    ------
    TypeError
        If ``cls`` is not a normalizer class (a class with ``fit``, ``transform`` and
        ``save_pretrained``).
    ValueError
        If another class of the same name is registered or built in.
    """
    return _register(cls, "StainNormalizer", ("fit", "transform", "save_pretrained"))


def register_augmenter(cls: type) -> type:
    """Make a custom augmenter class loadable by :func:`stainstyle.load` and ``from_pretrained``.

    Built-in augmenters are registered already. Usable as a class decorator.

    Parameters
    ----------
    cls : type
        A subclass of :class:`~stainstyle.augment._common.Augmenter`.

    Returns
    -------
    type
        ``cls``, unchanged.

    Raises
    ------
    TypeError
        If ``cls`` is not an augmenter class (a class with ``fit``, ``forward`` and
        ``save_pretrained``).
    ValueError
        If another class of the same name is registered or built in.
    """
    return _register(cls, "Augmenter", ("fit", "forward", "save_pretrained"))


def _import_builtin(name: str) -> type:
    module_name, class_name = _BUILTIN[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(
            f"method {name!r} ({class_name}) is not available in this installation of "
            f"stainstyle {__version__}: {err}"
        ) from err
    return getattr(module, class_name)


def method_class(method: str) -> type:
    """The estimator class of a built-in method.

    Parameters
    ----------
    method : str
        A key of :data:`BUILTIN_METHODS`, e.g. ``"macenko"``.

    Returns
    -------
    type
        The class, imported on first use.

    Raises
    ------
    ValueError
        If ``method`` is not a built-in method.
    ImportError
        If its module is not available.
    """
    if method not in BUILTIN_METHODS:
        raise ValueError(f"method: expected one of {sorted(BUILTIN_METHODS)}, got {method!r}")
    return _import_builtin(method)


def make_normalizer(method: str, **params):
    """A new, unfitted estimator of a built-in method.

    Parameters
    ----------
    method : str
        A key of :data:`BUILTIN_METHODS`.
    **params
        Constructor parameters (e.g. a benchmark's overrides).

    Returns
    -------
    StainNormalizer

    Raises
    ------
    ValueError
        If ``method`` is unknown or a parameter is not one of the class's.
    """
    return _instance(method_class(method), params)


def augmenter_class(name: str) -> type:
    """The class of a built-in augmenter.

    Parameters
    ----------
    name : str
        A key of :data:`BUILTIN_AUGMENTERS`, e.g. ``"randstainna"``.

    Returns
    -------
    type
        The class, imported on first use.

    Raises
    ------
    ValueError
        If ``name`` is not a built-in augmenter.
    """
    if name not in BUILTIN_AUGMENTERS:
        raise ValueError(f"augmenter: expected one of {sorted(BUILTIN_AUGMENTERS)}, got {name!r}")
    return _import_builtin(name)


def make_augmenter(name: str, **params):
    """A new, unfitted built-in augmenter.

    Parameters
    ----------
    name : str
        A key of :data:`BUILTIN_AUGMENTERS`.
    **params
        Constructor parameters.

    Returns
    -------
    Augmenter

    Raises
    ------
    ValueError
        If ``name`` is unknown or a parameter is not one of the class's.
    """
    return _instance(augmenter_class(name), params)


def _instance(cls: type, params: dict):
    """``cls(**params)``, refusing parameters the class does not take, by name."""
    known = cls().get_params(deep=False)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(
            f"params: {unknown} not parameters of {cls.__name__}; it takes {sorted(known)}"
        )
    return cls(**params)


def normalizer_class(name: str) -> type:
    """Resolve a class name recorded in a saved configuration through the registry.

    Normalizers and augmenters alike: any class a saved model may name.

    Parameters
    ----------
    name : str
        Class name, e.g. ``"ReinhardNormalizer"`` or ``"RandStainNA"``.

    Returns
    -------
    type

    Raises
    ------
    ValueError
        If no built-in or registered class has that name.
    """
    if isinstance(name, str) and name in _REGISTERED:
        return _REGISTERED[name]
    if isinstance(name, str) and name in _BUILTIN_BY_CLASS:
        return _import_builtin(_BUILTIN_BY_CLASS[name])
    known = sorted({*_BUILTIN_BY_CLASS, *_REGISTERED})
    raise ValueError(
        f"unknown normalizer class {name!r}; known classes: {known}. Classes are never imported "
        "from a saved file; register a custom class with stainstyle.register_normalizer (or "
        "register_augmenter)"
    )


def method_name(cls: type) -> str:
    """Short name of a class: its built-in key (a method or an augmenter), else its lowered name.

    Parameters
    ----------
    cls : type

    Returns
    -------
    str
    """
    return _BUILTIN_BY_CLASS.get(cls.__name__, cls.__name__.lower())
