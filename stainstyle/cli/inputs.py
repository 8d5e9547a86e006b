"""Input images: the files found in the given files and folders, and reading them by name.

Every command finds its images with :func:`collect_images` and reads them with
:func:`read_images` (built on :func:`stainstyle.data.images.read_image_data`), which reports
each file that cannot be read by name and goes on or stops, as ``--on-error`` says.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stainstyle.cli.errors import UsageError
from stainstyle.cli.report import Report
from stainstyle.data.images import (
    IMAGE_SUFFIXES,
    ImageData,
    ImageReadError,
    file_kind,
    missing_reason,
    read_image_data,
)


@dataclass(frozen=True)
class ImageFile:
    """One input image and where its output goes.

    Attributes
    ----------
    source : Path
        The input file.
    relative : Path
        Output path relative to the output folder (the path below its input folder, or the
        file name for a file given directly).
    """

    source: Path
    relative: Path


@dataclass
class Inputs:
    """The image files found in the inputs, and the entries skipped without being opened.

    Attributes
    ----------
    images : list of ImageFile
        In input order, folders sorted by path.
    skipped : list of (Path, str)
        Entries of input folders that are not regular files or folders, with the reason.
    """

    images: list[ImageFile]
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def collect_images(inputs: Sequence[Path], suffixes: Collection[str] = IMAGE_SUFFIXES) -> Inputs:
    """Expand files and folders into image files with their relative output paths.

    Folders are searched recursively for regular files with a suffix in ``suffixes``, skipping
    hidden files and folders. Nothing found is opened: a FIFO, socket or device, a dangling
    symbolic link, a symbolic link loop and a symbolic link to a folder (not followed) are
    listed in :attr:`Inputs.skipped` with the reason.

    Parameters
    ----------
    inputs : sequence of Path
        Image files and folders.
    suffixes : collection of str, default=IMAGE_SUFFIXES
        Lower-case suffixes of the files collected from folders (e.g. the slides' suffixes).

    Returns
    -------
    Inputs

    Raises
    ------
    UsageError
        If an input does not exist or is not a file or folder, nothing is found, or two inputs
        map to the same output.
    """
    found = Inputs([])
    for path in inputs:
        try:
            info = os.stat(path)
        except OSError as error:
            reason = missing_reason(path, error)
            if reason == "file not found":
                reason = "no such file or folder"
            raise UsageError(f"{path}: {reason}") from None
        if stat.S_ISDIR(info.st_mode):
            _walk_folder(path, Path(), {(info.st_dev, info.st_ino)}, found, suffixes)
        elif stat.S_ISREG(info.st_mode):
            found.images.append(ImageFile(path, Path(path.name)))
        else:
            raise UsageError(
                f"{path}: is {file_kind(info.st_mode)}, not an image file or folder; it is "
                "never opened"
            )
    if not found.images:
        skipped = "; ".join(f"{p}: {reason}" for p, reason in found.skipped[:5])
        raise UsageError(
            f"no image files ({', '.join(sorted(suffixes))}) in {list(map(str, inputs))}"
            + (f"; skipped {skipped}" if skipped else "")
        )
    _check_distinct_outputs(found.images)
    return found


def _check_distinct_outputs(images: Sequence[ImageFile]) -> None:
    """Refuse two inputs that would be written under the same relative name."""
    seen: dict[Path, Path] = {}
    for image in images:
        other = seen.setdefault(image.relative, image.source)
        if other != image.source:
            raise UsageError(
                f"{other} and {image.source} would both be written as {image.relative}; "
                "normalize them in separate runs"
            )


def _walk_folder(
    folder: Path, relative: Path, ancestors: set, found: Inputs, suffixes: Collection[str]
) -> None:
    """Add the image files below ``folder`` to ``found``, in sorted order, opening none."""
    try:
        names = sorted(entry.name for entry in os.scandir(folder))
    except OSError as error:
        found.skipped.append((folder, f"cannot list the folder ({error.strerror or error})"))
        return
    for name in names:
        if name.startswith("."):
            continue
        path = folder / name
        try:
            info = os.stat(path)  # follows symbolic links; never opens the file
        except OSError as error:
            found.skipped.append((path, missing_reason(path, error)))
            continue
        if stat.S_ISDIR(info.st_mode):
            key = (info.st_dev, info.st_ino)
            if key in ancestors:
                found.skipped.append((path, "symbolic link loop (to an enclosing folder)"))
            elif path.is_symlink():
                found.skipped.append((path, "symbolic link to a folder (not followed)"))
            else:
                _walk_folder(path, relative / name, ancestors | {key}, found, suffixes)
        elif stat.S_ISREG(info.st_mode):
            if path.suffix.lower() in suffixes:
                found.images.append(ImageFile(path, relative / name))
        else:
            found.skipped.append((path, f"is {file_kind(info.st_mode)}, not a regular file"))


def find_inputs(
    paths: Sequence[Path], report: Report, suffixes: Collection[str] = IMAGE_SUFFIXES
) -> list[ImageFile]:
    """:func:`collect_images`, with the skipped entries recorded in ``report``.

    Parameters
    ----------
    paths : sequence of Path
        Image files and folders.
    report : Report
        Receives the skipped entries.
    suffixes : collection of str, default=IMAGE_SUFFIXES
        Suffixes of the files collected from folders.

    Returns
    -------
    list of ImageFile
    """
    inputs = collect_images(paths, suffixes)
    for path, reason in inputs.skipped:
        report.skip(path, reason)
    return inputs.images


def read_images(
    images: Sequence[ImageFile], report: Report, *, stop: bool, max_pixels: int | None
) -> Iterator[tuple[ImageFile, ImageData]]:
    """Read input images, reporting each unreadable one by name: the one reader of the commands.

    Parameters
    ----------
    images : sequence of ImageFile
    report : Report
        Collects failures and conversion notes.
    stop : bool
        Stop at the first unreadable file.
    max_pixels : int or None
        Refuse larger images (from their header); None: Pillow's limit.

    Yields
    ------
    (ImageFile, ImageData)
        The readable images, in order.
    """
    for image in images:
        try:
            data = read_image_data(image.source, max_pixels=max_pixels)
        except ImageReadError as error:
            report.fail(image.source, error)
            if stop:
                return
            continue
        report.note(image.source, data.notes)
        yield image, data
