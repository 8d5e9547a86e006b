"""The ``stainstyle`` command: fit, share and apply normalizers without writing code.

Commands (``stainstyle COMMAND --help`` describes each)::

    stainstyle fit --method macenko --target TARGET --out MODEL_DIR
    stainstyle normalize --model MODEL_DIR_OR_REPO INPUT... --out OUT_DIR
    stainstyle normalize --method reinhard --target TARGET INPUT... --out OUT_DIR
    stainstyle train-sst --target DIR [--labels CSV] --out MODEL_DIR [--preset cpu|paper]
    stainstyle benchmark table1 [ARGS...]

``--target`` takes one image or folder and can be repeated.

Images (PNG, JPEG, TIFF, BMP) or folders of them go in, searched recursively; every command
reads them through one function (:func:`read_images`, built on
:func:`stainstyle.data.images.read_image_data`). A file that cannot be read (corrupt,
truncated, larger than ``--max-pixels``, multi-page, ...), normalized or written is reported by
name; the others continue (``--on-error skip``, the default) or the run stops (``--on-error
stop``). Entries of input folders that are not regular files (FIFOs, sockets, devices, dangling
symbolic links, symbolic link loops) are never opened; they are listed as skipped.

``normalize`` writes each output under the same relative name and in the same format, with 8
bits per channel, atomically (a temporary file renamed into place), never into an input folder.
Temporaries left by a run that was killed are removed by the next run in the same output
folder. Ctrl-C stops a run with one line, keeping the outputs already written.

Exit codes: 0 success, 1 some files failed, 2 usage error, 130 interrupted (Ctrl-C),
143 terminated (SIGTERM). No Python traceback is shown unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import os
import runpy
import signal
import stat
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stainstyle._atomic import remove_stale_temporaries
from stainstyle._version import __version__
from stainstyle.data.images import (
    IMAGE_SUFFIXES,
    ImageData,
    ImageReadError,
    file_kind,
    missing_reason,
    read_image_data,
    write_image,
)

logger = logging.getLogger("stainstyle.cli")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: Exit codes of a run stopped by a signal: 128 + the signal number, as shells report it.
EXIT_INTERRUPTED, EXIT_TERMINATED = 128 + signal.SIGINT, 128 + signal.SIGTERM

#: The exit codes, as ``--help`` states them.
EXIT_CODES = (
    f"{EXIT_OK} success, {EXIT_FAILED} some files failed, {EXIT_USAGE} usage error, "
    f"{EXIT_INTERRUPTED} interrupted (Ctrl-C), {EXIT_TERMINATED} terminated (SIGTERM)"
)

#: Benchmarks dispatched by ``stainstyle benchmark NAME`` (scripts of the source repository).
BENCHMARKS_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


class UsageError(Exception):
    """A command-line argument that cannot be acted on (exit code 2)."""


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM; raised in the main thread like a Ctrl-C."""


# ------------------------------------------------------------------------------ input files
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


