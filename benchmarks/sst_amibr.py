"""StainStyleTransfer on one real scanner of AMi-Br: train the CPU preset, report reconstruction.

The crops of one scanner group (default ``HamamatsuS360``) are split by slide into training and
held-out tiles (a slide is in one part only). :class:`~stainstyle.sst.StainStyleTransfer` with
``preset="cpu"`` is trained on the training crops within a time budget, without labels (the
feature-preserving loss is off), and the PSNR of the colour reconstructed from gray is measured
on the held-out crops of the same scanner.

Run ``python benchmarks/sst_amibr.py --budget 300`` (the data are read from
``$STAINSTYLE_DATA/amibr`` or ``../shared/data/amibr``); ``--json PATH`` writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings

import numpy as np
from _common import Timer, configure_logging, data_root, environment, write_json

from stainstyle.base import BackgroundTileWarning

logger = logging.getLogger("sst_amibr")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scanner", default="HamamatsuS360")
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", default=None, help="write the results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Train and measure; returns the exit code (2 for an unknown scanner)."""
    import torch

    from stainstyle.data.loaders import load_amibr
    from stainstyle.data.splits import split_by_slide
    from stainstyle.metrics import psnr
    from stainstyle.sst import StainStyleTransfer

    args = parse_args(argv)
    configure_logging("sst_amibr")
    warnings.simplefilter("ignore", BackgroundTileWarning)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    tiles, _, groups = load_amibr(data_root() / "amibr")
    mine = np.flatnonzero(groups.domain == args.scanner)
    if len(mine) == 0:
        print(
            f"sst_amibr: error: --scanner: no crops of {args.scanner!r}; have "
            f"{sorted(set(groups.domain))}",
            file=sys.stderr,
        )
        return 2
    train_part, test_part = split_by_slide(groups[mine], fractions=(0.85, 0.15), seed=0)
    train_tiles, test_tiles = tiles[mine[train_part]], tiles[mine[test_part]]
    logger.info(
        "%s: %d training, %d held-out crops", args.scanner, len(train_tiles), len(test_tiles)
    )

    sst = StainStyleTransfer(
        preset="cpu", max_epochs=1000, time_budget=args.budget, lambda_fp=0.0, device="cpu"
    )
    with Timer() as timer:
        sst.fit(train_tiles)
    result = {
        "scanner": args.scanner,
        "n_train": len(train_tiles),
        "n_test": len(test_tiles),
        "threads": torch.get_num_threads(),
        "fit_seconds": timer.seconds,
        "epochs": sst.epoch_,
        "steps": int(sum(h["steps"] for h in sst.history_)),
        "val_psnr_per_epoch": [round(h["val_psnr"], 2) for h in sst.history_],
        "reconstruction_psnr": psnr(sst.transform(test_tiles), test_tiles, pooled=True),
        "environment": environment("cpu"),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
