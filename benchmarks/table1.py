"""Table 1 of Cho et al. 2017: a tumour classifier on another lab's tiles, after each method.

A :class:`~stainstyle.sst.TileClassifier` is trained on the target lab's training split (a slide
is never in two splits), its decision threshold is chosen on the target validation split, and
it is evaluated on

- **Target**: held-out target tiles (the target test split);
- **Original**: the source lab's tiles as they are;
- **SST**, **WSICS**, **HS** (histogram specification), **Macenko**, **Reinhard**: the source
  tiles mapped to the target style by each method, fitted on the target training tiles only.
  SST uses the trained classifier for its feature-preserving loss, as in the paper.

Metrics per column: ROC AUC, and at the threshold precision, recall (sensitivity), specificity
and balanced accuracy of the positive class (label 1). The threshold maximizes Youden's J
(recall + specificity - 1) on the target validation split; a tile is positive when its score is
at least the threshold. The score is the classifier's logit difference (``decision_function``):
it ranks tiles as the softmax probability does, without the ties of probabilities that round to
exactly 1 in float32 on confidently classified tiles. With ``--seeds K`` (seeds 0..K-1: data
split, networks and sampling) the table shows mean +- standard deviation over seeds, and a 95%
interval of the seed-mean AUC from a stratified bootstrap of the test tiles (1000 resamples,
percentile).

How each classic method is applied: Reinhard, Macenko and histogram specification take their
source statistics per tile, as their reference implementations do; WSICS pools them per source
slide (``transform(X, groups=slide)``), as it is a whole-slide method. The methods come from the
method registry (:data:`METHOD_LABELS` gives each its column).

Datasets (``--dataset``):

- ``synthetic`` (default): the built-in generator, target lab ``radboud`` (pinkish), source lab
  ``utrecht`` (purple), 64 px tiles.
- ``amibr``: AMi-Br mitosis crops, normal (0) vs atypical (1), one table per source scanner;
  ``--target HamamatsuXR,HamamatsuS360 --source AperioCS2,TUPAC16``. Tiles are centre-cropped
  to 96 px (the mitosis is in the centre).
- ``folder`` (``root/<domain>/<label>/*.png``, labels ``0``/``1`` or mapped with
  ``--positive``), ``pcam`` (PatchCamelyon HDF5; use ``--domain-pattern`` to read the centre
  from the slide name) and ``camelyon17`` (CAMELYON17-WILDS, domains ``center_0`` ...
  ``center_4``).

Outputs under ``--out``: ``table1.md``, ``table1.csv``, ``table1.json`` (configuration, seeds,
library versions, device, wall time, per-seed numbers), ``figure4.png`` (the paper's Figure 4:
target examples, then source tiles as they are and after each method) and ``figure4.npz`` (the
figure's tiles). ``--report-from OUT/table1.json`` writes the Markdown, CSV and figure again
from those two files, without running anything.

    python benchmarks/table1.py                       # synthetic, sized for 10 min on 2 cores
    python benchmarks/table1.py --quick               # smoke run
    python benchmarks/table1.py --dataset amibr --data-dir ../shared/data/amibr \
        --target HamamatsuXR,HamamatsuS360 --source AperioCS2,TUPAC16 --seeds 3
    python benchmarks/table1.py --report-from results/table1.json
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _common import (
    Timer,
    add_report_from,
    configure_logging,
    environment,
    markdown_table,
    method_roster,
    read_arrays,
    read_report,
    write_arrays,
    write_csv,
    write_json,
    write_text,
)
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score, roc_curve

logger = logging.getLogger("table1")

#: Registry method -> its column, in the paper's order, then the methods the paper did not
#: evaluate (columns after its seven, without a paper AUC).
METHOD_LABELS = {
    "sst": "SST",
    "wsics": "WSICS",
    "histogram": "HS",
    "macenko": "Macenko",
    "reinhard": "Reinhard",
    "vahadane": "Vahadane",
}

#: Columns of the paper's Table 1, in its order, then the extra ones.
COLUMNS = ("Target", "Original", *METHOD_LABELS.values())

#: Columns whose method pools its source statistics per slide: ``transform(X, groups=slide)``.
POOLED_PER_SLIDE = frozenset({"WSICS"})

#: Rows: metric key and label.
METRICS = {
    "auc": "AUC",
    "precision": "Precision",
    "recall": "Recall (sensitivity)",
    "specificity": "Specificity",
    "balanced_accuracy": "Balanced accuracy",
}

#: Cho et al. 2017, Table 1 (CAMELYON16, Radboud target, Utrecht source): AUC per column.
PAPER_AUC = {
    "Target": 0.9760,
    "Original": 0.8900,
    "SST": 0.9185,
    "WSICS": 0.6408,
    "HS": 0.4245,
    "Macenko": 0.7169,
    "Reinhard": 0.5611,
}


def paper_auc(column: str) -> str:
    """The paper's AUC of a column, formatted; empty for a column the paper does not have."""
    return f"{PAPER_AUC[column]:.4f}" if column in PAPER_AUC else ""


DATASETS = ("synthetic", "amibr", "folder", "pcam", "camelyon17")
N_BOOTSTRAP = 1000

#: Real datasets' defaults: centre crop (px, None for none) and pixel size (um/px, for WSICS).
REAL_DEFAULTS = {"amibr": (96, 0.25)}
OTHER_DEFAULTS = (None, 0.5)

