"""Throughput of every stainstyle method next to the peer libraries, in one run.

For each method: fit throughput on a batch of 256 tiles of 256x256, and transform throughput on
that batch and on one 2048x2048 image, in megapixels per second (best of ``--repeats`` runs),
with the ratio to the fastest peer that implements the same method. Each method with torch
kernels also gets a "stainstyle torch, CPU" row: the same calls on CPU tensors (the fallback of
a machine without a GPU), with its ratio to the numpy row. Then the batch throughput
of each augmenter (``--augmenters``: HED jitter, stain-matrix jitter, RandStainNA; numpy and a
torch CPU tensor) beside the peers' augmenters that are installed (albumentations ``HEStain``,
StainTools ``StainAugmentor``, torchstain's Macenko augmentor). Peers are optional (the
``bench`` extra; staintools needs ``pip install --no-deps staintools spams-bin matplotlib``,
torch-staintools ``pip install --no-deps torch-staintools`` and ``kornia~=0.8.2``) and skipped
when missing. Vahadane's peers are staintools (SPAMS, one second of dictionary learning per
estimate) and torch-staintools (batched, ``torch.compile``; on the CPU here).

Tiles come from the real H&E tiles in ``../shared/data`` (or ``$STAINSTYLE_DATA``) when present,
otherwise from the built-in synthetic generator.

    python benchmarks/speed.py --out results

With ``--memory``, the peak memory of ``transform`` instead: for each method and image side
(``--memory-sizes``, 4096 and 8192 by default), a fresh Python process fits the method on eight
256x256 target tiles, builds one large image as a mosaic of the source tiles, and transforms it.
The report gives the peak resident memory during ``transform`` above the resident memory just
before it (the output image included), in MB and as a multiple of the image's ``H * W * 3``
bytes, and the seconds. On Linux the peak is the kernel's high-water mark (``VmHWM``), reset
just before the call; elsewhere ``ru_maxrss``, which may include earlier peaks. Stain-style
transfer is measured only when named in ``--memory-methods``.

    python benchmarks/speed.py --memory --out results
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _common import (
    ROOT,
    Timer,
    best_time,
    configure_logging,
    data_root,
    device_info,
    frozen_config,
    markdown_table,
    memory_status,
    method_roster,
    peak_memory_bytes,
    reset_peak_memory,
    write_json,
    write_text,
)

from stainstyle.registry import CLASSIC_METHODS

logger = logging.getLogger("speed")
N_TILES, TILE, LARGE = 256, 256, 2048

#: The implementation name of our methods run on CPU torch tensors (their torch kernels).
TORCH_CPU = "stainstyle torch, CPU"

#: A timed run longer than this many seconds is not repeated.
ENOUGH_SECONDS = 10.0

#: The three throughputs of a row, in table order, with their column titles.
THROUGHPUTS = {
    "fit_batch": "fit, 256x256 tiles",
    "transform_batch": "transform, 256x256 tiles",
    "transform_image": "transform, 2048x2048 image",
}


@dataclass(frozen=True)
class Config:
    """One run, built once from the command line (see ``--help`` for each field)."""

    out: Path
    repeats: int
    methods: tuple[str, ...]
    memory_sizes: tuple[int, ...]
    memory_methods: tuple[str, ...]
    memory_timeout: float
    augmenters: tuple[str, ...]


# ------------------------------------------------------------------------------------- data
def load_images() -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(target tiles (8, 256, 256, 3), source tiles (256, 256, 256, 3), large image, origin)."""
    target, pool, origin = load_tiles()
    variants = [np.rot90(t, k) for k in range(4) for t in pool]
    source = np.ascontiguousarray(np.stack((variants * 4)[:N_TILES]))
    return target, source, mosaic(source, LARGE), origin


def mosaic(tiles: np.ndarray | list[np.ndarray], side: int) -> np.ndarray:
    """A ``side`` x ``side`` image of 256x256 tiles in row-major order, repeated as needed."""
    image = np.empty((side, side, 3), dtype=np.uint8)
    k = 0
    for top in range(0, side, TILE):
        for left in range(0, side, TILE):
            tile = tiles[k % len(tiles)]
            image[top : top + TILE, left : left + TILE] = tile[: side - top, : side - left]
            k += 1
    return image


