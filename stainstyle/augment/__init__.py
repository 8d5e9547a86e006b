"""Stain augmentation for training: HED jitter, stain-matrix jitter and RandStainNA."""

from stainstyle.augment.hed import HED_LIGHT, HED_STRONG, HEDJitter, hed_jitter
from stainstyle.augment.stains import StainAugmenter, stain_jitter

__all__ = ["HED_LIGHT", "HED_STRONG", "HEDJitter", "StainAugmenter", "hed_jitter", "stain_jitter"]
