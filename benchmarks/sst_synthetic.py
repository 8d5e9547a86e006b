"""StainStyleTransfer on synthetic H&E: reconstruction, transfer fidelity and the Table 1 AUC.

Target style ``radboud``, source style ``utrecht`` (:mod:`stainstyle.data.synthetic`).

1. A :class:`~stainstyle.sst.TileClassifier` (ResNet-18) is trained on labeled target tiles: it
   is the tumour classifier of Cho et al.'s Table 1 and the frozen network of the
   feature-preserving loss.
2. :class:`~stainstyle.sst.StainStyleTransfer` (``preset="cpu"``) is trained on the same target
   tiles within a time budget, with and (for the ablation) without the feature-preserving loss.
3. Reported: reconstruction PSNR from gray on held-out target tiles; source-to-target transfer
   PSNR and low-passed CIEDE2000 against the paired ground truth (the same tissue rendered in
   the target style, :func:`~stainstyle.data.synthetic.render_pair`); the classifier's ROC AUC on
   the transferred source tiles. The classic methods of the method registry (Reinhard, Macenko,
   histogram specification, WSICS), fitted on the same target tiles, are measured alongside.
   Each trained generator is also evaluated with ``gray_matching="histogram"`` (gray levels
   matched to the target's gray histogram per tile, and pooled per slide).

Run ``python benchmarks/sst_synthetic.py --budget 540 --classic`` (``--variants fp`` skips the
ablation); ``--json PATH`` writes the numbers, and a Markdown table beside them (``PATH`` with
the suffix ``.md``); ``--report-from PATH`` writes that table again from saved numbers;
``--quick`` is a smoke run of every row.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _common import (
    CLASSIC_STAIN_METHODS,
    Timer,
    add_report_from,
    configure_logging,
    environment,
    frozen_config,
    markdown_table,
    method_roster,
    read_report,
    write_json,
    write_text,
)
from sklearn.metrics import roc_auc_score

from stainstyle.base import BackgroundTileWarning

logger = logging.getLogger("sst_synthetic")

#: Stain-style transfer runs: variant -> (row name, feature-preserving loss on).
SST_VARIANTS = {"fp": ("sst", True), "nofp": ("sst (no feature loss)", False)}

#: Parameters of every stain-style transfer run (the variants set the loss).
SST_PARAMS = {"preset": "cpu", "device": "cpu"}

#: ``--quick``: every row, on tiny data and a 2 s budget.
QUICK = {
    "budget": 2.0,
    "epochs": 1,
    "n_train": 32,
    "n_test": 16,
    "classifier_epochs": 1,
    "classic": True,
}

#: Table columns: row key -> header.
COLUMNS = {
    "psnr": "transfer PSNR (dB)",
    "ciede2000_lp3": "CIEDE2000 (low-pass)",
    "auc": "AUC",
    "reconstruction_psnr": "reconstruction PSNR (dB)",
    "steps": "training steps",
    "fit_seconds": "seconds",
}


@dataclass(frozen=True)
class Config:
    """One run, built once from the command line (see ``--help`` for each field)."""

    budget: float
    epochs: int
    n_train: int
    n_test: int
    classifier_epochs: int
    classifier_crop: int
    variants: tuple[str, ...]
    classic: bool
    threads: int | None
    json: Path | None
    quick: bool


@dataclass
class Data:
    """Target training tiles and labels, held-out target tiles, and the paired source tiles."""

    target: np.ndarray
    target_labels: np.ndarray
    held_out: np.ndarray
    source: np.ndarray
    truth: np.ndarray
    labels: np.ndarray
    slides: np.ndarray


def make_data(config: Config) -> Data:
    """The synthetic tiles (fixed seeds): 128 px, target ``radboud``, source ``utrecht``."""
    from stainstyle.data.synthetic import make_tiles, render_pair

    target, target_labels = make_tiles(config.n_train, "radboud", size=128, seed=1)
    held_out, _ = make_tiles(config.n_test, "radboud", size=128, seed=2)
    source, truth, labels, slides = render_pair(
        config.n_test, "utrecht", "radboud", size=128, seed=3, return_slides=True
    )
    return Data(target, target_labels, held_out, source, truth, labels, slides)


def evaluate(name, transferred, truth, labels, classifier, seconds=None) -> dict:
    """One row: transfer PSNR and CIEDE2000 against the ground truth, and the classifier's AUC."""
    from stainstyle.metrics import ciede2000_lowpass, psnr

    row = {
        "method": name,
        "psnr": psnr(transferred, truth, pooled=True),
        "ciede2000_lp3": float(np.mean(ciede2000_lowpass(transferred, truth))),
        "auc": float(roc_auc_score(labels, classifier.predict_proba(transferred)[:, 1])),
    }
    if seconds is not None:
        row["fit_seconds"] = seconds
    logger.info("%s", row)
    return row


def train_classifier(config: Config, data: Data):
    """The tumour classifier on the target tiles, its training seconds and its AUC on truth."""
    from stainstyle.sst import TileClassifier

    with Timer() as timer:
        classifier = TileClassifier(
            arch="resnet18",
            epochs=config.classifier_epochs,
            batch_size=32,
            crop_size=config.classifier_crop,
            device="cpu",
        ).fit(data.target, data.target_labels)
    target_auc = float(roc_auc_score(data.labels, classifier.predict_proba(data.truth)[:, 1]))
    logger.info("classifier: %.0f s, AUC on target-style truth %.3f", timer.seconds, target_auc)
    return classifier, timer.seconds, target_auc


