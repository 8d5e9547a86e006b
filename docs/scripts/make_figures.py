"""Generate every picture of the documentation from the built-in synthetic data.

Writes into ``docs/images/`` (or ``--out``):

- ``synthetic_tiles.png``: the same synthetic tissue in every built-in lab style
  (:mod:`synthetic_tiles`, the generator's own figure);
- ``method_<name>.png`` for each classic method (``reinhard``, ``macenko``, ``histogram``,
  ``wsics``, ``gray``): target-lab examples, source-lab tiles, the same tiles after the method
  (fitted on the target examples' lab), and the ground truth (the same tissue rendered in the
  target lab), one tile per row;
- ``background_tiles.png``: a mostly-background source tile through each method, with and
  without a tissue mask where the method has one (the failure case the method pages describe).

Target lab ``radboud`` (pinkish), source lab ``utrecht`` (purple). No picture of the neural
stain-style transfer is made here: a generator trained in a few seconds would misrepresent the
method (see ``docs/sst.md``).

Run: ``python docs/scripts/make_figures.py [--out DIR]``; takes well under a minute on a laptop.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from stainstyle import BackgroundTileWarning
from stainstyle.data import make_tiles, render_pair
from stainstyle.methods import (
    GrayNormalizer,
    HistogramSpecification,
    MacenkoNormalizer,
    ReinhardNormalizer,
    VahadaneNormalizer,
    WSICSNormalizer,
)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import synthetic_tiles  # noqa: E402  (the generator's figure, in this folder)

TARGET_STYLE, SOURCE_STYLE = "radboud", "utrecht"
TILE = 128
GAP = 4
HEADER = 18
#: Estimators pictured on the method pages, by the page's short name. WSICS gets the pixel size
#: of the synthetic tiles (0.5 um/px), as in ``benchmarks/fidelity.py``.
METHOD_FIGURES = {
    "reinhard": ReinhardNormalizer,
    "macenko": MacenkoNormalizer,
    "vahadane": VahadaneNormalizer,
    "histogram": HistogramSpecification,
    "wsics": lambda: WSICSNormalizer(microns_per_pixel=0.5),
    "gray": GrayNormalizer,
}


def labelled_grid(columns: list[np.ndarray], titles: list[str]) -> Image.Image:
    """Tiles side by side under column titles.

    Parameters
    ----------
    columns : list of ndarray of shape (R, TILE, TILE, 3), dtype uint8
        One stack of tiles per column, all with the same number of rows R.
    titles : list of str
        Column titles, one per column.

    Returns
    -------
    PIL.Image.Image
        RGB image of ``len(columns)`` columns and R rows with a title bar.
    """
    rows = len(columns[0])
    canvas = Image.new(
        "RGB", (len(columns) * (TILE + GAP) - GAP, HEADER + rows * (TILE + GAP) - GAP), "white"
    )
    draw = ImageDraw.Draw(canvas)
    for col, (tiles, title) in enumerate(zip(columns, titles, strict=True)):
        x = col * (TILE + GAP)
        draw.text((x + 2, 3), title, fill="black")
        for row, tile in enumerate(tiles):
            canvas.paste(Image.fromarray(tile), (x, HEADER + row * (TILE + GAP)))
    return canvas


def method_figures(out: Path, n_rows: int = 3) -> list[Path]:
    """Before/after pictures, one per classic method.

    Parameters
    ----------
    out : Path
        Folder to write ``method_<name>.png`` into.
    n_rows : int, default=3
        Source tiles shown.

    Returns
    -------
    list of Path
        The files written.
    """
    target, _ = make_tiles(32, TARGET_STYLE, size=TILE, seed=0)
    truth, source, _ = render_pair(n_rows, TARGET_STYLE, SOURCE_STYLE, size=TILE, seed=1)
    written = []
    for name, make in METHOD_FIGURES.items():
        normalized = make().fit(target).transform(source)
        image = labelled_grid(
            [target[:n_rows], source, normalized, truth],
            ["target lab", "source lab", f"after {name}", "truth (target lab)"],
        )
        path = out / f"method_{name}.png"
        image.save(path)
        written.append(path)
    return written


def background_figure(out: Path) -> Path:
    """A mostly-background source tile through each method.

    The tile is the lower-right corner of a source tile on a white slide background (a fifth of
    the area is tissue): above the passthrough threshold, so every method normalizes it.

    Parameters
    ----------
    out : Path
        Folder to write ``background_tiles.png`` into.

    Returns
    -------
    Path
        The file written.
    """
    target, _ = make_tiles(32, TARGET_STYLE, size=TILE, seed=0)
    source, _ = make_tiles(1, SOURCE_STYLE, size=TILE, seed=2)
    sparse = np.full_like(source, 235)
    corner = slice(TILE - TILE * 9 // 20, TILE)
    sparse[:, corner, corner] = source[:, corner, corner]
    variants = {
        "Reinhard": ReinhardNormalizer(),
        "Macenko": MacenkoNormalizer(),
        "HS mask=none": HistogramSpecification(),
        "HS tissue_only": HistogramSpecification(tissue_only=True),
    }
    columns, titles = [sparse], ["source tile"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BackgroundTileWarning)
        for title, normalizer in variants.items():
            columns.append(normalizer.fit(target).transform(sparse))
            titles.append(title)
    path = out / "background_tiles.png"
    labelled_grid(columns, titles).save(path)
    return path


def main(argv: list[str] | None = None) -> list[Path]:
    """Write every documentation picture.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    list of Path
        The files written.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE.parent / "images")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    written = [args.out / "synthetic_tiles.png"]
    synthetic_tiles.grid().save(written[0])
    written += method_figures(args.out)
    written.append(background_figure(args.out))
    for path in written:
        print(f"wrote {path}")
    return written


if __name__ == "__main__":
    main()
