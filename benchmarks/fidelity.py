"""Paired fidelity of the stain normalization methods: real scanner pairs and synthetic pairs.

Real pairs: ``mitos_atypia_pairs`` holds the same tissue scanned by an Aperio and a Hamamatsu
scanner. Frames (the id before ``_``) are sorted and split alternately: the methods are fitted
on the Aperio tiles of the even-position frames and transform the Hamamatsu tiles of the
odd-position frames, which are compared with their Aperio tiles. Synthetic pairs:
``stainstyle.data.synthetic.render_pair`` draws the same tissue in two lab styles; the methods
are fitted on style A tiles of one half and transform the style B tiles of the other half.

Registration. The scanner pairs are offset by a few pixels (about 4 px on each axis), which
alone drops the gray SSIM of the raw pairs from about 0.6 to 0.16. Before any metric, each pair
is registered: the shift of the Hamamatsu tile onto the Aperio tile is measured by sub-pixel
phase correlation of their gray levels (``skimage.registration.phase_cross_correlation``,
1/20 px), rounded to whole pixels, and both tiles are cropped to their overlap. The methods
transform the Hamamatsu tiles as scanned (full tiles, never resampled), and every output is
cropped exactly as its source, so all methods are compared on the same pixels. Whole-pixel
crops leave at most half a pixel of offset; resampling the source instead would low-pass what
the methods see and gains 0.004 gray SSIM on the raw pairs. The report lists the shift of every
pair. Synthetic pairs are aligned by construction.

Stain-style transfer trains its generator on the fit tiles for ``--sst-budget`` seconds (CPU
preset) with the adversarial and L1 losses only: the pairs carry no labels, so there is no
classifier for the feature-preserving loss. Its second row feeds the generator gray levels
matched to the fit tiles' gray histogram, pooled per frame (slide); WSICS's second row pools its
source statistics the same way.

Metrics (``stainstyle.metrics``), averaged over pairs; ``raw`` is the untransformed source:

- ``ciede2000_lowpass``: mean CIEDE2000 after a Gaussian low-pass (sigma 3 px), to the reference;
- the protocol of the StainGAN and StainNet papers, so that the numbers can be set beside
  theirs: ``ssim``, SSIM on RGB to the reference with an 11 px Gaussian window (sigma 1.5);
  ``psnr``, PSNR to the reference; ``ssim_source_gray``, SSIM between the source and the output
  in gray levels (structure kept; 1 for ``raw``);
- ``ssim_gray``: SSIM to the reference in gray levels.

Outputs under ``--out``: ``fidelity.json`` (one entry per section, and ``run``: configuration,
environment, wall time) and ``fidelity.md``; ``--report-from OUT/fidelity.json`` writes the
Markdown again without running anything.

    python benchmarks/fidelity.py --out results/fidelity [--data-dir ../shared/data]
        [--sst-budget 300]
    python benchmarks/fidelity.py --quick --out /tmp/fidelity     # smoke run, 8 real pairs
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _common import (
    Timer,
    add_report_from,
    configure_logging,
    data_root,
    environment,
    frozen_config,
    markdown_table,
    method_roster,
    parse_out_or_report,
    run_or_render,
    write_text,
)
from skimage.metrics import structural_similarity

from stainstyle.color import gray_normalize
from stainstyle.metrics import SSIM_SETTINGS, ciede2000_lowpass, psnr, ssim

logger = logging.getLogger("fidelity")

#: Pixel size of the MITOS-ATYPIA-14 scans at 40x (Aperio 0.2455, Hamamatsu 0.2273 um/px).
MITOS_MICRONS_PER_PIXEL = 0.25

#: Registry method -> row label, in table order.
METHOD_LABELS = {
    "sst": "SST",
    "wsics": "WSICS",
    "reinhard": "Reinhard",
    "macenko": "Macenko",
    "vahadane": "Vahadane",
    "histogram": "Histogram specification",
}

#: Rows per method: (label suffix, parameters set before transforming, pool per slide). The
#: second rows pool over each slide's (frame's) tiles, through ``transform(X, groups=...)``.
VARIANTS: dict[str, tuple[tuple[str, dict, bool], ...]] = {
    "SST": (("", {}, False), (" (gray matched per slide)", {"gray_matching": "histogram"}, True)),
    "WSICS": (("", {}, False), (" (pooled per slide)", {}, True)),
}

#: Phase correlation precision: 1/UPSAMPLE px.
UPSAMPLE = 20

#: Narrowest registered overlap (px): the 11 px window of the SSIM (Gaussian, sigma 1.5).
MIN_OVERLAP = 11

#: :data:`stainstyle.metrics.SSIM_SETTINGS` for one gray channel.
GRAY_SSIM_SETTINGS = {k: v for k, v in SSIM_SETTINGS.items() if k != "channel_axis"}

#: Metric keys of a row, with their table headers.
METRIC_HEADERS = {
    "ciede2000_lowpass": "CIEDE2000 (low-pass)",
    "ssim": "SSIM (RGB)",
    "psnr": "PSNR (dB)",
    "ssim_source_gray": "SSIM to source (gray)",
    "ssim_gray": "SSIM (gray)",
}

#: Key of the report entry that describes the run (the others are sections).
RUN = "run"

REAL_SECTION = "MITOS-ATYPIA-14 Aperio/Hamamatsu pairs"
SYNTHETIC_SECTION = "Synthetic pairs (radboud -> utrecht)"


@dataclass(frozen=True)
class Config:
    """One run, built once from the command line (see ``--help`` for each field)."""

    out: Path
    data_dir: Path
    synthetic_tiles: int
    synthetic_size: int
    sst_budget: float
    max_pairs: int | None
    quick: bool


QUICK = {"synthetic_tiles": 16, "synthetic_size": 128, "sst_budget": 2.0, "max_pairs": 8}


def method_params(microns_per_pixel: float, sst_budget: float) -> dict[str, dict]:
    """Each section's parameter overrides, by registry method.

    No labels, so stain-style transfer has no classifier and no feature-preserving loss
    (``lambda_fp=0``); training stops at the time budget, not at an epoch count. With a few
    dozen fit tiles an epoch is two steps, so per-epoch validation would take most of the
    budget: none.
    """
    return {
        "wsics": {"microns_per_pixel": microns_per_pixel},
        "sst": {
            "lambda_fp": 0.0,
            "time_budget": sst_budget,
            "max_epochs": 1_000_000,
            "validation_fraction": 0.0,
        },
    }


# -------------------------------------------------------------------------------- registration
@dataclass(frozen=True)
class Registration:
    """Where a pair overlaps once registered.

    Attributes
    ----------
    shift : tuple of float
        Sub-pixel (rows, columns) shift that registers the moving tile on the reference tile:
        ``reference[y, x]`` shows what ``moving[y - shift[0], x - shift[1]]`` shows.
    reference, moving : tuple of slice
        The overlap in each tile, for the shift rounded to whole pixels; equal shapes.
    """

    shift: tuple[float, float]
    reference: tuple[slice, slice]
    moving: tuple[slice, slice]


def _gray(rgb: np.ndarray) -> np.ndarray:
    return gray_normalize(rgb).astype(np.float64)


def estimate_shift(reference: np.ndarray, moving: np.ndarray, upsample: int = UPSAMPLE):
    """Sub-pixel shift registering ``moving`` on ``reference``, by phase correlation of gray.

    Parameters
    ----------
    reference, moving : ndarray of shape (H, W, 3), dtype uint8
        The two tiles of a pair.
    upsample : int, default=20
        Precision 1/upsample px.

    Returns
    -------
    ndarray of shape (2,), float
        (rows, columns), as :attr:`Registration.shift`.
    """
    from skimage.registration import phase_cross_correlation

    shift, _, _ = phase_cross_correlation(_gray(reference), _gray(moving), upsample_factor=upsample)
    return shift


def register(reference: np.ndarray, moving: np.ndarray) -> Registration:
    """Registration of one pair: the sub-pixel shift and the whole-pixel overlap.

    Parameters
    ----------
    reference, moving : ndarray of shape (H, W, 3), dtype uint8
        The two tiles of a pair, of the same shape.

    Returns
    -------
    Registration

    Raises
    ------
    ValueError
        If the tiles differ in shape, or the shift leaves an overlap narrower than the SSIM
        window (:data:`MIN_OVERLAP` px; phase correlation finds shifts of up to half a tile,
        so this concerns tiles under 22 px).
    """
    if reference.shape != moving.shape:
        raise ValueError(
            f"reference, moving: expected tiles of the same shape, got {reference.shape} and "
            f"{moving.shape}"
        )
    shift = estimate_shift(reference, moving)
    whole = np.round(shift).astype(int)
    if np.any(np.array(reference.shape[:2]) - np.abs(whole) < MIN_OVERLAP):
        raise ValueError(
            f"reference, moving: phase correlation shift {shift.tolist()} px leaves less than "
            f"{MIN_OVERLAP} px of overlap in tiles of {reference.shape[:2]}; not a pair"
        )
    ref, mov = [], []
    for d, n in zip(whole, reference.shape[:2], strict=True):
        ref.append(slice(max(d, 0), n + min(d, 0)))
        mov.append(slice(max(-d, 0), n + min(-d, 0)))
    return Registration((float(shift[0]), float(shift[1])), tuple(ref), tuple(mov))


def identity(shape: tuple[int, ...]) -> Registration:
    """The registration of a pair aligned by construction (zero shift, whole tiles)."""
    whole = (slice(0, shape[0]), slice(0, shape[1]))
    return Registration((0.0, 0.0), whole, whole)


def ssim_gray(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two RGB images' gray levels, with :data:`GRAY_SSIM_SETTINGS`.

    Parameters
    ----------
    a, b : ndarray of shape (H, W, 3), dtype uint8
        Images of the same shape.

    Returns
    -------
    float
    """
    return float(structural_similarity(gray_normalize(a), gray_normalize(b), **GRAY_SSIM_SETTINGS))


