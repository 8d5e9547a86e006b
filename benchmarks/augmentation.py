r"""Augment, normalize, or both? Stain augmentation against normalization, in Table 1's setting.

The setting is that of ``benchmarks/table1.py``, through its functions: the same data and
slide-level splits, the same :class:`~stainstyle.sst.TileClassifier` (architecture, epochs,
flips, seeds), its threshold by Youden's J on the target validation split, and its scores on the
held-out target tiles and on each source lab's tiles. What varies is

- **training augmentation** (rows): none (Table 1's classifier, bit for bit), or one stain
  augmenter of :mod:`stainstyle.augment` applied on the fly to every training batch, a new draw
  each epoch (``TileClassifier(batch_transform=...)``, the torch form of the augmenter on the
  batch's float tensor, after the flips):

  - ``HEDJitter``: Ruifrok H, E and DAB concentrations scaled and shifted (Tellez et al.;
    ``--hed-sigma``, the paper's ``strong`` setting by default);
  - ``StainAugmenter``: H and E concentrations scaled and shifted along the stain matrix of a
    Macenko normalizer fitted on the target training tiles (StainTools' 0.2 and 0.2);
  - ``RandStainNA``: a virtual template per tile drawn from the distributions of tile colour
    statistics of the target training tiles, in LAB, HSV or HED at random (Shen et al. 2022);

- **test-time normalization** (columns): none (``Original``, the source tiles as they are) or
  a method fitted on the target training tiles, as in Table 1 (default Reinhard, histogram
  specification, Macenko, Vahadane and SST; ``--methods`` adds WSICS). A ``Target`` column gives
  each classifier's AUC on the held-out target tiles (in-domain).

Each method is fitted, and each source tile normalized, once per seed: the outputs do not depend
on the classifier under test, so every row scores the same normalized tiles. SST is trained once
per seed, with the feature-preserving loss of the row without augmentation (Table 1's SST), and
reused by every row. The no-augmentation row is Table 1's classifier: its ``Original`` and method
columns are Table 1's with the same settings and seed.

Numbers: per cell the mean AUC over the seeds (``--seeds``, 3 by default: 0, 1, 2) with a 95%
interval of the seed-mean AUC from a stratified bootstrap of the test tiles (Table 1's
:func:`~table1.bootstrap_auc`), the standard deviation over seeds and the other Table 1 metrics
at the threshold; and per cell the AUC gain over the baseline (no augmentation, no
normalization) with a 95% interval from a paired bootstrap (the same resampled tiles for both).

Budget (60 minutes on the 2-core CPU machine, for 3 seeds). Per seed the run trains 4
classifiers (one per row), SST once, fits 5 classic methods once and scores every classifier on
the target validation and test tiles and on 6 versions of the source tiles.

- Synthetic labs (default): Table 1's ``cpu`` preset unchanged (1200 target and 384 source tiles
  of 64 px, ResNet-18, 3 epochs, SST 210 s), so that the no-augmentation row is Table 1's
  default run (293 s a seed on a quiet machine, 212 s of them SST). The 3 more classifiers add
  about 20 s each and their scoring about 6 s each, so a seed takes about 6 minutes and the run
  about 20 on a quiet machine; on one shared with other jobs, up to 3 times longer. The
  augmenters add little: a 32-tile batch takes 0.03 to 0.25 s, a fraction of a ResNet step.
- AMi-Br: Table 1 trains 12 epochs on all 1033 target crops and gives SST 420 s, 16 minutes a
  seed for one classifier. Here at most 700 crops per domain are drawn (``--max-tiles``: the
  target split and each source), the classifier trains 8 epochs and SST 180 s, for about 14
  minutes a seed (4 classifiers 6, SST 3 and its inference 1.5, scoring 3.5), 43 for 3 seeds.

SST trains against its wall-clock budget, so it fits the budget on a busy machine too (with
fewer steps); the classifiers do not, and a machine shared with other jobs takes longer.

Outputs under ``--out``: ``augmentation.json`` (configuration, environment, per-seed metrics and
timings, summary) and ``augmentation.md`` (per source, a table of mean AUC and interval: rows the
training augmentation, columns the test-time normalization; then the gains over the baseline
and the best combination). ``--report-from OUT/augmentation.json`` writes the Markdown again.

    python benchmarks/augmentation.py --out results            # synthetic labs, 3 seeds
    python benchmarks/augmentation.py --dataset amibr --data-dir ../shared/data/amibr \\
        --target HamamatsuXR,HamamatsuS360 --source AperioCS2,TUPAC16 --out results
    python benchmarks/augmentation.py --quick --out /tmp/aug   # smoke run, 2 seeds, 1-2 minutes
    python benchmarks/augmentation.py --report-from results/augmentation.json
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import table1
from _common import (
    Timer,
    add_report_from,
    configure_logging,
    environment,
    markdown_table,
    read_report,
    write_json,
    write_text,
)
from scipy.stats import rankdata

logger = logging.getLogger("augmentation")

#: Rows: training augmentation, in table order (``"none"``: Table 1's classifier).
AUGMENTERS = ("none", "HEDJitter", "StainAugmenter", "RandStainNA")

#: Test-time normalization columns run by default (Table 1's labels), in table order.
DEFAULT_METHODS = ("Reinhard", "HS", "Macenko", "Vahadane", "SST")

#: The column of source tiles as they are, and that of the held-out target tiles.
ORIGINAL, TARGET = "Original", "Target"

#: The baseline cell: no augmentation, no normalization.
BASELINE = ("none", ORIGINAL)

#: The kinds of :func:`best_cells`, as ``augmentation.md`` words them.
ANSWER_LABELS = {
    "augment": "augmentation alone",
    "normalize": "normalization alone",
    "both": "augmentation and normalization",
    "best": "overall",
}

#: Seeds run by default (0..SEEDS-1), and with ``--quick``.
SEEDS, QUICK_SEEDS = 3, 2

#: Study defaults per dataset that replace Table 1's ``cpu`` preset (see the module docstring);
#: options given on the command line win.
STUDY_DEFAULTS = {"amibr": {"classifier_epochs": 8, "sst_budget": 180.0, "max_tiles": 700}}


@dataclass(frozen=True)
class Config:
    """Everything a run needs, built once in :func:`main` from the command line.

    Attributes
    ----------
    setting : table1.Config
        The Table 1 setting: data, splits, classifier and SST sizes, seeds, device, ``out``.
    augmenters : tuple of str
        Rows, from :data:`AUGMENTERS` (``"none"`` always first).
    methods : tuple of str
        Test-time normalization columns, Table 1 labels (:data:`table1.METHOD_LABELS`).
    hed_sigma : str
        ``HEDJitter`` strength: ``"light"`` or ``"strong"``.
    """

    setting: table1.Config
    augmenters: tuple[str, ...]
    methods: tuple[str, ...]
    hed_sigma: str

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column: the target tiles, the source tiles as they are, each method."""
        return (TARGET, ORIGINAL, *self.methods)

    def to_json(self) -> dict:
        """The configuration as the report records it."""
        return self.setting.to_json() | {
            "augmenters": list(self.augmenters),
            "methods": list(self.methods),
            "hed_sigma": self.hed_sigma,
        }


