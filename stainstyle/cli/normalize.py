"""``stainstyle normalize``: normalize images with a saved model, or fit and normalize at once.

Outputs keep the inputs' relative names and formats (8 bits per channel), are written
atomically and never go into an input folder. Images are read and normalized in chunks of the
batch size; a chunk that fails as a whole is retried file by file, so that each failure is
reported by name and the other files are written.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stainstyle.base import StainNormalizer
from stainstyle.cli.errors import UsageError
from stainstyle.cli.estimators import fit_from_targets, load_model
from stainstyle.cli.inputs import ImageFile, find_inputs, read_images
from stainstyle.cli.options import (
    METHOD_CHOICES,
    add_image_output_options,
    add_run_options,
    add_target_options,
)
from stainstyle.cli.outputs import check_output_folder, remove_stale_outputs, write_output
from stainstyle.cli.report import Report, finish, name_some
from stainstyle.data.images import ImageData

logger = logging.getLogger(__name__)


def register_subcommand(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Declare ``normalize`` and its arguments; see :class:`~stainstyle.cli.app.Command`."""
    parser = commands.add_parser(
        "normalize",
        help="normalize images with a saved model, or fit and normalize in one step",
        description="Normalize images into a target stain style. Outputs keep the inputs' "
        "relative names and formats (8 bits per channel), are written atomically, and never go "
        "into an input folder.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model", metavar="MODEL", help="saved model folder, or Hub repository id namespace/name"
    )
    source.add_argument(
        "--method",
        choices=METHOD_CHOICES,
        metavar="METHOD",
        help=f"fit this method on --target first: {', '.join(METHOD_CHOICES)}",
    )
    parser.add_argument("--revision", help="branch, tag or commit of a Hub repository")
    add_target_options(parser, required=False, saves=False)
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="images or folders")
    add_image_output_options(parser)
    add_run_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Normalize the ``INPUT`` images into ``--out`` with ``--model``, or ``--method`` fitted first.

    Returns exit code 0, or 1 if a file failed; see :class:`~stainstyle.cli.app.Command`.
    """
    _check_source(args)
    report = Report()
    images = find_inputs(args.inputs, report)
    check_output_folder(args.out, args.inputs, images)
    remove_stale_outputs(args.out)
    if args.model is not None:
        normalizer = load_model(args, expected=StainNormalizer)
    else:
        normalizer, _ = fit_from_targets(args, report)
        if normalizer is None:
            return finish(report)
    _normalize_files(normalizer, images, args, report)
    _log_summary(report, len(images), args.out)
    return finish(report)


def _check_source(args: argparse.Namespace) -> None:
    """Refuse ``--method`` without ``--target`` and ``--model`` with it."""
    if args.method is not None and not args.target:
        raise UsageError("--method needs --target: the images whose style to learn")
    if args.model is not None and args.target:
        raise UsageError("--target goes with --method; a --model is already fitted")


def normalize_images(normalizer, images: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """Normalize images and report each one's status in a single pass.

    Parameters
    ----------
    normalizer : StainNormalizer
        A fitted normalizer.
    images : list of ndarray of shape (H_i, W_i, 3), dtype uint8

    Returns
    -------
    outputs : list of ndarray of shape (H_i, W_i, 3), dtype uint8
        Normalized images; passed-through images unchanged.
    status : ndarray of shape (n,), dtype str
        ``"ok"``, ``"passthrough_background"`` or ``"passthrough_degenerate"``, as
        :func:`stainstyle.tile_status` reports them.
    """
    return normalizer.transform_with_status(list(images))


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _normalize_files(
    normalizer, images: Sequence[ImageFile], args: argparse.Namespace, report: Report
) -> None:
    """Read, normalize and write the images chunk by chunk, with a progress bar."""
    from tqdm.auto import tqdm

    stop = args.on_error == "stop"
    chunk_size = args.batch_size or normalizer.batch_size
    with tqdm(total=len(images), unit="file", disable=True if args.quiet else None) as bar:
        for chunk in _chunks(images, chunk_size):
            loaded = list(read_images(chunk, report, stop=stop, max_pixels=args.max_pixels))
            for (image, data), output, status in _normalize_chunk(normalizer, loaded, report):
                write_output(image, data, output, status, args, report)
            bar.update(len(chunk))
            if report.failed and stop:
                break


def _normalize_chunk(normalizer, loaded: list[tuple[ImageFile, ImageData]], report: Report):
    """Normalize a chunk; if it fails as a whole, retry file by file to name the culprit.

    Returns ``((image, data), output, status)`` for each file normalized; the failures are in
    ``report``.
    """
    if not loaded:
        return []
    try:
        outputs, status = normalize_images(normalizer, [data.rgb for _, data in loaded])
        return list(zip(loaded, outputs, status, strict=True))
    except Exception as err:  # isolated per file below, where each error is reported
        if len(loaded) == 1:
            report.fail(loaded[0][0].source, err)
            return []
    return [done for item in loaded for done in _normalize_chunk(normalizer, [item], report)]


def _log_summary(report: Report, n_files: int, out: Path) -> None:
    """Log how many files were normalized, and which were passed through unchanged."""
    counts = report.statuses
    logger.info(
        "normalized %d of %d files into %s: %d ok, %d passed through unchanged (%d with too "
        "little tissue, %d the method could not model)",
        sum(counts.values()),
        n_files,
        out,
        counts["ok"],
        counts["passthrough_background"] + counts["passthrough_degenerate"],
        counts["passthrough_background"],
        counts["passthrough_degenerate"],
    )
    if report.passed_through:
        logger.info("passed through unchanged: %s", name_some(report.passed_through))
