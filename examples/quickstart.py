"""Quickstart: normalize source-lab tiles into a target lab's style with every classic method.

Renders synthetic H&E tiles of a pinkish target lab ("radboud") and a purple source lab
("utrecht"), fits each method on the target tiles, transforms the source tiles and writes a
comparison image (rows: tiles; columns: target example, source, each method).

    python examples/quickstart.py --out results
    python examples/quickstart.py --out results --quick   # fewer tiles, for CI
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

import stainstyle
from stainstyle.data import make_tiles


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Normalize synthetic tiles with every method.")
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--n-tiles", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="8 target tiles, 2 source tiles")
    args = parser.parse_args(argv)
    n_target = 16
    if args.quick:
        n_target, args.n_tiles = 8, min(args.n_tiles, 2)

    target, _ = make_tiles(n_target, "radboud", size=128, seed=0)
    source, _ = make_tiles(args.n_tiles, "utrecht", size=128, seed=1)
    columns = [target[: args.n_tiles], source]
    names = ["target lab", "source lab"]
    for name in ("reinhard", "macenko", "histogram", "wsics"):
        if name in stainstyle.METHODS:
            normalizer = stainstyle.METHODS[name]().fit(target)
            columns.append(normalizer.transform(source))
            names.append(name)
    grid = np.concatenate([np.concatenate(list(column), axis=0) for column in columns], axis=1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "quickstart.png"
    Image.fromarray(grid).save(path)
    print(f"columns: {', '.join(names)}\nwrote {path}")
    return path


if __name__ == "__main__":
    main()