# ------------------------------------------------------------------------------- augmentation
def make_augmenter(name: str, tiles: np.ndarray, seed: int, hed_sigma: str = "strong"):
    """A training augmenter of :mod:`stainstyle.augment`, fitted on the target training tiles.

    Parameters
    ----------
    name : str
        One of :data:`AUGMENTERS`.
    tiles : ndarray of shape (N, H, W, 3), dtype uint8
        Target training tiles (the style to augment around, for the fitted augmenters).
    seed : int
        The augmenter's ``random_state``: its own stream, apart from the classifier's.
    hed_sigma : {"light", "strong"}, default="strong"
        ``HEDJitter``'s strength.

    Returns
    -------
    Augmenter or None
        None for ``"none"``.

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`AUGMENTERS`.
    """
    from stainstyle import MacenkoNormalizer
    from stainstyle.augment import HEDJitter, RandStainNA, StainAugmenter

    if name == "none":
        return None
    if name == "HEDJitter":
        return HEDJitter(hed_sigma, random_state=seed)
    if name == "StainAugmenter":
        return StainAugmenter(MacenkoNormalizer(), random_state=seed).fit(tiles)
    if name == "RandStainNA":
        return RandStainNA(random_state=seed).fit(tiles)
    raise ValueError(f"name: expected one of {AUGMENTERS}, got {name!r}")


