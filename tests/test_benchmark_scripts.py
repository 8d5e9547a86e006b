"""benchmarks/fidelity.py, sst_speed.py, sst_synthetic.py and speed.py's memory table: registration,
quick runs, reports."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _support import ROOT, he_tiles, load_script, require_data


def load_benchmark(name: str):
    return load_script(ROOT / "benchmarks" / f"{name}.py")


@pytest.fixture(scope="module")
def fidelity():
    return load_benchmark("fidelity")


def rows_by_method(section: dict) -> dict[str, dict]:
    return {row["method"]: row for row in section["rows"]}


# -------------------------------------------------------------------------------- registration
def test_registration_finds_a_whole_pixel_shift_exactly(fidelity):
    scene = he_tiles(1, 160, seed=4)[0]
    reference = scene[20:148, 20:148]
    moving = scene[23:151, 15:143]  # reference[y, x] == moving[y - 3, x + 5]
    registration = fidelity.register(reference, moving)
    assert registration.shift == pytest.approx((3.0, -5.0), abs=0.05)
    np.testing.assert_array_equal(reference[registration.reference], moving[registration.moving])
    assert reference[registration.reference].shape == (125, 123, 3)


def test_registration_measures_a_sub_pixel_shift(fidelity):
    from scipy.ndimage import fourier_shift

    tile = he_tiles(1, 128, seed=5)[0]
    shifted = np.stack(
        [
            np.fft.ifft2(fourier_shift(np.fft.fft2(tile[..., c].astype(float)), (1.5, -2.25))).real
            for c in range(3)
        ],
        axis=-1,
    )
    moving = np.clip(np.round(shifted), 0, 255).astype(np.uint8)
    # moving[y] = tile[y - (1.5, -2.25)]: registering moving on tile takes the opposite shift.
    assert fidelity.estimate_shift(tile, moving) == pytest.approx((-1.5, 2.25), abs=0.1)
    assert fidelity.register(tile, tile).shift == (0.0, 0.0)


def test_registration_refuses_tiles_that_are_not_a_pair(fidelity):
    tile = he_tiles(1, 64, seed=6)[0]
    with pytest.raises(ValueError, match=r"same shape, got \(64, 64, 3\) and \(32, 64, 3\)"):
        fidelity.register(tile, tile[:32])
    # Tiles of 16 px, 6 rows apart: less overlap than the SSIM window needs.
    scene = he_tiles(1, 64, seed=7)[0]
    with pytest.raises(ValueError, match="less than 11 px of overlap"):
        fidelity.register(scene[:16, :16], scene[6:22, :16])


def test_registration_recovers_the_structure_of_the_real_pairs(fidelity):
    _, source, reference, _ = fidelity.load_mitos_split(require_data("mitos_atypia_pairs"))
    test_ids = fidelity.mitos_split_ids(require_data("mitos_atypia_pairs"))[1]
    registrations = [fidelity.register(t, s) for s, t in zip(source, reference, strict=True)]
    summary = fidelity.registration_summary(test_ids, registrations, source, reference)
    # The scanners are offset by about 4 px on each axis: unregistered, the raw pairs share
    # little structure (gray SSIM about 0.16); registered, about 0.6.
    assert summary["raw_ssim_gray_unregistered"] < 0.25
    assert 0.5 < summary["raw_ssim_gray_registered"] < 0.8
    assert all(-5.5 < s < -2.0 for s in summary["median_shift"])
    assert [p["id"] for p in summary["pairs"]] == test_ids and len(test_ids) == len(source)
    json.dumps(summary)


def test_real_section_scores_every_method_on_registered_pairs(fidelity, monkeypatch, tmp_path):
    pairs = require_data("mitos_atypia_pairs")
    monkeypatch.setattr(fidelity, "METHOD_LABELS", {"wsics": "WSICS", "reinhard": "Reinhard"})
    config = fidelity.Config(
        out=tmp_path, data_dir=pairs.parent, synthetic_tiles=4, synthetic_size=64,
        sst_budget=1.0, max_pairs=6, quick=True,
    )  # fmt: skip
    section = fidelity.real_section(config, pairs)
    rows = rows_by_method(section)
    assert list(rows) == ["raw", "WSICS", "WSICS (pooled per slide)", "Reinhard"]
    assert len(section["registration"]["pairs"]) == 6
    raw = rows["raw"]
    assert raw["ssim_source_gray"] == 1.0
    assert raw["ssim_gray"] == pytest.approx(section["registration"]["raw_ssim_gray_registered"])
    assert raw["ssim_gray"] > 0.5
    for row in rows.values():
        assert set(fidelity.METRIC_HEADERS) <= set(row)
    # WSICS moves the colour towards the Aperio scans and keeps the structure.
    assert rows["WSICS"]["ciede2000_lowpass"] < raw["ciede2000_lowpass"] - 1.0
    assert rows["WSICS"]["ssim_source_gray"] > 0.9


# ------------------------------------------------------------------------------------- scoring
def _gray_lightness(level: int) -> float:
    """CIE L* of the sRGB gray ``(level, level, level)`` (D65), from the sRGB and CIE formulas."""
    c = level / 255
    y = c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    return 116 * y ** (1 / 3) - 16 if y > (6 / 29) ** 3 else y * (29 / 3) ** 3


def test_scores_of_known_pairs(fidelity):
    # Identical tiles: no colour difference, infinite PSNR, SSIM 1.
    tiles = he_tiles(2, 64, seed=8)
    whole = [fidelity.identity(tiles.shape[1:3])] * 2
    same = fidelity.score(tiles, tiles, tiles, whole)
    assert same == {
        "ciede2000_lowpass": 0.0,
        "ssim": 1.0,
        "psnr": float("inf"),
        "ssim_source_gray": 1.0,
        "ssim_gray": 1.0,
    }
    # Two flat grays 8 levels apart: PSNR 20 log10(255 / 8); CIEDE2000 of neutral colours is
    # the lightness difference over S_L = 1 + 0.015 (L - 50)^2 / sqrt(20 + (L - 50)^2).
    dark = np.full((2, 48, 48, 3), 128, np.uint8)
    light = dark + np.uint8(8)
    l_dark, l_light = _gray_lightness(128), _gray_lightness(136)
    mean = (l_dark + l_light) / 2
    s_l = 1 + 0.015 * (mean - 50) ** 2 / np.sqrt(20 + (mean - 50) ** 2)
    shifted = fidelity.score(light, dark, dark, [fidelity.identity((48, 48))] * 2)
    assert shifted["psnr"] == pytest.approx(20 * np.log10(255 / 8), abs=1e-9)
    assert shifted["ciede2000_lowpass"] == pytest.approx((l_light - l_dark) / s_l, rel=1e-4)
    assert shifted["ciede2000_lowpass"] == pytest.approx(2.94, abs=0.01)


# ---------------------------------------------------------------------------------- quick runs
def test_synthetic_section_scores_every_method_and_variant(fidelity, tmp_path):
    code = fidelity.main(["--quick", "--out", str(tmp_path), "--data-dir", str(tmp_path / "no")])
    assert code == 0
    report = json.loads((tmp_path / "fidelity.json").read_text())
    assert list(report) == ["Synthetic pairs (radboud -> utrecht)", "run"]
    assert report["run"]["config"]["synthetic_tiles"] == 16
    assert report["run"]["environment"]["versions"]["numpy"] == np.__version__
    rows = rows_by_method(report["Synthetic pairs (radboud -> utrecht)"])
    assert list(rows) == [
        "raw",
        "SST",
        "SST (gray matched per slide)",
        "WSICS",
        "WSICS (pooled per slide)",
        "Reinhard",
        "Macenko",
        "Vahadane",
        "Histogram specification",
    ]
    # The raw row scores the source tiles themselves, as score() does (tested above).
    _, source, reference, _ = fidelity.synthetic_split(16, 128)
    raw = fidelity.score(source, source, reference, [fidelity.identity((128, 128))] * 8)
    assert {key: rows["raw"][key] for key in raw} == pytest.approx(raw, rel=1e-12)
    assert rows["raw"]["ssim_source_gray"] == 1.0
    # Synthetic labs differ in colour and tone (raw CIEDE2000 11.2, PSNR 17.7 dB); no method
    # gives the reference exactly (finite PSNR), and the colour matching ones remove most of
    # the difference (CIEDE2000 1.9 to 2.6, PSNR 25.9 to 27.0 dB).
    assert 8 < rows["raw"]["ciede2000_lowpass"] < 15
    for row in rows.values():
        assert row["ciede2000_lowpass"] > 0 and np.isfinite(row["psnr"])
        assert -1 <= row["ssim"] <= 1 and -1 <= row["ssim_gray"] <= 1
    for method in ("WSICS", "WSICS (pooled per slide)", "Reinhard", "Histogram specification"):
        assert rows[method]["ciede2000_lowpass"] < rows["raw"]["ciede2000_lowpass"] / 3, method
        assert rows[method]["psnr"] > rows["raw"]["psnr"] + 6, method
    markdown = (tmp_path / "fidelity.md").read_text()
    assert "| SST (gray matched per slide) |" in markdown and "SSIM to source (gray)" in markdown
    # The Markdown is rendered from the JSON alone.
    (tmp_path / "fidelity.md").unlink()
    assert fidelity.main(["--report-from", str(tmp_path / "fidelity.json")]) == 0
    assert (tmp_path / "fidelity.md").read_text() == markdown


def test_report_from_a_corrupt_file_is_a_clear_error(fidelity, tmp_path, capsys):
    (tmp_path / "fidelity.json").write_text("{")
    assert fidelity.main(["--report-from", str(tmp_path / "fidelity.json")]) == 2
    assert "fidelity.json: not a JSON report" in capsys.readouterr().err


def test_sst_speed_reports_every_measure(tmp_path):
    sst_speed = load_benchmark("sst_speed")
    assert sst_speed.main(["--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "sst_speed.json").read_text())
    (row,) = report["rows"]
    assert row["preset"] == "cpu" and row["train_steps"] >= 1
    for key in ("classifier_tiles_per_s", "train_steps_per_s", "inference_mp_per_s"):
        assert row[key] > 0
    for key in ("gflop_per_mp", "conv_gflop_per_s", "limit_mp_per_s", "whole_tile_mp_per_s"):
        assert row[key] > 0
    assert row["transform_gflop_per_s"] == pytest.approx(
        row["inference_mp_per_s"] * row["gflop_per_mp"], rel=0.01
    )
    assert report["tiles"] == 4 and report["device"] == "cpu"
    assert report["environment"]["device"]["description"] == report["description"]
    assert "| cpu |" in (tmp_path / "sst_speed.md").read_text()


@pytest.mark.slow
def test_sst_synthetic_quick_run_and_report(tmp_path):
    sst_synthetic = load_benchmark("sst_synthetic")
    path = tmp_path / "sst_synthetic.json"
    assert sst_synthetic.main(["--quick", "--variants", "fp", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    rows = {row["method"]: row for row in result["rows"]}
    assert list(rows) == [
        "none (source as is)",
        "target-style ground truth",
        "reinhard",
        "macenko",
        "vahadane",
        "histogram",
        "wsics",
        "sst",
        "sst + gray matching per tile",
        "sst + gray matching per slide",
    ]
    truth = rows["target-style ground truth"]
    assert truth["ciede2000_lp3"] == 0.0 and truth["psnr"] == float("inf")
    assert truth["auc"] == pytest.approx(result["classifier_auc_on_target_truth"])
    assert rows["histogram"]["ciede2000_lp3"] < rows["none (source as is)"]["ciede2000_lp3"]
    assert rows["sst"]["steps"] >= 1 and "reconstruction_psnr" in rows["sst"]
    markdown = path.with_suffix(".md").read_text()
    assert "| sst + gray matching per slide |" in markdown
    path.with_suffix(".md").unlink()
    assert sst_synthetic.main(["--report-from", str(path)]) == 0
    assert path.with_suffix(".md").read_text() == markdown


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


@pytest.mark.slow  # two torchrun launches
def test_gpu_check_dry_run_fills_every_section(tmp_path):
    gpu_check = load_benchmark("gpu_check")
    out = tmp_path / "gpu_check.json"
    argv = ["--dry-run", "--presets", "cpu", "--repeats", "1", "--out", str(out)]
    assert gpu_check.main([*argv, "--tests", "tests/sst/test_inference.py"]) == 0
    report = json.loads(out.read_text())
    assert report["dry_run"] and report["tests"]["result"]["exit_code"] in (0, 5)
    for name in ("tests", "classic", "peers", "sst", "ddp"):
        assert "error" not in report[name], report[name].get("trace")
    methods = [row["method"] for row in report["classic"]["result"]]
    assert methods == ["ReinhardNormalizer", "MacenkoNormalizer", "HistogramSpecification"]
    for row in report["classic"]["result"]:
        assert row["gp_per_s"] > 0 and row["output_on_device"]
    (row,) = report["sst"]["result"]
    assert row["preset"] == "cpu" and row["transform_mp_per_s"] > 0 and row["gflop_per_mp"] > 0
    ddp = report["ddp"]["result"]
    assert ddp["one_process"]["processes"] == 1 and ddp["2_processes"]["processes"] == 2
    assert ddp["2_processes"]["steps_per_s"] > 0


@pytest.mark.slow
def test_sst_reduced_quick_run_compares_every_scale_with_full_resolution(tmp_path):
    sst_reduced = load_benchmark("sst_reduced")
    data = require_data("mitos_atypia_pairs").parent
    assert sst_reduced.main(["--quick", "--out", str(tmp_path), "--data-dir", str(data)]) == 0
    report = json.loads((tmp_path / "sst_reduced.json").read_text())
    labels = ["SST", "SST at 1/2 resolution"]
    rows = rows_by_method(report["fidelity"])
    assert list(rows) == ["raw", *labels]
    full = rows["SST"]["to_full_resolution"]
    assert full["ciede2000_lowpass"] == 0.0 and full["psnr"] == float("inf")
    speed = rows_by_method(report["speed"])
    assert list(speed) == labels and speed["SST"]["speedup"] == 1.0
    assert all(row["mp_per_s"] > 0 for row in speed.values())
    (metrics,) = report["table1"]["metrics"].values()
    assert list(metrics) == ["Target", "Original", *labels]
    markdown = (tmp_path / "sst_reduced.md").read_text()
    (tmp_path / "sst_reduced.md").unlink()
    assert sst_reduced.main(["--report-from", str(tmp_path / "sst_reduced.json")]) == 0
    assert (tmp_path / "sst_reduced.md").read_text() == markdown
