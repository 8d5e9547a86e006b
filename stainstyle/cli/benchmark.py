"""``stainstyle benchmark NAME``: run ``benchmarks/NAME.py`` of the source repository."""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

from stainstyle.cli.errors import EXIT_FAILED, EXIT_OK, UsageError

#: Benchmarks dispatched by ``stainstyle benchmark NAME`` (scripts of the source repository).
BENCHMARKS_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def benchmark_names() -> list[str]:
    """Names of the benchmark scripts of the source checkout (none without a checkout).

    Returns
    -------
    list of str
        ``NAME`` of each ``benchmarks/NAME.py``, sorted; modules starting with ``_`` are
        helpers, not benchmarks.
    """
    return sorted(p.stem for p in BENCHMARKS_DIR.glob("*.py") if not p.name.startswith("_"))


def register_subcommand(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Declare ``benchmark`` and its arguments; see :class:`~stainstyle.cli.app.Command`."""
    parser = commands.add_parser(
        "benchmark",
        help="run a benchmark script of the source repository (e.g. table1)",
        description="Run benchmarks/NAME.py of a source checkout; remaining arguments go to it.",
    )
    parser.add_argument("name", help="benchmark name, e.g. table1")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the benchmark")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the benchmark script as ``python benchmarks/NAME.py ARGS`` would.

    Its folder comes first on ``sys.path`` and ``sys.argv`` holds its own arguments while it
    runs; both are restored afterwards.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed arguments of ``benchmark``.

    Returns
    -------
    int
        The script's exit code (0 when it returns normally).

    Raises
    ------
    UsageError
        If there is no such benchmark (or no source checkout).
    """
    script = BENCHMARKS_DIR / f"{args.name}.py"
    if not BENCHMARKS_DIR.is_dir():
        raise UsageError(
            f"benchmark {args.name!r}: {BENCHMARKS_DIR} not found; benchmarks ship with the "
            "source repository: install stainstyle from a source checkout (pip install -e .)"
        )
    if not script.is_file():
        names = ", ".join(benchmark_names()) or "none"
        raise UsageError(f"no benchmark {args.name!r} in {BENCHMARKS_DIR}; benchmarks: {names}")
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
