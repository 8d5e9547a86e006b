"""Shared fixtures: real data under ``../shared/data`` (or ``$STAINSTYLE_DATA``) and tiles."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """Folder of the real H&E data: ``$STAINSTYLE_DATA`` or ``../shared/data``."""
    return Path(os.environ.get("STAINSTYLE_DATA", ROOT.parent / "shared" / "data"))


def require_data(*parts: str) -> Path:
    """Path below the data root; skip the test when absent, fail when STAINSTYLE_REQUIRE_DATA=1."""
    path = data_root().joinpath(*parts)
    if not path.exists():
        message = (
            f"real data not found at {path}; set STAINSTYLE_DATA or place the shared data at "
            f"{ROOT.parent / 'shared' / 'data'}"
        )
        if os.environ.get("STAINSTYLE_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
