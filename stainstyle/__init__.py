"""stainstyle: stain normalization and neural stain-style transfer for H&E tiles."""

from stainstyle._version import __version__
from stainstyle.base import BackgroundTileWarning, StainNormalizer, tile_status
from stainstyle.color import gray_normalize
from stainstyle.methods import GrayNormalizer

__all__ = [
    "BackgroundTileWarning",
    "GrayNormalizer",
    "StainNormalizer",
    "__version__",
    "gray_normalize",
    "tile_status",
]
