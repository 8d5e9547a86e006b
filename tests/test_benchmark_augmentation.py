"""benchmarks/augmentation.py: the paired gain, the configuration, and a --quick run end to end."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest
from _support import ROOT, load_script
from sklearn.metrics import roc_auc_score


@pytest.fixture(scope="module")
def study():
    yield load_script(ROOT / "benchmarks" / "augmentation.py")
    sys.modules.pop("augmentation", None)
    sys.modules.pop("table1", None)


def test_paired_gain_is_the_auc_difference_with_an_interval_around_it(study):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    weak = labels + rng.normal(0, 2.0, 300)
    strong = labels + rng.normal(0, 0.5, 300)
    gain, low, high = study.paired_auc_gain([(labels, weak, strong)])
    assert gain == pytest.approx(roc_auc_score(labels, strong) - roc_auc_score(labels, weak))
    assert 0 < low <= gain <= high
    # The same scores gain exactly nothing, in every replicate.
    assert study.paired_auc_gain([(labels, weak, weak)]) == (0.0, 0.0, 0.0)
    # Over seeds: the mean of the per-seed gains.
    twice = study.paired_auc_gain([(labels, weak, strong), (labels, strong, weak)])
    assert twice[0] == pytest.approx(0.0, abs=1e-12) and twice[1] < 0 < twice[2]


def test_configuration_is_frozen_and_sized_per_dataset(study, tmp_path):
    amibr = ["--dataset", "amibr", "--data-dir", str(tmp_path), "--target", "A", "--source", "B"]
    config = study.build_config(study.parse_args(amibr))
    settings = config.setting.settings
    assert (settings.classifier_epochs, settings.sst_budget, settings.max_tiles) == (8, 180.0, 700)
    assert config.setting.seeds == 3 and config.augmenters == study.AUGMENTERS
    assert config.methods == study.DEFAULT_METHODS
    assert config.columns == ("Target", "Original", *study.DEFAULT_METHODS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.methods = ()
    # Options given win over the study's defaults; the synthetic default is Table 1's preset.
    given = study.build_config(study.parse_args([*amibr, "--classifier-epochs", "2"]))
    assert given.setting.settings.classifier_epochs == 2
    synthetic = study.build_config(study.parse_args([]))
    assert synthetic.setting.settings == study.table1.PRESETS["cpu"]
    quick = study.build_config(study.parse_args(["--quick", "--augmenters", "HEDJitter"]))
    assert quick.setting.seeds == 2 and quick.augmenters == ("none", "HEDJitter")
    assert quick.setting.settings == study.table1.PRESETS["quick"]
    recorded = config.to_json()
    assert recorded["seeds"] == [0, 1, 2] and recorded["hed_sigma"] == "strong"
    json.dumps(recorded)


@pytest.mark.parametrize("option", ["--augmenters", "--methods"])
def test_unknown_names_are_usage_errors(study, option, capsys):
    with pytest.raises(SystemExit) as exit_:
        study.parse_args([option, "Reinhard,Nope"])
    assert exit_.value.code == 2
    assert option in capsys.readouterr().err


def test_augmenters_are_built_and_fitted(study):
    from stainstyle.augment import HEDJitter, RandStainNA, StainAugmenter
    from stainstyle.data import make_tiles

    tiles = make_tiles(16, "radboud", size=32, seed=0)[0]
    assert study.make_augmenter("none", tiles, 0) is None
    hed = study.make_augmenter("HEDJitter", tiles, 0, "light")
    assert isinstance(hed, HEDJitter) and hed.sigma == "light"
    assert study.make_augmenter("StainAugmenter", tiles, 0).stain_matrix_.shape == (3, 2)
    assert isinstance(study.make_augmenter("RandStainNA", tiles, 0), RandStainNA)
    assert isinstance(study.make_augmenter("StainAugmenter", tiles, 0), StainAugmenter)
    with pytest.raises(ValueError, match="name: expected one of"):
        study.make_augmenter("gray", tiles, 0)


@pytest.mark.slow
def test_quick_run_end_to_end(study, tmp_path, capsys):
    assert study.main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| test \\ training | none | HEDJitter | StainAugmenter | RandStainNA |" in out
    assert "\n| Original | " in out
    report = json.loads((tmp_path / "augmentation.json").read_text())
    for key in ("config", "environment", "summary", "answer", "per_seed", "wall_time_s"):
        assert key in report
    assert report["config"]["seeds"] == [0, 1]
    assert report["environment"]["versions"]["stainstyle"]
    columns = ["Target", "Original", *study.DEFAULT_METHODS]
    summary = report["summary"]["utrecht"]
    assert list(summary) == list(study.AUGMENTERS)
    for row, cells in summary.items():
        assert list(cells) == columns
        for column, entry in cells.items():
            lo, hi = entry["auc_ci95"]
            assert 0.0 <= lo <= hi <= 1.0, (row, column)
            assert 0.0 <= entry["auc"]["mean"] <= 1.0
            if column != "Target":
                gain = entry["auc_gain"]
                assert gain["ci95"][0] <= gain["ci95"][1]
                assert gain["mean"] == pytest.approx(
                    entry["auc"]["mean"] - summary["none"]["Original"]["auc"]["mean"]
                )
    assert summary["none"]["Original"]["auc_gain"] == {"mean": 0.0, "ci95": [0.0, 0.0]}
    answer = report["answer"]["utrecht"]
    assert answer["augment"]["row"] != "none" and answer["augment"]["column"] == "Original"
    assert answer["normalize"]["row"] == "none" and answer["normalize"]["column"] != "Original"
    assert answer["best"]["auc"] == max(a["auc"] for a in answer.values())
    for per_seed in report["per_seed"]:
        for row in study.AUGMENTERS:
            assert f"classifier {row}" in per_seed["timings_s"]
            for metrics in per_seed["metrics"][row]["utrecht"].values():
                assert 0.0 <= metrics["auc"] <= 1.0
    # The row without augmentation is Table 1's classifier: same seed, same numbers.
    table1 = study.table1
    config = table1.build_config(table1.parse_args(["--quick"]))
    exp = table1.prepare_experiment(config, 0, None)
    classifier, threshold = table1.train_classifier(config, exp, 0)
    source = exp.sources["utrecht"]
    reinhard = table1.make_methods(config, classifier, 0, 0.5)["Reinhard"].fit(exp.train.tiles)
    expected = {
        "Target": (exp.test.labels, exp.test.tiles),
        "Original": (source.labels, source.tiles),
        "Reinhard": (source.labels, table1.transform("Reinhard", reinhard, source.tiles, None)),
    }
    recorded = report["per_seed"][0]["metrics"]["none"]["utrecht"]
    for column, (labels, tiles) in expected.items():
        scores = table1.logit_scores(classifier, tiles)
        assert recorded[column] == table1.binary_metrics(labels, scores, threshold), column
    # The Markdown is rendered from the saved report alone, identically.
    written = (tmp_path / "augmentation.md").read_text()
    (tmp_path / "augmentation.md").unlink()
    assert study.main(["--report-from", str(tmp_path / "augmentation.json")]) == 0
    assert (tmp_path / "augmentation.md").read_text() == written


def test_report_from_a_missing_file_is_a_clear_error(study, tmp_path, capsys):
    assert study.main(["--report-from", str(tmp_path / "augmentation.json")]) == 2
    assert "--report-from" in capsys.readouterr().err


def test_wrong_data_dir_is_a_clear_error(study, tmp_path, capsys):
    code = study.main(
        ["--dataset", "amibr", "--data-dir", str(tmp_path / "missing"), "--target", "a",
         "--source", "b", "--out", str(tmp_path / "out")]
    )  # fmt: skip
    assert code == 2
    assert "is not a folder" in capsys.readouterr().err
