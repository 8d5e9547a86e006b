"""Stain separation on real tiles: how well the maps rebuild tissue, and scanner agreement.

Two measurements, for the fixed Ruifrok & Johnston matrix and for each tile's own Macenko and
Vahadane stain matrix:

* **Rebuild:** separate each CAMELYON17 tile into maps, rebuild it
  (:func:`stainstyle.separation.reconstruct`) and compare with the tile on its tissue pixels:
  the mean and the largest absolute gray-level difference (largest over R, G, B), and the
  share of tissue pixels within 2 gray levels. Two ways: from the H and E maps alone (the
  non-negative separation the methods use: Ruifrok's non-negative least squares, each
  method's ``stain_concentrations``), which cannot represent optical density off the stains'
  cone; and from H, E and the residual (``separate_stains(..., residual=True)``, the exact
  3x3 colour deconvolution with the same stain matrix), which should rebuild the tissue to
  rounding.
* **Scanner agreement:** on the MITOS-ATYPIA test pairs (registered by phase correlation, as
  in ``fidelity.py``), the mean Pearson correlation between the Aperio tile's H map and the
  Hamamatsu tile's H map, before and after normalizing the Hamamatsu tiles to the Aperio style
  (Macenko and Vahadane fitted on the Aperio fit split). Before and after are computed the
  same way, in two bases: the fixed Ruifrok basis for every tile (what normalization changes
  is what one fixed basis reads), and each tile's own basis of the method (the method's
  ``stain_concentrations``, a stain matrix estimated on each tile, the normalized one
  included). The correlation is invariant to scaling a map, so in each tile's own basis a
  normalization that rescales concentrations per tile can hardly change it.

    python benchmarks/stain_separation.py --out results
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
from _common import ROOT, configure_logging, data_root, markdown_table, write_json, write_text
from fidelity import load_mitos_split, register

from stainstyle import (
    MacenkoNormalizer,
    VahadaneNormalizer,
    reconstruct,
    ruifrok_concentrations,
    separate_stains,
)
from stainstyle.color.od import IO_DEFAULT
from stainstyle.data.images import read_image
from stainstyle.separation import RUIFROK_HE
from stainstyle.tissue import tissue_mask

#: Stain-matrix methods by label.
METHODS = {"Macenko": MacenkoNormalizer, "Vahadane": VahadaneNormalizer}

#: The two rebuilds, by label.
REBUILDS = ("H+E", "H+E+residual")


def separations(tile: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """Per basis: the H and E maps (the non-negative separation), its stain matrix and io."""
    found = {"Ruifrok": (ruifrok_concentrations(tile), RUIFROK_HE, IO_DEFAULT)}
    for label, cls in METHODS.items():
        model = cls().fit(tile)
        statistics = model.source_statistics(tile)
        maps = model.stain_concentrations(tile, source=statistics)
        found[label] = (maps, statistics.statistics.stain_matrix, model.io)
    return found


def rebuild_errors(tiles: list[np.ndarray]) -> dict[str, dict[str, dict[str, float]]]:
    """Per basis and rebuild: mean and largest absolute gray difference, share within 2 levels."""
    errors: dict[tuple[str, str], list[np.ndarray]] = {}
    for tile in tiles:
        tissue = tissue_mask(tile)
        for label, (maps, stains, io) in separations(tile).items():
            with_residual = separate_stains(tile, stains, io=io, residual=True)
            for rebuild, m in zip(REBUILDS, (maps, with_residual), strict=True):
                image = reconstruct(m, stains, io=io)
                difference = np.abs(image.astype(np.int16) - tile)[tissue].max(axis=1)
                errors.setdefault((label, rebuild), []).append(difference)
    report: dict[str, dict[str, dict[str, float]]] = {}
    for (label, rebuild), e in errors.items():
        pooled = np.concatenate(e)
        report.setdefault(label, {})[rebuild] = {
            "mean_abs_gray_difference": float(pooled.mean()),
            "max_abs_gray_difference": int(pooled.max()),
            "share_within_2": float(np.mean(pooled <= 2)),
        }
    return report


def h_correlations(pairs: Path) -> dict[str, dict[str, float]]:
    """Per basis: mean Pearson correlation of the registered H maps, before and after."""
    fit_aperio, hamamatsu, aperio, _ = load_mitos_split(pairs)
    registrations = [register(a, h) for h, a in zip(hamamatsu, aperio, strict=True)]

    def mean_correlation(reference: np.ndarray, moving: np.ndarray) -> float:
        values = [
            np.corrcoef(reference[i][r.reference].ravel(), moving[i][r.moving].ravel())[0, 1]
            for i, r in enumerate(registrations)
        ]
        return float(np.mean(values))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = {label: cls().fit(fit_aperio) for label, cls in METHODS.items()}
        normalized = {label: model.transform(hamamatsu) for label, model in models.items()}

        def ruifrok_h(tiles: np.ndarray) -> np.ndarray:
            return ruifrok_concentrations(tiles)[..., 0]

        reference = ruifrok_h(aperio)
        found = {"Ruifrok": {"before": mean_correlation(reference, ruifrok_h(hamamatsu))}}
        for label in METHODS:
            found["Ruifrok"][f"after {label}"] = mean_correlation(
                reference, ruifrok_h(normalized[label])
            )
        for label, model in models.items():
            own = model.stain_concentrations(aperio)[..., 0]
            found[f"{label}, each tile's own"] = {
                "before": mean_correlation(own, model.stain_concentrations(hamamatsu)[..., 0]),
                f"after {label}": mean_correlation(
                    own, model.stain_concentrations(normalized[label])[..., 0]
                ),
            }
    return found


def render(rebuild: dict, correlations: dict) -> str:
    cells = [
        [
            label,
            name,
            f"{v['mean_abs_gray_difference']:.2f}",
            str(v["max_abs_gray_difference"]),
            f"{100 * v['share_within_2']:.1f} %",
        ]
        for label, by_rebuild in rebuild.items()
        for name, v in by_rebuild.items()
    ]
    lines = ["Rebuild from the maps (CAMELYON17 tiles, tissue pixels):", ""]
    lines += markdown_table(
        ["basis", "maps", "mean abs gray difference", "max", "within 2 gray levels"], cells
    )
    lines += ["", "H-map correlation, MITOS-ATYPIA Aperio vs Hamamatsu (registered):", ""]
    lines += markdown_table(
        ["basis", "", "mean Pearson r"],
        [[basis, k, f"{v:.4f}"] for basis, row in correlations.items() for k, v in row.items()],
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
