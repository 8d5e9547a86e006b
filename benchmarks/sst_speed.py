"""Throughput of stain-style transfer on one device: classifier, GAN training, inference.

For each preset of :class:`~stainstyle.sst.StainStyleTransfer` (``cpu``, ``paper``), on
synthetic 256x256 tiles:

- classifier training: tiles per second of one :class:`~stainstyle.sst.TileClassifier` epoch
  with the preset's architecture;
- GAN training: optimization steps per second (one discriminator and one generator step,
  feature-preserving loss included) and crops per second, from a run of ``--budget`` seconds;
- inference: megapixels per second of ``transform`` on ``--tiles`` tiles (gray normalization,
  windowed colouring and blending included), best of ``--repeats``;
- the reconstruction PSNR reached on held-out target tiles after the budget;
- how close inference comes to the device's limit: the generator's GFLOP per megapixel
  (counted by ``torch.utils.flop_counter``); the compute limit: the time its convolutions
  take when each is run alone as a plain layer of the same shape, on the same device
  (bfloat16 autocast on CUDA, as inference runs), as MP/s and GFLOP/s; the generator's
  forward pass on whole tiles stacked in tensors (32 per pass, as ``transform`` batches
  them); and ``transform``'s MP/s and GFLOP/s as a share of that limit.

    python benchmarks/sst_speed.py --out results/sst_speed [--device cuda] [--budget 60]
    python benchmarks/sst_speed.py --quick --out /tmp/sst_speed     # smoke run
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _common import (
    Timer,
    best_time,
    configure_logging,
    environment,
    frozen_config,
    markdown_table,
    significant,
    write_json,
    write_text,
)

logger = logging.getLogger("sst_speed")
TILE = 256

#: ``--quick``: the CPU preset, tiny data, a 1 s budget, on the CPU.
QUICK = {"presets": ("cpu",), "budget": 1.0, "tiles": 4, "repeats": 1, "device": "cpu"}


@dataclass(frozen=True)
class Config:
    """One run, built once from the command line (see ``--help`` for each field)."""

    out: Path
    device: str
    presets: tuple[str, ...]
    budget: float
    tiles: int
    repeats: int
    quick: bool


def measure_preset(
    config: Config, preset: str, tiles: np.ndarray, labels: np.ndarray, held_out: np.ndarray
) -> dict:
    """Classifier, training and inference throughput of one preset."""
    from stainstyle.base import resolve_device
    from stainstyle.sst import StainStyleTransfer, TileClassifier
    from stainstyle.sst.presets import PRESETS

    device = resolve_device(config.device)
    arch = PRESETS[preset].classifier_arch
    with Timer(device) as classifier_time:
        classifier = TileClassifier(arch=arch, epochs=1, device=config.device).fit(tiles, labels)
    sst = StainStyleTransfer(
        preset=preset,
        max_epochs=1_000_000,
        time_budget=config.budget,
        classifier=classifier,
        validation_fraction=0.0,
        device=config.device,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the paper preset warns on a CPU
        sst.fit(tiles)
    steps = sum(epoch["steps"] for epoch in sst.history_)
    train_s = sum(epoch["seconds"] for epoch in sst.history_)
    last = {}
    inference_s = best_time(
        lambda: last.update(out=sst.transform(held_out)), config.repeats, device=device
    )
    mse = np.mean((last["out"].astype(np.float64) - held_out) ** 2)
    batch = PRESETS[preset].train_batch_size
    transform_mp_per_s = held_out[..., 0].size / inference_s / 1e6
    return {
        "preset": preset,
        "classifier": arch,
        "classifier_tiles_per_s": significant(len(tiles) / classifier_time.seconds),
        "width": sst.width_,
        "crop_size": sst.crop_size_,
        "train_batch_size": batch,
        "train_steps": int(steps),
        "train_s": round(train_s, 1),
        "train_steps_per_s": significant(steps / train_s),
        "train_crops_per_s": significant(steps * batch / train_s),
        "inference_mp_per_s": significant(transform_mp_per_s),
        "psnr_after_budget": round(float(10 * np.log10(255.0**2 / mse)), 2),
        **inference_efficiency(sst, held_out, transform_mp_per_s, config.repeats, device),
    }


def inference_efficiency(
    sst, held_out: np.ndarray, transform_mp_per_s: float, repeats: int, device
) -> dict:
    """``transform``'s speed next to the compute limit of the generator on ``device``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    generator = sst.generator_.to(device).eval()
    cuda = device.type == "cuda"
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cuda)
    gray = torch.rand(len(held_out), 1, TILE, TILE, device=device) * 2 - 1
    batch = gray[:32]  # a forward pass of transform holds up to 32 such tiles
    with torch.inference_mode(), autocast:
        with FlopCounterMode(display=False) as counter:
            generator(gray[:1])
        gflop_per_mp = counter.get_total_flops() / 1e9 / (TILE * TILE / 1e6)
        conv_s = convolutions_alone(generator, batch, repeats, device)
        whole_s = best_time(
            lambda: [generator(part) for part in gray.split(32)], repeats, device=device
        )
    limit = batch.numel() / conv_s / 1e6
    return {
        "gflop_per_mp": significant(gflop_per_mp),
        "conv_gflop_per_s": significant(limit * gflop_per_mp),
        "limit_mp_per_s": significant(limit),
        "whole_tile_mp_per_s": significant(gray.numel() / whole_s / 1e6),
        "transform_gflop_per_s": significant(transform_mp_per_s * gflop_per_mp),
        "transform_of_limit": round(transform_mp_per_s / limit, 3),
    }


