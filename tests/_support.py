"""Helpers shared by the tests: the real data under ``../shared/data`` and synthetic tiles.

A plain module (not ``conftest``) so that test files import it by a unique name.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """Folder of the real H&E data: ``$STAINSTYLE_DATA`` or ``../shared/data``."""
    return Path(os.environ.get("STAINSTYLE_DATA", ROOT.parent / "shared" / "data"))


def skips_fail() -> bool:
    """Whether a test that cannot run fails instead of skipping.

    True under ``STAINSTYLE_REQUIRE_DATA=1`` or ``CI=true`` (any case): there, every test but
    the GPU-only ones must run, so missing data, a missing optional module or a module that
    fails to import is a failure.
    """
    return (
        os.environ.get("STAINSTYLE_REQUIRE_DATA") == "1"
        or os.environ.get("CI", "").lower() == "true"
    )


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the test (or the whole module, at import time) with ``reason``; fail in CI.

    The one way for a test to give up other than on a missing GPU (see :func:`skips_fail`).
    """
    if skips_fail():
        pytest.fail(f"{reason} (a failure, not a skip, under CI=true or STAINSTYLE_REQUIRE_DATA=1)")
    pytest.skip(reason, allow_module_level=True)


def require_data(*parts: str) -> Path:
    """Path below the data root; skip the test when absent, fail in CI (:func:`skip_or_fail`)."""
    path = data_root().joinpath(*parts)
    if not path.exists():
        skip_or_fail(
            f"real data not found at {path}; set STAINSTYLE_DATA or place the shared data at "
            f"{ROOT.parent / 'shared' / 'data'}"
        )
    return path


def require_module(name: str, extra: str | None = None) -> ModuleType:
    """Import module ``name``; skip when it cannot be imported, fail in CI (:func:`skip_or_fail`).

    ``extra`` names the optional dependency group that installs it, for the message. Any
    ``ImportError`` counts, so a module that is installed but broken is reported too.
    """
    try:
        return importlib.import_module(name)
    except ImportError as error:
        hint = f"; install the {extra!r} extra: pip install -e '.[{extra}]'" if extra else ""
        skip_or_fail(f"{name} could not be imported ({error}){hint}")


def load_script(path: Path, name: str | None = None) -> ModuleType:
    """Import a script (a benchmark, a docs helper) by path, as module ``name`` (``path.stem``).

    The module is registered in ``sys.modules`` (dataclasses look their module up there), and
    the script's folder is put on ``sys.path`` as ``python PATH`` does, so that it imports its
    sibling modules (the benchmarks' ``_common``). A dotted ``name`` such as
    ``"benchmarks.table1"`` is the one mutation testing gives the file's functions.
    """
    name = name or path.stem
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
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


def interruptible() -> None:
    """``preexec_fn`` of a command a test interrupts with SIGINT, as Ctrl-C in a terminal would.

    A test suite started in the background (``cmd &``, ``nohup``) runs with SIGINT ignored, and
    its subprocesses inherit that: Python then installs no Ctrl-C handler and the signal does
    nothing. The command gets SIGINT's default disposition back, as in a terminal.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


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


#: Tiles no method can normalize, by name: every method passes them through with a warning.
DEGENERATE_TILES = {
    "white": np.full((32, 32, 3), 255, np.uint8),
    "black": np.zeros((32, 32, 3), np.uint8),
    "single-colour": np.full((32, 32, 3), (150, 60, 160), np.uint8),
    "1x1": np.full((1, 1, 3), 90, np.uint8),
}


def tile_batches(
    max_tiles: int = 3,
    max_side: int = 48,
    source_size: int = 64,
    extra_kinds: dict | None = None,
):
    """Hypothesis strategy of uint8 batches ``(n, H, W, 3)`` of any size and content.

    Each batch is one kind: ``"random"`` (uniform noise), ``"smooth"`` (one flat colour per
    tile) or ``"he"`` (:func:`he_tiles` of ``source_size`` pixels, cropped to ``H x W``), or a
    kind of ``extra_kinds``, ``{name: make(n, source_size, seed) -> (n, S, S, 3)}``, cropped the
    same way. ``n`` is at most ``max_tiles`` and ``H``, ``W`` at most ``max_side``.
    """
    from hypothesis import strategies as st

    makers = {"he": lambda n, size, seed: he_tiles(n, size, seed=seed), **(extra_kinds or {})}

    @st.composite
    def batches(draw) -> np.ndarray:
        n = draw(st.integers(1, max_tiles))
        height, width = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
        seed = draw(st.integers(0, 2**32 - 1))
        kind = draw(st.sampled_from(["random", "smooth", *makers]))
        rng = np.random.default_rng(seed)
        if kind == "random":
            return rng.integers(0, 256, (n, height, width, 3), dtype=np.uint8)
        if kind == "smooth":
            colours = rng.integers(0, 256, (n, 1, 1, 3), dtype=np.uint8)
            return np.broadcast_to(colours, (n, height, width, 3)).copy()
        return makers[kind](n, source_size, seed % 1000)[:, :height, :width]

    return batches()


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG file built by hand: IHDR claiming ``width x height``, one IDAT of ``rows``, IEND.

    ``rows`` are the raw scanlines (each with its filter byte) and need not match the size the
    header claims, so a tiny file can claim a huge image. CRCs are valid.
    """
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