def registration_summary(ids: list[str], registrations: list[Registration], source, reference):
    """The report's record of the registration: every shift, their spread, the raw gray SSIM.

    The gray SSIM of the raw pairs, before and after registration, shows what it corrects.
    """
    shifts = np.array([r.shift for r in registrations])
    unregistered = np.mean([ssim_gray(s, t) for s, t in zip(source, reference, strict=True)])
    registered = np.mean(
        [
            ssim_gray(s[r.moving], t[r.reference])
            for s, t, r in zip(source, reference, registrations, strict=True)
        ]
    )
    return {
        "method": (
            f"sub-pixel phase correlation of gray levels (1/{UPSAMPLE} px), rounded to whole "
            "pixels; both tiles cropped to their overlap; outputs cropped as their source"
        ),
        "convention": "shift (rows, columns) that registers the Hamamatsu tile on the Aperio tile",
        "median_shift": np.median(shifts, axis=0).tolist(),
        "min_shift": shifts.min(axis=0).tolist(),
        "max_shift": shifts.max(axis=0).tolist(),
        "raw_ssim_gray_unregistered": float(unregistered),
        "raw_ssim_gray_registered": float(registered),
        "pairs": [
            {"id": i, "shift": list(r.shift)} for i, r in zip(ids, registrations, strict=True)
        ],
    }