def load_tiles() -> tuple[np.ndarray, list[np.ndarray], str]:
    """(target tiles (8, 256, 256, 3), pool of 256x256 source tiles, origin)."""
    folder = data_root() / "camelyon17_tiles"
    if folder.exists():
        from stainstyle.data.images import read_image

        by_centre: dict[str, list[np.ndarray]] = {}
        for path in sorted(folder.rglob("*.png")):
            by_centre.setdefault(path.parent.name, []).append(read_image(path))
        target = np.stack([q for img in by_centre.pop(sorted(by_centre)[0]) for q in _quads(img)])
        pool = [q for imgs in by_centre.values() for img in imgs for q in _quads(img)]
        origin = f"CAMELYON17 tiles from {folder}"
    else:
        from stainstyle.data.synthetic import make_tiles

        target, _ = make_tiles(8, "radboud", size=TILE, seed=1)
        pool = list(make_tiles(64, "utrecht", size=TILE, seed=2)[0])
        origin = "built-in synthetic tiles"
    return target[:8], pool, origin


def _quads(image: np.ndarray) -> list[np.ndarray]:
    h, w = image.shape[0] // TILE, image.shape[1] // TILE
    return [
        image[i * TILE : (i + 1) * TILE, j * TILE : (j + 1) * TILE]
        for i in range(h)
        for j in range(w)
    ]


# ----------------------------------------------------------------------------- implementations
def batched(fit: Callable, transform: Callable) -> dict:
    """An implementation that takes batches and images alike: ``transform(model, x)``."""
    return {"fit": fit, "batch": transform, "image": transform}


def ours(make: Callable[[], object]) -> dict:
    """A stainstyle method from its factory."""
    return batched(lambda target: make().fit(target), lambda model, x: model.transform(x))


def ours_torch(make: Callable[[], object]) -> dict:
    """A stainstyle method on CPU torch tensors: its torch kernels, the CPU-only fallback."""
    import torch

    def tensor(x):
        return torch.from_numpy(np.ascontiguousarray(x))  # shares the memory: not timed work

    return batched(
        lambda target: make().fit(tensor(target)), lambda model, x: model.transform(tensor(x))
    )


def per_image(make, fit_one, apply_one) -> dict:
    """A peer that handles one image at a time: loop over the batch."""

    def fit(target):
        model = make()
        fit_one(model, np.concatenate(list(target), axis=1))
        return model

    return {
        "fit": fit,
        "batch": lambda m, x: [apply_one(m, t) for t in x],
        "image": lambda m, x: apply_one(m, x),
    }


def _staintools() -> dict[str, dict[str, dict]]:
    import staintools

    fit, apply = (lambda m, t: m.fit(t)), (lambda m, x: m.transform(x))
    macenko = lambda: staintools.StainNormalizer(method="macenko")  # noqa: E731
    vahadane = lambda: staintools.StainNormalizer(method="vahadane")  # noqa: E731
    return {
        "reinhard": {"staintools": per_image(staintools.ReinhardColorNormalizer, fit, apply)},
        "macenko": {"staintools (spams)": per_image(macenko, fit, apply)},
        "vahadane": {"staintools (spams)": per_image(vahadane, fit, apply)},
    }


def _torchstain() -> dict[str, dict[str, dict]]:
    import torch
    import torchstain

    chw = lambda x: torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)  # noqa: E731
    table: dict[str, dict[str, dict]] = {"reinhard": {}, "macenko": {}}
    for backend in ("numpy", "torch"):
        convert = (lambda x: x) if backend == "numpy" else chw
        table["reinhard"][f"torchstain {backend}"] = per_image(
            lambda b=backend: torchstain.normalizers.ReinhardNormalizer(backend=b),
            lambda m, t, c=convert: m.fit(c(t)),
            lambda m, x, c=convert: m.normalize(c(x)),
        )
        table["macenko"][f"torchstain {backend}"] = per_image(
            lambda b=backend: torchstain.normalizers.MacenkoNormalizer(backend=b),
            lambda m, t, c=convert: m.fit(c(t)),
            lambda m, x, c=convert: m.normalize(I=c(x), stains=False),
        )
    return table