# ------------------------------------------------------------------------------------ metrics
def paired_auc_gain(
    runs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    n: int = table1.N_BOOTSTRAP,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Seed-mean AUC gain of scores ``b`` over scores ``a`` of the same tiles, with a 95% interval.

    Each replicate resamples every run's positives and negatives with replacement, once for
    both scores (a paired bootstrap), and averages the runs' AUC differences (Mann-Whitney form,
    ties count one half).

    Parameters
    ----------
    runs : sequence of (labels, a, b)
        Per seed, ndarrays of shape (N_k,): labels 0 or 1 (both present) and two scores.
    n : int, default=1000
        Bootstrap replicates.
    seed : int, default=0
        Seed of the resampling.

    Returns
    -------
    gain, low, high : float
        The seed-mean of ``AUC(b) - AUC(a)`` and its 2.5th and 97.5th bootstrap percentiles.
    """
    rng = np.random.default_rng(seed)
    total, observed = np.zeros(n), 0.0
    for labels, a, b in runs:
        pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
        n_pos, n_neg = len(pos), len(neg)
        index = np.concatenate(
            [pos[rng.integers(0, n_pos, (n, n_pos))], neg[rng.integers(0, n_neg, (n, n_neg))]],
            axis=1,
        )
        keep = np.concatenate([pos, neg])[None]
        for scores, sign in ((b, 1.0), (a, -1.0)):
            for sample, into in ((scores[index], "boot"), (scores[keep], "observed")):
                ranks = rankdata(sample, axis=1)[:, :n_pos].sum(axis=1)
                auc = (ranks - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
                if into == "boot":
                    total += sign * auc
                else:
                    observed += sign * float(auc[0])
    low, high = np.percentile(total / len(runs), [2.5, 97.5])
    return observed / len(runs), float(low), float(high)


# --------------------------------------------------------------------------------- experiment
def normalize_sources(
    config: Config, exp: table1.Experiment, classifier, seed: int, timings: dict
) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """Each source's tiles as they are and after each method, fitted once on the target tiles.

    Parameters
    ----------
    config : Config
    exp : table1.Experiment
        The seed's splits.
    classifier : TileClassifier
        The classifier without augmentation: SST's feature-preserving loss, as in Table 1.
    seed : int
    timings : dict
        Gains ``fit NAME`` and ``transform NAME SOURCE`` (seconds).

    Returns
    -------
    outputs : dict of str to dict of str to ndarray
        Source -> column (``Original`` and each method) -> tiles of shape (N, H, W, 3), uint8.
    methods : dict
        Column -> the fitted method.
    """
    made = table1.make_methods(config.setting, classifier, seed, exp.microns_per_pixel)
    methods = {column: made[column] for column in config.methods}
    table1.fit_methods(methods, exp.train.tiles, seed, timings)
    outputs = {}
    for source, split in exp.sources.items():
        outputs[source] = {ORIGINAL: split.tiles}
        for column, method in methods.items():
            with Timer() as timer:
                outputs[source][column] = table1.transform(
                    column, method, split.tiles, split.slides
                )
            timings[f"transform {column} {source}"] = timer.seconds
    logger.info("[seed %d] normalized the sources with %s", seed, ", ".join(methods))
    return outputs, methods


def score_arm(
    classifier, threshold: float, exp: table1.Experiment, outputs: dict, columns: Sequence[str]
) -> dict[str, dict]:
    """One classifier's metrics, labels and scores per source and column.

    Parameters
    ----------
    classifier : TileClassifier
    threshold : float
        Its Youden threshold on the target validation split.
    exp : table1.Experiment
    outputs : dict
        :func:`normalize_sources`'s tiles.
    columns : sequence of str
        ``Target``, ``Original`` and the methods.

    Returns
    -------
    dict of str to dict
        Source -> ``{"metrics", "labels", "scores"}``, each column -> value, the layout
        :func:`table1.summarize` reads.
    """
    target = (exp.test.labels, table1.logit_scores(classifier, exp.test.tiles))
    results = {}
    for source, split in exp.sources.items():
        evaluated = {TARGET: target}
        for column in columns[1:]:
            evaluated[column] = (
                split.labels,
                table1.logit_scores(classifier, outputs[source][column]),
            )
        results[source] = {
            "metrics": {
                c: table1.binary_metrics(y, s, threshold) for c, (y, s) in evaluated.items()
            },
            "labels": {c: y for c, (y, _) in evaluated.items()},
            "scores": {c: s for c, (_, s) in evaluated.items()},
        }
    return results


def run_seed(config: Config, seed: int, data) -> dict:
    """Train every row's classifier and score it on every column, for one seed.

    Parameters
    ----------
    config : Config
    seed : int
        Seeds the splits, the networks, the methods and the augmenters.
    data : tuple or None
        The real dataset (:func:`table1.load_dataset`), None for the synthetic labs.

    Returns
    -------
    dict
        ``seed``, ``timings_s``, ``thresholds`` (row -> threshold), ``sst_steps`` (None
        without SST) and ``results`` (row -> :func:`score_arm`).
    """
    timings: dict[str, float] = {}
    with Timer() as timer:
        exp = table1.prepare_experiment(config.setting, seed, data)
    timings["data"] = timer.seconds
    results, thresholds, outputs, sst_steps = {}, {}, None, None
    for name in config.augmenters:
        with Timer() as timer:
            augmenter = make_augmenter(name, exp.train.tiles, seed, config.hed_sigma)
            classifier, threshold = table1.train_classifier(
                config.setting, exp, seed, batch_transform=augmenter
            )
        timings[f"classifier {name}"] = timer.seconds
        logger.info("[seed %d] classifier, augmentation %s: %.0f s", seed, name, timer.seconds)
        if outputs is None:  # the first row has no augmentation: Table 1's classifier
            outputs, methods = normalize_sources(config, exp, classifier, seed, timings)
            if "SST" in methods:  # SST trains against a clock: how far it got varies
                sst_steps = int(sum(h["steps"] for h in methods["SST"].history_))
        with Timer() as timer:
            results[name] = score_arm(classifier, threshold, exp, outputs, config.columns)
        timings[f"score {name}"] = timer.seconds
        thresholds[name] = threshold
        for source, result in results[name].items():
            logger.info(
                "[seed %d] %s, %s AUC: %s",
                seed,
                name,
                source,
                ", ".join(f"{c} {result['metrics'][c]['auc']:.3f}" for c in config.columns),
            )
    return {
        "seed": seed,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "thresholds": thresholds,
        "sst_steps": sst_steps,
        "results": results,
    }


# --------------------------------------------------------------------------------- reporting
def summarize(config: Config, runs: list[dict]) -> dict:
    """Per source and row: :func:`table1.summarize` of every column, and the gains.

    Parameters
    ----------
    config : Config
    runs : list of dict
        :func:`run_seed`'s results.

    Returns
    -------
    dict
        Source -> row -> column -> Table 1's summary entry (metric means and standard
        deviations, ``auc_ci95``) plus ``auc_gain`` (gain over :data:`BASELINE`, with its paired
        95% interval; absent for ``Target``, whose tiles differ).
    """
    summary = {}
    for source in runs[0]["results"]["none"]:
        summary[source] = {}
        for row in config.augmenters:
            cells = [run["results"][row][source] for run in runs]
            entry = table1.summarize(cells, config.columns)
            for column in config.columns[1:]:
                paired = [
                    (
                        np.asarray(run["results"][row][source]["labels"][column]),
                        np.asarray(run["results"][BASELINE[0]][source]["scores"][BASELINE[1]]),
                        np.asarray(run["results"][row][source]["scores"][column]),
                    )
                    for run in runs
                ]
                gain, low, high = paired_auc_gain(paired)
                entry[column]["auc_gain"] = {"mean": gain, "ci95": [low, high]}
            summary[source][row] = entry
    return summary


def best_cells(summary: dict) -> dict[str, dict]:
    """The best cell of each kind per source, by mean AUC: the answer to the study's question.

    Parameters
    ----------
    summary : dict
        ``augmentation.json``'s ``summary``.

    Returns
    -------
    dict of str to dict
        Source -> kind (``"augment"``: an augmenter alone; ``"normalize"``: a method alone;
        ``"both"``; ``"best"``: any) -> ``{"row", "column", "auc", "auc_gain"}``.
    """
    answers = {}
    for source, rows in summary.items():
        cells = [
            (row, column, entry)
            for row, columns in rows.items()
            for column, entry in columns.items()
            if column != TARGET
        ]
        kinds = {
            "augment": [c for c in cells if c[0] != "none" and c[1] == ORIGINAL],
            "normalize": [c for c in cells if c[0] == "none" and c[1] != ORIGINAL],
            "both": [c for c in cells if c[0] != "none" and c[1] != ORIGINAL],
            "best": cells,
        }
        answers[source] = {}
        for kind, candidates in kinds.items():
            if not candidates:
                continue
            row, column, entry = max(candidates, key=lambda c: c[2]["auc"]["mean"])
            answers[source][kind] = {
                "row": row,
                "column": column,
                "auc": entry["auc"]["mean"],
                "auc_gain": entry["auc_gain"],
            }
    return answers


def build_report(config: Config, runs: list[dict], wall_time_s: float) -> dict:
    """What ``augmentation.json`` holds: configuration, environment, summary, per-seed numbers.

    Parameters
    ----------
    config : Config
    runs : list of dict
        :func:`run_seed`'s results.
    wall_time_s : float
        Seconds the run took.

    Returns
    -------
    dict
    """
    summary = summarize(config, runs)
    return {
        "config": config.to_json()
        | {
            "threshold_rule": "Youden's J on the target validation split, per classifier",
            "bootstrap": (
                f"stratified, {table1.N_BOOTSTRAP} resamples of the test tiles, percentile; "
                "gains paired (the same resampled tiles for both cells)"
            ),
            "baseline": list(BASELINE),
            "sst_classifier": "the classifier without augmentation (Table 1's)",
        },
        "environment": environment(config.setting.device),
        "summary": summary,
        "answer": best_cells(summary),
        "per_seed": [
            {
                "seed": run["seed"],
                "timings_s": run["timings_s"],
                "thresholds": run["thresholds"],
                "metrics": {
                    row: {source: r["metrics"] for source, r in sources.items()}
                    for row, sources in run["results"].items()
                },
            }
            for run in runs
        ],
        "wall_time_s": round(wall_time_s, 1),
    }


def _auc_cell(entry: dict) -> str:
    lo, hi = entry["auc_ci95"]
    return f"{entry['auc']['mean']:.3f} ({lo:.3f}–{hi:.3f})"


def _gain_cell(entry: dict) -> str:
    gain = entry["auc_gain"]
    lo, hi = gain["ci95"]
    return f"{gain['mean']:+.3f} ({lo:+.3f} to {hi:+.3f})"


def _by_test(rows: dict, cell, tests: list[str]) -> list[str]:
    """A table with a row per test-time normalization and a column per training augmentation."""
    trainings = list(rows)
    return markdown_table(
        ["test \\ training", *trainings],
        [[test, *(cell(rows[training][test]) for training in trainings)] for test in tests],
    )


def auc_table(rows: dict) -> list[str]:
    """One source's AUC table: mean AUC over the seeds and its 95% interval in each cell.

    Parameters
    ----------
    rows : dict
        ``augmentation.json``'s ``summary[source]``: training augmentation -> test-time
        normalization -> metrics.

    Returns
    -------
    list of str
        Lines of a Markdown table, test-time normalizations as rows (Target: held-out target
        tiles; Original: the source as it is), training augmentations as columns.
    """
    return _by_test(rows, _auc_cell, list(next(iter(rows.values()))))


def gain_table(rows: dict) -> list[str]:
    """One source's AUC gains over no augmentation and no normalization, as :func:`auc_table`."""
    return _by_test(rows, _gain_cell, list(next(iter(rows.values())))[1:])