# ------------------------------------------------------------------------------------- scoring
def score(
    output: np.ndarray, source: np.ndarray, reference: np.ndarray, registrations
) -> dict[str, float]:
    """Every metric of :data:`METRIC_HEADERS`, averaged over the registered pairs.

    Parameters
    ----------
    output, source, reference : ndarray of shape (N, H, W, 3), dtype uint8
        A method's output, its input and the references.
    registrations : list of Registration
        One per pair; the output and the source are cropped to ``moving``, the reference to
        ``reference``.

    Returns
    -------
    dict of str to float
    """
    values = {key: [] for key in METRIC_HEADERS}
    for out, src, ref, reg in zip(output, source, reference, registrations, strict=True):
        out, src, ref = out[reg.moving], src[reg.moving], ref[reg.reference]
        values["ciede2000_lowpass"].append(ciede2000_lowpass(out, ref))
        values["ssim"].append(ssim(out, ref))
        values["psnr"].append(psnr(out, ref))
        values["ssim_source_gray"].append(ssim_gray(out, src))
        values["ssim_gray"].append(ssim_gray(out, ref))
    return {key: float(np.mean(v)) for key, v in values.items()}


def method_rows(label: str, estimator, fit_tiles, source, reference, registrations, groups):
    """Fit one method, then transform and score each of its :data:`VARIANTS`."""
    with Timer() as fitting:
        estimator.fit(fit_tiles)
    rows = []
    for suffix, params, pooled in VARIANTS.get(label, (("", {}, False),)):
        if pooled and groups is None:
            continue
        estimator.set_params(**params)
        with Timer() as transforming, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            output = estimator.transform(source, groups=groups if pooled else None)
        # Tiles returned unchanged (background, or degenerate for the method).
        unchanged = np.all(output == source, axis=(1, 2, 3))
        row = {
            "method": label + suffix,
            **score(output, source, reference, registrations),
            "passthrough": int(np.count_nonzero(unchanged)),
            "fit_s": round(fitting.seconds, 2),
            "transform_s": round(transforming.seconds, 2),
        }
        if hasattr(estimator, "history_"):  # SST: how far training got in its budget
            row["train_steps"] = int(sum(epoch["steps"] for epoch in estimator.history_))
        logger.info("%s: %s", row["method"], row)
        rows.append(row)
    return rows