def classic_rows(data: Data, classifier) -> list[dict]:
    """The registry's classic methods, fitted on the target tiles (seconds: fit + transform)."""
    rows = []
    roster = method_roster({method: method for method in CLASSIC_STAIN_METHODS})
    for name, make in roster.items():
        with Timer() as timer:
            transferred = make().fit(data.target).transform(data.source)
        rows.append(evaluate(name, transferred, data.truth, data.labels, classifier, timer.seconds))
    return rows


def sst_rows(config: Config, data: Data, classifier, variant: str) -> list[dict]:
    """One stain-style transfer run: its row, then the same generator with gray matching."""
    from stainstyle.metrics import psnr

    name, use_fp = SST_VARIANTS[variant]
    sst = method_roster({"sst": name}, {"sst": SST_PARAMS})[name](
        max_epochs=config.epochs,
        time_budget=config.budget,
        lambda_fp=1.0 if use_fp else 0.0,
        classifier=classifier if use_fp else None,
    )
    with Timer() as timer:
        sst.fit(data.target)
    row = evaluate(
        name, sst.transform(data.source), data.truth, data.labels, classifier, timer.seconds
    )
    row["reconstruction_psnr"] = psnr(sst.transform(data.held_out), data.held_out, pooled=True)
    row["epochs"] = sst.epoch_
    row["steps"] = int(sum(h["steps"] for h in sst.history_))
    row["val_psnr_per_epoch"] = [round(h["val_psnr"], 2) for h in sst.history_]
    logger.info("%s", row)
    # The same generator, its gray input matched to the target's gray histogram.
    sst.set_params(gray_matching="histogram")
    per_tile = sst.transform(data.source)
    per_slide = sst.transform(data.source, groups=data.slides)
    return [
        row,
        evaluate(name + " + gray matching per tile", per_tile, data.truth, data.labels, classifier),
        evaluate(
            name + " + gray matching per slide", per_slide, data.truth, data.labels, classifier
        ),
    ]


def run(config: Config) -> dict:
    """Every row of the benchmark, with the classifier's numbers and the run's environment."""
    import torch

    started = time.monotonic()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    data = make_data(config)
    classifier, classifier_seconds, target_auc = train_classifier(config, data)
    rows = [
        evaluate("none (source as is)", data.source, data.truth, data.labels, classifier),
        evaluate("target-style ground truth", data.truth, data.truth, data.labels, classifier),
    ]
    if config.classic:
        rows += classic_rows(data, classifier)
    for variant in config.variants:
        rows += sst_rows(config, data, classifier, variant)
    return {
        "threads": torch.get_num_threads(),
        "classifier_seconds": classifier_seconds,
        "classifier_auc_on_target_truth": target_auc,
        "rows": rows,
        "config": {
            k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()
        },
        "environment": environment("cpu"),
        "wall_time_s": round(time.monotonic() - started, 1),
    }


def _cell(value) -> str:
    if value is None or isinstance(value, int):
        return "" if value is None else str(value)
    return f"{value:.4f}" if isinstance(value, float) and abs(value) < 1 else f"{value:.2f}"


def render_markdown(result: dict) -> str:
    """The rows as a Markdown table, under a line on the set-up."""
    config = result.get("config", {})
    lines = [
        "Stain-style transfer on synthetic H&E (target radboud, source utrecht, 128 px): "
        f"{config.get('n_train', '?')} target training tiles, {config.get('n_test', '?')} "
        f"paired test tiles, SST budget {config.get('budget', '?')} s; classifier AUC on the "
        f"target-style truth {result['classifier_auc_on_target_truth']:.4f}.",
        "",
        *markdown_table(
            ["method", *COLUMNS.values()],
            [[row["method"], *(_cell(row.get(k)) for k in COLUMNS)] for row in result["rows"]],
        ),
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=540.0, help="SST training seconds")
    parser.add_argument(
        "--epochs", type=int, default=1000, help="SST epochs (the budget may stop it first)"
    )
    parser.add_argument("--n-train", type=int, default=512, help="target training tiles")
    parser.add_argument("--n-test", type=int, default=128, help="held-out tiles and pairs")
    parser.add_argument("--classifier-epochs", type=int, default=6)
    parser.add_argument("--classifier-crop", type=int, default=64, help="classifier crops")
    parser.add_argument(
        "--variants",
        default="fp,nofp",
        help="SST runs: fp (feature loss on), nofp (off); empty for none",
    )
    parser.add_argument("--classic", action="store_true", help="also run the classic methods")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}")
    add_report_from(parser, "JSON report", "the Markdown table (beside it)")
    args = parser.parse_args(argv)
    args.variants = tuple(filter(None, args.variants.split(",")))
    unknown = sorted(set(args.variants) - set(SST_VARIANTS))
    if unknown:
        parser.error(f"--variants: expected some of {sorted(SST_VARIANTS)}, got {unknown}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or re-render a saved one); returns the exit code."""
    args = parse_args(argv)
    configure_logging("sst_synthetic")
    warnings.simplefilter("ignore", BackgroundTileWarning)
    if args.report_from is not None:
        result = read_report(args.report_from, "sst_synthetic")
        if result is None:
            return 2
        write_text(args.report_from.with_suffix(".md"), render_markdown(result))
        print(render_markdown(result))
        return 0
    config = frozen_config(Config, args, QUICK)
    result = run(config)
    if config.json is not None:
        write_json(config.json, result)
        write_text(config.json.with_suffix(".md"), render_markdown(result))
    print(render_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
