"""``stainstyle train-sst``: train a StainStyleTransfer on target images and save it.

A checkpoint is written after every epoch (``--checkpoint-dir``, by default next to the model
folder); ``--resume`` continues from it. ``--labels`` names a CSV of tile labels, with which the
classifier of the feature-preserving loss is trained too.

Launched by ``torchrun --nproc-per-node N -m stainstyle train-sst ...``, the N processes train
together (:mod:`stainstyle.sst.distributed`); rank 0 alone logs, writes the checkpoints and
saves the model.
"""

from __future__ import annotations

import argparse
import csv
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stainstyle.cli.errors import UsageError
from stainstyle.cli.estimators import (
    configure_runtime,
    make_estimator,
    parse_params,
    read_targets,
    save_model,
)
from stainstyle.cli.inputs import ImageFile, find_inputs
from stainstyle.cli.options import add_run_options, add_target_options, defer_choices, positive_int
from stainstyle.cli.outputs import check_out_folder, remove_stale_outputs
from stainstyle.cli.report import Report, finish

logger = logging.getLogger(__name__)


def _preset_names() -> list[str]:
    """Names of the presets of :class:`~stainstyle.sst.StainStyleTransfer` (imports torch)."""
    from stainstyle.sst.presets import PRESETS

    return sorted(PRESETS)


def register_subcommand(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Declare ``train-sst`` and its arguments; see :class:`~stainstyle.cli.app.Command`.

    The ``--preset`` choices are the keys of :data:`stainstyle.sst.presets.PRESETS`, loaded when
    a value is checked or the help is shown, so that declaring them does not import torch.
    """
    parser = commands.add_parser(
        "train-sst",
        help="train a neural stain-style transfer model on target images",
        description="Train a StainStyleTransfer (Cho et al. 2017) on target-style tiles and save "
        "the model folder. A checkpoint is written after every epoch; --resume continues from it.",
    )
    add_target_options(parser, required=True, saves=True)
    parser.add_argument(
        "--labels",
        type=Path,
        metavar="CSV",
        help="CSV with columns file,label: trains the classifier of the feature-preserving loss",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="MODEL_DIR", help="model folder")
    preset = parser.add_argument("--preset", default="cpu", help="network sizes")
    defer_choices(preset, _preset_names)
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument(
        "--checkpoint-dir", type=Path, help="checkpoint folder (default: MODEL_DIR-checkpoints)"
    )
    parser.add_argument("--max-epochs", type=positive_int, help="epochs (default: the preset's)")
    parser.add_argument("--time-budget", type=float, help="stop training after this many seconds")
    add_run_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Train a StainStyleTransfer on the ``--target`` images and save it to ``--out``.

    Returns exit code 0, or 1 if a target image failed; see :class:`~stainstyle.cli.app.Command`.
    Under ``torchrun``, the ranks other than 0 log warnings and errors only and write nothing.
    """
    from stainstyle.sst.distributed import current

    writer = current().is_main
    if not writer:
        logging.getLogger("stainstyle").setLevel(logging.WARNING)
    checkpoints = args.checkpoint_dir or args.out.parent / f"{args.out.name}-checkpoints"
    check_out_folder(args.out)
    check_out_folder(checkpoints, "--checkpoint-dir")
    report = Report()
    images = find_inputs(args.target, report)
    labels = read_labels(args.labels, images) if args.labels is not None else None
    estimator = make_estimator("sst", _sst_params(args, checkpoints))
    configure_runtime(estimator, args.device, args.batch_size)
    if writer:
        remove_stale_outputs(args.out)
        remove_stale_outputs(checkpoints)
    loaded = read_targets(images, args, report)
    if loaded is None:
        return finish(report)
    y = None
    if labels is not None:
        label_of = dict(zip(images, labels, strict=True))
        y = np.asarray([label_of[image] for image, _ in loaded])
    logger.info("training StainStyleTransfer (preset %s) on %d tiles", args.preset, len(loaded))
    estimator.fit([tile for _, tile in loaded], y)
    if writer:
        save_model(estimator, args, len(loaded))
        logger.info("saved to %s (checkpoints in %s)", args.out, checkpoints)
    return finish(report)


def _sst_params(args: argparse.Namespace, checkpoints: Path) -> dict[str, Any]:
    """The StainStyleTransfer parameters: ``--param`` values, then the dedicated options."""
    params = parse_params(args.param)
    params.update(
        preset=args.preset,
        checkpoint_dir=str(checkpoints),
        resume=args.resume,
        verbose=not args.quiet,
    )
    for name in ("max_epochs", "time_budget"):
        if getattr(args, name) is not None:
            params[name] = getattr(args, name)
    return params


def read_labels(path: Path, images: Sequence[ImageFile]) -> list[str]:
    """Labels of the target images from a CSV with ``file`` and ``label`` columns.

    Parameters
    ----------
    path : Path
        CSV file; ``file`` is the image's path relative to its target folder, or its name.
    images : sequence of ImageFile
        The target images.

    Returns
    -------
    list of str
        One label per image.

    Raises
    ------
    UsageError
        If the columns are missing or an image has no label.
    """
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise UsageError(f"--labels {path}: expected a CSV with columns 'file' and 'label'")
    by_file = {Path(row["file"]).as_posix(): row["label"] for row in rows}
    labels, missing = [], []
    for image in images:
        label = by_file.get(image.relative.as_posix(), by_file.get(image.source.name))
        if label is None:
            missing.append(str(image.relative))
        labels.append(label)
    if missing:
        raise UsageError(f"--labels {path}: no label for {len(missing)} images, e.g. {missing[:5]}")
    return labels
