"""Throughput of every stainstyle method next to the peer libraries, in one run.

For each method: fit throughput on a batch of 256 tiles of 256x256, and transform throughput on
that batch and on one 2048x2048 image, in megapixels per second (best of ``--repeats`` runs),
with the ratio to the fastest peer that implements the same method. Peers are optional (the
``bench`` extra; staintools needs ``pip install --no-deps staintools spams-bin matplotlib``)
and skipped when missing.

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
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

import stainstyle

ROOT = Path(__file__).resolve().parents[1]
N_TILES, TILE, LARGE = 256, 256, 2048


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
    root = Path(os.environ.get("STAINSTYLE_DATA", ROOT.parent / "shared" / "data"))
    folder = root / "camelyon17_tiles"
    if folder.exists():
        from PIL import Image

        images = {
            p: np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.rglob("*.png"))
        }
        by_centre: dict[str, list[np.ndarray]] = {}
        for path, image in images.items():
            by_centre.setdefault(path.parent.name, []).append(image)
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


def best_time(function: Callable[[], object], repeats: int, enough: float = 10.0) -> float:
    """Best wall time of ``repeats`` runs; a run longer than ``enough`` seconds is not repeated."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
        if times[-1] > enough:
            break
    return min(times)


# ----------------------------------------------------------------------------- implementations
def ours(name: str) -> dict:
    cls = stainstyle.METHODS[name]

    def fit(target):
        return cls().fit(target)

    return {
        "fit": fit,
        "batch": lambda model, x: model.transform(x),
        "image": lambda model, x: model.transform(x),
    }


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


def peers() -> dict[str, dict[str, dict]]:
    table: dict[str, dict[str, dict]] = {"reinhard": {}, "macenko": {}, "histogram": {}}
    try:
        import staintools

        table["reinhard"]["staintools"] = per_image(
            staintools.ReinhardColorNormalizer, lambda m, t: m.fit(t), lambda m, x: m.transform(x)
        )
        table["macenko"]["staintools (spams)"] = per_image(
            lambda: staintools.StainNormalizer(method="macenko"),
            lambda m, t: m.fit(t),
            lambda m, x: m.transform(x),
        )
    except ImportError:
        pass
    try:
        import torch
        import torchstain

        chw = lambda x: torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)  # noqa: E731
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
    except ImportError:
        pass
    try:
        import stainx
        import torch

        def batched(cls):
            nchw = lambda x: torch.from_numpy(  # noqa: E731
                np.ascontiguousarray(x if x.ndim == 4 else x[None])
            ).permute(0, 3, 1, 2)

            def fit(target):
                return cls(device="cpu").fit(nchw(target))

            return {
                "fit": fit,
                "batch": lambda m, x: m.transform(nchw(x)),
                "image": lambda m, x: m.transform(nchw(x)),
            }

        table["reinhard"]["stainx"] = batched(stainx.Reinhard)
        table["macenko"]["stainx"] = batched(stainx.Macenko)
        table["histogram"]["stainx"] = batched(stainx.HistogramMatching)
    except ImportError:
        pass
    try:
        from skimage.exposure import match_histograms

        def fit(target):
            return np.concatenate([t.reshape(-1, 3) for t in target])[None]

        apply = lambda ref, x: match_histograms(x, ref, channel_axis=-1)  # noqa: E731
        table["histogram"]["skimage match_histograms"] = {
            "fit": fit,
            "batch": lambda m, x: [apply(m, t) for t in x],
            "image": apply,
        }
    except ImportError:
        pass
    return table


def measure(impl: dict, target, source, large, repeats: int) -> dict:
    model = impl["fit"](target)
    mp_batch, mp_large = source.size / 3e6, large.size / 3e6
    return {
        "fit_batch": mp_batch / best_time(lambda: impl["fit"](source), repeats),
        "transform_batch": mp_batch / best_time(lambda: impl["batch"](model, source), repeats),
        "transform_image": mp_large / best_time(lambda: impl["image"](model, large), repeats),
    }


# ----------------------------------------------------------------------------- peak memory
MEMORY_SIZES = "4096,8192"
MEMORY_METHODS = "gray,reinhard,macenko,histogram,wsics"


