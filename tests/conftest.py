"""Shared fixtures; the helpers they use live in ``_support``."""

from __future__ import annotations

import numpy as np
import pytest
from _support import he_tiles


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def target_tiles() -> np.ndarray:
    return he_tiles(4, 64, seed=1)


@pytest.fixture
def source_tiles() -> np.ndarray:
    return he_tiles(3, 64, seed=2)
