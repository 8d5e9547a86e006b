"""benchmarks/fidelity.py, benchmarks/sst_speed.py and speed.py's memory table end to end, on small
inputs."""

from __future__ import annotations

import json

import pytest
from _support import ROOT, load_script


def load_benchmark(name: str):
    return load_script(ROOT / "benchmarks" / f"{name}.py")


@pytest.fixture(scope="module")
def fidelity():
    return load_benchmark("fidelity")


def test_synthetic_section_scores_every_method_and_variant(fidelity, tmp_path):
    fidelity.main(
        [
            "--out",
            str(tmp_path),
            "--data-dir",
            str(tmp_path / "absent"),
            "--synthetic-tiles",
            "16",
            "--synthetic-size",
            "128",
            "--sst-budget",
            "2",
        ]
    )
    sections = json.loads((tmp_path / "fidelity.json").read_text())
    assert list(sections) == ["Synthetic pairs (radboud -> utrecht)"]
    rows = sections["Synthetic pairs (radboud -> utrecht)"]["rows"]
    assert [row["method"] for row in rows] == [
        "raw",
        "SST",
        "SST (gray matched per slide)",
        "WSICS",
        "WSICS (pooled per slide)",
        "Reinhard",
        "Macenko",
        "Histogram specification",
    ]
    for row in rows:
        assert 0 <= row["ciede2000_lowpass"] < 100
        assert row["psnr"] > 0 and -1 <= row["ssim"] <= 1
    markdown = (tmp_path / "fidelity.md").read_text()
    assert "| SST (gray matched per slide) |" in markdown


def test_sst_speed_reports_every_measure(tmp_path):
    sst_speed = load_benchmark("sst_speed")
    sst_speed.main(
        ["--out", str(tmp_path), "--device", "cpu", "--presets", "cpu", "--budget", "1"]
        + ["--tiles", "4", "--repeats", "1"]
    )
    report = json.loads((tmp_path / "sst_speed.json").read_text())
    (row,) = report["rows"]
    assert row["preset"] == "cpu" and row["train_steps"] >= 1
    for key in ("classifier_tiles_per_s", "train_steps_per_s", "inference_mp_per_s"):
        assert row[key] > 0
    assert "| cpu |" in (tmp_path / "sst_speed.md").read_text()


def test_speed_memory_table_runs_each_measure_in_a_fresh_process(tmp_path):
    speed = load_benchmark("speed")
    report = speed.main(
        ["--memory", "--memory-sizes", "512", "--memory-methods", "gray,histogram"]
        + ["--out", str(tmp_path)]
    )
    assert [(row["method"], row["side"]) for row in report["rows"]] == [
        ("gray", 512),
        ("histogram", 512),
    ]
    for row in report["rows"]:
        assert row["peak_extra_mb"] >= 0 and row["seconds"] > 0
        assert row["multiple"] == pytest.approx(row["peak_extra_mb"] / row["image_mb"])
    assert "| gray |" in (tmp_path / "memory.md").read_text()