def _status_bytes(field: str) -> int | None:
    """A memory field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in bytes, None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's resident-memory high-water mark to the current RSS (Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_bytes("VmHWM") is not None


def _max_rss_bytes() -> int:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def memory_fitted(method: str, target: np.ndarray):
    """The estimator measured: defaults, fitted on the target tiles (a 1-epoch CPU SST)."""
    if method == "sst":
        from stainstyle.sst import StainStyleTransfer

        return StainStyleTransfer(preset="cpu", max_epochs=1, lambda_fp=0.0).fit(target)
    return stainstyle.METHODS[method]().fit(target)


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
    before = _status_bytes("VmRSS")
    exact = _reset_peak()
    if before is None:
        before = _max_rss_bytes()
    start = time.perf_counter()
    out = model.transform(image)
    seconds = time.perf_counter() - start
    peak = _status_bytes("VmHWM") if exact else _max_rss_bytes()
    assert out.shape == image.shape
    extra = max(peak - before, 0)
    return {
        "method": method,
        "side": side,
        "image_mb": image.nbytes / 1e6,
        "peak_extra_mb": extra / 1e6,
        "multiple": extra / image.nbytes,
        "seconds": seconds,
        "peak_source": "VmHWM reset before transform" if exact else "ru_maxrss",
        "data": origin,
    }


def memory_table(methods: list[str], sizes: list[int], timeout: float) -> list[dict]:
    """:func:`measure_memory` for every method and size, each in a fresh process."""
    rows = []
    for method in methods:
        for side in sizes:
            command = [sys.executable, str(Path(__file__).resolve()), "--memory-child"]
            command += [method, str(side)]
            try:
                done = subprocess.run(
                    command, capture_output=True, text=True, timeout=timeout, check=False
                )
            except subprocess.TimeoutExpired:
                rows.append({"method": method, "side": side, "error": f"over {timeout:g} s"})
                continue
            if done.returncode != 0:
                tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
                rows.append({"method": method, "side": side, "error": tail[0]})
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            row = rows[-1]
            print(
                f"{method} {side}x{side}: {row['peak_extra_mb']:.0f} MB "
                f"({row['multiple']:.2f}x the image), {row['seconds']:.1f} s",
                flush=True,
            )
    return rows


def _memory_markdown(rows: list[dict], sizes: list[int]) -> str:
    header = "| method | " + " | ".join(f"{s}x{s}: MB, x image, s" for s in sizes) + " |"
    lines = [header, "|---|" + "---|" * len(sizes)]
    for method in dict.fromkeys(row["method"] for row in rows):
        cells = []
        for side in sizes:
            row = next(r for r in rows if r["method"] == method and r["side"] == side)
            if "error" in row:
                cells.append(row["error"])
            else:
                mb, multiple, seconds = row["peak_extra_mb"], row["multiple"], row["seconds"]
                cells.append(f"{mb:.0f} MB, {multiple:.2f}x, {seconds:.1f} s")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines.append(
        "\nPeak resident memory during one transform above the memory before it (output "
        "included); x image = multiple of the image's H*W*3 bytes."
    )
    return "\n".join(lines)


def memory_main(args: argparse.Namespace) -> dict:
    sizes = [int(s) for s in args.memory_sizes.split(",")]
    methods = [m for m in args.memory_methods.split(",") if m]
    rows = memory_table(methods, sizes, args.memory_timeout)
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory.json").write_text(json.dumps(report, indent=2))
    table = _memory_markdown(rows, sizes)
    (args.out / "memory.md").write_text(table + "\n")
    print(table)
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default="reinhard,macenko,histogram,wsics")
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
    warnings.simplefilter("ignore")
    if args.memory_child:
        method, side = args.memory_child
        result = measure_memory(method, int(side))
        print(json.dumps(result))
        return result
    if args.memory:
        return memory_main(args)
    target, source, large, origin = load_images()
    peer_table = peers()
    rows = []
    for method in args.methods.split(","):
        if method not in stainstyle.METHODS:
            continue
        entries = {"stainstyle": measure(ours(method), target, source, large, args.repeats)}
        for peer, impl in peer_table.get(method, {}).items():
            try:
                entries[peer] = measure(impl, target, source, large, args.repeats)
            except Exception as error:  # a peer failing must not stop the benchmark
                entries[peer] = {"error": f"{type(error).__name__}: {error}"}
        for name, result in entries.items():
            rows.append({"method": method, "implementation": name, **result})
    _ratios(rows)
    report = {
        "data": origin,
        "batch": [N_TILES, TILE, TILE, 3],
        "image": [LARGE, LARGE, 3],
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor(),
        },
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed.json").write_text(json.dumps(report, indent=2))
    table = _markdown(rows)
    (args.out / "speed.md").write_text(table + "\n")
    print(f"Data: {origin}\n\n{table}")
    return report


def _ratios(rows: list[dict]) -> None:
    """Add, to our rows, the ratio to the fastest peer per metric."""
    for row in rows:
        if row["implementation"] != "stainstyle":
            continue
        peers_of = [
            r for r in rows if r["method"] == row["method"] and r is not row and "error" not in r
        ]
        for key in ("fit_batch", "transform_batch", "transform_image"):
            if peers_of:
                row[f"{key}_ratio"] = row[key] / max(r[key] for r in peers_of)


def _markdown(rows: list[dict]) -> str:
    lines = [
        "| method | implementation | fit, 256x256 tiles | transform, 256x256 tiles "
        "| transform, 2048x2048 image |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['method']} | {row['implementation']} | {row['error']} | | |")
            continue
        cells = []
        for key in ("fit_batch", "transform_batch", "transform_image"):
            ratio = row.get(f"{key}_ratio")
            cells.append(f"{row[key]:.1f}" + (f" ({ratio:.1f}x)" if ratio else ""))
        lines.append(f"| {row['method']} | {row['implementation']} | " + " | ".join(cells) + " |")
    lines.append("\nMegapixels per second, best of the repeats; (Nx) = ratio to the fastest peer.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
