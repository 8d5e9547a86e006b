"""``stainstyle normalize-slides``: normalize whole slides with a saved model, on a Dask cluster.

Each slide becomes ``OUT/<slide stem>.tiff``, a pyramidal BigTIFF normalized with one fixed
mapping per slide (:func:`stainstyle.wsi.normalize_slides`), one slide per task on a local
cluster of worker processes or on the cluster at ``--scheduler``. Slides already written are
skipped (``--overwrite`` redoes them), so an interrupted run is finished by running it again. A
slide that fails (missing, unreadable, without tissue, an ``--mpp`` it cannot give) is reported
by name, in the log and in ``OUT/manifest.csv``, and the others go on (exit code 1). Outputs
never go into an input folder.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from stainstyle.cli.errors import UsageError
from stainstyle.cli.estimators import load_model
from stainstyle.cli.inputs import find_inputs
from stainstyle.cli.options import (
    add_runtime_options,
    add_verbosity_options,
    integer_in,
    positive_int,
)
from stainstyle.cli.outputs import check_output_folder
from stainstyle.cli.report import Report, finish
from stainstyle.wsi import SLIDE_SUFFIXES, normalize_slides, plan_outputs
from stainstyle.wsi.writer import COMPRESSIONS

logger = logging.getLogger(__name__)


def register_subcommand(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Declare ``normalize-slides`` and its arguments; see :class:`~stainstyle.cli.app.Command`."""
    parser = commands.add_parser(
        "normalize-slides",
        help="normalize whole slides with a saved model, one slide per task on a Dask cluster",
        description="Normalize whole-slide images with a saved model into pyramidal BigTIFF "
        "files OUT/<slide stem>.tiff, with one fixed mapping per slide (no seams), one slide "
        "per task on a local Dask cluster or on --scheduler. Slides already written are "
        "skipped, so an interrupted run is finished by running it again. Writes "
        "OUT/manifest.csv, OUT/manifest.json and the quality-control sheet OUT/qc.png; never "
        "writes into an input folder.",
    )
    parser.add_argument("model", metavar="MODEL", help="saved model folder or Hub repository id")
    parser.add_argument(
        "slides",
        nargs="+",
        type=Path,
        metavar="SLIDES",
        help=f"slide files, or folders searched for {', '.join(sorted(SLIDE_SUFFIXES))} files",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--revision", help="branch, tag or commit of a Hub repository")
    _add_output_options(parser)
    _add_cluster_options(parser)
    add_runtime_options(parser)
    add_verbosity_options(parser)
    return parser


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    """Resolution, tiling, compression and sampling of the normalized slides."""
    parser.add_argument(
        "--mpp",
        type=_positive_float,
        metavar="UM",
        help="microns per pixel of the outputs (default: each slide's level 0 as it is)",
    )
    parser.add_argument(
        "--tile-size",
        type=int,
        choices=(256, 512),
        default=256,
        help="side of the tiles normalized and written (default: 256)",
    )
    parser.add_argument(
        "--compression",
        choices=sorted(COMPRESSIONS),
        default="jpeg",
        help="tile compression of the outputs; deflate and zstd are lossless (default: jpeg)",
    )
    parser.add_argument(
        "--jpeg-quality",
        type=integer_in(1, 100),
        default=90,
        metavar="1-100",
        help="quality of JPEG tiles, 1 to 100 (default: 90)",
    )
    parser.add_argument(
        "--sample",
        type=positive_int,
        default=256,
        metavar="N",
        help="tissue tiles sampled per slide to measure its statistics (default: 256)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="normalize slides whose output exists again"
    )


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """Where the slides run: a local Dask cluster of ``--workers``, or ``--scheduler``."""
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="worker processes of the local Dask cluster (default: 2)",
    )
    cluster.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="address of a running Dask scheduler to run on, e.g. tcp://10.0.0.5:8786",
    )


def run(args: argparse.Namespace) -> int:
    """Normalize the ``SLIDES`` into ``--out`` with ``MODEL``.

    Returns exit code 0, or 1 if a slide failed; see :class:`~stainstyle.cli.app.Command`.
    """
    report = Report()
    slides = _find_slides(args.slides, args.out, report)
    normalizer = load_model(args, option="MODEL")
    with _client(args.scheduler) as client:
        manifest = normalize_slides(
            slides,
            normalizer,
            args.out,
            client=client,
            workers=args.workers,
            overwrite=args.overwrite,
            mpp=args.mpp,
            tile_size=args.tile_size,
            compression=args.compression,
            jpeg_quality=args.jpeg_quality,
            sample=args.sample,
            progress=False if args.quiet else None,
        )
    report.failed.extend((result.input, result.error) for result in manifest.failed)
    logger.info("manifest: %s; quality-control sheet: %s", manifest.csv_path, manifest.qc_sheet)
    return finish(report)


def _find_slides(paths: Sequence[Path], out: Path, report: Report) -> list[Path]:
    """The slide files given and those in the folders given, in order; ``--out`` checked.

    A path that does not exist is kept as a slide, so that it fails by name while the others
    are normalized.
    """
    slides, present, found = [], [], []
    for path in paths:
        if not os.path.exists(path):
            slides.append(path)
            continue
        files = find_inputs([path], report, SLIDE_SUFFIXES)
        present.append(path)
        found.extend(files)
        slides.extend(file.source for file in files)
    check_output_folder(out, present, found)
    try:
        plan_outputs(slides, out)
    except ValueError as err:
        raise UsageError(str(err)) from err
    return slides


def _positive_float(text: str) -> float:
    """An argparse ``type``: a positive finite number."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


@contextlib.contextmanager
def _client(address: str | None) -> Iterator[object]:
    """A Dask client connected to ``--scheduler`` for the block; None without one."""
    if address is None:
        yield None
        return
    from distributed import Client

    try:
        client = Client(address)
    except (OSError, ValueError) as err:
        raise UsageError(f"--scheduler {address}: cannot connect ({err})") from err
    with client:
        yield client
