"""``stainstyle augment``: stain-augment images with a saved augmenter, or one built at once.

An augmenter (:mod:`stainstyle.augment`) comes from a model folder or Hub repository
(``--model``, saved by ``stainstyle fit --method randstainna ...`` or ``save_pretrained``), or
is built from ``--method`` and ``--param`` and fitted on ``--target`` images when it learns
from them (``randstainna``, ``stain``; ``hed`` learns nothing). Each input image gets one
augmented output, under the same relative name and in the same format, written atomically and
never into an input folder.

With ``--seed``, each image draws from its own stream, seeded by the seed and the image's
relative name: an image gets the same output whatever the other inputs, their order or the
run. Without it, the images draw in turn from the augmenter's own stream (its saved
``random_state``; fresh entropy when that is None).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stainstyle.augment._common import Augmenter
from stainstyle.cli.errors import UsageError
from stainstyle.cli.estimators import (
    configure_runtime,
    fit_from_targets,
    load_model,
    make_estimator,
    parse_params,
)
from stainstyle.cli.inputs import ImageFile, find_inputs, read_images
from stainstyle.cli.options import (
    AUGMENTER_CHOICES,
    add_image_output_options,
    add_run_options,
    add_target_options,
    integer_in,
)
from stainstyle.cli.outputs import check_output_folder, remove_stale_outputs, write_output
from stainstyle.cli.report import Report, finish, name_some
from stainstyle.tissue import is_background, tissue_mask

logger = logging.getLogger(__name__)

#: Augmenters that learn from ``--target`` images.
FITTED_AUGMENTERS = ("randstainna", "stain")


def register_subcommand(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Declare ``augment`` and its arguments; see :class:`~stainstyle.cli.app.Command`."""
    parser = commands.add_parser(
        "augment",
        help="stain-augment images with a saved augmenter, or one built in one step",
        description="Perturb the stain colours of images at random, for training. Outputs keep "
        "the inputs' relative names and formats (8 bits per channel), are written atomically, "
        "and never go into an input folder.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model",
        metavar="MODEL",
        help="saved augmenter folder, or Hub repository id namespace/name",
    )
    source.add_argument(
        "--method",
        choices=AUGMENTER_CHOICES,
        metavar="METHOD",
        help=f"build this augmenter: {', '.join(AUGMENTER_CHOICES)} (fitted on --target for "
        "randstainna and stain)",
    )
    parser.add_argument("--revision", help="branch, tag or commit of a Hub repository")
    add_target_options(parser, required=False, saves=False)
    parser.add_argument(
        "--seed",
        type=integer_in(0, 2**63 - 1),
        metavar="N",
        help="seed each image's random draw from N and its relative name (reproducible); "
        "default: the augmenter's own stream",
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="images or folders")
    add_image_output_options(parser)
    add_run_options(parser, device=False)  # the augmenters run on numpy here
    return parser


def run(args: argparse.Namespace) -> int:
    """Augment the ``INPUT`` images into ``--out`` with ``--model``, or ``--method`` built first.

    Returns exit code 0, or 1 if a file failed; see :class:`~stainstyle.cli.app.Command`.
    """
    _check_source(args)
    report = Report()
    images = find_inputs(args.inputs, report)
    check_output_folder(args.out, args.inputs, images)
    remove_stale_outputs(args.out)
    augmenter = _augmenter(args, report)
    if augmenter is None:
        return finish(report)
    _augment_files(augmenter, images, args, report)
    _log_summary(report, len(images), args.out)
    return finish(report)


def _check_source(args: argparse.Namespace) -> None:
    """Refuse ``--target`` where nothing is fitted, and its absence where something is."""
    if args.method in FITTED_AUGMENTERS and not args.target:
        raise UsageError(f"--method {args.method} needs --target: the images to learn from")
    if args.method is not None and args.method not in FITTED_AUGMENTERS and args.target:
        raise UsageError(f"--method {args.method} learns nothing from images; drop --target")
    if args.model is not None and (args.target or args.param):
        raise UsageError("--target and --param go with --method; a --model is already built")


def _augmenter(args: argparse.Namespace, report: Report) -> Augmenter | None:
    """The ``--model`` augmenter, or the ``--method`` one built (and fitted on ``--target``).

    None when ``--on-error stop`` ended the run while reading the targets.
    """
    if args.model is not None:
        return load_model(args, expected=Augmenter)
    if args.method in FITTED_AUGMENTERS:
        return fit_from_targets(args, report)[0]
    augmenter = make_estimator(args.method, parse_params(args.param))
    configure_runtime(augmenter, args.device, args.batch_size)
    return augmenter.fit()


def image_stream(seed: int, relative: Path) -> np.random.Generator:
    """The random stream of one image under ``--seed``: the seed and its relative name.

    Parameters
    ----------
    seed : int
        ``--seed``, >= 0.
    relative : Path
        The image's path relative to its input, as its output is named.

    Returns
    -------
    numpy.random.Generator
        Seeded by ``seed`` and the SHA-256 of the name's POSIX form.
    """
    digest = hashlib.sha256(relative.as_posix().encode("utf-8")).digest()
    words = np.frombuffer(digest[:16], dtype="<u4").tolist()
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, seed >> 32, *words]))


def _augment_files(
    augmenter: Augmenter, images: Sequence[ImageFile], args: argparse.Namespace, report: Report
) -> None:
    """Read, augment and write the images one by one, with a progress bar."""
    from tqdm.auto import tqdm

    stop = args.on_error == "stop"
    with tqdm(total=len(images), unit="file", disable=True if args.quiet else None) as bar:
        for image, data in read_images(images, report, stop=stop, max_pixels=args.max_pixels):
            stream = None if args.seed is None else image_stream(args.seed, image.relative)
            try:
                output = augmenter(data.rgb, random_state=stream)
            except Exception as err:  # reported by file name, the run continues
                report.fail(image.source, err)
            else:
                background = bool(is_background(tissue_mask(data.rgb)[None])[0])
                status = "passthrough_background" if background else "ok"
                write_output(image, data, output, status, args, report)
            bar.update(1)
            if report.failed and stop:
                break


def _log_summary(report: Report, n_files: int, out: Path) -> None:
    """Log how many files were augmented, and which were passed through unchanged."""
    counts = report.statuses
    logger.info(
        "augmented %d of %d files into %s: %d ok, %d passed through unchanged (too little tissue)",
        sum(counts.values()),
        n_files,
        out,
        counts["ok"],
        counts["passthrough_background"],
    )
    if report.passed_through:
        logger.info("passed through unchanged: %s", name_some(report.passed_through))
