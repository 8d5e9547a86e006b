"""Figure of the synthetic generator: the same tissue in every built-in lab style.

Writes ``docs/images/synthetic_tiles.png``: one column per built-in style (radboud, utrecht,
pale, dense), rendered from the same tissue; the upper rows are normal tiles, the lower rows
tumour tiles. Made with ``make_tissue`` + ``render``, so every column shows identical tissue.

Run: ``python docs/scripts/synthetic_tiles.py [--out PATH]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from stainstyle.data import BUILTIN_STYLES, make_tissue, render

ROOT = Path(__file__).resolve().parents[2]


def grid(rows_per_class: int = 3, size: int = 128, seed: int = 0, gap: int = 4) -> Image.Image:
    """The figure as a Pillow image (labels drawn above each column)."""
    tissue = make_tissue(4 * rows_per_class, size=size, seed=seed)
    picks = np.concatenate([np.flatnonzero(tissue.labels == c)[:rows_per_class] for c in (0, 1)])
    styles = list(BUILTIN_STYLES)
    rendered = {name: render(tissue, name, seed=seed) for name in styles}
    header = 18
    width = len(styles) * (size + gap) + 70
    height = header + len(picks) * (size + gap)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for col, name in enumerate(styles):
        x = 70 + col * (size + gap)
        draw.text((x + 4, 3), name, fill="black")
        for row, index in enumerate(picks):
            canvas.paste(Image.fromarray(rendered[name][index]), (x, header + row * (size + gap)))
    for row, index in enumerate(picks):
        label = "tumour" if tissue.labels[index] else "normal"
        draw.text((4, header + row * (size + gap) + size // 2 - 6), label, fill="black")
    return canvas


def main() -> None:
    """Write the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs" / "images" / "synthetic_tiles.png"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid(seed=args.seed).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
