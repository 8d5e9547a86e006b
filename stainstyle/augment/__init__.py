"""Stain augmentation for training: HED jitter, stain-matrix jitter and RandStainNA."""

from stainstyle.augment.hed import HED_LIGHT, HED_STRONG, HEDJitter, hed_jitter

__all__ = ["HED_LIGHT", "HED_STRONG", "HEDJitter", "hed_jitter"]
