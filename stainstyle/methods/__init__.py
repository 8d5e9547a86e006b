"""Classic stain normalization methods, each a :class:`~stainstyle.base.StainNormalizer`."""

from stainstyle.methods.gray import GrayNormalizer

__all__ = ["GrayNormalizer"]
