"""Stain augmentation for training: HED jitter, stain-matrix jitter and RandStainNA.

Each augmenter is a ``torch.nn.Module`` that also takes numpy arrays: see
:class:`~stainstyle.augment._common.Augmenter` for inputs, outputs, random streams and
``DataLoader`` workers.
"""

from stainstyle.augment.hed import HED_LIGHT, HED_STRONG, HEDJitter, hed_jitter
from stainstyle.augment.randstainna import RandStainNA, reinhard_to
from stainstyle.augment.stains import StainAugmenter, stain_jitter

__all__ = [
    "HED_LIGHT",
    "HED_STRONG",
    "HEDJitter",
    "RandStainNA",
    "StainAugmenter",
    "hed_jitter",
    "reinhard_to",
    "stain_jitter",
]
