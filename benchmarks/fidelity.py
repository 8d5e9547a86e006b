"""Paired fidelity of the stain normalization methods: real scanner pairs and synthetic pairs.

Real pairs: ``mitos_atypia_pairs`` holds the same tissue scanned by an Aperio and a Hamamatsu
scanner, registered. Frames (the id before ``_``) are sorted and split alternately: the methods
are fitted on the Aperio tiles of the even-position frames and transform the Hamamatsu tiles of
the odd-position frames, which are compared with their aligned Aperio tiles. Synthetic pairs:
``stainstyle.data.synthetic.render_pair`` draws the same tissue in two lab styles; the methods
are fitted on style A tiles of one half and transform the style B tiles of the other half.

Stain-style transfer trains its generator on the fit tiles for ``--sst-budget`` seconds (CPU
preset) with the adversarial and L1 losses only: the pairs carry no labels, so there is no
classifier for the feature-preserving loss. Its second row feeds the generator gray levels
matched to the fit tiles' gray histogram, pooled per frame (slide); WSICS's second row pools its
source statistics the same way.

Metrics (``stainstyle.metrics``): mean CIEDE2000 after a Gaussian low-pass (sigma 3 px), PSNR and
SSIM, averaged over tiles; ``raw`` is the untransformed source. Methods that are not importable
are skipped.

    python benchmarks/fidelity.py --out results/fidelity [--data-dir ../shared/data]
        [--sst-budget 300]
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import logging
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from stainstyle.metrics import ciede2000_lowpass, psnr, ssim

ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger("fidelity")

#: Pixel size of the MITOS-ATYPIA-14 scans at 40x (Aperio 0.2455, Hamamatsu 0.2273 um/px).
MITOS_MICRONS_PER_PIXEL = 0.25

#: Method name -> (module, class).
METHODS: dict[str, tuple[str, str]] = {
    "SST": ("stainstyle.sst", "StainStyleTransfer"),
    "WSICS": ("stainstyle.methods.wsics", "WSICSNormalizer"),
    "Reinhard": ("stainstyle.methods.reinhard", "ReinhardNormalizer"),
    "Macenko": ("stainstyle.methods.macenko", "MacenkoNormalizer"),
    "Histogram specification": ("stainstyle.methods.histogram", "HistogramSpecification"),
}

#: Rows per method: (label suffix, parameters set before transforming, pool per slide). The
#: second rows pool over each slide's (frame's) tiles, through ``transform(X, groups=...)``.
VARIANTS: dict[str, tuple[tuple[str, dict, bool], ...]] = {
    "SST": (("", {}, False), (" (gray matched per slide)", {"gray_matching": "histogram"}, True)),
    "WSICS": (("", {}, False), (" (pooled per slide)", {}, True)),
}


def available_methods(
    microns_per_pixel: float, sst_budget: float
) -> dict[str, Callable[[], object]]:
    """Name -> factory of every importable method.

    Parameters
    ----------
    microns_per_pixel : float
        Pixel size of the tiles, for WSICS's nucleus detector.
    sst_budget : float
        Seconds of generator training for stain-style transfer.

    Returns
    -------
    dict of str to callable
        Factories of unfitted estimators, in table order.
    """
    kwargs = {
        "WSICS": {"microns_per_pixel": microns_per_pixel},
        # No labels, so no classifier and no feature-preserving loss (lambda_fp=0); training
        # stops at the time budget, not at an epoch count. With a few dozen fit tiles an epoch
        # is two steps, so the per-epoch validation would take most of the budget: none.
        "SST": {
            "lambda_fp": 0.0,
            "time_budget": sst_budget,
            "max_epochs": 1_000_000,
            "validation_fraction": 0.0,
        },
    }
    factories: dict[str, Callable[[], object]] = {}
    for name, (module, cls) in METHODS.items():
        try:
            klass = getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError) as error:
            logger.warning("skipping %s: %s", name, error)
            continue
        factories[name] = functools.partial(klass, **kwargs.get(name, {}))
    return factories


def load_mitos_split(
    root: Path,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The frame-wise split of the MITOS-ATYPIA pairs.

    Parameters
    ----------
    root : Path
        The ``mitos_atypia_pairs`` folder.

    Returns
    -------
    fit_aperio : ndarray of shape (n_fit, 256, 256, 3), dtype uint8
        Aperio tiles of the even-position frames (fit set).
    test_hamamatsu, test_aperio : ndarray of shape (n_test, 256, 256, 3), dtype uint8
        Hamamatsu tiles of the odd-position frames and their aligned Aperio tiles.
    test_frames : ndarray of shape (n_test,), dtype str
        Frame id of each test tile.
    """
    from PIL import Image

    def read(path: Path) -> np.ndarray:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))

    ids = sorted(path.stem for path in (root / "aperio").glob("*.png"))
    frames = sorted({i.split("_")[0] for i in ids})
    fit_frames = set(frames[0::2])
    fit_ids = [i for i in ids if i.split("_")[0] in fit_frames]
    test_ids = [i for i in ids if i.split("_")[0] not in fit_frames]
    fit_aperio = np.stack([read(root / "aperio" / f"{i}.png") for i in fit_ids])
    test_hamamatsu = np.stack([read(root / "hamamatsu" / f"{i}.png") for i in test_ids])
    test_aperio = np.stack([read(root / "aperio" / f"{i}.png") for i in test_ids])
    return fit_aperio, test_hamamatsu, test_aperio, np.array([i.split("_")[0] for i in test_ids])


