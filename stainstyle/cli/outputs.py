"""Output folders: refused where they could overwrite an input, cleaned, and written into."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stainstyle._atomic import remove_stale_temporaries
from stainstyle.cli.errors import UsageError
from stainstyle.cli.inputs import ImageFile
from stainstyle.cli.report import Report
from stainstyle.data.images import ImageData, file_kind, missing_reason, write_image

logger = logging.getLogger(__name__)


def check_out_folder(out: Path, option: str = "--out") -> None:
    """Refuse an output path that exists and is not a folder.

    Parameters
    ----------
    out : Path
        Output folder.
    option : str, default="--out"
        The option that named it, for the message.

    Raises
    ------
    UsageError
        If ``out`` is an existing file, a dangling symbolic link or anything but a folder.
    """
    if os.path.lexists(out) and not out.is_dir():
        try:
            what = file_kind(os.stat(out).st_mode)
        except OSError as error:
            what = missing_reason(out, error)
        raise UsageError(f"{option} {out}: exists and is not a folder ({what}); name a folder")


def check_output_folder(out: Path, inputs: Sequence[Path], images: Sequence[ImageFile]) -> None:
    """Refuse an output folder that is a file, lies in an input folder or overwrites an input.

    Parameters
    ----------
    out : Path
        Output folder.
    inputs : sequence of Path
        The input files and folders as given.
    images : sequence of ImageFile
        The collected images.

    Raises
    ------
    UsageError
        If ``out`` is not a folder, or writing to it could overwrite an input.
    """
    check_out_folder(out)
    resolved = out.resolve()
    for path in inputs:
        if path.is_dir() and resolved.is_relative_to(path.resolve()):
            raise UsageError(
                f"--out {out}: is the input folder {path} or inside it; outputs are never "
                "written into an input folder, choose another --out"
            )
    sources = {image.source.resolve() for image in images}
    for image in images:
        if (resolved / image.relative).resolve() in sources:
            raise UsageError(
                f"--out {out}: would overwrite the input {image.source}; choose another --out"
            )


def remove_stale_outputs(folder: Path) -> None:
    """Remove the temporaries that killed runs left anywhere below an output folder.

    Parameters
    ----------
    folder : Path
        Output folder; a missing folder is fine.
    """
    removed = remove_stale_temporaries(folder, recursive=True)
    if removed:
        logger.info(
            "removed %d temporary file(s) left in %s by a run that was killed",
            len(removed),
            folder,
        )


def write_output(
    image: ImageFile,
    data: ImageData,
    output: np.ndarray,
    status: str,
    args: argparse.Namespace,
    report: Report,
) -> None:
    """Write one output image under ``--out`` and count its status, or report its failure.

    Parameters
    ----------
    image : ImageFile
        The input it came from; the output keeps its relative name.
    data : ImageData
        The input as read: the output keeps its format (8 bits per channel).
    output : ndarray of shape (H, W, 3), dtype uint8
        The pixels to write.
    status : str
        The tile's status (``"ok"``, ``"passthrough_background"``, ...), counted in
        ``report.statuses``; any other than ``"ok"`` also lists the file as passed through.
    args : argparse.Namespace
        The command's arguments (``out``, ``jpeg_quality``).
    report : Report
        Collects the status, or the failure.
    """
    try:
        write_image(args.out / image.relative, output, like=data, jpeg_quality=args.jpeg_quality)
    except Exception as err:  # reported by file name, the run continues
        report.fail(image.source, err)
        return
    report.statuses[str(status)] += 1
    if status != "ok":
        report.passed_through.append(image.source)
