"""Classic stain normalization methods, each a :class:`~stainstyle.base.StainNormalizer`."""

from stainstyle.methods.gray import GrayNormalizer
from stainstyle.methods.histogram import HistogramSpecification
from stainstyle.methods.macenko import MacenkoNormalizer
from stainstyle.methods.reinhard import ReinhardNormalizer
from stainstyle.methods.wsics import WSICSNormalizer

#: Short method names (as used by the command line and benchmarks) to classes.
METHODS = {
    "gray": GrayNormalizer,
    "histogram": HistogramSpecification,
    "macenko": MacenkoNormalizer,
    "reinhard": ReinhardNormalizer,
    "wsics": WSICSNormalizer,
}

__all__ = [
    "METHODS",
    "GrayNormalizer",
    "HistogramSpecification",
    "MacenkoNormalizer",
    "ReinhardNormalizer",
    "WSICSNormalizer",
]