def _stainx() -> dict[str, dict[str, dict]]:
    import stainx
    import torch

    def nchw(x):
        return torch.from_numpy(np.ascontiguousarray(x if x.ndim == 4 else x[None])).permute(
            0, 3, 1, 2
        )

    def peer(cls) -> dict:
        return batched(
            lambda target: cls(device="cpu").fit(nchw(target)), lambda m, x: m.transform(nchw(x))
        )

    return {
        "reinhard": {"stainx": peer(stainx.Reinhard)},
        "macenko": {"stainx": peer(stainx.Macenko)},
        "histogram": {"stainx": peer(stainx.HistogramMatching)},
    }


def _torch_staintools() -> dict[str, dict[str, dict]]:
    import torch
    from torch_staintools.normalizer import NormalizerBuilder

    def nchw(x):
        batch = torch.from_numpy(np.ascontiguousarray(x if x.ndim == 4 else x[None]))
        return batch.permute(0, 3, 1, 2).float() / 255.0

    def fit(target):  # it fits on one image: the tiles side by side, as per_image does
        model = NormalizerBuilder.build("vahadane")
        model.fit(nchw(np.concatenate(list(target), axis=1)))
        return model

    return {"vahadane": {"torch-staintools": batched(fit, lambda m, x: m.transform(nchw(x)))}}


def _skimage() -> dict[str, dict[str, dict]]:
    from skimage.exposure import match_histograms

    def apply(reference, x):
        return match_histograms(x, reference, channel_axis=-1)

    return {
        "histogram": {
            "skimage match_histograms": {
                "fit": lambda target: np.concatenate([t.reshape(-1, 3) for t in target])[None],
                "batch": lambda m, x: [apply(m, t) for t in x],
                "image": apply,
            }
        }
    }


def peers() -> dict[str, dict[str, dict]]:
    """Peer implementations by method, then label; libraries not installed are left out."""
    table: dict[str, dict[str, dict]] = {
        "reinhard": {},
        "macenko": {},
        "vahadane": {},
        "histogram": {},
    }
    for library in (_staintools, _torchstain, _stainx, _torch_staintools, _skimage):
        try:
            found = library()
        except ImportError:
            continue
        for method, implementations in found.items():
            table[method].update(implementations)
    return table


def measure(impl: dict, target, source, large, repeats: int) -> dict:
    """Megapixels per second of one implementation's fit, batch and image transform."""
    model = impl["fit"](target)
    mp_batch, mp_large = source.size / 3e6, large.size / 3e6

    def rate(megapixels: float, function: Callable[[], object]) -> float:
        return megapixels / best_time(function, repeats, ENOUGH_SECONDS)

    return {
        "fit_batch": rate(mp_batch, lambda: impl["fit"](source)),
        "transform_batch": rate(mp_batch, lambda: impl["batch"](model, source)),
        "transform_image": rate(mp_large, lambda: impl["image"](model, large)),
    }


def throughput_rows(config: Config) -> tuple[list[dict], str]:
    """One row per method and implementation, ours first, and where the tiles came from."""
    target, source, large, origin = load_images()
    peer_table = peers()
    methods = [method for method in config.methods if method in CLASSIC_METHODS]
    roster = method_roster({method: method for method in methods})
    rows = []
    for method in methods:
        entries = {
            "stainstyle": measure(ours(roster[method]), target, source, large, config.repeats)
        }
        if roster[method]()._tensor_kernels:
            entries[TORCH_CPU] = measure(
                ours_torch(roster[method]), target, source, large, config.repeats
            )
        for peer, impl in peer_table.get(method, {}).items():
            try:
                entries[peer] = measure(impl, target, source, large, config.repeats)
            except Exception as error:  # a peer failing must not stop the benchmark
                entries[peer] = {"error": f"{type(error).__name__}: {error}"}
        for name, result in entries.items():
            rows.append({"method": method, "implementation": name, **result})
    _ratios(rows)
    return rows, origin


def _ratios(rows: list[dict]) -> None:
    """Add, to our rows, the ratio to the fastest peer per metric.

    To our torch CPU rows also the ratio to our numpy row of the same method
    (``{key}_vs_numpy``).
    """
    for row in rows:
        if not row["implementation"].startswith("stainstyle"):
            continue
        same = [r for r in rows if r["method"] == row["method"] and "error" not in r]
        peers_of = [r for r in same if not r["implementation"].startswith("stainstyle")]
        numpy_row = next(r for r in same if r["implementation"] == "stainstyle")
        for key in THROUGHPUTS:
            if peers_of:
                row[f"{key}_ratio"] = row[key] / max(r[key] for r in peers_of)
            if row is not numpy_row:
                row[f"{key}_vs_numpy"] = row[key] / numpy_row[key]


