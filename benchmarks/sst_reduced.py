"""Stain-style transfer at reduced resolution: speed, colour fidelity and Table 1 AUC.

``StainStyleTransfer(inference_scale=s)`` runs the generator on gray tiles reduced to a fraction
``s`` of their resolution and brings the colour back to full resolution with the detail of the
full-resolution gray levels (:mod:`stainstyle.sst.reduced`). In each section one generator is
trained once and transforms the same tiles at ``s`` = 1 and 1/2: only inference differs.

- **Fidelity** (the MITOS-ATYPIA scanner pairs, with ``benchmarks/fidelity.py``'s split,
  registration and metrics): SST trained for ``--sst-budget`` seconds on the Aperio fit tiles
  (CPU preset, no feature-preserving loss, as in ``fidelity.py``). Per scale: the metrics of
  ``fidelity.py`` against the Aperio references, the same metrics against the full-resolution
  output (what the reduction changes), and the transform time.
- **Speed**: per scale, the best of ``--repeats`` transforms of the fidelity section's
  Hamamatsu tiles (256 x 256), in megapixels per second, and its ratio to full resolution.
- **Table 1** (``benchmarks/table1.py``'s default synthetic setting, through its functions:
  data, classifier, Youden threshold, SST with the feature-preserving loss, scoring): per scale,
  the AUC and the other metrics on each source lab, next to the ``Target`` and ``Original``
  columns. ``--quick`` uses Table 1's quick preset; ``--table1-sst-budget`` overrides its SST
  training seconds (SST trains against the clock, so on a busy machine a longer budget gives
  the generator the steps it gets on a quiet one).

Outputs under ``--out``: ``sst_reduced.json`` (configuration, environment, sections) and
``sst_reduced.md``; ``--report-from OUT/sst_reduced.json`` writes the Markdown again.

    python benchmarks/sst_reduced.py --out results                  # about 15 minutes on 2 cores
    python benchmarks/sst_reduced.py --quick --out /tmp/sst_reduced  # smoke run
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import logging
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import fidelity
import table1
from _common import (
    Timer,
    add_report_from,
    best_time,
    configure_logging,
    data_root,
    environment,
    frozen_config,
    markdown_table,
    parse_out_or_report,
    run_or_render,
    write_text,
)

from stainstyle.registry import make_normalizer
from stainstyle.sst.reduced import SCALES

logger = logging.getLogger("sst_reduced")

#: Column label of each scale.
SCALE_LABELS = {1.0: "SST", 0.5: "SST at 1/2 resolution"}

QUICK = {"sst_budget": 2.0, "max_pairs": 8, "repeats": 1}


@dataclass(frozen=True)
class Config:
    """One run, built once from the command line (see ``--help`` for each field)."""

    out: Path
    data_dir: Path
    sst_budget: float
    table1_sst_budget: float | None
    max_pairs: int | None
    repeats: int
    quick: bool


def at_scales(sst) -> dict[str, object]:
    """Column label -> the fitted ``sst`` set to run at each of :data:`SCALES`.

    The copies are shallow: they share the trained networks and differ only in
    ``inference_scale``.
    """
    return {SCALE_LABELS[s]: copy.copy(sst).set_params(inference_scale=s) for s in SCALES}


def fidelity_and_speed(config: Config, pairs: Path) -> tuple[dict, dict]:
    """The fidelity section and the speed section, on the MITOS-ATYPIA pairs."""
    fit_tiles, source, reference, _ = fidelity.load_mitos_split(pairs)
    if config.max_pairs:
        source, reference = source[: config.max_pairs], reference[: config.max_pairs]
    registrations = [fidelity.register(t, s) for s, t in zip(source, reference, strict=True)]
    params = fidelity.method_params(fidelity.MITOS_MICRONS_PER_PIXEL, config.sst_budget)["sst"]
    sst = make_normalizer("sst", **params)
    with Timer() as fitting, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sst.fit(fit_tiles)
    logger.info("SST trained %.0f s on %d tiles", fitting.seconds, len(fit_tiles))
    outputs, rows, speed = {}, [], []
    megapixels = source.shape[0] * source.shape[1] * source.shape[2] / 1e6
    for label, variant in at_scales(sst).items():
        outputs[label] = variant.transform(source)
        seconds = best_time(lambda v=variant: v.transform(source), config.repeats)
        speed.append({"method": label, "mp_per_s": megapixels / seconds, "seconds": seconds})
        full = outputs[SCALE_LABELS[1.0]]
        rows.append(
            {
                "method": label,
                **fidelity.score(outputs[label], source, reference, registrations),
                "to_full_resolution": fidelity.score(
                    outputs[label], source, full, [fidelity.identity(source.shape[1:3])] * len(full)
                ),
            }
        )
        logger.info("%s: %s; %.2f MP/s", label, rows[-1], speed[-1]["mp_per_s"])
    for entry in speed:
        entry["speedup"] = speed[0]["seconds"] / entry["seconds"]
    raw = fidelity.score(source, source, reference, registrations)
    setup = (
        f"SST trained {fitting.seconds:.0f} s (budget {config.sst_budget:.0f} s, CPU preset, "
        f"no feature-preserving loss) on {len(fit_tiles)} Aperio tiles; transforms the "
        f"{len(source)} Hamamatsu tiles of the other frames, compared with their registered "
        "Aperio tiles (as benchmarks/fidelity.py) and with the full-resolution output."
    )
    fidelity_section = {"setup": setup, "rows": [{"method": "raw", **raw}, *rows]}
    speed_section = {
        "setup": (
            f"Best of {config.repeats} transforms of {len(source)} tiles of "
            f"{source.shape[1]} x {source.shape[2]} px, same trained generator."
        ),
        "rows": speed,
    }
    return fidelity_section, speed_section


def table1_section(config: Config) -> dict:
    """Table 1's default synthetic setting (seed 0) with SST at each scale."""
    argv = ["--out", str(config.out), *(["--quick"] if config.quick else [])]
    if config.table1_sst_budget is not None:
        argv += ["--sst-budget", str(config.table1_sst_budget)]
    setting = table1.build_config(table1.parse_args(argv))
    timings: dict[str, float] = {}
    exp = table1.prepare_experiment(setting, 0, None)
    classifier, threshold = table1.train_classifier(setting, exp, 0)
    sst = table1.make_methods(setting, classifier, 0, exp.microns_per_pixel)["SST"]
    table1.fit_methods({"SST": sst}, exp.train.tiles, 0, timings)
    scorer = (lambda tiles: table1.logit_scores(classifier, tiles), threshold)
    results = {
        source: table1.score_source(source, split, exp, at_scales(sst), scorer, 0, timings)
        for source, split in exp.sources.items()
    }
    settings = setting.settings
    return {
        "setup": (
            f"Table 1's {'quick' if config.quick else 'cpu'} setting, seed 0: "
            f"{settings.n_target} target and {settings.n_source} source tiles of "
            f"{settings.tile_size} px, {settings.classifier_arch} classifier, SST trained "
            f"{timings['fit SST']:.0f} s with the feature-preserving loss."
        ),
        "threshold": threshold,
        "metrics": {source: result["metrics"] for source, result in results.items()},
    }