#: What the loaders expect in ``--data-dir``, for error messages.
EXPECTED_LAYOUT = {
    "amibr": "labels.csv and the normal/, atypical/ folders",
    "folder": "<domain>/<label>/<image files>",
    "pcam": "camelyonpatch_level_2_split_<split>_{x,y}.h5 (and _meta.csv)",
    "camelyon17": "metadata.csv and patches/",
}


@dataclass(frozen=True)
class Settings:
    """Sizes and training lengths of one run; the defaults are the ``cpu`` preset.

    Attributes
    ----------
    n_target, n_source : int
        Synthetic tiles drawn for the target lab and the source lab.
    tile_size : int
        Synthetic tile side (px).
    max_tiles : int
        Real data: at most this many tiles per domain (random subset), 0 for all.
    classifier_arch : str
        ``"resnet18"`` or ``"resnet34"``.
    classifier_epochs : int
        Classifier training epochs.
    sst_preset : str
        :class:`~stainstyle.sst.StainStyleTransfer` preset.
    sst_epochs : int or None
        SST epochs (None: the preset's).
    sst_budget : float or None
        SST training seconds (None: no limit).
    sst_width : int or None
        FusionNet width (None: the preset's).
    """

    n_target: int = 1200
    n_source: int = 384
    tile_size: int = 64
    max_tiles: int = 0
    classifier_arch: str = "resnet18"
    classifier_epochs: int = 3
    sst_preset: str = "cpu"
    sst_epochs: int | None = 1000
    sst_budget: float | None = 210.0
    sst_width: int | None = None


PRESETS = {
    "quick": Settings(n_target=128, n_source=64, tile_size=32, max_tiles=200,
                      classifier_epochs=1, sst_epochs=1, sst_budget=20.0, sst_width=8),
    "cpu": Settings(),
    "paper": Settings(n_target=4000, n_source=1000, tile_size=256, classifier_arch="resnet34",
                      classifier_epochs=20, sst_preset="paper", sst_epochs=None, sst_budget=None),
}  # fmt: skip


@dataclass(frozen=True)
class Config:
    """Everything a run needs, built once from the command line by :func:`build_config`.

    The fields are the command-line options (``--data-dir`` is ``data_dir`` ...), with the
    dataset's defaults filled in, and ``settings``: the preset with the overrides applied.
    ``target`` and ``source`` keep the comma-separated text given; :attr:`targets` and
    :attr:`sources` are the domain names.
    """

    dataset: str
    data_dir: Path | None
    target: str | None
    source: str | None
    seeds: int
    out: Path
    preset: str
    quick: bool
    device: str
    classifier_epochs: int | None
    sst_budget: float | None
    lambda_fp: float
    max_tiles: int | None
    crop: int | None
    microns_per_pixel: float
    slide_pattern: str | None
    domain_pattern: str | None
    positive: str | None
    pcam_split: str
    verbose: bool
    settings: Settings

    @property
    def targets(self) -> list[str]:
        """Target domain names."""
        return _names(self.target, "--target")

    @property
    def sources(self) -> list[str]:
        """Source domain names."""
        return _names(self.source, "--source")

    def to_json(self) -> dict:
        """The configuration as the report records it (seeds as the list of seeds run)."""
        fields = dataclasses.asdict(self)
        fields = {k: (str(v) if isinstance(v, Path) else v) for k, v in fields.items()}
        return fields | {"seeds": list(range(self.seeds))}


# ---------------------------------------------------------------------------------------- data
@dataclass
class Split:
    """Tiles, labels (0/1) and slide ids of one part of the data."""

    tiles: np.ndarray
    labels: np.ndarray
    slides: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Experiment:
    """Target train / validation / test splits and one test set per source domain."""

    train: Split
    val: Split
    test: Split
    sources: dict[str, Split]
    microns_per_pixel: float


class DataError(ValueError):
    """A dataset path, layout or domain selection that cannot be used."""


def _names(value: str | None, what: str) -> list[str]:
    names = [n.strip() for n in (value or "").split(",") if n.strip()]
    if not names:
        raise DataError(f"{what}: expected a comma-separated list of domains, got {value!r}")
    return names


def _subset(tiles, index: np.ndarray) -> np.ndarray:
    """Read (when lazy) and stack the tiles at ``index``."""
    if isinstance(tiles, np.ndarray):
        return tiles[index]
    images = [np.asarray(tiles[int(i)]) for i in index]
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise DataError(f"tiles: expected one tile size per dataset, got sizes {sorted(shapes)}")
    return np.stack(images)


def _centre_crop(tiles: np.ndarray, size: int | None) -> np.ndarray:
    if size is None or size >= min(tiles.shape[1:3]):
        return tiles
    y, x = (tiles.shape[1] - size) // 2, (tiles.shape[2] - size) // 2
    return tiles[:, y : y + size, x : x + size]