def render_markdown(report: dict) -> str:
    """``augmentation.md``: the set-up, then per source the AUC table, the gains and the answer.

    Parameters
    ----------
    report : dict
        ``augmentation.json``'s content.

    Returns
    -------
    str
    """
    config, env = report["config"], report["environment"]
    seeds = config["seeds"]
    md = [
        "# Augment, normalize, or both?",
        "",
        f"Table 1 setting, dataset `{config['dataset']}`, seeds {seeds}: rows are the test-time "
        "normalization (Original: none; Target: held-out target tiles), columns the training "
        f"augmentation. Cells: mean AUC over {len(seeds)} seed(s) and its 95% interval "
        f"(stratified bootstrap of the test tiles, {table1.N_BOOTSTRAP}×). HEDJitter sigma "
        f"`{config['hed_sigma']}`. Wall time {report['wall_time_s']:.0f} s on "
        f"{env['device']['description']}.",
        "",
    ]
    for source, rows in report["summary"].items():
        md += [f"## Source: {source}", "", "AUC:", "", *auc_table(rows), ""]
        md += ["AUC gain over no augmentation and no normalization (paired 95% interval):", ""]
        md += [*gain_table(rows), ""]
        for kind, cell in report["answer"][source].items():
            lo, hi = cell["auc_gain"]["ci95"]
            md.append(
                f"- best {ANSWER_LABELS[kind]}: training {cell['row']}, test {cell['column']}: "
                f"AUC {cell['auc']:.3f}, "
                f"gain {cell['auc_gain']['mean']:+.3f} ({lo:+.3f} to {hi:+.3f})"
            )
        md.append("")
    return "\n".join(md)


