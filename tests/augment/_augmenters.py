"""Augmenters for the tests, built by name at a given strength."""

from __future__ import annotations

import numpy as np
from _support import he_tiles

from stainstyle import MacenkoNormalizer, VahadaneNormalizer
from stainstyle.augment import HEDJitter, RandStainNA, StainAugmenter

#: Tiles the fitted augmenters are fitted on.
FIT_TILES = he_tiles(6, 64, seed=3)

NAMES = ["hed", "stains-macenko", "stains-vahadane", "randstainna"]

_FITTED = {
    "stains-macenko": MacenkoNormalizer().fit(FIT_TILES),
    "stains-vahadane": VahadaneNormalizer().fit(FIT_TILES),
}
_RANDSTAINNA = RandStainNA().fit(FIT_TILES)


def make(name: str, strength: float = 0.2, random_state=0):
    """The augmenter ``name`` at ``strength``; strength 0 is each augmenter's identity setting.

    RandStainNA's strength is ``1 + std_hyper`` (its spread), with ``p = 0`` at strength 0.
    """
    if name == "hed":
        return HEDJitter(sigma=strength, random_state=random_state)
    if name.startswith("stains"):
        augmenter = StainAugmenter(
            _FITTED[name], sigma1=strength, sigma2=strength, random_state=random_state
        )
        return augmenter.fit()
    augmenter = RandStainNA(
        std_hyper=strength - 1.0, p=1.0 if strength > 0 else 0.0, random_state=random_state
    )
    for attribute in ("spaces_", "loc_", "scale_", "n_tiles_"):
        setattr(augmenter, attribute, getattr(_RANDSTAINNA, attribute))
    return augmenter


def tissue_mean(tiles: np.ndarray) -> np.ndarray:
    """Mean RGB of each tile, (n, 3) float64."""
    return np.asarray(tiles, dtype=np.float64).reshape(len(tiles), -1, 3).mean(axis=1)
