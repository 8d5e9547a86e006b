"""What the benchmark scripts share: environment, device, timing, report files, method roster.

The scripts import this module as a sibling (``python benchmarks/NAME.py`` and ``stainstyle
benchmark NAME`` put ``benchmarks/`` first on ``sys.path``). It holds

- the environment of a run (:func:`environment`: library versions, platform, CPU, threads, GPU,
  git commit) and a one-line device description (:func:`describe_device`);
- timing (:class:`Timer`, :func:`best_time`), waiting for queued CUDA work when given a device;
- report files, all written atomically (:func:`write_json`, :func:`write_text`,
  :func:`write_csv`, :func:`write_arrays`), a Markdown table (:func:`markdown_table`), and the
  ``--report-from`` option that renders them again from a saved report (:func:`add_report_from`,
  :func:`read_report`);
- the frozen configuration a benchmark builds once from its command line
  (:func:`frozen_config`);
- the method roster (:func:`method_roster`): the methods of :mod:`stainstyle.registry`, with
  each benchmark's display labels and parameter overrides given as data;
- the real-data folder (:func:`data_root`) and logging set-up (:func:`configure_logging`).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import io
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from stainstyle._atomic import atomic_write, atomic_write_text
from stainstyle.registry import BUILTIN_METHODS, CLASSIC_METHODS, make_normalizer

#: The repository root (the folder holding ``benchmarks/``).
ROOT = Path(__file__).resolve().parents[1]

#: Libraries whose versions every report records besides stainstyle's: report key ->
#: distribution name.
LIBRARIES = {
    "numpy": "numpy",
    "scipy": "scipy",
    "scikit-learn": "scikit-learn",
    "scikit-image": "scikit-image",
    "torch": "torch",
    "pillow": "pillow",
}

#: Registry methods that map tiles to a target stain style, in the registry's order. Gray
#: normalization is left out: it removes colour (the first stage of stain-style transfer) and
#: has no target style to match.
STAIN_METHODS = tuple(method for method in BUILTIN_METHODS if method != "gray")

#: The classic (torch-free) ones among them.
CLASSIC_STAIN_METHODS = tuple(method for method in CLASSIC_METHODS if method in STAIN_METHODS)

logger = logging.getLogger("benchmarks")


# ---------------------------------------------------------------------------------- environment
def data_root() -> Path:
    """Folder of the real H&E data: ``$STAINSTYLE_DATA``, else ``../shared/data``.

    Returns
    -------
    pathlib.Path
        The folder (it may not exist; each benchmark says what it needs inside).
    """
    return Path(os.environ.get("STAINSTYLE_DATA", ROOT.parent / "shared" / "data"))


def configure_logging(name: str, fmt: str = "%(asctime)s %(message)s") -> None:
    """Log a benchmark's INFO messages; to stderr unless the caller configured logging already.

    Parameters
    ----------
    name : str
        The benchmark's logger name (its script's name).
    fmt : str, default="%(asctime)s %(message)s"
        Record format of a new stderr handler (times as ``HH:MM:SS``).
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=fmt, datefmt="%X")
    logging.getLogger(name).setLevel(logging.INFO)
    logger.setLevel(logging.INFO)


def describe_device(device) -> str:
    """A one-line description of a torch device, for benchmark reports.

    Parameters
    ----------
    device : torch.device
        A resolved device (see :func:`stainstyle.base.resolve_device`).

    Returns
    -------
    str
        The GPU's name, or the CPU's architecture, core count and torch thread count.
    """
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return (
        f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads"
    )


def versions() -> dict[str, str]:
    """Versions of Python, stainstyle and :data:`LIBRARIES` (``"absent"`` if not installed).

    Returns
    -------
    dict of str to str
        ``"python"``, ``"stainstyle"`` (of the imported source, which may be a checkout on
        ``PYTHONPATH``) and the keys of :data:`LIBRARIES`.
    """
    import stainstyle

    found = {"python": platform.python_version(), "stainstyle": stainstyle.__version__}
    for key, distribution in LIBRARIES.items():
        try:
            found[key] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            found[key] = "absent"
    return found