def report_from(path: Path) -> int:
    """Write ``augmentation.md`` again from a saved ``augmentation.json``; the exit code.

    Parameters
    ----------
    path : pathlib.Path

    Returns
    -------
    int
        0, or 2 when the file is missing or not JSON.
    """
    report = read_report(path, "augmentation")
    if report is None:
        return 2
    markdown = render_markdown(report)
    write_text(path.with_name("augmentation.md"), markdown)
    print(markdown)
    return 0


# --------------------------------------------------------------------------------------- main
def _names(text: str, allowed: Sequence[str], option: str, parser) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        parser.error(f"{option}: expected names from {list(allowed)}, got {text!r}")
    return names


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: Table 1's setting options, the study's own, ``--report-from``.

    Parameters
    ----------
    argv : sequence of str or None
        Arguments (None: ``sys.argv[1:]``).

    Returns
    -------
    argparse.Namespace
    """
    parser = argparse.ArgumentParser(
        prog="augmentation",
        description=__doc__.splitlines()[0],
        epilog="See the module docstring.",
    )
    table1.add_setting_arguments(parser, seeds=None)
    parser.add_argument(
        "--augmenters",
        default=",".join(AUGMENTERS[1:]),
        help=f"comma-separated training augmenters besides none, from {AUGMENTERS[1:]}",
    )
    parser.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"comma-separated test-time methods, from {tuple(table1.METHOD_LABELS.values())}",
    )
    parser.add_argument("--hed-sigma", choices=("light", "strong"), default="strong")
    add_report_from(parser, "augmentation.json", "augmentation.md")
    args = parser.parse_args(argv)
    if args.seeds is None:
        args.seeds = QUICK_SEEDS if args.quick else SEEDS
    table1.check_setting_arguments(parser, args)
    args.augmenters = ("none", *_names(args.augmenters, AUGMENTERS[1:], "--augmenters", parser))
    args.methods = _names(args.methods, tuple(table1.METHOD_LABELS.values()), "--methods", parser)
    return args


def build_config(args: argparse.Namespace) -> Config:
    """The run's frozen configuration: Table 1's, with the study's defaults, and the study's.

    Parameters
    ----------
    args : argparse.Namespace
        :func:`parse_args`'s result; read here and nowhere past :func:`main`.

    Returns
    -------
    Config
    """
    options = vars(args)
    if not args.quick and args.preset == "cpu":
        defaults = STUDY_DEFAULTS.get(args.dataset, {})
        options = options | {k: v for k, v in defaults.items() if options[k] is None}
    setting = table1.build_config(argparse.Namespace(**options))
    return Config(
        setting=setting,
        augmenters=tuple(dict.fromkeys(args.augmenters)),
        methods=tuple(dict.fromkeys(args.methods)),
        hed_sigma=args.hed_sigma,
    )


def run(config: Config) -> dict:
    """Every seed of the study; returns the report.

    Parameters
    ----------
    config : Config

    Returns
    -------
    dict
        :func:`build_report`'s result.
    """
    started = time.monotonic()
    setting = config.setting
    data = None if setting.dataset == "synthetic" else table1.load_dataset(setting)
    runs = []
    for seed in range(setting.seeds):
        logger.info("seed %d of %d", seed + 1, setting.seeds)
        runs.append(run_seed(config, seed, data))
    return build_report(config, runs, time.monotonic() - started)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study; returns the exit code (2 for a dataset or argument error).

    Parameters
    ----------
    argv : sequence of str or None
        Arguments (None: ``sys.argv[1:]``).

    Returns
    -------
    int
    """
    args = parse_args(argv)
    configure_logging("augmentation")
    if args.report_from is not None:
        return report_from(args.report_from)
    config = build_config(args)
    try:
        report = run(config)
    except table1.DataError as error:
        print(f"augmentation: error: {error}", file=sys.stderr)
        return 2
    out = config.setting.out
    write_json(out / "augmentation.json", report)
    markdown = render_markdown(report)
    write_text(out / "augmentation.md", markdown)
    print(markdown)
    print(f"wall time {report['wall_time_s']:.0f} s; results in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