def collect_images(inputs: Sequence[Path]) -> Inputs:
    """Expand files and folders into image files with their relative output paths.

    Folders are searched recursively for regular files with a suffix in
    ``IMAGE_SUFFIXES``, skipping hidden files and folders. Nothing found is opened: a FIFO,
    socket or device, a dangling symbolic link, a symbolic link loop and a symbolic link to a
    folder (not followed) are listed in :attr:`Inputs.skipped` with the reason.

    Parameters
    ----------
    inputs : sequence of Path
        Image files and folders.

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
            _walk_folder(path, Path(), {(info.st_dev, info.st_ino)}, found)
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
            f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {list(map(str, inputs))}"
            + (f"; skipped {skipped}" if skipped else "")
        )
    seen: dict[Path, Path] = {}
    for image in found.images:
        other = seen.setdefault(image.relative, image.source)
        if other != image.source:
            raise UsageError(
                f"{other} and {image.source} would both be written as {image.relative}; "
                "normalize them in separate runs"
            )
    return found


def _walk_folder(folder: Path, relative: Path, ancestors: set, found: Inputs) -> None:
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
                _walk_folder(path, relative / name, ancestors | {key}, found)
        elif stat.S_ISREG(info.st_mode):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                found.images.append(ImageFile(path, relative / name))
        else:
            found.skipped.append((path, f"is {file_kind(info.st_mode)}, not a regular file"))


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


# ------------------------------------------------------------------------------ the report
@dataclass
class Report:
    """Outcome of a run over files.

    Attributes
    ----------
    statuses : Counter
        Normalized files per tile status (``"ok"``, ``"passthrough_background"``, ...).
    failed : list of (Path, str)
        Files that could not be read, normalized or written, with the error.
    passed_through : list of Path
        Files written unchanged (too little tissue, or the method could not model them).
    skipped : list of (Path, str)
        Entries of input folders never opened (not regular files), with the reason.
    converted : dict of str to list of Path
        Files per lossy conversion made on reading (e.g. 16-bit samples scaled to 8 bits).
    """

    statuses: Counter = field(default_factory=Counter)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    passed_through: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    converted: dict[str, list[Path]] = field(default_factory=dict)

    def fail(self, path: Path, error: BaseException) -> None:
        """Record and log a failed file."""
        if isinstance(error, ImageReadError):
            message = error.reason  # the file is named once, below
        else:
            message = f"{type(error).__name__}: {error}"
        self.failed.append((path, message))
        logger.error("error: %s: %s", path, message)

    def skip(self, path: Path, reason: str) -> None:
        """Record and log an entry skipped without being opened."""
        self.skipped.append((path, reason))
        logger.warning("skipped %s: %s", path, reason)

    def note(self, path: Path, notes: Sequence[str]) -> None:
        """Record the lossy conversions made while reading a file."""
        for note in notes:
            self.converted.setdefault(note, []).append(path)


def _some(paths: Sequence[Any], shown: int = 10) -> str:
    more = len(paths) - shown
    return ", ".join(map(str, paths[:shown])) + (f" and {more} more" if more > 0 else "")


def _finish(report: Report) -> int:
    for note, paths in report.converted.items():
        logger.info("%s in %d file(s): %s", note, len(paths), _some(paths))
    if report.skipped:
        logger.warning(
            "%d entries that are not regular files were skipped: %s",
            len(report.skipped),
            _some([path for path, _ in report.skipped]),
        )
    if report.failed:
        logger.error(
            "%d file(s) failed: %s", len(report.failed), _some([p for p, _ in report.failed], 50)
        )
        return EXIT_FAILED
    return EXIT_OK


def find_inputs(paths: Sequence[Path], report: Report) -> list[ImageFile]:
    """:func:`collect_images`, with the skipped entries recorded in ``report``.

    Parameters
    ----------
    paths : sequence of Path
        Image files and folders.
    report : Report
        Receives the skipped entries.

    Returns
    -------
    list of ImageFile
    """
    inputs = collect_images(paths)
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


# -------------------------------------------------------------------------------- estimators
def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``--param key=value`` items; values are JSON (``1.5``, ``true``) or plain strings.

    Parameters
    ----------
    items : sequence of str

    Returns
    -------
    dict

    Raises
    ------
    UsageError
        If an item has no ``=``.
    """
    params = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {item!r}: expected KEY=VALUE, e.g. --param alpha=1.0")
        try:
            params[key] = json.loads(text)
        except json.JSONDecodeError:
            params[key] = text
    return params


def make_estimator(method: str, params: dict[str, Any]):
    """A built-in method's estimator with the given parameters.

    Parameters
    ----------
    method : str
        Key of :data:`stainstyle.hub.BUILTIN_METHODS`.
    params : dict
        Constructor parameters.

    Returns
    -------
    StainNormalizer

    Raises
    ------
    UsageError
        If the method is unavailable or a parameter is unknown.
    """
    from stainstyle.hub import method_class

    try:
        cls = method_class(method)
    except (ValueError, ImportError) as err:
        raise UsageError(str(err)) from err
    known = cls().get_params(deep=False)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise UsageError(
            f"--param: {unknown} not parameters of {cls.__name__}; it takes {sorted(known)}"
        )
    return cls(**params)


def configure_runtime(estimator, device: str | None, batch_size: int | None) -> None:
    """Apply ``--device`` and ``--batch-size`` to an estimator that has those parameters.

    Parameters
    ----------
    estimator : StainNormalizer
    device : str or None
        Torch device string; ignored with a warning by methods that run on numpy.
    batch_size : int or None
        Tiles per batch.

    Raises
    ------
    UsageError
        If ``device`` is not available on this machine.
    """
    from stainstyle.base import resolve_device

    params = estimator.get_params(deep=False)
    if device is not None:
        if "device" in params:
            try:
                resolve_device(device)  # fail once here, not once per file
            except (ValueError, RuntimeError) as err:
                raise UsageError(f"--device {device}: {err}") from err
            estimator.set_params(device=device)
        else:
            logger.warning(
                "%s runs on the CPU with numpy; --device %s is ignored",
                type(estimator).__name__,
                device,
            )
    if batch_size is not None:
        estimator.set_params(batch_size=batch_size)


