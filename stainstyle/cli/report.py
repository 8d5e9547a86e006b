"""The report of a run over files: what failed, was skipped or converted, and the exit code."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stainstyle.cli.errors import EXIT_FAILED, EXIT_OK
from stainstyle.data.images import ImageReadError

logger = logging.getLogger(__name__)


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


def name_some(items: Sequence[Any], shown: int = 10) -> str:
    """The first ``shown`` items, comma-separated, and how many more there are.

    Parameters
    ----------
    items : sequence
        Paths or other items to name.
    shown : int, default=10
        How many to name.

    Returns
    -------
    str
        E.g. ``"a.png, b.png and 3 more"``.
    """
    more = len(items) - shown
    return ", ".join(map(str, items[:shown])) + (f" and {more} more" if more > 0 else "")


def finish(report: Report) -> int:
    """Log the summary of a run and return its exit code.

    Parameters
    ----------
    report : Report
        The run's report.

    Returns
    -------
    int
        :data:`~stainstyle.cli.errors.EXIT_FAILED` if a file failed, else
        :data:`~stainstyle.cli.errors.EXIT_OK`.
    """
    for note, paths in report.converted.items():
        logger.info("%s in %d file(s): %s", note, len(paths), name_some(paths))
    if report.skipped:
        logger.warning(
            "%d entries that are not regular files were skipped: %s",
            len(report.skipped),
            name_some([path for path, _ in report.skipped]),
        )
    if report.failed:
        logger.error(
            "%d file(s) failed: %s",
            len(report.failed),
            name_some([path for path, _ in report.failed], 50),
        )
        return EXIT_FAILED
    return EXIT_OK
