"""Throughput of every stainstyle method next to the peer libraries, in one run.

For each method: fit throughput on a batch of 256 tiles of 256x256, and transform throughput on
that batch and on one 2048x2048 image, in megapixels per second (best of ``--repeats`` runs),
with the ratio to the fastest peer that implements the same method. Peers are optional (the
``bench`` extra; staintools needs ``pip install --no-deps staintools spams-bin matplotlib``)
and skipped when missing.

Tiles come from the real H&E tiles in ``../shared/data`` (or ``$STAINSTYLE_DATA``) when present,
otherwise from the built-in synthetic generator.

    python benchmarks/speed.py --out results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
    variants = [np.rot90(t, k) for k in range(4) for t in pool]
    source = np.ascontiguousarray(np.stack((variants * 4)[:N_TILES]))
    side = LARGE // TILE
    large = np.ascontiguousarray(
        np.concatenate(
            [
                np.concatenate(list(row), axis=1)
                for row in source[: side * side].reshape(side, side, TILE, TILE, 3)
            ],
            axis=0,
        )
    )
    return target[:8], source, large, origin


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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default="reinhard,macenko,histogram,wsics")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
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
