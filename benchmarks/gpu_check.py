"""One call on a GPU machine: the CUDA tests and every GPU figure, written to one JSON file.

Sections, each timed and with its errors recorded rather than raised, and each skipped once the
whole run has used its ``--budget`` (480 s, so that the call ends within 8 minutes):

- ``tests``: ``pytest -k "cuda or gpu"`` over ``--tests`` (the tests that need a CUDA device);
- ``classic``: Reinhard, Macenko and histogram specification fitted on target tiles, then
  ``transform`` of a batch of uint8 tiles (N, H, W, 3) that is already a tensor on the device,
  best of ``--repeats``: GP/s, and whether the output stayed on the device;
- ``peers``: the same on the device with the GPU peers that are installed (stainx, torchstain's
  torch backend, torch-staintools);
- ``sst``: per preset, ``transform``'s MP/s on whole tiles next to the generator's GFLOP per
  megapixel, a plain convolution's GFLOP/s and the limit they imply (as
  ``benchmarks/sst_speed.py`` measures them);
- ``ddp``: SST training steps per second under ``torchrun`` on all GPUs present, next to one
  process;
- the peak GPU memory of each section.

    python benchmarks/gpu_check.py --out results/gpu_check.json
    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_check.json   # CPU, tiny sizes

``--dry-run`` runs every section on the CPU with tiny tiles and networks (and only collects the
tests), so that the script is exercised on machines without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import best_time, environment, significant, write_json

ROOT = Path(__file__).resolve().parents[1]
#: Sizes of a real run and of ``--dry-run``.
SIZES = {
    "real": {"tiles": 256, "tile": 256, "sst_tiles": 256, "ddp_seconds": 30.0, "sst_fit": 5.0},
    "dry": {"tiles": 4, "tile": 64, "sst_tiles": 4, "ddp_seconds": 1.0, "sst_fit": 1.0},
}
#: Tiny networks for ``--dry-run``.
DRY_SST = {"width": 4, "depth": 2, "crop_size": 16, "train_batch_size": 2}


def main(argv: list[str] | None = None) -> int:
    """Run every section; returns 0 (failures are recorded in the JSON, not raised)."""
    args = parse_args(argv)
    if args.ddp_worker is not None:
        return ddp_worker(args)
    import torch

    device = torch.device("cpu" if args.dry_run else args.device)
    sizes = SIZES["dry" if args.dry_run else "real"]
    started = time.monotonic()
    report: dict = {"dry_run": args.dry_run, "environment": environment(str(device))}
    sections: list[tuple[str, Callable[[], object]]] = [
        ("tests", lambda: run_tests(args)),
        ("classic", lambda: classic(device, sizes, args.repeats)),
        ("peers", lambda: peers(device, sizes, args.repeats)),
        ("sst", lambda: sst(device, sizes, args)),
        ("ddp", lambda: ddp(device, sizes, args)),
    ]
    for name, section in sections:
        if time.monotonic() - started > args.budget:
            report[name] = {"skipped": f"the run's budget of {args.budget:.0f} s was used up"}
            continue
        report[name] = measured(section, device)
        print(f"{name}: {json.dumps(report[name])[:2000]}", flush=True)
    report["seconds"] = round(time.monotonic() - started, 1)
    write_json(args.out, report)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--device", default="cuda", help="the GPU to measure (default: cuda)")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, tests collected")
    parser.add_argument("--presets", default="cpu,paper", help="SST presets, comma-separated")
    parser.add_argument("--tests", nargs="+", default=["tests"], help="test paths for pytest")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls, the best counts")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for all sections")
    parser.add_argument("--ddp-worker", type=Path, help=argparse.SUPPRESS)  # one torchrun rank
    args = parser.parse_args(argv)
    args.presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    return args


def measured(section: Callable[[], object], device) -> dict:
    """A section's result with its seconds and peak GPU memory; an error becomes a record."""
    import torch

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    start = time.monotonic()
    try:
        result = {"result": section()}
    except Exception as error:  # a section that fails must not hide the others' figures
        result = {"error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()}
    result["seconds"] = round(time.monotonic() - start, 1)
    if cuda:
        result["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    return result


def target_and_batch(sizes: dict) -> tuple[np.ndarray, np.ndarray]:
    from stainstyle.data import make_tiles

    target = make_tiles(8, "radboud", size=256, seed=0)[0]
    batch = make_tiles(sizes["tiles"], "utrecht", size=sizes["tile"], seed=1)[0]
    return target, batch


# ----------------------------------------------------------------------------- sections
def run_tests(args: argparse.Namespace) -> dict:
    """The CUDA tests (collected only in a dry run)."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0"]
    command += ["-k", "cuda or gpu", *(["--collect-only"] if args.dry_run else []), *args.tests]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=_env())
    lines = done.stdout.strip().splitlines()
    return {"command": " ".join(command[1:]), "exit_code": done.returncode, "summary": lines[-1:]}


def classic(device, sizes: dict, repeats: int) -> list[dict]:
    """Our classic methods on a uint8 batch that is already on the device."""
    import torch

    from stainstyle.methods import HistogramSpecification, MacenkoNormalizer, ReinhardNormalizer

    target, batch = target_and_batch(sizes)
    x = torch.from_numpy(batch).to(device)
    rows = []
    for cls in (ReinhardNormalizer, MacenkoNormalizer, HistogramSpecification):
        model = cls().fit(target)
        out = model.transform(x)
        seconds = best_time(lambda m=model: m.transform(x), repeats, device=device)
        rows.append(
            {
                "method": cls.__name__,
                "gp_per_s": significant(x[..., 0].numel() / seconds / 1e9),
                "output_on_device": isinstance(out, torch.Tensor) and out.device == x.device,
            }
        )
    return rows


def peers(device, sizes: dict, repeats: int) -> list[dict]:
    """The GPU peers that are installed, on the same batch; each failure is recorded."""
    import torch

    target, batch = target_and_batch(sizes)
    nchw = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous().to(device)
    target_nchw = torch.from_numpy(target).permute(0, 3, 1, 2).contiguous().to(device)
    wide = torch.from_numpy(np.concatenate(list(target), axis=1)).permute(2, 0, 1).to(device)
    candidates: dict[str, Callable[[], Callable[[], object]]] = {}

    def stainx_peer(name):
        def build():
            import stainx

            model = getattr(stainx, name)(device=str(device)).fit(target_nchw)
            return lambda: model.transform(nchw)

        return build

    def torchstain_peer(name, **kwargs):
        def build():
            import torchstain

            model = getattr(torchstain.normalizers, name)(backend="torch")
            model.fit(wide)
            return lambda: [model.normalize(I=tile, **kwargs) for tile in nchw]

        return build

    def staintools_peer(name):
        def build():
            from torch_staintools.normalizer import NormalizerBuilder

            model = NormalizerBuilder.build(name).to(device)
            model.fit(wide[None].float() / 255)
            return lambda: model.transform(nchw.float() / 255)

        return build

    for name in ("Reinhard", "Macenko", "HistogramMatching"):
        candidates[f"stainx {name}"] = stainx_peer(name)
    candidates["torchstain torch Reinhard"] = torchstain_peer("ReinhardNormalizer")
    candidates["torchstain torch Macenko"] = torchstain_peer("MacenkoNormalizer", stains=False)
    for name in ("reinhard", "macenko"):
        candidates[f"torch-staintools {name}"] = staintools_peer(name)
    rows = []
    for label, build in candidates.items():
        try:
            run = build()
            run()  # warm-up (torch.compile, cuDNN autotuning)
            seconds = best_time(run, repeats, device=device)
            gp_per_s = significant(nchw[:, 0].numel() / seconds / 1e9)
            rows.append({"peer": label, "gp_per_s": gp_per_s})
        except ImportError as error:
            rows.append({"peer": label, "not_installed": str(error)})
        except Exception as error:
            rows.append({"peer": label, "error": f"{type(error).__name__}: {error}"})
    return rows


def sst(device, sizes: dict, args: argparse.Namespace) -> list[dict]:
    """Per preset: a briefly trained model's transform speed next to the compute limit."""
    from sst_speed import inference_efficiency

    from stainstyle.data import make_tiles
    from stainstyle.sst import StainStyleTransfer

    target = make_tiles(8, "radboud", size=sizes["tile"], seed=0)[0]
    tiles = make_tiles(sizes["sst_tiles"], "utrecht", size=sizes["tile"], seed=1)[0]
    rows = []
    for preset in args.presets:
        model = StainStyleTransfer(
            preset=preset,
            **(DRY_SST if args.dry_run else {}),
            max_epochs=1,
            time_budget=sizes["sst_fit"],
            lambda_fp=0,
            validation_fraction=0,
            device=str(device),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the paper preset warns on a CPU
            model.fit(target)
        model.transform(tiles[:1])  # warm-up: cuDNN picks its algorithms
        seconds = best_time(lambda m=model: m.transform(tiles), args.repeats, device=device)
        mp_per_s = tiles[..., 0].size / seconds / 1e6
        rows.append(
            {
                "preset": preset,
                "width": model.width_,
                "transform_mp_per_s": significant(mp_per_s),
                **inference_efficiency(model, tiles, mp_per_s, args.repeats, device),
            }
        )
    return rows


def ddp(device, sizes: dict, args: argparse.Namespace) -> dict:
    """SST training steps per second on all GPUs under torchrun, and in one process."""
    import torch

    procs = 2 if args.dry_run else max(1, torch.cuda.device_count())
    result = {}
    with tempfile.TemporaryDirectory() as folder:
        for label, n in (("one_process", 1), (f"{procs}_processes", procs)):
            out = Path(folder) / f"{label}.json"
            command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(n)]
            command += ["--master-addr", "127.0.0.1", "--master-port", str(_free_port())]
            command += [__file__, "--out", str(out), "--ddp-worker", str(out)]
            command += ["--device", str(device), "--presets", args.presets[-1]]
            command += ["--dry-run"] if args.dry_run else []
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=_env())
            if done.returncode != 0:
                raise RuntimeError(f"torchrun with {n} process(es) failed: {done.stdout[-2000:]}")
            result[label] = json.loads(out.read_text())
    return result


def ddp_worker(args: argparse.Namespace) -> int:
    """One rank: train the last preset for a few seconds; rank 0 writes the steps per second."""
    import torch

    from stainstyle.data import make_tiles
    from stainstyle.sst import StainStyleTransfer

    sizes = SIZES["dry" if args.dry_run else "real"]
    world = int(os.environ.get("WORLD_SIZE", 1))
    tiles = make_tiles(32 * world, "radboud", size=sizes["tile"], seed=0)[0]
    model = StainStyleTransfer(
        preset=args.presets[-1],
        **(DRY_SST if args.dry_run else {}),
        max_epochs=1_000_000,
        time_budget=sizes["ddp_seconds"],
        lambda_fp=0,
        validation_fraction=0,
        device="cpu" if args.dry_run else args.device,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(tiles)
    steps = sum(epoch["steps"] for epoch in model.history_)
    seconds = sum(epoch["seconds"] for epoch in model.history_)
    if int(os.environ.get("RANK", 0)) == 0:
        crops = steps * model._preset_value("train_batch_size") * world
        record = {
            "processes": world,
            "steps": steps,
            "steps_per_s": significant(steps / seconds),
            "crops_per_s": significant(crops / seconds),
            "device": str(torch.device(args.device)) if not args.dry_run else "cpu",
        }
        args.ddp_worker.write_text(json.dumps(record))
    return 0


def _env() -> dict:
    """The environment of the subprocesses: this checkout's stainstyle first on the path."""
    path = os.pathsep.join([str(ROOT), str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
