"""Normalize every image in a folder into the style of a folder of target-lab images.

Reads the target images (PNG, JPEG, TIFF, BMP) under ``--target``, fits a method on them,
normalizes every image under ``--input`` and writes it under ``OUT/normalized/`` with the same
relative path, as PNG. Images of different sizes are fine. ``OUT/status.csv`` lists each input
file with its status: ``ok``, or ``passthrough_background`` / ``passthrough_degenerate`` for
images returned unchanged (too little tissue, or a tile the method cannot model).

Without ``--input`` and ``--target`` it first writes a demonstration: synthetic source-lab
tiles (one of them blank slide background) under ``OUT/demo/input/`` and target-lab tiles under
``OUT/demo/target/``.

    python examples/normalize_folder.py --input tiles/ --target target_tiles/ --out results/run1
    python examples/normalize_folder.py --out results [--quick] [--method macenko]
"""

from __future__ import annotations

import argparse
import csv
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

import stainstyle
from stainstyle.data import make_tiles, read_image

SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


def image_files(folder: Path) -> list[Path]:
    """Image files under ``folder``, recursively, in sorted order."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())


def write_demo(folder: Path, n_tiles: int) -> tuple[Path, Path]:
    """Write synthetic source and target tiles as PNG files; return (input, target) folders."""
    source, _ = make_tiles(n_tiles, "utrecht", size=128, seed=1)
    target, _ = make_tiles(16, "radboud", size=128, seed=0)
    inputs, targets = folder / "input" / "slide_a", folder / "target"
    for path, tiles in ((inputs, source), (targets, target)):
        path.mkdir(parents=True, exist_ok=True)
        for i, tile in enumerate(tiles):
            Image.fromarray(tile).save(path / f"tile_{i:03d}.png")
    Image.fromarray(np.full((128, 128, 3), 238, dtype=np.uint8)).save(inputs / "blank.png")
    return folder / "input", targets


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, help="folder of images to normalize")
    parser.add_argument("--target", type=Path, help="folder of target-style images")
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--method", choices=sorted(stainstyle.METHODS), default="reinhard")
    parser.add_argument("--quick", action="store_true", help="a smaller demonstration")
    args = parser.parse_args(argv)
    if (args.input is None) != (args.target is None):
        parser.error("--input and --target go together (or neither, for the demonstration)")
    if args.input is None:
        args.input, args.target = write_demo(args.out / "demo", 3 if args.quick else 12)

    target = [read_image(path) for path in image_files(args.target)]
    files = image_files(args.input)
    tiles = [read_image(path) for path in files]
    normalizer = stainstyle.METHODS[args.method]().fit(target)
    with warnings.catch_warnings():
        # The passed-through tiles are listed in status.csv instead.
        warnings.simplefilter("ignore", stainstyle.BackgroundTileWarning)
        normalized = normalizer.transform(tiles)
    status = stainstyle.tile_status(normalizer, tiles)

    out_folder = args.out / "normalized"
    for path, image in zip(files, normalized, strict=True):
        destination = (out_folder / path.relative_to(args.input)).with_suffix(".png")
        destination.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(destination)
    report = args.out / "status.csv"
    with report.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "status"])
        writer.writerows(
            (path.relative_to(args.input).as_posix(), s)
            for path, s in zip(files, status, strict=True)
        )
    counts = {str(s): int(np.sum(status == s)) for s in np.unique(status)}
    print(f"{args.method}: {len(files)} images {counts}\nwrote {out_folder}/ and {report}")
    return out_folder


if __name__ == "__main__":
    main()