def evaluate(
    factories: dict[str, Callable[[], object]],
    fit_tiles: np.ndarray,
    source: np.ndarray,
    reference: np.ndarray,
    groups: np.ndarray | None = None,
    registrations: list[Registration] | None = None,
) -> list[dict]:
    """Score raw and every method (each of its :data:`VARIANTS`) on one split.

    Parameters
    ----------
    factories : dict of str to callable
        Row label -> factory of an unfitted estimator (:func:`_common.method_roster`).
    fit_tiles : ndarray of shape (M, H, W, 3), dtype uint8
        Tiles the methods are fitted on.
    source, reference : ndarray of shape (N, H, W, 3), dtype uint8
        Tiles to transform and their paired references.
    groups : ndarray of shape (N,), optional
        Slide of each source tile, for the pooled rows (skipped without).
    registrations : list of Registration, optional
        One per pair (default: the pairs are aligned).

    Returns
    -------
    list of dict
        One row per method and variant, ``raw`` first.
    """
    if registrations is None:
        registrations = [identity(source.shape[1:3])] * len(source)
    raw = score(source, source, reference, registrations)
    rows = [{"method": "raw", **raw, "passthrough": 0}]
    for label, factory in factories.items():
        rows += method_rows(label, factory(), fit_tiles, source, reference, registrations, groups)
    return rows


# ---------------------------------------------------------------------------------------- data
def mitos_split_ids(root: Path) -> tuple[list[str], list[str]]:
    """Pair ids of the fit set (even-position frames) and the test set (the others).

    Parameters
    ----------
    root : Path
        The ``mitos_atypia_pairs`` folder.

    Returns
    -------
    fit_ids, test_ids : list of str
        Sorted ids ``<frame>_<k>``.
    """
    ids = sorted(path.stem for path in (root / "aperio").glob("*.png"))
    frames = sorted({i.split("_")[0] for i in ids})
    fit_frames = set(frames[0::2])
    return [i for i in ids if i.split("_")[0] in fit_frames], [
        i for i in ids if i.split("_")[0] not in fit_frames
    ]