def run(config: Config) -> dict:
    """Every section whose data is present, and the ``run`` record."""
    started = time.monotonic()
    report: dict[str, dict] = {}
    pairs = config.data_dir / "mitos_atypia_pairs"
    if pairs.exists():
        report["fidelity"], report["speed"] = fidelity_and_speed(config, pairs)
    else:
        logger.warning("no real pairs at %s; fidelity and speed sections skipped", pairs)
    report["table1"] = table1_section(config)
    report["run"] = {
        "config": {
            k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()
        },
        "environment": environment("auto"),
        "wall_time_s": round(time.monotonic() - started, 1),
    }
    return report


# ------------------------------------------------------------------------------------ reporting
def render_markdown(report: dict) -> str:
    """``sst_reduced.md``: one table per section."""
    lines = []
    metrics = fidelity.METRIC_HEADERS
    if "fidelity" in report:
        section = report["fidelity"]
        header = ["method", *metrics.values(), "CIEDE2000 (low-pass) to full", "PSNR to full"]
        rows = [
            [row["method"], *(fidelity.format_metric(k, row[k]) for k in metrics)]
            + [
                f"{row['to_full_resolution']['ciede2000_lowpass']:.2f}"
                if "to_full_resolution" in row
                else "",
                f"{row['to_full_resolution']['psnr']:.2f}" if "to_full_resolution" in row else "",
            ]
            for row in section["rows"]
        ]
        lines += ["## Colour fidelity (MITOS-ATYPIA pairs)", "", section["setup"], ""]
        lines += [*markdown_table(header, rows), ""]
    if "speed" in report:
        section = report["speed"]
        rows = [
            [row["method"], f"{row['mp_per_s']:.3f}", f"{row['speedup']:.2f}x"]
            for row in section["rows"]
        ]
        lines += ["## Speed", "", section["setup"], ""]
        lines += [*markdown_table(["method", "MP/s", "speed-up"], rows), ""]
    section = report["table1"]
    lines += ["## Table 1 (synthetic labs)", "", section["setup"], ""]
    for source, columns in section["metrics"].items():
        header = ["metric", *columns]
        rows = [
            [label, *(f"{columns[c][key]:.4f}" for c in columns)]
            for key, label in table1.METRICS.items()
        ]
        lines += [f"Source `{source}`:", "", *markdown_table(header, rows), ""]
    return "\n".join(lines)


def write_reports(out: Path, report: dict) -> str:
    """Write ``sst_reduced.md`` (from ``report``) under ``out``; returns its text."""
    text = render_markdown(report)
    write_text(out / "sst_reduced.md", text)
    return text


# ----------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder for JSON and markdown")
    parser.add_argument(
        "--data-dir", type=Path, default=data_root(), help="real data root (mitos_atypia_pairs/)"
    )
    parser.add_argument("--sst-budget", type=float, default=300.0, help="SST training seconds")
    parser.add_argument(
        "--table1-sst-budget", type=float, default=None, help="Table 1's SST seconds (its own: 210)"
    )
    parser.add_argument("--max-pairs", type=int, default=None, help="real pairs: at most N")
    parser.add_argument("--repeats", type=int, default=3, help="timed transforms per scale")
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run: {QUICK} and Table 1's quick preset"
    )
    add_report_from(parser, "sst_reduced.json", "sst_reduced.md")
    return parse_out_or_report(parser, argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or re-render a saved report); returns the exit code."""
    args = parse_args(argv)
    configure_logging("sst_reduced", "%(message)s")

    make_config = functools.partial(frozen_config, Config, args, QUICK)
    return run_or_render(args, "sst_reduced", "sst_reduced.json", make_config, run, write_reports)


if __name__ == "__main__":
    sys.exit(main())