# ---------------------------------------------------------------------------------- commands
def _fit_from_targets(args: argparse.Namespace, report: Report):
    images = find_inputs(args.target, report)
    estimator = make_estimator(args.method, parse_params(args.param))
    configure_runtime(estimator, args.device, args.batch_size)
    stop = args.on_error == "stop"
    tiles = [
        data.rgb for _, data in read_images(images, report, stop=stop, max_pixels=args.max_pixels)
    ]
    if report.failed and stop:
        return None, 0
    if not tiles:
        raise UsageError("--target: none of the target images could be read")
    logger.info("fitting %s on %d target tiles", type(estimator).__name__, len(tiles))
    return estimator.fit(tiles), len(tiles)


def _training_description(args: argparse.Namespace, n_tiles: int) -> str:
    if args.training_data:
        return args.training_data
    names = ", ".join(f"`{Path(p).name}`" for p in args.target)
    return f"{n_tiles} tiles from {names}, fitted with `stainstyle {args.command}`."


def run_fit(args: argparse.Namespace) -> int:
    """``stainstyle fit``: fit a method on target images and save it as a model folder."""
    check_out_folder(args.out)
    remove_stale_outputs(args.out)
    report = Report()
    estimator, n_tiles = _fit_from_targets(args, report)
    if estimator is None:
        return _finish(report)
    card = {"training_data": _training_description(args, n_tiles)}
    estimator.save_pretrained(args.out, model_card_kwargs=card)
    logger.info("saved %s to %s", type(estimator).__name__, args.out)
    return _finish(report)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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
    outputs, status = normalizer.transform_with_status(list(images))
    return outputs, status


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


def _load_model(args: argparse.Namespace):
    from stainstyle.hub import load

    try:
        normalizer = load(args.model, revision=args.revision)
    except FileNotFoundError as err:
        if os.path.exists(args.model):
            raise  # a damaged model folder: a failure (exit 1), not a usage error
        raise UsageError(f"--model: {err}") from err
    configure_runtime(normalizer, args.device, args.batch_size)
    return normalizer


def run_normalize(args: argparse.Namespace) -> int:
    """``stainstyle normalize``: normalize images with a saved model or a one-step fit."""
    from tqdm.auto import tqdm

    report = Report()
    images = find_inputs(args.inputs, report)
    check_output_folder(args.out, args.inputs, images)
    remove_stale_outputs(args.out)
    stop = args.on_error == "stop"
    if args.model is not None:
        normalizer = _load_model(args)
    else:
        normalizer, _ = _fit_from_targets(args, report)
        if normalizer is None:
            return _finish(report)
    chunk_size = args.batch_size or normalizer.batch_size
    with tqdm(total=len(images), unit="file", disable=True if args.quiet else None) as bar:
        for chunk in _chunks(images, chunk_size):
            loaded = list(read_images(chunk, report, stop=stop, max_pixels=args.max_pixels))
            for (image, data), output, status in _normalize_chunk(normalizer, loaded, report):
                try:
                    write_image(
                        args.out / image.relative, output, like=data, jpeg_quality=args.jpeg_quality
                    )
                except Exception as err:  # reported by file name, the run continues
                    report.fail(image.source, err)
                    continue
                report.statuses[str(status)] += 1
                if status != "ok":
                    report.passed_through.append(image.source)
            bar.update(len(chunk))
            if report.failed and stop:
                break
    counts = report.statuses
    logger.info(
        "normalized %d of %d files into %s: %d ok, %d passed through unchanged (%d with too "
        "little tissue, %d the method could not model)",
        sum(counts.values()),
        len(images),
        args.out,
        counts["ok"],
        counts["passthrough_background"] + counts["passthrough_degenerate"],
        counts["passthrough_background"],
        counts["passthrough_degenerate"],
    )
    if report.passed_through:
        logger.info("passed through unchanged: %s", _some(report.passed_through))
    return _finish(report)


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


