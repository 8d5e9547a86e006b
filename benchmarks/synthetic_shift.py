"""Is the synthetic domain shift real? A tumour classifier across two synthetic labs.

A ResNet-18 (:class:`stainstyle.sst.classifier.TileClassifier`) is trained on tiles in the
target style ("radboud") and scored by ROC AUC on

- ``target``: held-out tissue rendered in the target style;
- ``source``: other tissue rendered in the source style ("utrecht");
- ``oracle``: that same source tissue re-rendered in the target style.

A large gap between ``source`` and ``oracle`` means the classes are told apart by morphology and
the classifier fails on the source lab because of colour and tone only: the situation stain
normalization is meant to fix. Acceptance: target >= 0.95, source <= 0.80, oracle >= 0.93, in
under 5 minutes on 2 CPU cores.

``--speed`` also times the generator (tiles of 128x128 per second on one core); ``--colour``
adds colour-only baselines: a logistic regression on each tile's mean optical density per
channel (5-fold cross-validated AUC within each lab), and on mean and standard deviation.

Run: ``python benchmarks/synthetic_shift.py [--speed] [--colour]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from _common import environment
from sklearn.metrics import roc_auc_score

from stainstyle.data import make_tiles, render_pair
from stainstyle.sst.classifier import TileClassifier

TARGET, SOURCE = "radboud", "utrecht"


def generator_speed(n: int = 1000, size: int = 128) -> dict:
    """Tiles per second of ``make_tiles`` on one thread (best of three runs).

    Reports wall-clock and CPU-time rates; on a busy machine the CPU-time rate is what one
    otherwise idle core would achieve.
    """
    import cv2

    threads = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    try:
        make_tiles(16, TARGET, size=size, seed=99)  # warm-up
        wall, cpu = np.inf, np.inf
        for seed in range(3):
            start, start_cpu = time.perf_counter(), time.process_time()
            make_tiles(n, TARGET, size=size, seed=seed)
            wall = min(wall, time.perf_counter() - start)
            cpu = min(cpu, time.process_time() - start_cpu)
    finally:
        cv2.setNumThreads(threads[0])
        torch.set_num_threads(threads[1])
    return {"tiles_per_s_wall": round(n / wall, 1), "tiles_per_s_cpu": round(n / cpu, 1)}


def colour_only_auc(n: int = 600, size: int = 128, seed: int = 0) -> dict:
    """Within-lab AUC of a logistic regression on per-tile optical-density statistics."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    result = {}
    for style in (TARGET, SOURCE):
        tiles, labels = make_tiles(n, style, size=size, seed=seed)
        od = -np.log((tiles.astype(np.float32) + 1.0) / 256.0)
        stats = np.concatenate([od.mean(axis=(1, 2)), od.std(axis=(1, 2))], axis=1)
        for name, features in (("mean", stats[:, :3]), ("mean_std", stats)):
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
            proba = cross_val_predict(model, features, labels, cv=5, method="predict_proba")
            result[f"{style}_{name}"] = round(float(roc_auc_score(labels, proba[:, 1])), 3)
    return result


def run(n_train: int, n_test: int, size: int, epochs: int, seed: int) -> dict:
    """Train on the target style, score target, source and oracle tiles."""
    start, start_cpu = time.perf_counter(), time.process_time()
    x_train, y_train = make_tiles(n_train, TARGET, size=size, seed=seed)
    x_target, y_target = make_tiles(n_test, TARGET, size=size, seed=seed + 1)
    x_oracle, x_source, y_source = render_pair(n_test, TARGET, SOURCE, size=size, seed=seed + 2)
    generated = time.perf_counter() - start

    clf = TileClassifier(
        arch="resnet18", epochs=epochs, batch_size=32, lr=1e-3, device="cpu", random_state=seed
    )
    clf.fit(x_train, y_train)
    trained = time.perf_counter() - start - generated

    def auc(x, y):
        return float(roc_auc_score(y, clf.predict_proba(x)[:, 1]))

    result = {
        "auc_target": auc(x_target, y_target),
        "auc_source": auc(x_source, y_source),
        "auc_oracle": auc(x_oracle, y_source),
        "n_train": n_train,
        "n_test": n_test,
        "size": size,
        "epochs": epochs,
        "seed": seed,
        "seconds_generate": round(generated, 1),
        "seconds_train": round(trained, 1),
        "seconds_total": round(time.perf_counter() - start, 1),
        "cpu_seconds_total": round(time.process_time() - start_cpu, 1),
        "torch_threads": torch.get_num_threads(),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=600)
    parser.add_argument("--n-test", type=int, default=300)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed", action="store_true", help="also time the generator")
    parser.add_argument("--colour", action="store_true", help="also colour-only baselines")
    parser.add_argument("--no-train", action="store_true", help="skip the classifier")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    result = {"environment": environment("cpu")}
    if args.colour:
        result["colour_only_auc"] = colour_only_auc(seed=args.seed)
    if args.speed:
        result["generator_128px_1_thread"] = generator_speed()
    if args.no_train:
        print(json.dumps(result, indent=2))
        return
    result.update(run(args.n_train, args.n_test, args.size, args.epochs, args.seed))
    print(json.dumps(result, indent=2))
    checks = {
        "target >= 0.95": result["auc_target"] >= 0.95,
        "source <= 0.80": result["auc_source"] <= 0.80,
        "oracle >= 0.93": result["auc_oracle"] >= 0.93,
        "total < 300 s": result["seconds_total"] < 300,
    }
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
