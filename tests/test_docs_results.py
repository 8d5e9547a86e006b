"""Every number in the tables of README.md and docs/ comes from a committed results file.

The results files live in ``docs/results/``: the JSON (or Markdown) a benchmark or example wrote
(``--out``). Two checks:

- **Rendered tables**: Table 1 and the augmentation study are printed in the pages exactly as
  their benchmark script renders them from its JSON (``benchmarks/table1.py``'s
  ``markdown_rows``, ``benchmarks/augmentation.py``'s ``auc_table``); the page must hold the
  rendering line for line.
- **Other tables**: the line before each table with a decimal number names its source,
  ``<!-- results: docs/results/FILE -->`` (several: separated by ``, ``), or says why it has none,
  ``<!-- results: none: REASON -->``. Every decimal number of the table must be a value of that
  file, rounded as the page rounds it (for a Markdown results file: a number of its text).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from _support import ROOT, load_script

RESULTS = ROOT / "docs" / "results"
PAGES = ["README.md"] + sorted(
    p.relative_to(ROOT).as_posix() for p in ROOT.glob("docs/**/*.md") if p.parent != RESULTS
)

_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+\.\d+(?![\d.])")
_MARKER = re.compile(r"^<!-- results: (.+?) -->$")


def _json(name: str) -> dict:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def _table1_rows(name: str, source: str) -> list[str]:
    table1 = load_script(ROOT / "benchmarks" / "table1.py")
    report = _json(name)
    return table1.markdown_rows(report["summary"][source], len(report["config"]["seeds"]))


def _augmentation_rows(name: str, source: str) -> list[str]:
    study = load_script(ROOT / "benchmarks" / "augmentation.py")
    return study.auc_table(_json(name)["summary"][source])


#: ``(page, what, lines)``: tables the pages print as the scripts render them.
RENDERED = (
    [
        (page, "Table 1, synthetic labs", lambda: _table1_rows("table1_synthetic.json", "utrecht"))
        for page in ("README.md", "docs/benchmarks.md")
    ]
    + [
        (
            page,
            "augmentation study, synthetic labs",
            lambda: _augmentation_rows("augmentation_synthetic.json", "utrecht"),
        )
        for page in ("README.md", "docs/benchmarks.md")
    ]
    + [
        (
            "docs/benchmarks.md",
            f"augmentation study, AMi-Br {source}",
            lambda source=source: _augmentation_rows("augmentation_amibr.json", source),
        )
        for source in ("AperioCS2", "TUPAC16")
    ]
)


@pytest.mark.parametrize("page, what, render", RENDERED, ids=[f"{p}: {w}" for p, w, _ in RENDERED])
def test_rendered_tables_are_in_the_pages(page, what, render):
    text = (ROOT / page).read_text(encoding="utf-8")
    table = "\n".join(render())
    assert table in text, f"{page}: the {what} table differs from its results file:\n{table}"


def tables(page: str) -> list[tuple[int, str | None, list[str]]]:
    """``(line, marker, lines)`` of each table, and of each paragraph after a results marker.

    The marker is the ``<!-- results: ... -->`` comment on the line before (None without).
    """
    lines = (ROOT / page).read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        marker = _MARKER.match(lines[i])
        if marker or lines[i].startswith("|"):
            start = i + 1 if marker else i
            end = start
            while end < len(lines) and lines[end].strip():
                end += 1
            name = marker.group(1) if marker else None
            found.append((start + 1, name, lines[start:end]))
            i = end
        else:
            i += 1
    return found


def _leaves(value) -> list[float]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        return [float(value)]  # e.g. a best parameter, saved as text
    return []


def _known_numbers(source: Path, decimals: set[int]) -> set[str]:
    """The numbers of a results file as text, at each number of decimals the page uses."""
    text = source.read_text(encoding="utf-8")
    if source.suffix == ".md":
        return set(_NUMBER.findall(text))
    values = _leaves(json.loads(text))
    known = set()
    for value in values:
        for d in decimals:
            for scaled in (value, 100 * value, value / 1e6):  # fractions as %, bytes as MB
                known.add(f"{scaled:.{d}f}")
                known.add(f"{scaled:+.{d}f}")
    return known


def _rendered_tables() -> dict[str, list[str]]:
    rendered: dict[str, list[str]] = {}
    for page, _, render in RENDERED:
        rendered.setdefault(page, []).extend(render())
    return rendered


@pytest.mark.parametrize("page", PAGES)
def test_table_numbers_come_from_results_files(page):
    rendered = set(_rendered_tables().get(page, []))
    for line, marker, rows in tables(page):
        numbers = [n for row in rows if row not in rendered for n in _NUMBER.findall(row)]
        if not numbers:
            continue
        assert marker is not None, f"{page}:{line}: a table of numbers without a results marker"
        if marker.startswith("none: "):
            assert len(marker) > len("none: ") + 10, f"{page}:{line}: say why there is no file"
            continue
        decimals = {len(n.split(".")[1]) for n in numbers}
        known = set()
        for name in marker.split(", "):  # a table may gather several results files
            source = ROOT / name
            assert source.parent == RESULTS and source.is_file(), f"{page}:{line}: {name}?"
            known |= _known_numbers(source, decimals)
        missing = sorted({n.lstrip("+") for n in numbers} - {k.lstrip("+") for k in known})
        assert not missing, f"{page}:{line}: not in {marker}: {missing}"


def test_results_markers_name_committed_files():
    for page in PAGES:
        for line, marker, _ in tables(page):
            if marker and not marker.startswith("none: "):
                for name in marker.split(", "):
                    assert (ROOT / name).is_file(), f"{page}:{line}: {name} does not exist"


def test_a_changed_number_is_caught(tmp_path):
    """The check itself: a table quoting a number its file does not hold fails."""
    (tmp_path / "r.json").write_text('{"auc": 0.98765, "ci": [0.97, 0.99]}')
    known = _known_numbers(tmp_path / "r.json", {2, 3, 4})
    assert {"0.9877", "0.988", "0.97", "0.99"} <= known
    assert "0.9878" not in known and "0.987" not in known