def run_train_sst(args: argparse.Namespace) -> int:
    """``stainstyle train-sst``: train a StainStyleTransfer on target images and save it."""
    checkpoints = args.checkpoint_dir or args.out.parent / f"{args.out.name}-checkpoints"
    check_out_folder(args.out)
    check_out_folder(checkpoints, "--checkpoint-dir")
    report = Report()
    images = find_inputs(args.target, report)
    labels = read_labels(args.labels, images) if args.labels is not None else None
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
    estimator = make_estimator("sst", params)
    configure_runtime(estimator, args.device, args.batch_size)
    remove_stale_outputs(args.out)
    remove_stale_outputs(checkpoints)
    label_of = dict(zip(images, labels or [None] * len(images), strict=True))
    stop = args.on_error == "stop"
    tiles, kept = [], []
    for image, data in read_images(images, report, stop=stop, max_pixels=args.max_pixels):
        tiles.append(data.rgb)
        kept.append(label_of[image])
    if report.failed and stop:
        return _finish(report)
    if not tiles:
        raise UsageError("--target: none of the target images could be read")
    logger.info("training StainStyleTransfer (preset %s) on %d tiles", args.preset, len(tiles))
    estimator.fit(tiles, None if labels is None else np.asarray(kept))
    card = {"training_data": _training_description(args, len(tiles))}
    estimator.save_pretrained(args.out, model_card_kwargs=card)
    logger.info("saved to %s (checkpoints in %s)", args.out, checkpoints)
    return _finish(report)


def run_benchmark(args: argparse.Namespace) -> int:
    """``stainstyle benchmark NAME``: run ``benchmarks/NAME.py`` of the source repository."""
    script = BENCHMARKS_DIR / f"{args.name}.py"
    if not script.is_file():
        raise UsageError(
            f"benchmark {args.name!r}: {script} not found; benchmarks ship with the source "
            "repository, run this command from a source checkout"
        )
    # As `python benchmarks/NAME.py ARGS` would: its folder first on sys.path, its own argv.
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [str(script), *args.args]
    sys.path.insert(0, str(script.parent))
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_FAILED)
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return EXIT_OK


# ------------------------------------------------------------------------------------ parser
def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        help="torch device for neural methods: cpu, cuda, cuda:1 or auto (default: the model's)",
    )
    parser.add_argument(
        "--batch-size", type=_positive_int, help="tiles processed at once (default: the model's)"
    )
    parser.add_argument(
        "--on-error",
        choices=("skip", "stop"),
        default="skip",
        help="on an unreadable or failing file: report it and continue (skip) or stop",
    )
    parser.add_argument(
        "--max-pixels",
        type=_positive_int,
        metavar="N",
        help="refuse images with more than N pixels, from their header, before decoding them "
        "(default: Pillow's decompression-bomb limit, PIL.Image.MAX_IMAGE_PIXELS)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    _add_debug(parser, default=argparse.SUPPRESS)


def _add_debug(parser: argparse.ArgumentParser, default: Any) -> None:
    # SUPPRESS on subcommands: their default must not overwrite a --debug given before them.
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="show debug messages, and the traceback of an unexpected error",
    )


