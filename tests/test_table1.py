"""benchmarks/table1.py: metrics, a --quick run end to end, errors, and the CLI dispatch."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
from _support import ROOT, load_script, require_data
from sklearn.metrics import roc_auc_score

#: The files ``--report-from`` writes again.
REPORTS = ("table1.md", "table1.csv", "figure4.png")


@pytest.fixture(scope="module")
def table1():
    yield load_script(ROOT / "benchmarks" / "table1.py", "benchmarks.table1")
    sys.modules.pop("benchmarks.table1", None)


def test_youden_threshold_separates_separable_scores(table1):
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    threshold = table1.youden_threshold(labels, scores)
    assert 0.3 < threshold <= 0.6
    metrics = table1.binary_metrics(labels, scores, threshold)
    assert metrics == {
        "auc": 1.0,
        "precision": 1.0,
        "recall": 1.0,
        "specificity": 1.0,
        "balanced_accuracy": 1.0,
    }


def test_binary_metrics_counts(table1):
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.4, 0.3, 0.7, 0.2, 0.1, 0.05])
    m = table1.binary_metrics(labels, scores, 0.5)
    # Called positive: 0.9, 0.8 (true), 0.7 (false).
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(0.5)
    assert m["specificity"] == pytest.approx(0.75)
    assert m["balanced_accuracy"] == pytest.approx(0.625)
    assert m["auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert np.isnan(table1.binary_metrics(labels, scores, 2.0)["precision"])


def test_binary_metrics_with_unequal_and_single_classes(table1):
    # One positive, two negatives; called positive: 0.9 (true) and 0.8 (false).
    m = table1.binary_metrics(np.array([1, 0, 0]), np.array([0.9, 0.8, 0.1]), 0.5)
    assert (m["precision"], m["recall"], m["specificity"]) == (0.5, 1.0, 0.5)
    # Two positives, one negative, which is called negative.
    m = table1.binary_metrics(np.array([1, 1, 0]), np.array([0.9, 0.1, 0.2]), 0.5)
    assert (m["precision"], m["recall"], m["specificity"]) == (1.0, 0.5, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing called positive: NaN precision, no 0/0
        m = table1.binary_metrics(np.array([1, 0]), np.array([0.9, 0.1]), 2.0)
    assert np.isnan(m["precision"]) and m["recall"] == 0.0 and m["specificity"] == 1.0


class KnownScores:
    """A classifier stand-in whose score of a tile is written in the tile: its first value."""

    def decision_function(self, tiles: np.ndarray) -> np.ndarray:
        return tiles[:, 0, 0, 0].astype(np.float32)


def known_split(table1, negatives: list[int], positives: list[int]):
    """A split whose tiles score ``negatives`` (label 0) and ``positives`` (label 1)."""
    scores = np.array(negatives + positives, dtype=np.uint8)
    tiles = np.broadcast_to(scores[:, None, None, None], (len(scores), 4, 4, 3)).copy()
    labels = np.array([0] * len(negatives) + [1] * len(positives))
    return table1.Split(tiles, labels, np.array(["slide"] * len(scores)))


def test_metrics_of_a_classifier_with_known_scores(table1):
    # Validation: J = 3/4 at 8 (recall 3/4, no false positive), 3/5 at 5: the threshold is 8.
    # Test: 14 of 16 pairs ranked right (AUC 0.875); its own best threshold would be 4.
    # Source: 5 of 6 pairs ranked right.
    val = known_split(table1, [1, 2, 3, 6, 7], [5, 8, 9, 10])
    test = known_split(table1, [1, 2, 3, 6], [4, 5, 7, 9])
    source = known_split(table1, [2, 8], [3, 9, 10])
    train = known_split(table1, [0], [1])
    exp = table1.Experiment(train, val, test, {"lab": source}, 0.5)
    threshold = table1.validation_threshold(KnownScores(), exp)
    assert threshold == 8.0
    scorer = (lambda tiles: table1.logit_scores(KnownScores(), tiles), threshold)
    result = table1.score_source("lab", source, exp, {}, scorer, seed=0, timings={})
    assert result["metrics"] == {
        "Target": {
            "auc": 0.875,
            "precision": 1.0,
            "recall": 0.25,
            "specificity": 1.0,
            "balanced_accuracy": 0.625,
        },
        "Original": {
            "auc": pytest.approx(5 / 6),
            "precision": pytest.approx(2 / 3),
            "recall": pytest.approx(2 / 3),
            "specificity": 0.5,
            "balanced_accuracy": pytest.approx(7 / 12),
        },
    }
    assert result["scores"]["Target"] == [1.0, 2.0, 3.0, 6.0, 4.0, 5.0, 7.0, 9.0]
    assert result["labels"]["Original"] == [0, 0, 1, 1, 1]
    summary = table1.summarize([result], columns=("Target", "Original"))
    assert summary["Target"]["auc"] == {"mean": 0.875, "std": 0.0}
    assert summary["Target"]["recall"] == {"mean": 0.25, "std": 0.0}


@pytest.mark.slow
def test_the_classifier_separates_the_target_labs_classes(table1):
    # A quick setting that still learns the synthetic task: 512 target tiles of 32 px (288 to
    # train, 128 to validate, 96 to test), 3 epochs; about 20 s on 2 CPU cores. Seeds 0, 1, 2
    # give target AUCs of 0.985, 0.951 and 0.938.
    import torch

    settings = dataclasses.replace(
        table1.PRESETS["quick"], n_target=512, tile_size=32, classifier_epochs=3
    )
    config = table1.build_config(table1.parse_args(["--quick", "--device", "cpu"]))
    config = dataclasses.replace(config, settings=settings)
    torch.manual_seed(0)
    exp = table1.synthetic_experiment(settings, seed=0)
    classifier, threshold = table1.train_classifier(config, exp, seed=0)
    val_scores = table1.logit_scores(classifier, exp.val.tiles)
    test_scores = table1.logit_scores(classifier, exp.test.tiles)
    # The threshold is tuned on the validation split, not on the test split it is applied to.
    assert threshold == table1.youden_threshold(exp.val.labels, val_scores)
    assert threshold != table1.youden_threshold(exp.test.labels, test_scores)
    scorer = (lambda tiles: table1.logit_scores(classifier, tiles), threshold)
    source = exp.sources["utrecht"]
    metrics = table1.score_source("utrecht", source, exp, {}, scorer, 0, {})["metrics"]
    assert metrics["Target"]["auc"] > 0.9
    assert metrics["Target"]["balanced_accuracy"] > 0.8


def test_bootstrap_interval_contains_auc_and_narrows_with_more_tiles(table1):
    rng = np.random.default_rng(0)

    def run(n):
        labels = rng.integers(0, 2, n)
        return labels, labels + rng.normal(0, 1.0, n)

    small, large = run(60), run(2000)
    lo_s, hi_s = table1.bootstrap_auc([small])
    lo_l, hi_l = table1.bootstrap_auc([large])
    assert lo_s <= roc_auc_score(*small) <= hi_s
    assert lo_l <= roc_auc_score(*large) <= hi_l
    assert hi_l - lo_l < hi_s - lo_s
    # Ties count one half: constant scores give exactly 0.5.
    labels = np.array([0, 1] * 10)
    assert table1.bootstrap_auc([(labels, np.zeros(20))]) == (0.5, 0.5)


def test_youden_threshold_is_the_first_best_roc_threshold(table1):
    labels = np.array([0, 0, 1, 1])
    # ROC thresholds inf, 0.8, 0.4, 0.35, 0.1 give J = 0, 0.5, 0, 0.5, 0: the first best is 0.8.
    threshold = table1.youden_threshold(labels, np.array([0.1, 0.4, 0.35, 0.8]))
    assert type(threshold) is float and threshold == 0.8
    # Scores that rank every negative first: no finite threshold beats calling nothing positive.
    inverted = table1.youden_threshold(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.8, 0.9]))
    assert inverted == np.nextafter(0.9, np.inf)


def test_bootstrap_auc_equals_resampled_roc_auc(table1):
    rng = np.random.default_rng(3)
    runs = []
    for n in (30, 45):
        labels = rng.integers(0, 2, n)
        runs.append((labels, np.round(labels + rng.normal(0, 1.0, n), 1)))  # with ties
    n_boot = 40
    draws = np.random.default_rng(7)
    total = np.zeros(n_boot)
    for labels, scores in runs:
        pos, neg = scores[labels == 1], scores[labels == 0]
        pos_idx = draws.integers(0, len(pos), (n_boot, len(pos)))
        neg_idx = draws.integers(0, len(neg), (n_boot, len(neg)))
        for b in range(n_boot):
            sample = np.concatenate([pos[pos_idx[b]], neg[neg_idx[b]]])
            truth = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
            total[b] += roc_auc_score(truth, sample)
    expected = np.percentile(total / len(runs), [2.5, 97.5])
    low, high = table1.bootstrap_auc(runs, n=n_boot, seed=7)
    assert (low, high) == pytest.approx(tuple(expected), abs=1e-12)
    assert table1.N_BOOTSTRAP == 1000
    assert table1.bootstrap_auc(runs) == table1.bootstrap_auc(runs, n=1000, seed=0)


def test_summarize_means_and_spreads_per_column(table1):
    labels = np.array([0, 1, 0, 1])

    def run(auc, precision, scores):
        metric = dict.fromkeys(table1.METRICS, 0.5) | {"auc": auc, "precision": precision}
        return {"metrics": {"A": metric}, "labels": {"A": labels}, "scores": {"A": scores}}

    first = run(0.6, float("nan"), [0.1, 0.9, 0.2, 0.8])
    second = run(0.9, 0.25, [0.3, 0.4, 0.2, 0.5])
    third = run(0.3, 0.75, [0.9, 0.4, 0.2, 0.5])
    summary = table1.summarize([first, second, third], columns=["A"])["A"]
    assert summary["auc"]["mean"] == pytest.approx(0.6)
    assert summary["auc"]["std"] == pytest.approx(0.3)  # ddof=1
    assert summary["precision"] == {"mean": 0.5, "std": pytest.approx(np.sqrt(0.125))}
    assert summary["recall"] == {"mean": 0.5, "std": 0.0}
    runs = [(labels, np.asarray(r["scores"]["A"])) for r in (first, second, third)]
    assert summary["auc_ci95"] == table1.bootstrap_auc(runs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" for a metric that is all NaN
        alone = table1.summarize([first], columns=["A"])["A"]
    assert alone["auc"] == {"mean": 0.6, "std": 0.0}
    assert np.isnan(alone["precision"]["mean"]) and alone["precision"]["std"] == 0.0
    two = table1.summarize([first, second], columns=["A"])["A"]
    assert two["precision"] == {"mean": 0.25, "std": 0.0}  # one finite value: no spread
    assert set(table1.summarize([first], columns=["A"])) == {"A"}
    assert set(summary) == {*table1.METRICS, "auc_ci95"}


def test_configuration_is_frozen_and_complete(table1, tmp_path):
    args = table1.parse_args(
        ["--dataset", "amibr", "--data-dir", str(tmp_path), "--target", "A, B", "--source", "C"]
    )
    config = table1.build_config(args)
    assert (config.crop, config.microns_per_pixel) == (96, 0.25)
    assert (config.settings.classifier_epochs, config.settings.sst_budget) == (12, 420.0)
    assert config.targets == ["A", "B"] and config.sources == ["C"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seeds = 3
    recorded = config.to_json()
    assert recorded["seeds"] == [0] and recorded["data_dir"] == str(tmp_path)
    assert set(recorded) == {f.name for f in dataclasses.fields(config)}
    quick = table1.build_config(table1.parse_args(["--quick", "--sst-budget", "5"]))
    assert quick.settings == dataclasses.replace(table1.PRESETS["quick"], sst_budget=5.0)


@pytest.mark.slow
def test_quick_run_end_to_end(table1, tmp_path, capsys):
    assert table1.main(["--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for column in table1.COLUMNS:
        assert column in printed
    for label in table1.METRICS.values():
        assert label in printed
    report = json.loads((tmp_path / "table1.json").read_text())
    summary = report["summary"]["utrecht"]
    assert set(summary) == set(table1.COLUMNS)
    for column in table1.COLUMNS:
        assert set(table1.METRICS) <= set(summary[column])
        lo, hi = summary[column]["auc_ci95"]
        assert 0.0 <= lo <= hi <= 1.0
    for key in ("config", "versions", "device", "wall_time_s", "per_seed", "git_commit"):
        assert key in report
    assert report["config"]["methods"] == {
        "SST": "sst",
        "WSICS": "wsics",
        "HS": "histogram",
        "Macenko": "macenko",
        "Reinhard": "reinhard",
        "Vahadane": "vahadane",
    }
    assert report["config"]["seeds"] == [0]
    markdown = (tmp_path / "table1.md").read_text()
    assert "| AUC, paper (CAMELYON16, another dataset) |" in markdown
    assert "±" not in markdown  # one seed: no spread
    assert " | 0.9185 |\n| WSICS | " in markdown  # methods are rows, the paper's AUC last
    rows = (tmp_path / "table1.csv").read_text().splitlines()
    assert len(rows) == 1 + len(table1.COLUMNS) * len(table1.METRICS)
    from PIL import Image

    with Image.open(tmp_path / "figure4.png") as figure:
        assert figure.width > 7 * 64 and figure.height > 4 * 64
    with np.load(tmp_path / "figure4.npz") as tiles:
        assert sorted(tiles.files) == sorted(
            f"utrecht/{c}" for c in ("target", *table1.COLUMNS[1:])
        )
        assert tiles["utrecht/target"].shape == (4, 32, 32, 3)
    # Reports are rendered from the saved results alone, identically.
    written = {name: (tmp_path / name).read_bytes() for name in REPORTS}
    for name in REPORTS:
        (tmp_path / name).unlink()
    assert table1.main(["--report-from", str(tmp_path / "table1.json")]) == 0
    assert {name: (tmp_path / name).read_bytes() for name in REPORTS} == written
    assert "AUC, paper" in capsys.readouterr().out


def test_report_from_a_missing_file_is_a_clear_error(table1, tmp_path, capsys):
    assert table1.main(["--report-from", str(tmp_path / "table1.json")]) == 2
    assert "--report-from" in capsys.readouterr().err


def test_wrong_data_dir_is_a_clear_error(table1, tmp_path, capsys):
    code = table1.main(
        ["--dataset", "amibr", "--data-dir", str(tmp_path / "missing"), "--target", "a",
         "--source", "b", "--out", str(tmp_path / "out")]
    )  # fmt: skip
    assert code == 2
    assert "is not a folder" in capsys.readouterr().err
    code = table1.main(
        ["--dataset", "amibr", "--data-dir", str(tmp_path), "--target", "a", "--source", "b"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "does not hold a amibr dataset" in err and "labels.csv" in err


def test_unknown_domain_lists_the_domains(table1, tmp_path, capsys):
    root = require_data("amibr")
    code = table1.main(
        ["--dataset", "amibr", "--data-dir", str(root), "--target", "HamamatsuXR",
         "--source", "Leica", "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "'Leica' not found" in err and "AperioCS2" in err


def test_real_dataset_needs_target_and_source(table1):
    with pytest.raises(SystemExit) as exit_:
        table1.main(["--dataset", "folder", "--data-dir", "."])
    assert exit_.value.code == 2


def test_cli_dispatches_to_table1(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "stainstyle.cli", "benchmark", "table1", "--dataset", "amibr",
         "--data-dir", str(tmp_path / "missing"), "--target", "a", "--source", "b"],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "is not a folder" in result.stderr
