"""Helpers shared by the tests: the real data under ``../shared/data`` and synthetic tiles.

A plain module (not ``conftest``) so that test files import it by a unique name.
"""

from __future__ import annotations

import contextlib
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

    The module is registered in ``sys.modules`` (dataclasses look their module up there).
    """
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


# ------------------------------------------------------------------------ saved model folders
def read_model_file(folder: Path) -> tuple[dict, dict]:
    """The configuration embedded in a saved model's ``model.safetensors``, and its tensors."""
    import json

    from safetensors import safe_open

    with safe_open(str(Path(folder) / "model.safetensors"), framework="pt") as f:
        config = json.loads(f.metadata()["stainstyle_config"])
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    return config, tensors


def write_model_file(folder: Path, config, tensors: dict, digest: bool = True) -> None:
    """Rewrite ``model.safetensors`` with this configuration (any JSON, or raw text) and tensors.

    With ``digest``, ``content_sha256`` is recomputed first, as a deliberate forger would, so
    that only the loader's checks of the content stand between the file and a loaded model.
    ``config.json`` is left as it was.
    """
    import json

    from safetensors.torch import save_file

    if not isinstance(config, str):
        if digest and isinstance(config, dict):
            from stainstyle.hub import _content_digest

            config = {**config, "content_sha256": _content_digest(config, tensors)}
        config = json.dumps(config)
    metadata = {"stainstyle_config": config}
    save_file(tensors, str(Path(folder) / "model.safetensors"), metadata=metadata)


def as_format1(folder: Path) -> None:
    """Turn a saved model folder into folder format 1 (configuration only in ``config.json``).

    ``config.json`` then records the SHA-256 of ``model.safetensors`` under ``weights_sha256``.
    """
    import hashlib
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    if config.get("stainstyle_format") == 1:
        return
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config.pop("content_sha256")
    config["stainstyle_format"] = 1
    weights = (folder / "model.safetensors").read_bytes()
    config["weights_sha256"] = hashlib.sha256(weights).hexdigest()
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))


def _virtual_memory_size() -> int | None:
    """This process's virtual memory size in bytes (``VmSize``), or None where unknown."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@contextlib.contextmanager
def memory_cap(extra_bytes: int = 1 << 30):
    """Limit the address space of this process to its current size plus ``extra_bytes``.

    Anything in the block that tries to allocate more fails with ``MemoryError`` (or torch's
    ``RuntimeError``) instead of growing until the kernel kills the test run. The soft limit is
    restored afterwards. Where the size cannot be read (not Linux), the block runs uncapped.
    """
    import resource

    size = _virtual_memory_size()
    if size is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = size + extra_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