def _add_target(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument(
        "--target",
        action="append",
        type=Path,
        required=required,
        metavar="PATH",
        help="target-style image or folder of images; repeat for several",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method parameter, repeatable; VALUE is JSON (1.5, true) or a string",
    )
    parser.add_argument(
        "--training-data",
        help="description of the target tiles for the model card (default: a short summary)",
    )


def _integer_in(low: int, high: int | None):
    """An argparse ``type`` accepting integers from ``low`` to ``high`` (None: no maximum)."""
    expected = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


_positive_int = _integer_in(1, None)
_jpeg_quality = _integer_in(1, 100)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``stainstyle`` command.

    Returns
    -------
    argparse.ArgumentParser
    """
    from stainstyle.methods import METHODS

    classic = sorted(METHODS)
    parser = argparse.ArgumentParser(
        prog="stainstyle",
        description="Stain normalization and stain-style transfer for H&E tiles.",
        epilog=f"Exit codes: {EXIT_CODES}.",
    )
    parser.add_argument("--version", action="version", version=f"stainstyle {__version__}")
    _add_debug(parser, default=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = commands.add_parser(
        "fit",
        help="fit a method on target images and save the model folder",
        description="Fit a method on target-style images and save it as a model folder "
        "(config.json, model.safetensors, README.md) that `normalize --model` and "
        "stainstyle.load read, and that can be uploaded to the Hugging Face Hub.",
    )
    fit.add_argument("--method", choices=classic, required=True, help="normalization method")
    _add_target(fit, required=True)
    fit.add_argument("--out", type=Path, required=True, metavar="MODEL_DIR", help="model folder")
    _add_common(fit)
    fit.set_defaults(func=run_fit)

    normalize = commands.add_parser(
        "normalize",
        help="normalize images with a saved model, or fit and normalize in one step",
        description="Normalize images into a target stain style. Outputs keep the inputs' "
        "relative names and formats (8 bits per channel), are written atomically, and never go "
        "into an input folder.",
    )
    source = normalize.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model", metavar="MODEL_DIR_OR_REPO", help="saved model folder or Hub repository id"
    )
    source.add_argument("--method", choices=classic, help="fit this method on --target first")
    normalize.add_argument("--revision", help="branch, tag or commit of a Hub repository")
    _add_target(normalize, required=False)
    normalize.add_argument(
        "inputs", nargs="+", type=Path, metavar="INPUT", help="images or folders"
    )
    normalize.add_argument(
        "--out", type=Path, required=True, metavar="OUT_DIR", help="output folder"
    )
    normalize.add_argument(
        "--jpeg-quality",
        type=_jpeg_quality,
        default=95,
        metavar="1-100",
        help="quality of JPEG outputs, 1 to 100 (default: 95)",
    )
    _add_common(normalize)
    normalize.set_defaults(func=run_normalize)

    train = commands.add_parser(
        "train-sst",
        help="train a neural stain-style transfer model on target images",
        description="Train a StainStyleTransfer (Cho et al. 2017) on target-style tiles and save "
        "the model folder. A checkpoint is written after every epoch; --resume continues from it.",
    )
    _add_target(train, required=True)
    train.add_argument(
        "--labels",
        type=Path,
        metavar="CSV",
        help="CSV with columns file,label: trains the classifier of the feature-preserving loss",
    )
    train.add_argument("--out", type=Path, required=True, metavar="MODEL_DIR", help="model folder")
    train.add_argument("--preset", choices=("cpu", "paper"), default="cpu", help="network sizes")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    train.add_argument(
        "--checkpoint-dir", type=Path, help="checkpoint folder (default: MODEL_DIR-checkpoints)"
    )
    train.add_argument("--max-epochs", type=_positive_int, help="epochs (default: the preset's)")
    train.add_argument("--time-budget", type=float, help="stop training after this many seconds")
    _add_common(train)
    train.set_defaults(func=run_train_sst)

    bench = commands.add_parser(
        "benchmark",
        help="run a benchmark script of the source repository (e.g. table1)",
        description="Run benchmarks/NAME.py of a source checkout; remaining arguments go to it.",
    )
    bench.add_argument("name", help="benchmark name, e.g. table1")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the benchmark")
    bench.set_defaults(func=run_benchmark)
    return parser


@contextlib.contextmanager
def _log_to_stderr(level: int) -> Iterator[None]:
    """Log the package's messages to stderr as ``stainstyle: MESSAGE`` for the block."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("stainstyle: %(message)s"))
    package_logger = logging.getLogger("stainstyle")
    saved_level = package_logger.level
    package_logger.addHandler(handler)
    package_logger.setLevel(level)
    try:
        yield
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(saved_level)


def _raise_terminated(signum, frame):
    raise Terminated(signum)


@contextlib.contextmanager
def _sigterm_as_exception() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` for the block, so that cleanups run as on Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set in the main thread
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_arguments(args: argparse.Namespace) -> None:
    if args.command == "normalize" and args.method is not None and not args.target:
        raise UsageError("--method needs --target: the images whose style to learn")
    if args.command == "normalize" and args.model is not None and args.target:
        raise UsageError("--target goes with --method; a --model is already fitted")


#: Errors of files, models and methods: reported in one line without a hint to --debug.
_EXPECTED_ERRORS = (OSError, ValueError, TypeError, ImportError)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stainstyle`` console script.

    Every outcome is a short message on stderr and an exit code; a Python traceback is shown
    only with ``--debug``.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        Exit code: 0 success, 1 some files failed, 2 usage error, 130 interrupted (Ctrl-C),
        143 terminated (SIGTERM). Argument errors found by the parser exit with 2 through
        ``SystemExit``, as argparse does.
    """
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:  # before logging is set up
        sys.stderr.write("stainstyle: interrupted\n")
        return EXIT_INTERRUPTED
    debug = getattr(args, "debug", False)
    if debug:
        level = logging.DEBUG
    else:
        level = logging.WARNING if getattr(args, "quiet", False) else logging.INFO
    with _log_to_stderr(level):
        try:
            with _sigterm_as_exception():
                _check_arguments(args)
                return args.func(args)
        except UsageError as err:
            logger.error("%s: usage error: %s", args.command, err)
            return EXIT_USAGE
        except Terminated:
            logger.error("%s: terminated; outputs written so far are kept", args.command)
            return EXIT_TERMINATED
        except KeyboardInterrupt:
            logger.error("%s: interrupted; outputs written so far are kept", args.command)
            return EXIT_INTERRUPTED
        except Exception as err:
            hint = "" if debug or isinstance(err, _EXPECTED_ERRORS) else " (--debug shows where)"
            logger.error(
                "%s: error: %s: %s%s",
                args.command,
                type(err).__name__,
                err,
                hint,
                exc_info=debug,
            )
            return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
