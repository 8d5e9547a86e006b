"""Normalize a folder of whole slides into one lab's style, on a local Dask cluster.

Fits a method on random tissue tiles of a target-lab slide (``stainstyle.wsi.sample_tiles``),
then normalizes every slide under ``--slides`` with ``stainstyle.wsi.normalize_slides``: one
slide per task on a cluster of ``--workers`` processes, one fixed mapping per slide, written as
pyramidal BigTIFF files ``OUT/normalized/<slide>.tiff`` with ``manifest.csv``,
``manifest.json`` and the quality-control sheet ``qc.png``. Running it again skips the slides
already written.

Without ``--slides`` and ``--target`` it first writes demonstration slides of synthetic tissue
under ``OUT/demo/``: a target slide in one lab's style and source slides in three others.

    python examples/normalize_slides.py --slides slides/ --target target.svs --out results/run1
    python examples/normalize_slides.py --out results [--quick] [--workers 2]

Needs the ``wsi`` extra: ``pip install 'stainstyle[wsi]'``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import stainstyle
from stainstyle.data import make_tiles
from stainstyle.wsi import SLIDE_SUFFIXES, normalize_slides, sample_tiles, write_pyramid

#: Lab styles of the demonstration's source slides; the quick one has the first two. "pale" is
#: too faint for Macenko's stain filter: that slide is written unchanged, as the manifest says.
SOURCE_STYLES = ("utrecht", "dense", "pale")


def write_demo_slide(path: Path, style: str, shape: tuple[int, int], seed: int) -> Path:
    """A slide of ``shape`` (rows, cols) synthetic 256-px tiles of ``style``, glass on the right."""
    rows, cols = shape
    tiles, _ = make_tiles(rows * cols, style, size=256, seed=seed)
    grid = tiles.reshape(rows, cols, 256, 256, 3)
    image = np.concatenate([np.concatenate(list(row), axis=1) for row in grid])
    image[:, -256:] = 244  # a column of glass, passed through unchanged
    bands = (image[y : y + 256] for y in range(0, image.shape[0], 256))
    size = (image.shape[1], image.shape[0])
    return write_pyramid(path, bands, size=size, mpp=0.5, magnification=20)


def write_demo(folder: Path, quick: bool) -> tuple[Path, Path]:
    """Demonstration slides; return (folder of source slides, target slide)."""
    shape = (3, 4) if quick else (6, 8)
    styles = SOURCE_STYLES[:2] if quick else SOURCE_STYLES
    (folder / "slides").mkdir(parents=True, exist_ok=True)
    for seed, style in enumerate(styles, start=1):
        write_demo_slide(folder / "slides" / f"{style}.tif", style, shape, seed)
    target = write_demo_slide(folder / "target.tif", "radboud", shape, seed=0)
    return folder / "slides", target


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slides", type=Path, help="folder of slides to normalize")
    parser.add_argument("--target", type=Path, help="a slide in the target style")
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--method", choices=sorted(stainstyle.METHODS), default="macenko")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--quick", action="store_true", help="a smaller demonstration")
    args = parser.parse_args(argv)
    if (args.slides is None) != (args.target is None):
        parser.error("--slides and --target go together (or neither, for the demonstration)")
    if args.slides is None:
        args.slides, args.target = write_demo(args.out / "demo", args.quick)

    # Fit from a slide: random tiles of 256 px at 0.5 um/px, at least a quarter tissue (seeded).
    tiles = sample_tiles(args.target, n=4 if args.quick else 24, min_tissue=0.25)
    normalizer = stainstyle.METHODS[args.method]().fit(tiles)
    slides = sorted(p for p in args.slides.rglob("*") if p.suffix.lower() in SLIDE_SUFFIXES)
    manifest = normalize_slides(
        slides, normalizer, args.out / "normalized", workers=args.workers, progress=None
    )
    for result in manifest.results:
        print(
            f"{result.input.name}: {result.status}, {result.tiles} tiles "
            f"({result.passthrough_tiles} unchanged), {result.seconds:.1f} s {result.error}"
        )
    print(f"wrote {manifest.csv_path} and {manifest.qc_sheet}")
    return manifest


if __name__ == "__main__":  # worker processes start by importing this file: keep the run here
    main()
