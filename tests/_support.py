"""Helpers shared by the tests: the real data under ``../shared/data`` and synthetic tiles.

A plain module (not ``conftest``) so that test files import it by a unique name.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

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


def load_script(path: Path) -> ModuleType:
    """Import a script (a benchmark, a docs helper) by path, as module ``path.stem``.

    The module is registered in ``sys.modules`` (dataclasses look their module up there), and
    the script's folder is put on ``sys.path`` as ``python PATH`` does, so that it imports its
    sibling modules (the benchmarks' ``_common``).
    """
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def run_python(args: list, cwd: Path) -> str:
    """Run ``python ARGS`` in ``cwd`` on one thread; assert that it succeeds, return its stdout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NO_MKDOCS_2_WARNING": "1"}
    completed = subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-5000:]
    return completed.stdout


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def he_tiles(n: int = 4, size: int = 64, seed: int = 0) -> np.ndarray:
    """Small H&E-like tiles by Beer-Lambert: smooth random H and E concentration fields.

    Returns uint8 (n, size, size, 3), each tile with tissue, some background and both stains.
    """
    import cv2

    rng = np.random.default_rng(seed)
    stains = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]])  # Ruifrok & Johnston H, E
    fields = rng.random((n, 2, size // 8, size // 8))
    tiles = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        h = cv2.resize(fields[i, 0], (size, size), interpolation=cv2.INTER_CUBIC) * 1.2
        e = cv2.resize(fields[i, 1], (size, size), interpolation=cv2.INTER_CUBIC) * 0.8
        h[: size // 4] = 0.0  # a band of background
        e[: size // 4] = 0.0
        od = np.clip(h, 0, None)[..., None] * stains[0] + np.clip(e, 0, None)[..., None] * stains[1]
        noise = rng.normal(0, 2, (size, size, 3))
        tiles[i] = np.clip(np.rint(240 * np.exp(-od) + noise), 0, 255).astype(np.uint8)
    return tiles
