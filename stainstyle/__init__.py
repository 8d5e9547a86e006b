"""stainstyle: stain normalization and neural stain-style transfer for H&E tiles.

Every method is a scikit-learn transformer: ``fit(target_tiles)`` learns the target stain style
and ``transform(tiles)`` maps tiles into it::

    from stainstyle import StainStyleTransfer
    normalized = StainStyleTransfer().fit(radboud_tiles).transform(utrecht_tiles)

The torch-based names (:class:`StainStyleTransfer`, :class:`TileClassifier`, the augmenters
:class:`HEDJitter`, :class:`StainAugmenter`, :class:`RandStainNA`) and :func:`load`
are imported on first use, so that the classic methods load without importing torch.
"""

from importlib import import_module
from typing import Any

from stainstyle._version import __version__
from stainstyle.base import BackgroundTileWarning, StainNormalizer, tile_status
from stainstyle.color import gray_normalize
from stainstyle.methods import (
    METHODS,
    GrayNormalizer,
    HistogramSpecification,
    MacenkoNormalizer,
    ReinhardNormalizer,
    VahadaneNormalizer,
    WSICSNormalizer,
)
from stainstyle.registry import register_augmenter, register_normalizer
from stainstyle.separation import reconstruct, ruifrok_concentrations, separate_stains
from stainstyle.sources import SourceStatistics

_LAZY = {
    "StainStyleTransfer": "stainstyle.sst.estimator",
    "TileClassifier": "stainstyle.sst.classifier",
    "load": "stainstyle.hub",
    "HEDJitter": "stainstyle.augment",
    "RandStainNA": "stainstyle.augment",
    "StainAugmenter": "stainstyle.augment",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'stainstyle' has no attribute {name!r}")


__all__ = [
    "METHODS",
    "BackgroundTileWarning",
    "GrayNormalizer",
    "HEDJitter",
    "HistogramSpecification",
    "MacenkoNormalizer",
    "RandStainNA",
    "ReinhardNormalizer",
    "SourceStatistics",
    "StainAugmenter",
    "StainNormalizer",
    "StainStyleTransfer",
    "TileClassifier",
    "VahadaneNormalizer",
    "WSICSNormalizer",
    "__version__",
    "gray_normalize",
    "load",
    "reconstruct",
    "register_augmenter",
    "register_normalizer",
    "ruifrok_concentrations",
    "separate_stains",
    "tile_status",
]
