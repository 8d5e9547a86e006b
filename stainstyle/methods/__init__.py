"""Classic stain normalization methods, each a :class:`~stainstyle.base.StainNormalizer`."""

from stainstyle.hub import BUILTIN_METHODS, method_class
from stainstyle.methods.gray import GrayNormalizer
from stainstyle.methods.histogram import HistogramSpecification
from stainstyle.methods.macenko import MacenkoNormalizer
from stainstyle.methods.reinhard import ReinhardNormalizer
from stainstyle.methods.wsics import WSICSNormalizer

#: Classic methods by short name (command line, benchmarks): the built-in registry of
#: :data:`stainstyle.hub.BUILTIN_METHODS` without the neural method.
METHODS = {name: method_class(name) for name in BUILTIN_METHODS if name != "sst"}

__all__ = [
    "METHODS",
    "GrayNormalizer",
    "HistogramSpecification",
    "MacenkoNormalizer",
    "ReinhardNormalizer",
    "WSICSNormalizer",
]
