"""stainstyle: stain normalization and neural stain-style transfer for H&E tiles.

Every method is a scikit-learn transformer: ``fit(target_tiles)`` learns the target stain style
and ``transform(tiles)`` maps tiles into it.
"""

from stainstyle._version import __version__
from stainstyle.base import BackgroundTileWarning, StainNormalizer, tile_status
from stainstyle.color import gray_normalize
from stainstyle.methods import (
    METHODS,
    GrayNormalizer,
    HistogramSpecification,
    MacenkoNormalizer,
    ReinhardNormalizer,
)

__all__ = [
    "METHODS",
    "BackgroundTileWarning",
    "GrayNormalizer",
    "HistogramSpecification",
    "MacenkoNormalizer",
    "ReinhardNormalizer",
    "StainNormalizer",
    "__version__",
    "gray_normalize",
    "tile_status",
]