def load_mitos_split(
    root: Path,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The frame-wise split of the MITOS-ATYPIA pairs (see :func:`mitos_split_ids`).

    Parameters
    ----------
    root : Path
        The pairs' folder, holding ``aperio/`` and ``hamamatsu/``.

    Returns
    -------
    fit_aperio : ndarray of shape (n_fit, 256, 256, 3), dtype uint8
        Aperio tiles of the even-position frames (fit set).
    test_hamamatsu, test_aperio : ndarray of shape (n_test, 256, 256, 3), dtype uint8
        Hamamatsu tiles of the odd-position frames and their Aperio tiles (not registered: see
        :func:`register`).
    test_frames : ndarray of shape (n_test,), dtype str
        Frame id of each test tile.
    """
    from PIL import Image

    def read(path: Path) -> np.ndarray:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))

    fit_ids, test_ids = mitos_split_ids(root)
    fit_aperio = np.stack([read(root / "aperio" / f"{i}.png") for i in fit_ids])
    test_hamamatsu = np.stack([read(root / "hamamatsu" / f"{i}.png") for i in test_ids])
    test_aperio = np.stack([read(root / "aperio" / f"{i}.png") for i in test_ids])
    return fit_aperio, test_hamamatsu, test_aperio, np.array([i.split("_")[0] for i in test_ids])


def synthetic_split(n: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fit tiles (style A, first half), source (style B, second half), reference, slide ids."""
    from stainstyle.data.synthetic import render_pair

    tiles_a, tiles_b, _, slides = render_pair(
        n, "radboud", "utrecht", size=size, seed=0, return_slides=True
    )
    half = n // 2
    return tiles_a[:half], tiles_b[half:], tiles_a[half:], slides[half:]


# ------------------------------------------------------------------------------------ sections
def real_section(config: Config, pairs: Path) -> dict:
    """The MITOS-ATYPIA section: registration, then every method on the registered pairs."""
    fit_tiles, source, reference, frames = load_mitos_split(pairs)
    test_ids = mitos_split_ids(pairs)[1]
    if config.max_pairs:
        n = config.max_pairs
        fit_tiles, source, reference, frames = fit_tiles[:n], source[:n], reference[:n], frames[:n]
        test_ids = test_ids[:n]
    registrations = [register(t, s) for s, t in zip(source, reference, strict=True)]
    summary = registration_summary(test_ids, registrations, source, reference)
    logger.info(
        "registration: median shift %s px; raw gray SSIM %.3f unregistered, %.3f registered",
        summary["median_shift"],
        summary["raw_ssim_gray_unregistered"],
        summary["raw_ssim_gray_registered"],
    )
    factories = method_roster(
        METHOD_LABELS,
        method_params(MITOS_MICRONS_PER_PIXEL, config.sst_budget),
        skip_unavailable=True,
    )
    return {
        "setup": (
            f"Fit on {len(fit_tiles)} Aperio tiles of half the frames; transform the "
            f"{len(source)} Hamamatsu tiles of the other frames; compare with their Aperio "
            "tiles, each pair registered (phase correlation) and cropped to its overlap. WSICS "
            f"at {MITOS_MICRONS_PER_PIXEL} um/px; SST trained for {config.sst_budget:.0f} s "
            "(CPU preset, no feature-preserving loss); the 'per slide' rows pool over the "
            "tiles of each frame."
        ),
        "registration": summary,
        "rows": evaluate(factories, fit_tiles, source, reference, frames, registrations),
    }


def synthetic_section(config: Config) -> dict:
    """The synthetic section: pairs aligned by construction."""
    fit_tiles, source, reference, slides = synthetic_split(
        config.synthetic_tiles, config.synthetic_size
    )
    factories = method_roster(
        METHOD_LABELS, method_params(0.5, config.sst_budget), skip_unavailable=True
    )
    return {
        "setup": (
            f"render_pair({config.synthetic_tiles}, 'radboud', 'utrecht', "
            f"size={config.synthetic_size}, seed=0): fit on radboud tiles of the first half, "
            "transform the utrecht tiles of the second half, compare with their radboud "
            f"renderings. WSICS at 0.5 um/px; SST trained for {config.sst_budget:.0f} s; the "
            "'per slide' rows use the generator's slides."
        ),
        "rows": evaluate(factories, fit_tiles, source, reference, slides),
    }


def run(config: Config) -> dict:
    """Every section whose data is present, and the ``run`` record."""
    started = time.monotonic()
    report: dict[str, dict] = {}
    pairs = config.data_dir / "mitos_atypia_pairs"
    if pairs.exists():
        report[REAL_SECTION] = real_section(config, pairs)
    else:
        logger.warning("no real pairs at %s; real section skipped", pairs)
    try:
        report[SYNTHETIC_SECTION] = synthetic_section(config)
    except ImportError as error:
        logger.warning("no synthetic generator (%s); synthetic section skipped", error)
    report[RUN] = {
        "config": {
            k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()
        },
        "environment": environment("auto"),
        "wall_time_s": round(time.monotonic() - started, 1),
    }
    return report


# ------------------------------------------------------------------------------------ reporting
def sections(report: dict) -> dict[str, dict]:
    """The report's sections (every entry but :data:`RUN`)."""
    return {title: section for title, section in report.items() if title != RUN}


def format_metric(key: str, value: float) -> str:
    """A metric's table cell: 2 decimals for CIEDE2000 and PSNR, 4 for the SSIMs."""
    return f"{value:.2f}" if key in ("ciede2000_lowpass", "psnr") else f"{value:.4f}"


def render_markdown(report: dict) -> str:
    """``fidelity.md``: one table per section, with its set-up and registration."""
    lines = []
    header = ["method", *METRIC_HEADERS.values(), "passed through"]
    for title, section in sections(report).items():
        lines += [f"## {title}", "", section["setup"], ""]
        if "registration" in section:
            reg = section["registration"]
            lines += [
                f"Registration: median shift {reg['median_shift']} px (rows, columns), from "
                f"{reg['min_shift']} to {reg['max_shift']}; gray SSIM of the raw pairs "
                f"{reg['raw_ssim_gray_unregistered']:.3f} unregistered, "
                f"{reg['raw_ssim_gray_registered']:.3f} registered.",
                "",
            ]
        rows = [
            [row["method"], *(format_metric(k, row.get(k, np.nan)) for k in METRIC_HEADERS)]
            + [row["passthrough"]]
            for row in section["rows"]
        ]
        lines += [*markdown_table(header, rows), ""]
    return "\n".join(lines)


def write_reports(out: Path, report: dict) -> str:
    """Write ``fidelity.md`` (from ``report``) under ``out``; returns its text."""
    text = render_markdown(report)
    write_text(out / "fidelity.md", text)
    return text


# ----------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder for JSON and markdown")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=data_root(),
        help="real data root holding mitos_atypia_pairs/",
    )
    parser.add_argument("--synthetic-tiles", type=int, default=64)
    parser.add_argument("--synthetic-size", type=int, default=256)
    parser.add_argument(
        "--sst-budget", type=float, default=300.0, help="seconds of SST training per section"
    )
    parser.add_argument("--max-pairs", type=int, default=None, help="real pairs: at most N")
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run: {QUICK} (overriding those options)"
    )
    add_report_from(parser, "fidelity.json", "fidelity.md")
    return parse_out_or_report(parser, argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or re-render a saved report); returns the exit code."""
    args = parse_args(argv)
    configure_logging("fidelity", "%(message)s")

    make_config = functools.partial(frozen_config, Config, args, QUICK)
    return run_or_render(args, "fidelity", "fidelity.json", make_config, run, write_reports)


if __name__ == "__main__":
    sys.exit(main())
