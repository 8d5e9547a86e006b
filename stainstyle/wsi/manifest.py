"""The manifest of a cohort run: one row per slide, as CSV and JSON, rewritten atomically.

:func:`write_manifest` writes ``manifest.csv`` (the columns of :data:`COLUMNS`) and
``manifest.json`` (the same rows with the slide's stain vectors and notes, and the run's
options) into the output folder. A run rewrites both after every slide, each atomically, so a
run that is interrupted leaves a complete manifest of the slides it finished.
:func:`read_manifest` reads an earlier run's rows back, and answers nothing, with a warning,
for a manifest that is missing or damaged: it is never needed to run again.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stainstyle._atomic import atomic_write_text
from stainstyle._version import __version__
from stainstyle.wsi.normalize import FAILED, SKIPPED, WRITTEN, SlideResult

logger = logging.getLogger(__name__)

#: Columns of ``manifest.csv``, in order.
COLUMNS = ("slide", "status", "seconds", "tiles", "passthrough_tiles", "output", "error")

#: File names of the manifest in the output folder.
CSV_NAME, JSON_NAME = "manifest.csv", "manifest.json"


@dataclass(frozen=True)
class Manifest:
    """The outcome of a cohort run: every slide's result, and the files written.

    Attributes
    ----------
    results : tuple of SlideResult
        One per slide, in input order.
    folder : pathlib.Path
        The output folder.
    qc_sheet : pathlib.Path or None
        The quality-control sheet, when drawn.
    """

    results: tuple[SlideResult, ...]
    folder: Path
    qc_sheet: Path | None = None

    @property
    def csv_path(self) -> Path:
        """``manifest.csv`` in the output folder."""
        return self.folder / CSV_NAME

    @property
    def json_path(self) -> Path:
        """``manifest.json`` in the output folder."""
        return self.folder / JSON_NAME

    @property
    def written(self) -> list[SlideResult]:
        """The slides written by this run."""
        return [r for r in self.results if r.status == WRITTEN]

    @property
    def skipped(self) -> list[SlideResult]:
        """The slides whose output existed."""
        return [r for r in self.results if r.status == SKIPPED]

    @property
    def failed(self) -> list[SlideResult]:
        """The slides that failed, each with its error."""
        return [r for r in self.results if r.status == FAILED]


def manifest_row(result: SlideResult) -> dict[str, Any]:
    """A slide's row of ``manifest.csv``.

    Parameters
    ----------
    result : SlideResult

    Returns
    -------
    dict
        The :data:`COLUMNS`; paths as strings, seconds rounded to hundredths.
    """
    return {
        "slide": str(result.input),
        "status": result.status,
        "seconds": round(result.seconds, 2),
        "tiles": result.tiles,
        "passthrough_tiles": result.passthrough_tiles,
        "output": str(result.output),
        "error": result.error,
    }


def write_manifest(
    folder: str | os.PathLike,
    results: Sequence[SlideResult],
    *,
    details: Sequence[dict[str, Any]] | None = None,
    run: dict[str, Any] | None = None,
) -> None:
    """Write ``manifest.csv`` and ``manifest.json`` into a folder, each atomically.

    Parameters
    ----------
    folder : str or path-like
        The output folder; it must exist.
    results : sequence of SlideResult
        The rows, in order.
    details : sequence of dict, optional
        Extra fields of each row for the JSON (stain vectors, notes), one per result.
    run : dict, optional
        The run's description for the JSON (normalizer, options).
    """
    folder = Path(folder)
    rows = [manifest_row(result) for result in results]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(folder / CSV_NAME, text.getvalue())
    extras = details if details is not None else [{}] * len(rows)
    document = {
        "stainstyle": __version__,
        "run": run or {},
        "slides": [{**row, **extra} for row, extra in zip(rows, extras, strict=True)],
    }
    atomic_write_text(folder / JSON_NAME, json.dumps(document, indent=1) + "\n")


def read_manifest(folder: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The rows of an earlier run's ``manifest.json``, by slide path.

    Parameters
    ----------
    folder : str or path-like
        The output folder.

    Returns
    -------
    dict of str to dict
        Each row under its ``slide``; empty when there is no manifest, and (with a warning)
        when it is damaged (not UTF-8, not JSON, nested too deep, not the manifest's shape).
    """
    path = Path(folder) / JSON_NAME
    try:
        slides = json.loads(path.read_text(encoding="utf-8"))["slides"]
        return {str(row["slide"]): dict(row) for row in slides}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:
        logger.warning("%s: the earlier manifest cannot be read (%s); it is rewritten", path, error)
        return {}
