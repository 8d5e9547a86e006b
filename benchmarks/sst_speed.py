"""Throughput of stain-style transfer on one device: classifier, GAN training, inference.

For each preset of :class:`~stainstyle.sst.StainStyleTransfer` (``cpu``, ``paper``), on
synthetic 256x256 tiles:

- classifier training: tiles per second of one :class:`~stainstyle.sst.TileClassifier` epoch
  with the preset's architecture;
- GAN training: optimization steps per second (one discriminator and one generator step,
  feature-preserving loss included) and crops per second, from a run of ``--budget`` seconds;
- inference: megapixels per second of ``transform`` on ``--tiles`` tiles (gray normalization,
  windowed colouring and blending included), best of ``--repeats``;
- the reconstruction PSNR reached on held-out target tiles after the budget.

    python benchmarks/sst_speed.py --out results/sst_speed [--device cuda] [--budget 60]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import stainstyle
from stainstyle.base import describe_device, resolve_device
from stainstyle.data import make_tiles
from stainstyle.sst import StainStyleTransfer, TileClassifier
from stainstyle.sst.presets import PRESETS

logger = logging.getLogger("sst_speed")
TILE = 256


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work, so wall-clock timings cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_preset(
    preset: str, tiles: np.ndarray, labels: np.ndarray, held_out: np.ndarray, args
) -> dict:
    """Classifier, training and inference throughput of one preset."""
    device = resolve_device(args.device)
    arch = PRESETS[preset].classifier_arch
    synchronize(device)
    start = time.perf_counter()
    classifier = TileClassifier(arch=arch, epochs=1, device=args.device).fit(tiles, labels)
    synchronize(device)
    classifier_s = time.perf_counter() - start

    sst = StainStyleTransfer(
        preset=preset,
        max_epochs=1_000_000,
        time_budget=args.budget,
        classifier=classifier,
        validation_fraction=0.0,
        device=args.device,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the paper preset warns on a CPU
        sst.fit(tiles)
    steps = sum(epoch["steps"] for epoch in sst.history_)
    train_s = sum(epoch["seconds"] for epoch in sst.history_)

    timings = []
    for _ in range(args.repeats):
        synchronize(device)
        start = time.perf_counter()
        out = sst.transform(held_out)
        synchronize(device)
        timings.append(time.perf_counter() - start)
    mse = np.mean((out.astype(np.float64) - held_out) ** 2)
    return {
        "preset": preset,
        "classifier": arch,
        "classifier_tiles_per_s": round(len(tiles) / classifier_s, 1),
        "width": sst.width_,
        "crop_size": sst.crop_size_,
        "train_batch_size": PRESETS[preset].train_batch_size,
        "train_steps": int(steps),
        "train_s": round(train_s, 1),
        "train_steps_per_s": round(steps / train_s, 2),
        "train_crops_per_s": round(steps * PRESETS[preset].train_batch_size / train_s, 1),
        "inference_mp_per_s": round(held_out[..., 0].size / min(timings) / 1e6, 2),
        "psnr_after_budget": round(float(10 * np.log10(255.0**2 / mse)), 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for JSON and markdown")
    parser.add_argument("--device", default="auto", help='"auto", "cpu", "cuda", ...')
    parser.add_argument("--presets", default="cpu,paper", help="comma-separated presets")
    parser.add_argument("--budget", type=float, default=60.0, help="training seconds per preset")
    parser.add_argument("--tiles", type=int, default=64, help="training and inference tiles")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    tiles, labels = make_tiles(args.tiles, "radboud", size=TILE, seed=0)[:2]
    held_out = make_tiles(args.tiles, "radboud", size=TILE, seed=1)[0]
    device = resolve_device(args.device)
    rows = []
    for preset in args.presets.split(","):
        rows.append(measure_preset(preset.strip(), tiles, labels, held_out, args))
        logger.info("%s", rows[-1])
    description = describe_device(device)
    report = {
        "device": str(device),
        "description": description,
        "torch": torch.__version__,
        "stainstyle": stainstyle.__version__,
        "budget_s": args.budget,
        "tiles": args.tiles,
        "rows": rows,
    }
    keys = [k for k in rows[0] if k != "preset"]
    lines = [
        f"Stain-style transfer throughput on {description} (torch {torch.__version__}), "
        f"{args.tiles} synthetic tiles of {TILE}x{TILE}, {args.budget:.0f} s of training.",
        "",
        "| preset | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 1) + "|",
        *(f"| {r['preset']} | " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows),
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sst_speed.json").write_text(json.dumps(report, indent=2))
    (args.out / "sst_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
