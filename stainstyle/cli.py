"""The ``stainstyle`` command: fit, share and apply normalizers without writing code.

Commands (``stainstyle COMMAND --help`` describes each)::

    stainstyle fit --method macenko --target TARGET --out MODEL_DIR
    stainstyle normalize --model MODEL_DIR_OR_REPO INPUT... --out OUT_DIR
    stainstyle normalize --method reinhard --target TARGET INPUT... --out OUT_DIR
    stainstyle train-sst --target DIR [--labels CSV] --out MODEL_DIR [--preset cpu|paper]
    stainstyle benchmark table1 [ARGS...]

``--target`` takes one image or folder and can be repeated.

Images (PNG, JPEG, TIFF, BMP) or folders of them go in, searched recursively. ``normalize``
writes each output under the same relative name and in the same format, atomically (a
temporary file renamed into place), never into an input folder. A file that cannot be read,
normalized or written is reported by name; the others continue (``--on-error skip``, the
default) or the run stops (``--on-error stop``).

Exit codes: 0 success, 1 some files failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import runpy
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stainstyle._version import __version__

logger = logging.getLogger("stainstyle.cli")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: File suffixes collected from input folders (files named explicitly are always tried).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})

#: TIFF compressions written back as they were read; other TIFFs are written with LZW.
_TIFF_COMPRESSIONS = frozenset(
    {"raw", "tiff_lzw", "tiff_deflate", "tiff_adobe_deflate", "packbits"}
)

#: Benchmarks dispatched by ``stainstyle benchmark NAME`` (scripts of the source repository).
BENCHMARKS_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


class UsageError(Exception):
    """A command-line argument that cannot be acted on (exit code 2)."""


# ------------------------------------------------------------------------------ image files
@dataclass
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
class LoadedImage:
    """Pixels of an image and what is needed to write it back in the same format.

    Attributes
    ----------
    rgb : ndarray of shape (H, W, 3), dtype uint8
    format : str
        Pillow format name, e.g. ``"PNG"``.
    alpha : ndarray of shape (H, W), dtype uint8, or None
        The alpha channel, restored on output.
    save_options : dict
        ``dpi``, ``icc_profile`` and TIFF ``compression`` of the input.
    """

    rgb: np.ndarray
    format: str
    alpha: np.ndarray | None = None
    save_options: dict = field(default_factory=dict)


def collect_images(inputs: Sequence[Path]) -> list[ImageFile]:
    """Expand files and folders into image files with their relative output paths.

    Parameters
    ----------
    inputs : sequence of Path
        Image files and folders; folders are searched recursively for files with a suffix in
        :data:`IMAGE_SUFFIXES`, skipping hidden files and folders.

    Returns
    -------
    list of ImageFile
        In input order, folders sorted by path.

    Raises
    ------
    UsageError
        If an input does not exist, nothing is found, or two inputs map to the same output.
    """
    found: list[ImageFile] = []
    for path in inputs:
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                relative = file.relative_to(path)
                hidden = any(part.startswith(".") for part in relative.parts)
                if file.is_file() and not hidden and file.suffix.lower() in IMAGE_SUFFIXES:
                    found.append(ImageFile(file, relative))
        elif path.is_file():
            found.append(ImageFile(path, Path(path.name)))
        else:
            raise UsageError(f"{path}: no such file or folder")
    if not found:
        raise UsageError(
            f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {list(map(str, inputs))}"
        )
    seen: dict[Path, Path] = {}
    for image in found:
        other = seen.setdefault(image.relative, image.source)
        if other != image.source:
            raise UsageError(
                f"{other} and {image.source} would both be written as {image.relative}; "
                "normalize them in separate runs"
            )
    return found


def check_output_folder(out: Path, inputs: Sequence[Path], images: Sequence[ImageFile]) -> None:
    """Refuse an output folder that is or lies in an input folder, or would overwrite an input.

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
        If writing to ``out`` could overwrite an input.
    """
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


def read_image(path: Path) -> LoadedImage:
    """Read an image file fully (so that truncated files fail here).

    Parameters
    ----------
    path : Path

    Returns
    -------
    LoadedImage

    Raises
    ------
    OSError, ValueError
        If Pillow cannot read the file.
    """
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        options = {k: image.info[k] for k in ("dpi", "icc_profile") if k in image.info}
        if image.format == "TIFF":
            compression = image.info.get("compression")
            options["compression"] = (
                compression if compression in _TIFF_COMPRESSIONS else "tiff_lzw"
            )
        alpha = None
        if image.has_transparency_data:
            alpha = np.asarray(image.convert("RGBA"))[..., 3].copy()
        return LoadedImage(np.asarray(image.convert("RGB")), image.format, alpha, options)


def write_image_atomic(path: Path, image: LoadedImage, jpeg_quality: int) -> None:
    """Write ``image`` to ``path`` in its format: a temporary file, then a rename.

    A reader never sees a partial file, and an interrupted run leaves no truncated output.

    Parameters
    ----------
    path : Path
        Destination; its folder is created if needed.
    image : LoadedImage
        Pixels, format and save options.
    jpeg_quality : int
        Quality of JPEG outputs (1-100).
    """
    from PIL import Image

    pil = Image.fromarray(image.rgb)
    if image.alpha is not None:
        pil.putalpha(Image.fromarray(image.alpha))
    options = dict(image.save_options)
    if image.format == "JPEG":
        options["quality"] = jpeg_quality
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            pil.save(f, format=image.format, **options)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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


@dataclass
class Report:
    """Outcome of a run over files: counts per tile status, files passed through and failed."""

    statuses: Counter = field(default_factory=Counter)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    passed_through: list[Path] = field(default_factory=list)

    def fail(self, path: Path, error: BaseException) -> None:
        """Record and log a failed file."""
        message = f"{type(error).__name__}: {error}"
        self.failed.append((path, message))
        logger.error("error: %s: %s", path, message)


def read_all(images: Sequence[ImageFile], report: Report, stop: bool) -> list[np.ndarray]:
    """Read target images, reporting the unreadable ones.

    Parameters
    ----------
    images : sequence of ImageFile
    report : Report
        Collects failures.
    stop : bool
        Stop at the first failure.

    Returns
    -------
    list of ndarray of shape (H, W, 3), dtype uint8
    """
    tiles = []
    for image in images:
        try:
            tiles.append(read_image(image.source).rgb)
        except (OSError, ValueError) as err:
            report.fail(image.source, err)
            if stop:
                break
    return tiles


def _fit_from_targets(args: argparse.Namespace, report: Report):
    images = collect_images(args.target)
    estimator = make_estimator(args.method, parse_params(args.param))
    configure_runtime(estimator, args.device, args.batch_size)
    tiles = read_all(images, report, stop=args.on_error == "stop")
    if report.failed and args.on_error == "stop":
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


def _finish(report: Report) -> int:
    if report.failed:
        logger.error(
            "%d file(s) failed: %s", len(report.failed), ", ".join(str(p) for p, _ in report.failed)
        )
        return EXIT_FAILED
    return EXIT_OK


# ---------------------------------------------------------------------------------- commands
def run_fit(args: argparse.Namespace) -> int:
    """``stainstyle fit``: fit a method on target images and save it as a model folder."""
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
        Normalized images; passed-through images are the inputs themselves.
    status : ndarray of shape (n,), dtype str
        ``"ok"``, ``"passthrough_background"`` or ``"passthrough_degenerate"``, as
        :func:`stainstyle.tile_status` reports them.
    """
    from stainstyle._validation import as_tiles

    # transform() followed by tile_status() would run the method twice; the base class's
    # _normalize returns both the outputs and the per-tile status of tile_status in one pass.
    results, status = normalizer._normalize(as_tiles(images), produce_output=True)
    return [
        image if result is None else result for image, result in zip(images, results, strict=True)
    ], status