#: Hostile image files of :func:`write_hostile_files` that no reader may accept, by file name.
UNREADABLE_FILES = (
    "huge 100000x100000.png",
    "empty.png",
    "truncated.png",
    "truncated.jpg",
    "text.png",
    "float out of range.tif",
    "float nan.tif",
    "int32.tif",
    "three pages.tif",
    "animated.png",
)

#: Entries of :func:`write_hostile_files` that are not regular files, by name.
SPECIAL_ENTRIES = ("fifo.png", "dangling.png", "loop-a.png", "loop-b.png", "sub/up")


def write_hostile_files(folder: Path, size: int = 32) -> dict[str, np.ndarray | None]:
    """Write hostile and unusual image files into ``folder``, with what a reader should return.

    Returns ``{relative name: expected uint8 RGB (H, W, 3), or None}``: None for the files of
    :data:`UNREADABLE_FILES` and the entries of :data:`SPECIAL_ENTRIES` (a FIFO, a dangling
    symbolic link, a loop of two file links, and ``sub/up``, a link to an enclosing folder).
    The readable ones are at least ``size`` pixels on a side: 16-bit gray and RGB PNGs, a
    16-bit RGB TIFF, a float TIFF in [0, 1], a JPEG with EXIF orientation 6, an RGBA PNG with
    partial transparency, a palette PNG, and PNGs with unicode and space names.
    """
    import cv2
    from PIL import Image, ImageOps

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    expected: dict[str, np.ndarray | None] = {}
    tile = he_tiles(1, size, seed=11)[0]

    # 16 bits: values whose rounding (value / 257) differs from dropping the low byte.
    deep = (rng.integers(0, 255, (size, size, 3)) * 257 + 200).astype(np.uint16)
    as_8_bits = ((deep.astype(np.uint32) + 128) // 257).astype(np.uint8)
    cv2.imwrite(str(folder / "rgb 16-bit.png"), deep[..., ::-1])
    expected["rgb 16-bit.png"] = as_8_bits
    cv2.imwrite(str(folder / "rgb 16-bit.tif"), deep[..., ::-1])
    expected["rgb 16-bit.tif"] = as_8_bits
    cv2.imwrite(str(folder / "gray 16-bit.png"), deep[..., 0])
    expected["gray 16-bit.png"] = np.repeat(as_8_bits[..., :1], 3, axis=-1)

    ramp = np.linspace(0.0, 1.0, size * size, dtype=np.float32).reshape(size, size)
    Image.fromarray(ramp, mode="F").save(folder / "float.tif")
    expected["float.tif"] = np.repeat(np.rint(ramp * 255.0).astype(np.uint8)[..., None], 3, -1)
    Image.fromarray(ramp * 3, mode="F").save(folder / "float out of range.tif")
    with_nan = ramp.copy()
    with_nan[0, 0] = np.nan
    Image.fromarray(with_nan, mode="F").save(folder / "float nan.tif")
    Image.fromarray(np.full((size, size), 100_000, np.int32), mode="I").save(folder / "int32.tif")

    # EXIF orientation 6: stored 2 x 1 blocks, displayed rotated 90 degrees clockwise.
    stored = np.zeros((size, 2 * size, 3), np.uint8)
    stored[:, :size] = (200, 40, 40)
    stored[:, size:] = (40, 40, 200)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(folder / "exif rotated.jpg", exif=exif.tobytes(), quality=100)
    with Image.open(folder / "exif rotated.jpg") as image:  # Pillow's own transpose as reference
        expected["exif rotated.jpg"] = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    assert expected["exif rotated.jpg"].shape == (2 * size, size, 3)

    rgba = np.dstack([tile, np.full((size, size), 255, np.uint8)])
    rgba[: size // 2, :, 3] = 0  # the top half transparent: glass
    rgba[size // 2 :, : size // 2, 3] = 128
    Image.fromarray(rgba, mode="RGBA").save(folder / "transparent.png")
    a = rgba[..., 3:].astype(np.uint32)
    expected["transparent.png"] = (
        (tile.astype(np.uint32) * a + 255 * (255 - a) + 127) // 255
    ).astype(np.uint8)

    palette = Image.fromarray(tile).quantize(16)
    palette.save(folder / "palette.png")
    expected["palette.png"] = np.asarray(palette.convert("RGB"))

    for name in ("ünïcødé тайл.png", "name with spaces.png"):
        Image.fromarray(tile).save(folder / name)
        expected[name] = tile

    # Unreadable files.
    (folder / "huge 100000x100000.png").write_bytes(png_bytes(100_000, 100_000, 8, 2, b"\0" * 64))
    (folder / "empty.png").write_bytes(b"")
    good = folder / "name with spaces.png"
    data = good.read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    Image.fromarray(tile).save(folder / "whole.jpg", quality=90)
    data = (folder / "whole.jpg").read_bytes()
    (folder / "whole.jpg").unlink()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "text.png").write_text("this is not an image\n")
    pages = [Image.fromarray(tile[..., c]) for c in range(3)]
    pages[0].save(folder / "three pages.tif", save_all=True, append_images=pages[1:])
    frames = [Image.fromarray(tile), Image.fromarray(255 - tile)]
    frames[0].save(folder / "animated.png", save_all=True, append_images=frames[1:])
    for name in UNREADABLE_FILES:
        expected[name] = None

    # Entries that are not regular files.
    os.mkfifo(folder / "fifo.png")
    os.symlink("no such target.png", folder / "dangling.png")
    os.symlink("loop-b.png", folder / "loop-a.png")
    os.symlink("loop-a.png", folder / "loop-b.png")
    (folder / "sub").mkdir()
    os.symlink("..", folder / "sub" / "up")
    for name in SPECIAL_ENTRIES:
        expected[name] = None
    return expected


def tree_digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every regular file below ``folder`` and the target of every link in it.

    FIFOs and other special files are listed by kind, never opened.
    """
    import hashlib
    import stat

    digest = {}
    for directory, folders, names in os.walk(folder):
        for name in folders + names:
            path = Path(directory) / name
            relative = path.relative_to(folder).as_posix()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                digest[relative] = "link to " + os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                digest[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif not stat.S_ISDIR(info.st_mode):
                digest[relative] = f"special {stat.S_IFMT(info.st_mode):o}"
    return digest


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
            from stainstyle._persistence.capture import content_digest

            config = {**config, "content_sha256": content_digest(config, tensors)}
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


def traced_peak(function: Callable[[], Any]) -> tuple[Any, int]:
    """``function()``'s result and the peak bytes Python and NumPy allocated while it ran.

    NumPy reports its array buffers to ``tracemalloc`` (OpenCV's outputs are NumPy arrays too),
    so the peak bounds the temporaries a call makes, beyond what existed before it.
    """
    import tracemalloc

    tracemalloc.start()
    try:
        result = function()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


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