def _markdown(rows: list[dict]) -> str:
    cells = []
    for row in rows:
        if "error" in row:
            cells.append([row["method"], row["implementation"], row["error"], "", ""])
            continue
        rates = []
        for key in THROUGHPUTS:
            ratio = row.get(f"{key}_ratio")
            versus = row.get(f"{key}_vs_numpy")
            rates.append(
                f"{row[key]:.1f}"
                + (f" ({ratio:.1f}x)" if ratio else "")
                + (f" [{versus:.2f}x numpy]" if versus else "")
            )
        cells.append([row["method"], row["implementation"], *rates])
    lines = markdown_table(["method", "implementation", *THROUGHPUTS.values()], cells)
    lines.append(
        "\nMegapixels per second, best of the repeats; (Nx) = ratio to the fastest peer; "
        f"[Nx numpy] = the {TORCH_CPU} row's ratio to the numpy row of the same method."
    )
    return "\n".join(lines)


def speed_main(config: Config) -> dict:
    """The throughput table: ``speed.json`` and ``speed.md`` in ``config.out``."""
    rows, origin = throughput_rows(config)
    target, source, _, _ = load_images()
    augment = augment_rows(config.augmenters, target, source, config.repeats)
    machine = device_info("cpu")
    report = {
        "data": origin,
        "batch": [N_TILES, TILE, TILE, 3],
        "image": [LARGE, LARGE, 3],
        "machine": {key: machine[key] for key in ("cpus", "platform", "processor")},
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
        "augment": augment,
    }
    write_json(config.out / "speed.json", report)
    table = _markdown(rows)
    if augment:
        table += "\n\n" + _augment_markdown(augment, N_TILES, TILE)
    write_text(config.out / "speed.md", table + "\n")
    print(f"Data: {origin}\n\n{table}")
    return report


# ----------------------------------------------------------------------------- augmenters
#: Augmenters timed by default (``--augmenters``): stainstyle's kinds, each beside its peers.
AUGMENTERS = "hed,stains,randstainna"


def _our_augmenters(target: np.ndarray) -> dict[str, Callable[[], object]]:
    """The stainstyle augmenter of each kind, fitted on the target tiles where it is fitted."""
    from stainstyle import MacenkoNormalizer
    from stainstyle.augment import HEDJitter, RandStainNA, StainAugmenter

    return {
        "hed": lambda: HEDJitter("strong", random_state=0),
        "stains": lambda: StainAugmenter(MacenkoNormalizer(), random_state=0).fit(target),
        "randstainna": lambda: RandStainNA(random_state=0).fit(target),
    }


def augment_peers() -> dict[str, dict[str, Callable[[np.ndarray], object]]]:
    """Peers' augmenters by kind, then label: one call augments a batch (looping over tiles).

    StainTools' ``StainAugmentor`` and torchstain's Macenko augmentor estimate each tile's stain
    matrix (``fit``) before drawing (``pop`` / ``augment``); albumentations' ``HEStain``
    is HED-style jitter on one image. Libraries not installed are left out.
    """
    table: dict[str, dict[str, Callable[[np.ndarray], object]]] = {"hed": {}, "stains": {}}
    try:
        import albumentations

        he_stain = albumentations.HEStain(p=1.0)
        table["hed"]["albumentations HEStain"] = lambda x: [he_stain(image=t)["image"] for t in x]
    except (ImportError, AttributeError):
        pass
    try:
        import staintools

        augmentor = staintools.StainAugmentor("macenko", sigma1=0.2, sigma2=0.2)
        table["stains"]["staintools StainAugmentor"] = _fit_and_draw(augmentor, augmentor.pop)
    except ImportError:
        pass
    try:
        from torchstain.base.augmentors import MacenkoAugmentor

        augmentor = MacenkoAugmentor(backend="numpy", sigma1=0.2, sigma2=0.2)
        label = "torchstain MacenkoAugmentor (numpy)"
        table["stains"][label] = _fit_and_draw(augmentor, augmentor.augment)
    except ImportError:
        pass
    return table


