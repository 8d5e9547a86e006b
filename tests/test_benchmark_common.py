"""benchmarks/_common.py: environment, timing, report files and the method roster."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
from _support import ROOT, load_script


@pytest.fixture(scope="module")
def common():
    yield load_script(ROOT / "benchmarks" / "_common.py")
    sys.modules.pop("_common", None)


def test_markdown_table_known_lines(common):
    assert common.markdown_table(["method", "PSNR"], [["raw", 15.38], ["SST", "n/a"]]) == [
        "| method | PSNR |",
        "|---|---|",
        "| raw | 15.38 |",
        "| SST | n/a |",
    ]


def test_write_json_converts_numpy_and_leaves_no_temporary(common, tmp_path):
    path = tmp_path / "deep" / "report.json"
    report = {"a": np.float32(0.5), "b": np.arange(3), "c": np.int64(7), "d": tmp_path, "e": None}
    common.write_json(path, report)
    assert json.loads(path.read_text()) == {
        "a": 0.5,
        "b": [0, 1, 2],
        "c": 7,
        "d": str(tmp_path),
        "e": None,
    }
    assert common.read_json(path)["c"] == 7
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]
    common.write_json(path, {"nan": float("nan")})
    assert math.isnan(common.read_json(path)["nan"])


def test_write_json_rejects_an_unknown_type_by_name(common, tmp_path):
    with pytest.raises(TypeError, match="object"):
        common.write_json(tmp_path / "x.json", {"x": object()})
    assert not (tmp_path / "x.json").exists()


def test_read_json_names_a_corrupt_file(common, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"rows": [1, 2')
    with pytest.raises(ValueError, match="broken.json: not a JSON report"):
        common.read_json(path)


def test_csv_and_arrays_round_trip(common, tmp_path):
    common.write_csv(tmp_path / "t.csv", ["a", "b"], [[1, "x,y"], [2.5, ""]])
    assert (tmp_path / "t.csv").read_text().splitlines() == ["a,b", '1,"x,y"', "2.5,"]
    arrays = {"utrecht/target": np.zeros((2, 4, 4, 3), np.uint8), "utrecht/SST": np.ones(3)}
    common.write_arrays(tmp_path / "f.npz", arrays)
    back = common.read_arrays(tmp_path / "f.npz")
    assert list(back) == list(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(back[key], value)
        assert back[key].dtype == value.dtype


def test_timer_and_best_time(common):
    with common.Timer() as timer:
        sum(range(10_000))
    assert 0 <= timer.seconds < 5
    calls = []
    assert common.best_time(lambda: calls.append(1), repeats=3) >= 0
    assert len(calls) == 3
    # A call longer than `enough` is not repeated.
    calls.clear()
    common.best_time(lambda: calls.append(1), repeats=5, enough=-1.0)
    assert len(calls) == 1


def test_roster_follows_the_labels_and_applies_the_overrides(common):
    labels = {"wsics": "WSICS", "reinhard": "Reinhard", "histogram": "HS"}
    roster = common.method_roster(labels, {"wsics": {"microns_per_pixel": 0.25}})
    assert list(roster) == ["WSICS", "Reinhard", "HS"]
    wsics = roster["WSICS"]()
    assert type(wsics).__name__ == "WSICSNormalizer"
    assert wsics.microns_per_pixel == 0.25
    # A run's parameters update the benchmark's, and every call builds a new estimator.
    seeded = roster["WSICS"](random_state=3)
    assert (seeded.random_state, seeded.microns_per_pixel) == (3, 0.25)
    assert roster["Reinhard"]() is not roster["Reinhard"]()


def test_roster_rejects_unknown_methods_and_parameters(common):
    with pytest.raises(ValueError, match=r"\['stainnet'\] are not registry methods"):
        common.method_roster({"stainnet": "StainNet"})
    with pytest.raises(ValueError, match="micron"):
        common.method_roster({"wsics": "WSICS"}, {"wsics": {"micron": 0.25}})


def test_stain_methods_come_from_the_registry(common):
    from stainstyle.registry import BUILTIN_METHODS, CLASSIC_METHODS

    assert common.STAIN_METHODS == tuple(m for m in BUILTIN_METHODS if m != "gray")
    assert common.CLASSIC_STAIN_METHODS == ("reinhard", "macenko", "vahadane", "histogram", "wsics")
    assert set(common.CLASSIC_STAIN_METHODS) <= set(CLASSIC_METHODS)


def test_data_root_follows_the_environment(common, monkeypatch, tmp_path):
    monkeypatch.setenv("STAINSTYLE_DATA", str(tmp_path))
    assert common.data_root() == tmp_path
    monkeypatch.delenv("STAINSTYLE_DATA")
    assert common.data_root() == ROOT.parent / "shared" / "data"


def test_environment_describes_the_run(common):
    import torch

    import stainstyle

    env = common.environment("cpu")
    assert set(env) == {"versions", "device", "git_commit", "date"}
    assert env["versions"]["stainstyle"] == stainstyle.__version__
    assert env["versions"]["numpy"] == np.__version__
    assert env["device"]["device"] == "cpu" and env["device"]["gpu"] is None
    assert env["device"]["torch_threads"] == torch.get_num_threads()
    description = common.describe_device(torch.device("cpu"))
    assert description == env["device"]["description"]
    assert f"{torch.get_num_threads()} torch threads" in description
    assert env["git_commit"] is None or len(env["git_commit"].split("+")[0]) == 40
    json.dumps(env)  # all of it is JSON