def _normalize_chunk(normalizer, loaded: list[tuple[ImageFile, LoadedImage]], report: Report):
    """Normalize a chunk; if it fails as a whole, retry file by file to name the culprit."""
    if not loaded:
        return []
    try:
        outputs, status = normalize_images(normalizer, [image.rgb for _, image in loaded])
        return list(zip(loaded, outputs, status, strict=True))
    except Exception:  # isolated per file below, where each error is reported
        if len(loaded) == 1:
            raise
    done = []
    for item in loaded:
        try:
            done.extend(_normalize_chunk(normalizer, [item], report))
        except Exception as err:  # reported by file name, the run continues
            report.fail(item[0].source, err)
    return done


def run_normalize(args: argparse.Namespace) -> int:
    """``stainstyle normalize``: normalize images with a saved model or a one-step fit."""
    from tqdm.auto import tqdm

    images = collect_images(args.inputs)
    check_output_folder(args.out, args.inputs, images)
    report = Report()
    stop = args.on_error == "stop"
    if args.model is not None:
        from stainstyle.hub import load

        try:
            normalizer = load(args.model, revision=args.revision)
        except FileNotFoundError as err:
            if os.path.exists(args.model):
                raise  # a damaged model folder: a failure (exit 1), not a usage error
            raise UsageError(f"--model: {err}") from err
        configure_runtime(normalizer, args.device, args.batch_size)
    else:
        normalizer, _ = _fit_from_targets(args, report)
        if normalizer is None:
            return _finish(report)
    chunk_size = args.batch_size or normalizer.batch_size
    with tqdm(total=len(images), unit="file", disable=True if args.quiet else None) as bar:
        for chunk in _chunks(images, chunk_size):
            loaded = []
            for image in chunk:
                try:
                    loaded.append((image, read_image(image.source)))
                except (OSError, ValueError) as err:
                    report.fail(image.source, err)
                    if stop:
                        break
            for (image, original), output, status in _normalize_chunk(normalizer, loaded, report):
                try:
                    result = LoadedImage(
                        output, original.format, original.alpha, original.save_options
                    )
                    write_image_atomic(args.out / image.relative, result, args.jpeg_quality)
                    report.statuses[str(status)] += 1
                    if status != "ok":
                        report.passed_through.append(image.source)
                except (OSError, ValueError) as err:
                    report.fail(image.source, err)
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
        shown = ", ".join(str(p) for p in report.passed_through[:10])
        more = len(report.passed_through) - 10
        logger.info(
            "passed through unchanged: %s%s", shown, f" and {more} more" if more > 0 else ""
        )
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
    images = collect_images(args.target)
    labels = read_labels(args.labels, images) if args.labels is not None else None
    params = parse_params(args.param)
    checkpoints = args.checkpoint_dir or args.out.parent / f"{args.out.name}-checkpoints"
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
    report = Report()
    tiles, kept = [], []
    for image, label in zip(images, labels or [None] * len(images), strict=True):
        try:
            tiles.append(read_image(image.source).rgb)
            kept.append(label)
        except (OSError, ValueError) as err:
            report.fail(image.source, err)
            if args.on_error == "stop":
                return _finish(report)
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
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")


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


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


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
        epilog="Exit codes: 0 success, 1 some files failed, 2 usage error.",
    )
    parser.add_argument("--version", action="version", version=f"stainstyle {__version__}")
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
        "relative names and formats, are written atomically, and never go into an input folder.",
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
        "--jpeg-quality", type=int, default=95, help="quality of JPEG outputs (default: 95)"
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stainstyle`` console script.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        Exit code: 0 success, 1 some files failed, 2 usage error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("stainstyle: %(message)s"))
    package_logger = logging.getLogger("stainstyle")
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.WARNING if getattr(args, "quiet", False) else logging.INFO)
    try:
        if args.command == "normalize" and args.method is not None and not args.target:
            raise UsageError("--method needs --target: the images whose style to learn")
        if args.command == "normalize" and args.model is not None and args.target:
            raise UsageError("--target goes with --method; a --model is already fitted")
        return args.func(args)
    except UsageError as err:
        logger.error("%s: usage error: %s", args.command, err)
        return EXIT_USAGE
    except (ValueError, TypeError, OSError, ImportError) as err:
        # Failures of the method or the model files: reported in one line, exit code 1.
        logger.debug("traceback", exc_info=True)
        logger.error("%s: error: %s: %s", args.command, type(err).__name__, err)
        return EXIT_FAILED
    finally:
        package_logger.removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