def score(output: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Mean low-passed CIEDE2000, PSNR and SSIM over tiles."""
    return {
        "ciede2000_lowpass": float(np.mean(ciede2000_lowpass(output, reference))),
        "psnr": float(np.mean(psnr(output, reference))),
        "ssim": float(np.mean(ssim(output, reference))),
    }


def evaluate(
    factories: dict[str, Callable[[], object]],
    fit_tiles: np.ndarray,
    source: np.ndarray,
    reference: np.ndarray,
    groups: np.ndarray | None = None,
) -> list[dict]:
    """Score raw and every method (each of its :data:`VARIANTS`) on one split."""
    rows = [{"method": "raw", **score(source, reference), "passthrough": 0}]
    for name, factory in factories.items():
        estimator = factory()
        start = time.perf_counter()
        estimator.fit(fit_tiles)
        fit_s = time.perf_counter() - start
        for suffix, params, pooled in VARIANTS.get(name, (("", {}, False),)):
            if pooled and groups is None:
                continue
            label, group_ids = name + suffix, groups if pooled else None
            estimator.set_params(**params)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                output = estimator.transform(source, groups=group_ids)
            transform_s = time.perf_counter() - start
            # Tiles returned unchanged (background, or degenerate for the method).
            unchanged = np.all(output == source, axis=(1, 2, 3))
            row = {
                "method": label,
                **score(output, reference),
                "passthrough": int(np.count_nonzero(unchanged)),
                "fit_s": round(fit_s, 2),
                "transform_s": round(transform_s, 2),
            }
            if hasattr(estimator, "history_"):  # SST: how far training got in its budget
                row["train_steps"] = int(sum(epoch["steps"] for epoch in estimator.history_))
            rows.append(row)
            logger.info("%s: %s", label, rows[-1])
    return rows


def synthetic_split(n: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fit tiles (style A, first half), source (style B, second half), reference, slide ids."""
    from stainstyle.data.synthetic import render_pair

    tiles_a, tiles_b, _, slides = render_pair(
        n, "radboud", "utrecht", size=size, seed=0, return_slides=True
    )
    half = n // 2
    return tiles_a[:half], tiles_b[half:], tiles_a[half:], slides[half:]


def markdown(sections: dict[str, dict]) -> str:
    """One table per section."""
    lines = []
    for title, section in sections.items():
        lines += [f"## {title}", "", section["setup"], ""]
        lines += ["| method | CIEDE2000 (low-pass) | PSNR (dB) | SSIM | passed through |"]
        lines += ["|---|---|---|---|---|"]
        for row in section["rows"]:
            lines.append(
                f"| {row['method']} | {row['ciede2000_lowpass']:.2f} | {row['psnr']:.2f} | "
                f"{row['ssim']:.4f} | {row['passthrough']} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for JSON and markdown")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("STAINSTYLE_DATA", ROOT.parent / "shared" / "data")),
        help="real data root holding mitos_atypia_pairs/",
    )
    parser.add_argument("--synthetic-tiles", type=int, default=64)
    parser.add_argument("--synthetic-size", type=int, default=256)
    parser.add_argument(
        "--sst-budget", type=float, default=300.0, help="seconds of SST training per section"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    sections: dict[str, dict] = {}
    pairs = args.data_dir / "mitos_atypia_pairs"
    if pairs.exists():
        fit_tiles, source, reference, frames = load_mitos_split(pairs)
        sections["MITOS-ATYPIA-14 Aperio/Hamamatsu pairs"] = {
            "setup": (
                f"Fit on {len(fit_tiles)} Aperio tiles of half the frames; transform the "
                f"{len(source)} Hamamatsu tiles of the other frames; compare with the aligned "
                f"Aperio tiles. WSICS at {MITOS_MICRONS_PER_PIXEL} um/px; SST trained for "
                f"{args.sst_budget:.0f} s (CPU preset, no feature-preserving loss); the 'per "
                "slide' rows pool over the tiles of each frame."
            ),
            "rows": evaluate(
                available_methods(MITOS_MICRONS_PER_PIXEL, args.sst_budget),
                fit_tiles,
                source,
                reference,
                frames,
            ),
        }
    else:
        logger.warning("no real pairs at %s; real section skipped", pairs)
    try:
        fit_tiles, source, reference, slides = synthetic_split(
            args.synthetic_tiles, args.synthetic_size
        )
    except ImportError as error:
        logger.warning("no synthetic generator (%s); synthetic section skipped", error)
    else:
        sections["Synthetic pairs (radboud -> utrecht)"] = {
            "setup": (
                f"render_pair({args.synthetic_tiles}, 'radboud', 'utrecht', "
                f"size={args.synthetic_size}, seed=0): fit on radboud tiles of the first half, "
                "transform the utrecht tiles of the second half, compare with their radboud "
                f"renderings. WSICS at 0.5 um/px; SST trained for {args.sst_budget:.0f} s; the "
                "'per slide' rows use the generator's slides."
            ),
            "rows": evaluate(
                available_methods(0.5, args.sst_budget), fit_tiles, source, reference, slides
            ),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fidelity.json").write_text(json.dumps(sections, indent=2))
    (args.out / "fidelity.md").write_text(markdown(sections))
    print(markdown(sections))


if __name__ == "__main__":
    main()