def synthetic_experiment(settings: Settings, seed: int) -> Experiment:
    """Target ``radboud`` tiles split by slide, source ``utrecht`` tiles of other tissue."""
    from stainstyle.data import make_tiles, split_by_slide

    n_slides = max(8, settings.n_target // 32)
    tiles, labels, slides = make_tiles(
        settings.n_target,
        "radboud",
        size=settings.tile_size,
        seed=10 * seed,
        n_slides=n_slides,
        return_slides=True,
    )
    parts = split_by_slide(slides, (0.6, 0.2, 0.2), seed=seed)
    train, val, test = (Split(tiles[i], labels[i], slides[i].astype(str)) for i in parts)
    source = make_tiles(
        settings.n_source,
        "utrecht",
        size=settings.tile_size,
        seed=10 * seed + 1,
        return_slides=True,
    )
    return Experiment(
        train, val, test, {"utrecht": Split(source[0], source[1], source[2].astype(str))}, 0.5
    )


def _read_dataset(config: Config, root: Path):
    """The loader's ``(tiles, labels, groups)``; its errors say what the folder should hold."""
    from stainstyle.data import load_amibr, load_camelyon17_wilds, load_folder, load_pcam

    try:
        if config.dataset == "amibr":
            return load_amibr(root, lazy=True)
        if config.dataset == "folder":
            label_map = None if config.positive is None else _label_map(root, config.positive)
            return load_folder(
                root, slide_pattern=config.slide_pattern, lazy=True, label_map=label_map
            )
        if config.dataset == "pcam":
            return load_pcam(root, config.pcam_split)
        return load_camelyon17_wilds(root, lazy=True)
    except (FileNotFoundError, KeyError, ValueError) as error:
        raise DataError(
            f"--data-dir: {root} does not hold a {config.dataset} dataset (expected "
            f"{EXPECTED_LAYOUT[config.dataset]}): {error}"
        ) from error


def _domains_from_pattern(groups, pattern: str):
    """``groups`` with each domain read from its slide name by the first group of ``pattern``."""
    from stainstyle.data import Groups

    regex = re.compile(pattern)
    domains = []
    for slide in groups.slide:
        match = regex.search(slide)
        if match is None or not match.groups():
            raise DataError(f"--domain-pattern: {pattern!r} has no group matching {slide!r}")
        domains.append(match.group(1))
    return Groups(domain=np.asarray(domains), slide=groups.slide)


def load_dataset(config: Config):
    """``(tiles, labels, groups)`` of a real dataset, with clear errors for wrong paths."""
    if config.data_dir is None:
        raise DataError(f"--data-dir: required with --dataset {config.dataset}")
    root = Path(config.data_dir)
    if not root.is_dir():
        raise DataError(f"--data-dir: {root} is not a folder")
    tiles, labels, groups = _read_dataset(config, root)
    if config.domain_pattern:
        groups = _domains_from_pattern(groups, config.domain_pattern)
    labels = np.asarray(labels)
    if set(np.unique(labels).tolist()) - {0, 1}:
        raise DataError(
            f"labels: expected 0 (negative) and 1 (positive), got {sorted(set(labels.tolist()))}; "
            "use --positive NAME to name the positive class"
        )
    return tiles, labels.astype(np.int64), groups


def _label_map(root: Path, positive: str) -> dict[str, int]:
    labels = {p.name for domain in root.iterdir() if domain.is_dir() for p in domain.iterdir()}
    if positive not in labels:
        raise DataError(f"--positive: {positive!r} is not a label folder; found {sorted(labels)}")
    return {name: int(name == positive) for name in labels}


def real_experiment(config: Config, seed: int, data) -> Experiment:
    """Target domains split by slide; each source domain whole."""
    from stainstyle.data import split_by_slide

    tiles, labels, groups = data
    found = sorted(set(groups.domain.tolist()))
    targets, sources = config.targets, config.sources
    for name in targets + sources:
        if name not in found:
            raise DataError(f"--target/--source: domain {name!r} not found; domains are {found}")
    rng = np.random.default_rng(seed)
    max_tiles = config.settings.max_tiles

    def take(index: np.ndarray) -> np.ndarray:
        if max_tiles and len(index) > max_tiles:
            index = np.sort(rng.choice(index, max_tiles, replace=False))
        return index

    def split(index: np.ndarray) -> Split:
        x = _centre_crop(_subset(tiles, index), config.crop)
        return Split(x, labels[index], groups.slide[index])

    in_target = np.flatnonzero(np.isin(groups.domain, targets))
    in_target = take(in_target)
    parts = split_by_slide(groups[in_target], (0.6, 0.2, 0.2), seed=seed)
    train, val, test = (split(in_target[p]) for p in parts)
    for part, name in ((train, "train"), (val, "validation"), (test, "test")):
        if len(np.unique(part.labels)) < 2:
            raise DataError(f"target {name} split has one class only; use more target slides")
    return Experiment(
        train,
        val,
        test,
        {s: split(take(np.flatnonzero(groups.domain == s))) for s in sources},
        config.microns_per_pixel,
    )


# ------------------------------------------------------------------------------------- metrics
def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """Score threshold maximizing recall + specificity - 1 (Youden's J) on ``(labels, scores)``.

    Parameters
    ----------
    labels : ndarray of shape (N,), int
        0 or 1, both present.
    scores : ndarray of shape (N,), float
        Positive-class scores.

    Returns
    -------
    float
        A tile is called positive when its score is >= the threshold.
    """
    fpr, tpr, thresholds = roc_curve(labels, scores)
    threshold = thresholds[int(np.argmax(tpr - fpr))]
    # roc_curve's first threshold is +inf (no tile positive): keep it finite for the JSON.
    return float(threshold if np.isfinite(threshold) else np.nextafter(scores.max(), np.inf))


def binary_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """AUC, and precision, recall, specificity, balanced accuracy at ``threshold``.

    Parameters
    ----------
    labels, scores : ndarray of shape (N,)
        As :func:`youden_threshold`: labels 0 or 1 (both present), positive-class scores.
    threshold : float
        Decision threshold (positive when ``score >= threshold``).

    Returns
    -------
    dict of str to float
        Keys of :data:`METRICS`; precision is NaN when nothing is called positive.
    """
    predicted = scores >= threshold
    positive = labels == 1
    tp = np.count_nonzero(predicted & positive)
    fp = np.count_nonzero(predicted & ~positive)
    recall = tp / max(np.count_nonzero(positive), 1)
    specificity = np.count_nonzero(~predicted & ~positive) / max(np.count_nonzero(~positive), 1)
    return {
        "auc": float(roc_auc_score(labels, scores)),
        "precision": float(tp / (tp + fp)) if tp + fp else float("nan"),
        "recall": float(recall),
        "specificity": float(specificity),
        "balanced_accuracy": float((recall + specificity) / 2),
    }


def bootstrap_auc(
    runs: Sequence[tuple[np.ndarray, np.ndarray]], n: int = N_BOOTSTRAP, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of the mean AUC over runs, by a stratified bootstrap.

    Each replicate resamples every run's positives and negatives with replacement and averages
    the runs' AUCs (Mann-Whitney form, ties count one half).

    Parameters
    ----------
    runs : sequence of (labels, scores)
        One pair of ndarrays of shape (N_k,) per seed.
    n : int, default=1000
        Bootstrap replicates.
    seed : int, default=0
        Seed of the resampling.

    Returns
    -------
    low, high : float
        The 2.5th and 97.5th percentiles.
    """
    rng = np.random.default_rng(seed)
    total = np.zeros(n)
    for labels, scores in runs:
        pos, neg = scores[labels == 1], scores[labels == 0]
        sample = np.concatenate(
            [
                pos[rng.integers(0, len(pos), (n, len(pos)))],
                neg[rng.integers(0, len(neg), (n, len(neg)))],
            ],
            axis=1,
        )
        ranks = rankdata(sample, axis=1)[:, : len(pos)].sum(axis=1)
        total += (ranks - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))
    low, high = np.percentile(total / len(runs), [2.5, 97.5])
    return float(low), float(high)


def summarize(per_seed: list[dict], columns: Sequence[str] = COLUMNS) -> dict[str, dict]:
    """Mean, standard deviation (ddof=1; 0 for one seed) and AUC interval per column.

    Parameters
    ----------
    per_seed : list of dict
        One entry per seed, with ``"metrics"`` (column -> :func:`binary_metrics`), ``"labels"``
        and ``"scores"`` (column -> sequence of shape (N,)).
    columns : sequence of str, default=COLUMNS
        The columns to summarize.

    Returns
    -------
    dict of str to dict
        Column -> ``{metric: {"mean", "std"}, "auc_ci95": (low, high)}``
        (:func:`bootstrap_auc` of the seed-mean AUC).
    """
    summary = {}
    for column in columns:
        entry = {}
        for key in METRICS:
            values = np.array([run["metrics"][column][key] for run in per_seed], dtype=float)
            entry[key] = {
                "mean": float(np.nanmean(values)) if np.isfinite(values).any() else float("nan"),
                "std": float(np.nanstd(values, ddof=1)) if np.isfinite(values).sum() > 1 else 0.0,
            }
        runs = [
            (np.asarray(run["labels"][column]), np.asarray(run["scores"][column]))
            for run in per_seed
        ]
        entry["auc_ci95"] = bootstrap_auc(runs)
        summary[column] = entry
    return summary


# ---------------------------------------------------------------------------------- experiment
def make_methods(config: Config, classifier, seed: int, microns_per_pixel: float) -> dict:
    """Column name -> unfitted normalizer (SST with the classifier's feature-preserving loss)."""
    settings = config.settings
    params = {
        "sst": {
            "preset": settings.sst_preset,
            "width": settings.sst_width,
            "max_epochs": settings.sst_epochs,
            "time_budget": settings.sst_budget,
            "lambda_fp": config.lambda_fp,
            "classifier": classifier,
            "device": config.device,
            "random_state": seed,
            "verbose": config.verbose,
        },
        "wsics": {"microns_per_pixel": microns_per_pixel, "random_state": seed},
    }
    return {column: make() for column, make in method_roster(METHOD_LABELS, params).items()}


def prepare_experiment(config: Config, seed: int, data) -> Experiment:
    """The seed's splits: synthetic tiles, or the real dataset ``data`` split by slide."""
    if config.dataset == "synthetic":
        exp = synthetic_experiment(config.settings, seed)
    else:
        exp = real_experiment(config, seed, data)
    logger.info(
        "[seed %d] data: target train %d, validation %d, test %d tiles (%d/%d/%d slides); %s",
        seed,
        len(exp.train),
        len(exp.val),
        len(exp.test),
        *(len(np.unique(p.slides)) for p in (exp.train, exp.val, exp.test)),
        ", ".join(f"source {k} {len(v)} tiles" for k, v in exp.sources.items()),
    )
    return exp


def logit_scores(classifier, tiles: np.ndarray) -> np.ndarray:
    """The classifier's positive-class scores: its logit difference, in float64.

    It ranks tiles as the softmax probability does, but does not saturate to tied float32
    ones on confident tiles, which would bias the AUC.
    """
    return classifier.decision_function(tiles).astype(np.float64)


def train_classifier(config: Config, exp: Experiment, seed: int, batch_transform=None):
    """The tumour classifier trained on the target training split, and its Youden threshold.

    Parameters
    ----------
    config : Config
        The run's configuration (architecture, epochs, device).
    exp : Experiment
        The seed's splits: trained on ``exp.train``, threshold chosen on ``exp.val``.
    seed : int
        Seed of the initialization, batch order and flips.
    batch_transform : callable or None, default=None
        Applied to each training batch on the fly (``TileClassifier(batch_transform=...)``),
        e.g. a stain augmenter; None trains as Table 1 does.

    Returns
    -------
    classifier : TileClassifier
    threshold : float
        Youden's J threshold on the target validation split's logit differences.
    """
    from stainstyle.sst import TileClassifier

    classifier = TileClassifier(
        arch=config.settings.classifier_arch,
        epochs=config.settings.classifier_epochs,
        batch_size=32,
        batch_transform=batch_transform,
        device=config.device,
        random_state=seed,
        verbose=config.verbose,
    ).fit(exp.train.tiles, exp.train.labels)
    return classifier, validation_threshold(classifier, exp)


def validation_threshold(classifier, exp: Experiment) -> float:
    """Youden's J threshold of ``classifier``'s logit differences on the target validation split.

    Parameters
    ----------
    classifier : TileClassifier or any object with ``decision_function``
        Maps tiles ``(N, H, W, 3)`` uint8 to scores ``(N,)``.
    exp : Experiment
        The seed's splits; only ``exp.val`` is read, never the test split.

    Returns
    -------
    float
        :func:`youden_threshold` of the validation labels and scores.
    """
    return youden_threshold(exp.val.labels, logit_scores(classifier, exp.val.tiles))


def fit_methods(methods: dict, tiles: np.ndarray, seed: int, timings: dict) -> None:
    """Fit every method on the target training tiles, recording ``fit NAME`` timings."""
    for name, method in methods.items():
        with Timer() as timer, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            method.fit(tiles)
        timings[f"fit {name}"] = timer.seconds
        logger.info("[seed %d] fit %s on target train: %.0f s", seed, name, timer.seconds)


def transform(column: str, method, tiles: np.ndarray, slides: np.ndarray) -> np.ndarray:
    """Source tiles mapped by one method (pooled per slide for :data:`POOLED_PER_SLIDE`)."""
    groups = slides if column in POOLED_PER_SLIDE else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return method.transform(tiles, groups=groups)


def score_source(
    source: str, split: Split, exp: Experiment, methods: dict, scorer, seed: int, timings: dict
) -> dict:
    """One source's metrics, labels, scores and passed-through counts per column.

    ``methods`` maps columns to fitted normalizers (any of the method columns; the Target and
    Original columns are always scored). ``scorer`` is ``(tiles -> scores, threshold)``;
    ``timings`` gains ``transform NAME SOURCE``.
    """
    scores, threshold = scorer
    outputs = {"Original": split.tiles}
    passthrough = {}
    for name, method in methods.items():
        with Timer() as timer:
            outputs[name] = transform(name, method, split.tiles, split.slides)
        # Tiles returned unchanged (too little tissue, or a degenerate fit): counted from the
        # output, as tile_status would run the whole method a second time.
        unchanged = np.all(outputs[name] == split.tiles, axis=(1, 2, 3))
        passthrough[name] = int(np.count_nonzero(unchanged))
        timings[f"transform {name} {source}"] = timer.seconds
        logger.info(
            "[seed %d] %s -> %s: %.0f s, %d of %d tiles passed through unchanged",
            seed,
            source,
            name,
            timer.seconds,
            passthrough[name],
            len(split),
        )
    evaluated = {"Target": (exp.test.labels, scores(exp.test.tiles))}
    evaluated.update({c: (split.labels, scores(x)) for c, x in outputs.items()})
    metrics = {c: binary_metrics(y, s, threshold) for c, (y, s) in evaluated.items()}
    logger.info(
        "[seed %d] %s AUC: %s",
        seed,
        source,
        ", ".join(f"{c} {m['auc']:.3f}" for c, m in metrics.items()),
    )
    return {
        "metrics": metrics,
        "labels": {c: y.tolist() for c, (y, _) in evaluated.items()},
        "scores": {c: s.tolist() for c, (_, s) in evaluated.items()},
        "passthrough": passthrough,
    }


def run_seed(config: Config, seed: int, data) -> dict:
    """Train, fit and evaluate for one seed; per source, metrics, labels and scores per column."""
    import torch

    torch.manual_seed(seed)
    timings = {}
    with Timer() as timer:
        exp = prepare_experiment(config, seed, data)
    timings["data"] = timer.seconds
    with Timer() as timer:
        classifier, threshold = train_classifier(config, exp, seed)
    timings["classifier"] = timer.seconds
    logger.info(
        "[seed %d] classifier: %.0f s, threshold %.3f (Youden's J on target validation)",
        seed,
        timer.seconds,
        threshold,
    )
    methods = make_methods(config, classifier, seed, exp.microns_per_pixel)
    fit_methods(methods, exp.train.tiles, seed, timings)
    scorer = (lambda tiles: logit_scores(classifier, tiles), threshold)
    results = {
        source: score_source(source, split, exp, methods, scorer, seed, timings)
        for source, split in exp.sources.items()
    }
    return {
        "seed": seed,
        "threshold": threshold,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "sst_epochs": int(methods["SST"].epoch_),
        # SST trains against a wall-clock budget: how far it got depends on the machine's load.
        "sst_steps": int(sum(h["steps"] for h in methods["SST"].history_)),
        "results": results,
        "figure": figure_tiles(methods, exp),
    }


def figure_tiles(methods: dict, exp: Experiment, n: int = 4) -> dict[str, dict[str, np.ndarray]]:
    """Figure 4's tiles: per source, ``n`` target tiles and ``n`` source tiles per column."""
    return {
        source: {
            "target": exp.test.tiles[:n],
            **{c: outputs_for_figure(methods, c, split, n) for c in COLUMNS[1:]},
        }
        for source, split in exp.sources.items()
    }


def outputs_for_figure(methods: dict, column: str, split: Split, n: int = 4) -> np.ndarray:
    """The first ``n`` source tiles as they are (``Original``) or after a method."""
    if column == "Original":
        return split.tiles[:n]
    if column not in POOLED_PER_SLIDE:
        return transform(column, methods[column], split.tiles[:n], split.slides[:n])
    # A method that pools statistics over the slide transforms these tiles with their slides'
    # other tiles, as in the evaluation; the first n are kept.
    keep = np.isin(split.slides, split.slides[:n])
    out = transform(column, methods[column], split.tiles[keep], split.slides[keep])
    return out[: np.count_nonzero(keep[:n])]


# ------------------------------------------------------------------------------------ reporting
def build_report(config: Config, runs: list[dict], wall_time_s: float) -> dict:
    """What ``table1.json`` holds: configuration, environment, summary and per-seed numbers."""
    sources = list(runs[0]["results"])
    env = environment(config.device)
    return {
        "config": config.to_json()
        | {
            "threshold_rule": (
                "Youden's J on the target validation split, on the classifier's logit "
                "difference; positive if >= t"
            ),
            "bootstrap": f"stratified, {N_BOOTSTRAP} resamples of the test tiles, percentile",
            "classic_methods": "Reinhard, Macenko, HS per tile; WSICS pooled per source slide",
            "methods": {label: method for method, label in METHOD_LABELS.items()},
        },
        "paper_auc": PAPER_AUC,
        "versions": env["versions"],
        "device": env["device"],
        "git_commit": env["git_commit"],
        "date": env["date"],
        "summary": {s: summarize([r["results"][s] for r in runs]) for s in sources},
        "per_seed": [
            {
                "seed": r["seed"],
                "threshold": r["threshold"],
                "timings_s": r["timings_s"],
                "sst_epochs": r["sst_epochs"],
                "sst_steps": r["sst_steps"],
                **{
                    s: {
                        "metrics": r["results"][s]["metrics"],
                        "passthrough": r["results"][s]["passthrough"],
                    }
                    for s in sources
                },
            }  # fmt: skip
            for r in runs
        ],
        "wall_time_s": round(wall_time_s, 1),
    }


def _cell(entry: dict, key: str, n_seeds: int, digits: int = 4) -> str:
    """Mean ± std over the seeds; the value alone for one seed (no spread to show)."""
    mean, std = entry[key]["mean"], entry[key]["std"]
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f}" if n_seeds == 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"


#: Label of the paper's AUC column: it was measured on another dataset.
PAPER_AUC_LABEL = "AUC, paper (CAMELYON16, another dataset)"


def markdown_rows(summary: dict, n_seeds: int) -> list[str]:
    """One source's table: a row per column of the paper, the metrics and the paper's AUC across.

    Methods are rows so that the table stays narrow (readable on a laptop screen); the cells
    are mean ± std over the seeds, or the value alone for one seed.
    """
    header = ["", "AUC", "AUC 95% CI", *list(METRICS.values())[1:], PAPER_AUC_LABEL]
    rows = []
    for column in COLUMNS:
        entry = summary[column]
        low, high = entry["auc_ci95"]
        metrics = [_cell(entry, key, n_seeds) for key in METRICS]
        rows.append([column, metrics[0], f"{low:.3f}–{high:.3f}", *metrics[1:], paper_auc(column)])
    return markdown_table(header, rows)


def render_markdown(report: dict) -> str:
    """``table1.md``: the set-up in one paragraph, then one table per source."""
    config = report["config"]
    n_seeds = len(config["seeds"])
    spread = f"mean ± std over {n_seeds} seeds" if n_seeds > 1 else "one seed, so no spread"
    md = [
        "# Table 1: tumour classifier on source-lab tiles after stain normalization",
        "",
        f"Dataset `{config['dataset']}`, seeds {config['seeds']}, "
        f"threshold by Youden's J on the target validation split; {spread}; "
        "AUC interval: stratified bootstrap of the test tiles "
        f"({N_BOOTSTRAP}×). Paper: Cho et al. 2017, Table 1 (CAMELYON16). Wall time "
        f"{report['wall_time_s']:.0f} s on {report['device']['description']}.",
        "",
    ]
    for source, summary in report["summary"].items():
        md += [f"## Source: {source}", "", *markdown_rows(summary, n_seeds), ""]
    return "\n".join(md)


def csv_rows(report: dict) -> list[list]:
    """``table1.csv``'s rows: one per source, column and metric."""
    n_seeds = len(report["config"]["seeds"])
    rows = []
    for source, summary in report["summary"].items():
        for column in COLUMNS:
            for key in METRICS:
                is_auc = key == "auc"
                rows.append(
                    [
                        source,
                        column,
                        key,
                        summary[column][key]["mean"],
                        summary[column][key]["std"],
                        n_seeds,
                        *(summary[column]["auc_ci95"] if is_auc else ("", "")),
                        PAPER_AUC.get(column, "") if is_auc else "",
                    ]
                )
    return rows


CSV_HEADER = (
    "source", "column", "metric", "mean", "std", "n_seeds", "ci95_low", "ci95_high", "paper"
)  # fmt: skip


def figure_to_arrays(figure: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Figure 4's tiles as flat ``"source/column"`` arrays, for ``figure4.npz``."""
    return {
        f"{source}/{column}": tiles for source, c in figure.items() for column, tiles in c.items()
    }


def figure_from_arrays(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """The inverse of :func:`figure_to_arrays` (sources and columns in the saved order)."""
    figure: dict[str, dict[str, np.ndarray]] = {}
    for key, tiles in arrays.items():
        source, column = key.rsplit("/", 1)
        figure.setdefault(source, {})[column] = tiles
    return figure


def write_figure(path: Path, figure: dict[str, dict[str, np.ndarray]], tile: int = 96) -> None:
    """Figure 4 panel: one row per example tile, columns Target, Original, SST, ... Reinhard."""
    from PIL import Image, ImageDraw

    from stainstyle._atomic import atomic_path

    label_h, gap = 16, 2
    blocks = []
    for source, columns in figure.items():
        n = min(len(v) for v in columns.values())
        names = ["target", *COLUMNS[1:]]
        size = (len(names) * (tile + gap), label_h * 2 + n * (tile + gap))
        block = Image.new("RGB", size, "white")
        draw = ImageDraw.Draw(block)
        draw.text((2, 1), f"source: {source}", fill="black")
        for j, name in enumerate(names):
            draw.text((j * (tile + gap) + 2, label_h + 1), name, fill="black")
            for i in range(n):
                image = Image.fromarray(np.ascontiguousarray(columns[name][i]))
                block.paste(
                    image.resize((tile, tile), Image.NEAREST),
                    (j * (tile + gap), label_h * 2 + i * (tile + gap)),
                )
        blocks.append(block)
    canvas = Image.new(
        "RGB", (max(b.width for b in blocks), sum(b.height + 8 for b in blocks)), "white"
    )
    y = 0
    for block in blocks:
        canvas.paste(block, (0, y))
        y += block.height + 8
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        canvas.save(temporary, format="PNG")


def write_reports(out: Path, report: dict, figure: dict | None) -> None:
    """``table1.md`` and ``table1.csv`` from ``report``, and ``figure4.png`` from ``figure``."""
    write_text(out / "table1.md", render_markdown(report))
    write_csv(out / "table1.csv", CSV_HEADER, csv_rows(report))
    if figure is not None:
        write_figure(out / "figure4.png", figure)


def report_from(path: Path) -> int:
    """Write the Markdown, CSV and figure again from a saved ``table1.json``; the exit code.

    The figure's tiles are read from ``figure4.npz`` beside it (the figure is skipped, with a
    warning, without it). The tables are printed as after a run.
    """
    report = read_report(path, "table1")
    if report is None:
        return 2
    figure = None
    try:
        figure = figure_from_arrays(read_arrays(path.with_name("figure4.npz")))
    except (OSError, ValueError) as error:
        logger.warning("figure4.png not written: %s", error)
    write_reports(path.parent, report, figure)
    print_tables(report)
    return 0


def print_tables(report: dict) -> None:
    """The tables in the paper's layout, on stdout."""
    width = 16
    n_seeds = len(report["config"]["seeds"])
    for source, summary in report["summary"].items():
        print(f"\nTable 1, source {source} ({n_seeds} seed(s))")
        print(" " * 22 + "".join(c.rjust(width) for c in COLUMNS))
        for key, label in METRICS.items():
            print(
                label.ljust(22)
                + "".join(_cell(summary[c], key, n_seeds, 3).rjust(width) for c in COLUMNS)
            )
        cis = [summary[c]["auc_ci95"] for c in COLUMNS]
        print("AUC 95% CI".ljust(22) + "".join(f"{lo:.3f}-{hi:.3f}".rjust(width) for lo, hi in cis))
        print("AUC, paper".ljust(22) + "".join(paper_auc(c).rjust(width) for c in COLUMNS))


# ----------------------------------------------------------------------------------------- main
def add_setting_arguments(parser: argparse.ArgumentParser, seeds: int | None = 1) -> None:
    """Add the options that define a Table 1 setting (the fields of :class:`Config`).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        Table 1's parser, or that of a study run in the Table 1 setting.
    seeds : int or None, default=1
        Default of ``--seeds`` (None: the caller sets it after parsing).
    """
    parser.add_argument("--dataset", choices=DATASETS, default="synthetic")
    parser.add_argument("--data-dir", type=Path, default=None, help="dataset folder (real data)")
    parser.add_argument("--target", default=None, help="comma-separated target domains")
    parser.add_argument("--source", default=None, help="comma-separated source domains")
    parser.add_argument("--seeds", type=int, default=seeds, help="number of seeds (0..K-1)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder")
    parser.add_argument("--preset", choices=("cpu", "paper"), default="cpu")
    parser.add_argument("--quick", action="store_true", help="smoke run with tiny settings")
    parser.add_argument("--device", default="auto", help='"auto", "cpu", "cuda", ...')
    parser.add_argument("--classifier-epochs", type=int, default=None)
    parser.add_argument("--sst-budget", type=float, default=None, help="SST training seconds")
    parser.add_argument("--lambda-fp", type=float, default=1.0, help="feature-loss weight")
    parser.add_argument("--max-tiles", type=int, default=None, help="per domain, 0 for all")
    parser.add_argument("--crop", type=int, default=None, help="centre crop of real tiles (px)")
    parser.add_argument("--microns-per-pixel", type=float, default=None, help="for WSICS")
    parser.add_argument("--slide-pattern", default=None, help="folder: slide regex of file names")
    parser.add_argument("--domain-pattern", default=None, help="domain regex of slide names")
    parser.add_argument("--positive", default=None, help="folder: name of the positive label")
    parser.add_argument("--pcam-split", default="train", choices=("train", "valid", "test"))
    parser.add_argument("--verbose", action="store_true", help="training progress bars")


def check_setting_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with a usage error for a bad seed count or a real dataset without its domains.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The parser whose ``error`` reports the problem (exit status 2).
    args : argparse.Namespace
        Its parsed options, from :func:`add_setting_arguments` and ``--report-from``.
    """
    if args.seeds < 1:
        parser.error(f"--seeds: expected a positive integer, got {args.seeds}")
    needs_domains = args.dataset != "synthetic" and args.report_from is None
    if needs_domains and (args.target is None or args.source is None):
        parser.error(f"--target and --source: required with --dataset {args.dataset}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="table1", description=__doc__.splitlines()[0], epilog="See the module docstring."
    )
    add_setting_arguments(parser)
    add_report_from(parser, "table1.json", "table1.md, table1.csv and figure4.png")
    args = parser.parse_args(argv)
    check_setting_arguments(parser, args)
    return args


def settings_for(options: dict) -> Settings:
    """The preset, with the command line's overrides (``options``: the parsed options)."""
    settings = PRESETS["quick" if options["quick"] else options["preset"]]
    overrides = {
        "classifier_epochs": options["classifier_epochs"],
        "sst_budget": options["sst_budget"],
        "max_tiles": options["max_tiles"],
    }
    if options["dataset"] == "amibr" and not options["quick"] and options["preset"] == "cpu":
        # AMi-Br: fewer, larger tiles than the synthetic default; the classifier needs about
        # 12 epochs there, and SST gets 7 minutes, so that 3 seeds fit in 60 minutes on 2 cores
        # (about 16 minutes per seed: classifier 3.5, SST 7 + 2.5 inference, WSICS 1.5, scoring).
        overrides = {"classifier_epochs": 12, "sst_budget": 420.0} | {
            k: v for k, v in overrides.items() if v is not None
        }
    return dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def build_config(args: argparse.Namespace) -> Config:
    """The run's frozen configuration: the options, the dataset's defaults, the settings.

    Only the options named like :class:`Config`'s fields are read, so a study run in the Table 1
    setting can parse its own options beside them (see :func:`add_setting_arguments`).
    """
    names = [field.name for field in dataclasses.fields(Config) if field.name != "settings"]
    options = {name: getattr(args, name) for name in names}
    crop, microns_per_pixel = REAL_DEFAULTS.get(args.dataset, OTHER_DEFAULTS)
    if options["crop"] is None:
        options["crop"] = crop
    if options["microns_per_pixel"] is None:
        options["microns_per_pixel"] = microns_per_pixel
    return Config(**options, settings=settings_for(options))


def run(config: Config) -> tuple[dict, dict]:
    """Every seed of the experiment; returns the report and the first seed's figure tiles."""
    started = time.monotonic()
    data = None if config.dataset == "synthetic" else load_dataset(config)
    runs = []
    for seed in range(config.seeds):
        logger.info("seed %d of %d", seed + 1, config.seeds)
        runs.append(run_seed(config, seed, data))
    return build_report(config, runs, time.monotonic() - started), runs[0]["figure"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit code (2 for a dataset or argument error)."""
    args = parse_args(argv)
    configure_logging("table1")
    if args.report_from is not None:
        return report_from(args.report_from)
    config = build_config(args)
    try:
        report, figure = run(config)
    except DataError as error:
        print(f"table1: error: {error}", file=sys.stderr)
        return 2
    write_json(config.out / "table1.json", report)
    write_arrays(config.out / "figure4.npz", figure_to_arrays(figure))
    write_reports(config.out, report, figure)
    print_tables(report)
    print(f"\nwall time {report['wall_time_s']:.0f} s; results in {config.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