def _fit_and_draw(augmentor, draw: Callable[[], object]) -> Callable[[np.ndarray], list]:
    """A peer's batch augmentation: ``augmentor.fit(tile)`` then ``draw()``, tile by tile."""

    def batch(x: np.ndarray) -> list:
        out = []
        for tile in x:
            augmentor.fit(tile)
            out.append(draw())
        return out

    return batch


def augment_rows(
    kinds: tuple[str, ...], target: np.ndarray, source: np.ndarray, repeats: int
) -> list[dict]:
    """Batch throughput (MP/s) of each augmenter kind, ours and the peers'.

    Ours on the numpy batch and on a torch CPU tensor ``(N, 3, H, W)``, then each installed peer
    on the numpy batch; our rows get the ratio to the fastest peer of the kind.
    """
    import torch

    ours_by_kind = _our_augmenters(target)
    peer_table = augment_peers()
    tensor = torch.from_numpy(source).permute(0, 3, 1, 2).contiguous()
    megapixels = source.size / 3e6
    rows = []
    for kind in kinds:
        augmenter = ours_by_kind[kind]()
        runs = {
            "stainstyle (numpy)": lambda a=augmenter: a(source),
            "stainstyle (torch, CPU)": lambda a=augmenter: a(tensor),
            **{peer: (lambda f=f: f(source)) for peer, f in peer_table.get(kind, {}).items()},
        }
        kind_rows = []
        for name, run in runs.items():
            try:
                rate = megapixels / best_time(run, repeats, ENOUGH_SECONDS)
                kind_rows.append({"augmenter": kind, "implementation": name, "augment_batch": rate})
            except Exception as error:  # a peer failing must not stop the benchmark
                kind_rows.append(
                    {
                        "augmenter": kind,
                        "implementation": name,
                        "error": f"{type(error).__name__}: {error}",
                    }
                )
        peers_of = [r for r in kind_rows if not r["implementation"].startswith("stainstyle")]
        fastest = max((r["augment_batch"] for r in peers_of if "error" not in r), default=None)
        for row in kind_rows:
            if fastest and row["implementation"].startswith("stainstyle") and "error" not in row:
                row["augment_batch_ratio"] = row["augment_batch"] / fastest
        rows.extend(kind_rows)
    return rows


def _augment_markdown(rows: list[dict], n_tiles: int, side: int) -> str:
    cells = []
    for row in rows:
        if "error" in row:
            cells.append([row["augmenter"], row["implementation"], row["error"]])
            continue
        ratio = row.get("augment_batch_ratio")
        rate = f"{row['augment_batch']:.1f}" + (f" ({ratio:.1f}x)" if ratio else "")
        cells.append([row["augmenter"], row["implementation"], rate])
    title = f"augment, {n_tiles} tiles of {side}x{side}"
    lines = markdown_table(["augmenter", "implementation", title], cells)
    lines.append("\nMegapixels per second, best of the repeats; (Nx) = ratio to the fastest peer.")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- peak memory
MEMORY_SIZES = "4096,8192"
MEMORY_METHODS = "gray,reinhard,macenko,vahadane,histogram,wsics"

#: The estimators measured: defaults, but a 1-epoch CPU stain-style transfer.
MEMORY_PARAMS = {"sst": {"preset": "cpu", "max_epochs": 1, "lambda_fp": 0.0}}


def memory_fitted(method: str, target: np.ndarray):
    """The estimator measured (see :data:`MEMORY_PARAMS`), fitted on the target tiles."""
    (make,) = method_roster({method: method}, MEMORY_PARAMS).values()
    return make().fit(target)


def measure_memory(method: str, side: int) -> dict:
    """Peak resident memory of one ``transform`` of a ``side`` x ``side`` image, in this process.

    Run it in a fresh process (``--memory-child``): what the process allocated before stays
    resident or in the allocator's pools and would hide part of the peak.
    """
    target, pool, origin = load_tiles()
    image = mosaic([np.rot90(t, k) for k in range(4) for t in pool], side)
    model = memory_fitted(method, target)
    del pool
    gc.collect()
    before = memory_status("VmRSS")
    exact = reset_peak_memory()
    if before is None:
        before = peak_memory_bytes()
    with Timer() as timer:
        out = model.transform(image)
    peak = peak_memory_bytes()
    assert out.shape == image.shape
    extra = max(peak - before, 0)
    return {
        "method": method,
        "side": side,
        "image_mb": image.nbytes / 1e6,
        "peak_extra_mb": extra / 1e6,
        "multiple": extra / image.nbytes,
        "seconds": timer.seconds,
        "peak_source": "VmHWM reset before transform" if exact else "ru_maxrss",
        "data": origin,
    }


