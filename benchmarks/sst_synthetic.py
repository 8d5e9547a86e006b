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
   the transferred source tiles. The classic methods (Reinhard, Macenko, histogram
   specification, WSICS), fitted on the same target tiles, are measured alongside. Each trained
   generator is also evaluated with ``gray_matching="histogram"`` (gray levels matched to the
   target's gray histogram per tile, and pooled per slide).

Run ``python benchmarks/sst_synthetic.py --budget 540 --classic`` (``--variants fp`` skips the
ablation); ``--json PATH`` writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from stainstyle.base import BackgroundTileWarning
from stainstyle.data.synthetic import make_tiles, render_pair
from stainstyle.methods import HistogramSpecification, MacenkoNormalizer, ReinhardNormalizer
from stainstyle.methods.wsics import WSICSNormalizer
from stainstyle.metrics import ciede2000_lowpass, psnr
from stainstyle.sst import StainStyleTransfer, TileClassifier


def evaluate(name, transferred, truth, labels, classifier, seconds=None):
    row = {
        "method": name,
        "psnr": psnr(transferred, truth, pooled=True),
        "ciede2000_lp3": float(np.mean(ciede2000_lowpass(transferred, truth))),
        "auc": float(roc_auc_score(labels, classifier.predict_proba(transferred)[:, 1])),
    }
    if seconds is not None:
        row["fit_seconds"] = seconds
    logging.info("%s", row)
    return row


def main() -> None:
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
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    warnings.simplefilter("ignore", BackgroundTileWarning)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    target, target_labels = make_tiles(args.n_train, "radboud", size=128, seed=1)
    held_out, _ = make_tiles(args.n_test, "radboud", size=128, seed=2)
    source, truth, labels, slides = render_pair(
        args.n_test, "utrecht", "radboud", size=128, seed=3, return_slides=True
    )

    started = time.monotonic()
    classifier = TileClassifier(
        arch="resnet18",
        epochs=args.classifier_epochs,
        batch_size=32,
        crop_size=args.classifier_crop,
        device="cpu",
    ).fit(target, target_labels)
    classifier_seconds = time.monotonic() - started
    target_auc = roc_auc_score(labels, classifier.predict_proba(truth)[:, 1])
    logging.info(
        "classifier: %.0f s, AUC on target-style truth %.3f", classifier_seconds, target_auc
    )

    rows = [
        evaluate("none (source as is)", source, truth, labels, classifier),
        evaluate("target-style ground truth", truth, truth, labels, classifier),
    ]
    if args.classic:
        for name, method in [
            ("reinhard", ReinhardNormalizer()),
            ("macenko", MacenkoNormalizer()),
            ("histogram", HistogramSpecification()),
            ("wsics", WSICSNormalizer()),
        ]:
            started = time.monotonic()
            method.fit(target)
            rows.append(
                evaluate(
                    name,
                    method.transform(source),
                    truth,
                    labels,
                    classifier,
                    time.monotonic() - started,
                )
            )

    for variant in filter(None, args.variants.split(",")):
        use_fp = variant == "fp"
        sst = StainStyleTransfer(
            preset="cpu",
            max_epochs=args.epochs,
            time_budget=args.budget,
            lambda_fp=1.0 if use_fp else 0.0,
            classifier=classifier if use_fp else None,
            device="cpu",
        )
        started = time.monotonic()
        sst.fit(target)
        sst_seconds = time.monotonic() - started
        name = "sst" if use_fp else "sst (no feature loss)"
        row = evaluate(name, sst.transform(source), truth, labels, classifier, sst_seconds)
        row["reconstruction_psnr"] = psnr(sst.transform(held_out), held_out, pooled=True)
        row["epochs"] = sst.epoch_
        row["steps"] = int(sum(h["steps"] for h in sst.history_))
        row["val_psnr_per_epoch"] = [round(h["val_psnr"], 2) for h in sst.history_]
        logging.info("%s", row)
        rows.append(row)
        # The same generator, its gray input matched to the target's gray histogram.
        sst.set_params(gray_matching="histogram")
        rows.append(
            evaluate(
                name + " + gray matching per tile", sst.transform(source), truth, labels, classifier
            )
        )
        rows.append(
            evaluate(
                name + " + gray matching per slide",
                sst.transform(source, groups=slides),
                truth,
                labels,
                classifier,
            )
        )

    result = {
        "threads": torch.get_num_threads(),
        "classifier_seconds": classifier_seconds,
        "classifier_auc_on_target_truth": float(target_auc),
        "rows": rows,
    }
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
