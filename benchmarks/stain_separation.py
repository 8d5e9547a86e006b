"""Stain separation on real tiles: how well H and E maps rebuild tissue, and scanner agreement.

Two measurements, for the fixed Ruifrok & Johnston matrix and for each tile's own Macenko and
Vahadane stain matrix:

* **Rebuild:** separate each CAMELYON17 tile into H and E maps, rebuild it
  (:func:`stainstyle.separation.reconstruct`) and compare with the tile on its tissue pixels:
  the mean absolute gray-level difference, and the share of tissue pixels within 2 gray levels.
  Two stains cannot represent a third direction of optical density, so real tissue never
  rebuilds exactly; synthetic Beer-Lambert tiles do (``tests/test_separation.py``).
* **Scanner agreement:** on the MITOS-ATYPIA test pairs (registered by phase correlation, as in
  ``fidelity.py``), the Pearson correlation between the Aperio tile's H map and the Hamamatsu
  tile's H map (Ruifrok basis), before and after normalizing the Hamamatsu tiles to the Aperio
  style (Macenko and Vahadane fitted on the Aperio fit split).

    python benchmarks/stain_separation.py --out results
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
from _common import ROOT, configure_logging, data_root, markdown_table, write_json, write_text
from fidelity import load_mitos_split, register

from stainstyle import MacenkoNormalizer, VahadaneNormalizer, ruifrok_concentrations
from stainstyle.data.images import read_image
from stainstyle.separation import RUIFROK_HE, reconstruct
from stainstyle.tissue import tissue_mask

#: Stain-matrix methods by label.
METHODS = {"Macenko": MacenkoNormalizer, "Vahadane": VahadaneNormalizer}


def rebuild_errors(tiles: list[np.ndarray]) -> dict[str, dict[str, float]]:
    """Per basis: mean absolute gray difference and share within 2 levels, on tissue pixels."""
    errors: dict[str, list[np.ndarray]] = {"Ruifrok": [], **{label: [] for label in METHODS}}
    for tile in tiles:
        tissue = tissue_mask(tile)
        rebuilt = {"Ruifrok": reconstruct(ruifrok_concentrations(tile), RUIFROK_HE)}
        for label, cls in METHODS.items():
            model = cls().fit(tile)
            statistics = model.source_statistics(tile)
            maps = model.stain_concentrations(tile, source=statistics)
            stains = statistics.statistics.stain_matrix
            rebuilt[label] = reconstruct(maps, stains, io=model.io)
        for label, image in rebuilt.items():
            errors[label].append(np.abs(image.astype(np.int16) - tile)[tissue].max(axis=1))
    return {
        label: {
            "mean_abs_gray_difference": float(np.concatenate(e).mean()),
            "share_within_2": float(np.mean(np.concatenate(e) <= 2)),
        }
        for label, e in errors.items()
    }


def h_correlations(pairs: Path) -> dict[str, float]:
    """Mean Pearson correlation of the registered H maps (Ruifrok), before and after."""
    fit_aperio, hamamatsu, aperio, _ = load_mitos_split(pairs)
    registrations = [register(a, h) for h, a in zip(hamamatsu, aperio, strict=True)]
    reference = ruifrok_concentrations(aperio)[..., 0]

    def mean_correlation(moving: np.ndarray) -> float:
        h_maps = ruifrok_concentrations(moving)[..., 0]
        values = [
            np.corrcoef(reference[i][r.reference].ravel(), h_maps[i][r.moving].ravel())[0, 1]
            for i, r in enumerate(registrations)
        ]
        return float(np.mean(values))

    found = {"before": mean_correlation(hamamatsu)}
    for label, cls in METHODS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found[f"after {label}"] = mean_correlation(cls().fit(fit_aperio).transform(hamamatsu))
    return found


def render(rebuild: dict, correlations: dict) -> str:
    cells = [
        [label, f"{v['mean_abs_gray_difference']:.2f}", f"{100 * v['share_within_2']:.1f} %"]
        for label, v in rebuild.items()
    ]
    lines = ["Rebuild from H and E maps (CAMELYON17 tiles, tissue pixels):", ""]
    lines += markdown_table(["basis", "mean abs gray difference", "within 2 gray levels"], cells)
    lines += ["", "H-map correlation, MITOS-ATYPIA Aperio vs Hamamatsu (registered):", ""]
    lines += markdown_table(
        ["", "mean Pearson r"], [[k, f"{v:.4f}"] for k, v in correlations.items()]
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    configure_logging("stain_separation")
    tiles = [read_image(p) for p in sorted((data_root() / "camelyon17_tiles").rglob("*.png"))]
    report = {
        "rebuild": rebuild_errors(tiles),
        "h_correlation": h_correlations(data_root() / "mitos_atypia_pairs"),
    }
    write_json(args.out / "stain_separation.json", report)
    table = render(report["rebuild"], report["h_correlation"])
    write_text(args.out / "stain_separation.md", table + "\n")
    print(table)
    return report


if __name__ == "__main__":
    main()
