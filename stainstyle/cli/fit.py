"""``stainstyle fit``: fit a method or an augmenter on target images and save its model folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from stainstyle.cli.estimators import fit_from_targets, save_model
from stainstyle.cli.options import (
    AUGMENTER_CHOICES,
    METHOD_CHOICES,
    add_run_options,
    add_target_options,
)
from stainstyle.cli.outputs import check_out_folder, remove_stale_outputs
from stainstyle.cli.report import Report, finish

logger = logging.getLogger(__name__)


def register_subcommand(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Declare ``fit`` and its arguments; see :class:`~stainstyle.cli.app.Command`."""
    parser = commands.add_parser(
        "fit",
        help="fit a method or an augmenter on target images and save the model folder",
        description="Fit a normalization method (or a stain augmenter) on target-style images "
        "and save it as a model folder (config.json, model.safetensors, README.md) that "
        "`normalize --model` (`augment --model`) and stainstyle.load read, and that can be "
        "uploaded to the Hugging Face Hub.",
    )
    parser.add_argument(
        "--method",
        choices=METHOD_CHOICES + AUGMENTER_CHOICES,
        required=True,
        metavar="METHOD",
        help=f"normalization method ({', '.join(METHOD_CHOICES)}), or augmenter "
        f"({', '.join(AUGMENTER_CHOICES)})",
    )
    add_target_options(parser, required=True, saves=True)
    parser.add_argument("--out", type=Path, required=True, metavar="MODEL_DIR", help="model folder")
    add_run_options(parser, device=False)  # the classic methods run on numpy
    return parser


def run(args: argparse.Namespace) -> int:
    """Fit ``--method`` on the ``--target`` images and save it to ``--out``.

    Returns exit code 0, or 1 if a target image failed; see :class:`~stainstyle.cli.app.Command`.
    """
    check_out_folder(args.out)
    remove_stale_outputs(args.out)
    report = Report()
    estimator, n_tiles = fit_from_targets(args, report)
    if estimator is None:
        return finish(report)
    save_model(estimator, args, n_tiles)
    logger.info("saved %s to %s", type(estimator).__name__, args.out)
    return finish(report)