def _memory_child(method: str, side: int, timeout: float) -> dict:
    """:func:`measure_memory` in a fresh process; a row with ``error`` when it fails."""
    command = [sys.executable, str(Path(__file__).resolve()), "--memory-child", method, str(side)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"method": method, "side": side, "error": f"over {timeout:g} s"}
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return {"method": method, "side": side, "error": tail[0]}
    row = json.loads(done.stdout.strip().splitlines()[-1])
    logger.info(
        "%s %dx%d: %.0f MB (%.2fx the image), %.1f s",
        method,
        side,
        side,
        row["peak_extra_mb"],
        row["multiple"],
        row["seconds"],
    )
    return row


def memory_table(methods: list[str], sizes: list[int], timeout: float) -> list[dict]:
    """:func:`measure_memory` for every method and size, each in a fresh process."""
    return [_memory_child(method, side, timeout) for method in methods for side in sizes]


def _memory_markdown(rows: list[dict], sizes: list[int]) -> str:
    cells = []
    for method in dict.fromkeys(row["method"] for row in rows):
        line = [method]
        for side in sizes:
            row = next(r for r in rows if r["method"] == method and r["side"] == side)
            if "error" in row:
                line.append(row["error"])
            else:
                mb, multiple, seconds = row["peak_extra_mb"], row["multiple"], row["seconds"]
                line.append(f"{mb:.0f} MB, {multiple:.2f}x, {seconds:.1f} s")
        cells.append(line)
    lines = markdown_table(["method", *(f"{s}x{s}: MB, x image, s" for s in sizes)], cells)
    lines.append(
        "\nPeak resident memory during one transform above the memory before it (output "
        "included); x image = multiple of the image's H*W*3 bytes."
    )
    return "\n".join(lines)


def memory_main(config: Config) -> dict:
    """The memory table: ``memory.json`` and ``memory.md`` in ``config.out``."""
    sizes, methods = list(config.memory_sizes), list(config.memory_methods)
    rows = memory_table(methods, sizes, config.memory_timeout)
    machine = device_info("cpu")
    report = {
        "machine": {key: machine[key] for key in ("cpus", "platform")},
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    write_json(config.out / "memory.json", report)
    table = _memory_markdown(rows, sizes)
    write_text(config.out / "memory.md", table + "\n")
    print(table)
    return report


# ------------------------------------------------------------------------------ command line
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default="reinhard,macenko,vahadane,histogram,wsics")
    parser.add_argument(
        "--augmenters",
        default=AUGMENTERS,
        help="augmenter kinds timed beside their peers, comma-separated; empty for none",
    )
    parser.add_argument(
        "--memory", action="store_true", help="measure the peak memory of transform instead"
    )
    parser.add_argument("--memory-sizes", default=MEMORY_SIZES, help="image sides, comma-separated")
    parser.add_argument(
        "--memory-methods",
        default=MEMORY_METHODS,
        help="methods of the memory table, comma-separated; add sst to measure it too",
    )
    parser.add_argument("--memory-timeout", type=float, default=1800.0, help="seconds per run")
    parser.add_argument(
        "--memory-child", nargs=2, metavar=("METHOD", "SIDE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    args.methods = tuple(args.methods.split(","))
    args.augmenters = tuple(kind for kind in args.augmenters.split(",") if kind)
    args.memory_sizes = tuple(int(s) for s in args.memory_sizes.split(","))
    args.memory_methods = tuple(m for m in args.memory_methods.split(",") if m)
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the report."""
    args = parse_args(argv)
    warnings.simplefilter("ignore")
    if args.memory_child:
        method, side = args.memory_child
        result = measure_memory(method, int(side))
        print(json.dumps(result))
        return result
    configure_logging("speed")
    config = frozen_config(Config, args)
    return memory_main(config) if args.memory else speed_main(config)


if __name__ == "__main__":
    main()
