"""Classic stain normalization methods, each a :class:`~stainstyle.base.StainNormalizer`."""

from stainstyle.methods.gray import GrayNormalizer
from stainstyle.methods.histogram import HistogramSpecification
from stainstyle.methods.macenko import MacenkoNormalizer
from stainstyle.methods.reinhard import ReinhardNormalizer
from stainstyle.methods.vahadane import VahadaneNormalizer
from stainstyle.methods.wsics import WSICSNormalizer
from stainstyle.registry import CLASSIC_METHODS, method_class

#: Classic methods by short name (command line, benchmarks), from the method registry
#: (:data:`stainstyle.registry.CLASSIC_METHODS`).
METHODS = {name: method_class(name) for name in CLASSIC_METHODS}

__all__ = [
    "METHODS",
    "GrayNormalizer",
    "HistogramSpecification",
    "MacenkoNormalizer",
    "ReinhardNormalizer",
    "VahadaneNormalizer",
    "WSICSNormalizer",
]
