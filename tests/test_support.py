"""The tests' own helpers: a test that cannot run skips, except in CI, where it fails."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _support import ROOT, require_data, require_module, skip_or_fail, skips_fail

#: Environments where a skip must be a failure, and where it may stay a skip.
STRICT = [{"STAINSTYLE_REQUIRE_DATA": "1"}, {"CI": "true"}, {"CI": "TRUE"}]
LENIENT = [{}, {"CI": "false"}, {"STAINSTYLE_REQUIRE_DATA": "0"}, {"CI": "1"}]


def _set(monkeypatch, env: dict[str, str]) -> None:
    for name in ("STAINSTYLE_REQUIRE_DATA", "CI"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("env", STRICT + LENIENT, ids=str)
def test_skip_or_fail_fails_only_in_ci(monkeypatch, env):
    _set(monkeypatch, env)
    strict = env in STRICT
    assert skips_fail() is strict
    expected = pytest.fail.Exception if strict else pytest.skip.Exception
    with pytest.raises(expected, match="the reason"):
        skip_or_fail("the reason")


@pytest.mark.parametrize("env", [STRICT[0], STRICT[1], LENIENT[0]], ids=str)
def test_a_missing_or_broken_module_and_missing_data_skip_or_fail(monkeypatch, tmp_path, env):
    _set(monkeypatch, env)
    expected = pytest.fail.Exception if env in STRICT else pytest.skip.Exception
    assert require_module("json").__name__ == "json"
    with pytest.raises(expected, match=r"no_such_module_xyz could not be imported.*'wsi' extra"):
        require_module("no_such_module_xyz", extra="wsi")
    # Installed, but failing to import: the import error is reported, not hidden.
    (tmp_path / "broken_module_xyz.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(expected, match="broken_module_xyz could not be imported.*dependency_xyz"):
        require_module("broken_module_xyz")
    monkeypatch.setenv("STAINSTYLE_DATA", str(tmp_path))
    with pytest.raises(expected, match="real data not found"):
        require_data("no such folder")
    assert require_data() == tmp_path


#: Where a test may decide to skip: pytest's own skipping, in any spelling.
_SKIPPING = re.compile(r"pytest\.skip\(|importorskip\(|\.skipif\(|mark\.skip\(|\.xfail\(")


def test_every_skip_goes_through_the_helper_or_needs_a_gpu():
    # Only :func:`skip_or_fail` skips; a ``skipif`` may only test for a CUDA device.
    offending = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path in (Path(__file__), ROOT / "tests" / "_support.py"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if _SKIPPING.search(line) and not re.search(r"\.skipif\(.*cuda\.is_available", line):
                offending.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offending == []