def git_commit() -> str | None:
    """The repository's commit, with ``+dirty`` when tracked files changed; None without git.

    Returns
    -------
    str or None
    """
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if changed else "")


def device_info(device: str = "auto") -> dict[str, Any]:
    """The device a run uses and the machine around it.

    Parameters
    ----------
    device : str, default="auto"
        As the estimators' ``device`` parameter: ``"auto"``, ``"cpu"``, ``"cuda"``, ...

    Returns
    -------
    dict
        ``device`` (resolved), ``description`` (:func:`describe_device`), ``platform``,
        ``processor``, ``cpus``, ``torch_threads`` and ``gpu`` (the CUDA device's name, or None).
    """
    import torch

    from stainstyle.base import resolve_device

    resolved = resolve_device(device)
    return {
        "device": str(resolved),
        "description": describe_device(resolved),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(resolved) if resolved.type == "cuda" else None,
    }


def environment(device: str = "auto") -> dict[str, Any]:
    """Everything a report needs to say where and with what it ran.

    Parameters
    ----------
    device : str, default="auto"
        The run's device option.

    Returns
    -------
    dict
        ``versions`` (:func:`versions`), ``device`` (:func:`device_info`), ``git_commit``
        (:func:`git_commit`) and ``date`` (ISO 8601, local time).
    """
    return {
        "versions": versions(),
        "device": device_info(device),
        "git_commit": git_commit(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# --------------------------------------------------------------------------------------- timing
def synchronize(device=None) -> None:
    """Wait for the work queued on a CUDA device, so that wall-clock timings cover it.

    Parameters
    ----------
    device : torch.device or None, default=None
        Nothing happens for None or a non-CUDA device.
    """
    if device is not None and getattr(device, "type", None) == "cuda":
        import torch

        torch.cuda.synchronize(device)


class Timer:
    """Wall-clock seconds of a ``with`` block.

    Parameters
    ----------
    device : torch.device or None, default=None
        A CUDA device is synchronized on entry and exit.

    Attributes
    ----------
    seconds : float
        Duration of the block (NaN until it ends).

    Examples
    --------
    >>> with Timer() as timer:
    ...     _ = sum(range(1000))
    >>> timer.seconds >= 0
    True
    """

    def __init__(self, device=None):
        self.device = device
        self.seconds = math.nan

    def __enter__(self) -> Timer:
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info) -> None:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._start


def best_time(
    function: Callable[[], object], repeats: int, enough: float = math.inf, device=None
) -> float:
    """Best wall time of ``repeats`` calls; stops repeating after a call longer than ``enough``.

    Parameters
    ----------
    function : callable
        Called without arguments.
    repeats : int
        At most this many calls (at least one).
    enough : float, default=inf
        Seconds after which a call is not repeated.
    device : torch.device or None, default=None
        Synchronized around each call when CUDA.

    Returns
    -------
    float
        Seconds of the fastest call.
    """
    times = []
    for _ in range(max(repeats, 1)):
        with Timer(device) as timer:
            function()
        times.append(timer.seconds)
        if timer.seconds > enough:
            break
    return min(times)


# -------------------------------------------------------------------------------------- reports
# ------------------------------------------------------------------------------------ memory
def memory_status(field: str) -> int | None:
    """A field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in bytes; None off Linux.

    ``VmHWM`` is the high-water mark of this process's own memory. Unlike ``ru_maxrss``, which
    on Linux keeps the parent's resident size at the moment a subprocess was started, it is
    the peak of a fresh process alone.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_memory() -> bool:
    """Reset the kernel's resident-memory high-water mark to the current RSS; False off Linux."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return memory_status("VmHWM") is not None


def peak_memory_bytes() -> int:
    """Peak resident memory of the process: ``VmHWM`` on Linux, else ``ru_maxrss``."""
    peak = memory_status("VmHWM")
    if peak is not None:
        return peak
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def significant(value: float, digits: int = 3) -> float:
    """``value`` rounded to ``digits`` significant digits (a rate stays non-zero however slow).

    Parameters
    ----------
    value : float
    digits : int, default=3

    Returns
    -------
    float
    """
    return float(f"{value:.{digits}g}")


def _jsonable(value: Any) -> Any:
    """JSON form of NumPy scalars and arrays, paths and tuples (``json.dump``'s ``default``)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"report value of type {type(value).__name__} is not JSON: {value!r}")


def _folder_made(path: str | os.PathLike) -> Path:
    """``path`` as a Path, its folder created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text report (UTF-8) atomically; its folder is created.

    Parameters
    ----------
    path : str or path-like
        Destination file.
    text : str
        Its content.
    """
    atomic_write_text(_folder_made(path), text)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write a JSON report atomically (see :func:`write_text`).

    NumPy scalars and arrays become numbers and lists, paths strings; NaN is written ``NaN``
    and infinity ``Infinity``, which :func:`read_json` reads back.

    Parameters
    ----------
    path : str or path-like
        Destination, usually ``NAME.json``; its folder is created if needed.
    data : dict or list
        The report.

    Raises
    ------
    TypeError
        If ``data`` holds a value JSON cannot represent (the file is not written).
    """
    write_text(path, json.dumps(data, indent=1, default=_jsonable) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON report written by :func:`write_json`.

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    dict or list

    Raises
    ------
    ValueError
        If the file is not JSON (the message names it).
    OSError
        If it cannot be read.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a JSON report ({error})") from error


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Write a CSV table atomically (see :func:`write_text`), a header line then the rows.

    Parameters
    ----------
    path : str or path-like
        Destination ``.csv`` file.
    header : sequence of str
        Column names.
    rows : iterable of sequences
        One sequence of cells per row.
    """
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def write_arrays(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Write named arrays atomically, as a compressed NumPy archive, for :func:`read_arrays`.

    Parameters
    ----------
    path : str or path-like
        Destination ``.npz`` file; its folder is created.
    arrays : mapping of str to ndarray
        Arrays by name (any string: ``"source/column"`` is fine).
    """
    atomic_write(_folder_made(path), lambda f: np.savez_compressed(f, **arrays))


def read_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the arrays written by :func:`write_arrays`, in their saved order.

    Parameters
    ----------
    path : str or path-like
        The ``.npz`` file.

    Returns
    -------
    dict of str to ndarray

    Raises
    ------
    ValueError
        If the file is not a NumPy archive (the message names it).
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"{path}: not a NumPy archive ({error})") from error


def read_report(path: Path, prog: str) -> Any | None:
    """The saved report that ``--report-from`` names, or None after an error on stderr.

    Parameters
    ----------
    path : pathlib.Path
        The JSON report.
    prog : str
        The benchmark's name, which starts the error message.

    Returns
    -------
    dict or None
        None when the file is missing or not JSON (the caller exits with status 2).
    """
    try:
        return read_json(path)
    except (OSError, ValueError) as error:
        print(f"{prog}: error: --report-from: {error}", file=sys.stderr)
        return None


def run_or_render(
    args: argparse.Namespace,
    prog: str,
    report_file: str,
    make_config: Callable[[], Any],
    run: Callable[[Any], Any],
    write_reports: Callable[[Path, Any], str],
) -> int:
    """A benchmark's main: render a saved report again (``--report-from``) or run and save one.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options, with ``report_from`` (:func:`add_report_from`).
    prog : str
        The benchmark's name, for error messages.
    report_file : str
        File name of the JSON report under the output folder, e.g. ``"fidelity.json"``.
    make_config : callable
        Builds the run's configuration, with its output folder ``out``; called only to run.
    run : callable
        ``config -> report``: runs the benchmark.
    write_reports : callable
        ``(folder, report) -> text``: writes the human-readable files, returns what to print.

    Returns
    -------
    int
        The exit code: 0, or 2 when the saved report cannot be read.
    """
    if args.report_from is not None:
        report = read_report(args.report_from, prog)
        if report is None:
            return 2
        print(write_reports(args.report_from.parent, report))
        return 0
    config = make_config()
    report = run(config)
    write_json(config.out / report_file, report)
    print(write_reports(config.out, report))
    return 0


def parse_out_or_report(parser: argparse.ArgumentParser, argv: list[str] | None):
    """Parse ``argv`` for a benchmark with :func:`add_report_from`: ``--out`` is required to run.

    Returns
    -------
    argparse.Namespace
        The options; the parser exits with a usage error when neither ``--out`` nor
        ``--report-from`` is given.
    """
    args = parser.parse_args(argv)
    if args.out is None and args.report_from is None:
        parser.error("--out: required (unless --report-from)")
    return args


def add_report_from(parser: argparse.ArgumentParser, report: str, writes: str) -> None:
    """Add ``--report-from REPORT``: write the human-readable files again, without running.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The benchmark's parser.
    report : str
        File name of the saved report, e.g. ``"table1.json"``.
    writes : str
        What it writes again, for the help text.
    """
    parser.add_argument(
        "--report-from",
        type=Path,
        default=None,
        metavar=report.upper().replace(".", "_").replace(" ", "_"),
        help=f"write {writes} again from a saved {report}, without running anything",
    )


def frozen_config(cls: type, args: argparse.Namespace, quick: Mapping[str, Any] | None = None):
    """A benchmark's frozen configuration, from the parsed options of the same names.

    Parameters
    ----------
    cls : type
        A frozen dataclass whose fields are options of ``args``.
    args : argparse.Namespace
        The parsed command line; read here and nowhere past the benchmark's ``main``.
    quick : mapping, optional
        Values that replace the options when ``args.quick`` is set (the smoke run).

    Returns
    -------
    cls
    """
    options = {field.name: getattr(args, field.name) for field in dataclasses.fields(cls)}
    if quick and getattr(args, "quick", False):
        options |= dict(quick)
    return cls(**options)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence]) -> list[str]:
    """Lines of a Markdown table.

    Parameters
    ----------
    header : sequence of str
        Column titles.
    rows : iterable of sequences
        Cells, already formatted (anything ``str`` accepts).

    Returns
    -------
    list of str
        Header, rule and one line per row.

    Examples
    --------
    >>> markdown_table(["a", "b"], [[1, "x"]])
    ['| a | b |', '|---|---|', '| 1 | x |']
    """
    lines = ["| " + " | ".join(map(str, header)) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return lines


# ----------------------------------------------------------------------------------- the roster
def method_roster(
    labels: Mapping[str, str],
    params: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    skip_unavailable: bool = False,
) -> dict[str, Callable[..., Any]]:
    """Factories of the registry's methods, under a benchmark's labels and in its order.

    Parameters
    ----------
    labels : mapping of str to str
        Registry method name (a key of :data:`stainstyle.registry.BUILTIN_METHODS`) -> the
        label the benchmark's tables show, in table order.
    params : mapping of str to dict, optional
        Registry method name -> constructor parameters the benchmark sets (e.g.
        ``{"wsics": {"microns_per_pixel": 0.25}}``).
    skip_unavailable : bool, default=False
        Leave out, with a warning, a method whose module cannot be imported (e.g. stain-style
        transfer without torch) instead of raising.

    Returns
    -------
    dict of str to callable
        Label -> factory; ``factory(**more)`` returns a new, unfitted estimator built with the
        benchmark's parameters updated by ``more`` (a run's seed, device or classifier).

    Raises
    ------
    ValueError
        If a name is not a registry method, or a parameter is not one of its class's.
    ImportError
        If a method cannot be imported and ``skip_unavailable`` is False.
    """
    params = dict(params or {})
    unknown = sorted((set(labels) | set(params)) - set(BUILTIN_METHODS))
    if unknown:
        raise ValueError(
            f"labels, params: {unknown} are not registry methods; they are "
            f"{sorted(BUILTIN_METHODS)}"
        )
    roster = {}
    for method, label in labels.items():
        fixed = dict(params.get(method, {}))
        try:
            make_normalizer(method, **fixed)  # checks the import and the parameters
        except ImportError as error:
            if not skip_unavailable:
                raise
            logger.warning("skipping %s: %s", label, error)
            continue
        roster[label] = functools.partial(_build, method, fixed)
    return roster


def _build(method: str, fixed: Mapping[str, Any], **more) -> Any:
    """``make_normalizer(method)`` with the benchmark's parameters, updated by a run's."""
    return make_normalizer(method, **{**fixed, **more})