def convolutions_alone(generator, batch, repeats: int, device) -> float:
    """Seconds the generator's convolutions take on ``batch`` when each runs alone.

    Every convolution of one forward pass (its channels, kernel, stride and input size) is run
    again as a fresh plain layer on random input of its shape, and the best times summed: the
    compute limit of the generator on this device, with nothing else (activations, skip
    connections, pooling, copies) in the way. Small widths run far below a device's peak and
    wide ones near it, so one convolution's rate would not do for all levels.
    """
    import torch

    shapes = []

    def record(module, inputs, _output):
        shapes.append((module, tuple(inputs[0].shape)))

    convolutions = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    hooks = [
        m.register_forward_hook(record) for m in generator.modules() if isinstance(m, convolutions)
    ]
    try:
        generator(batch)
    finally:
        for hook in hooks:
            hook.remove()
    total = 0.0
    for module, shape in shapes:
        plain = copy.deepcopy(module)
        features = torch.rand(shape, device=device, dtype=batch.dtype)
        total += best_time(lambda p=plain, f=features: p(f), repeats, device=device)
    return total


def run(config: Config) -> dict:
    """Every preset's row, and the run's environment."""
    from stainstyle.data import make_tiles

    tiles, labels = make_tiles(config.tiles, "radboud", size=TILE, seed=0)[:2]
    held_out = make_tiles(config.tiles, "radboud", size=TILE, seed=1)[0]
    rows = []
    for preset in config.presets:
        rows.append(measure_preset(config, preset, tiles, labels, held_out))
        logger.info("%s", rows[-1])
    env = environment(config.device)
    return {
        "device": env["device"]["device"],
        "description": env["device"]["description"],
        "torch": env["versions"]["torch"],
        "stainstyle": env["versions"]["stainstyle"],
        "budget_s": config.budget,
        "tiles": config.tiles,
        "rows": rows,
        "environment": env,
    }


def render_markdown(report: dict) -> str:
    """The rows as a Markdown table, under a line on the device and the set-up."""
    keys = [k for k in report["rows"][0] if k != "preset"]
    lines = [
        f"Stain-style transfer throughput on {report['description']} (torch {report['torch']}), "
        f"{report['tiles']} synthetic tiles of {TILE}x{TILE}, {report['budget_s']:.0f} s of "
        "training.",
        "",
        *markdown_table(
            ["preset", *keys], [[r["preset"], *(r[k] for k in keys)] for r in report["rows"]]
        ),
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for JSON and markdown")
    parser.add_argument("--device", default="auto", help='"auto", "cpu", "cuda", ...')
    parser.add_argument("--presets", default="cpu,paper", help="comma-separated presets")
    parser.add_argument("--budget", type=float, default=60.0, help="training seconds per preset")
    parser.add_argument("--tiles", type=int, default=64, help="training and inference tiles")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}")
    args = parser.parse_args(argv)
    args.presets = tuple(p.strip() for p in args.presets.split(",") if p.strip())
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    config = frozen_config(Config, parse_args(argv), QUICK)
    configure_logging("sst_speed", "%(message)s")
    report = run(config)
    write_json(config.out / "sst_speed.json", report)
    text = render_markdown(report)
    write_text(config.out / "sst_speed.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
