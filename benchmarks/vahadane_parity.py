"""Parity of stainstyle's Vahadane with staintools' (SPAMS), run in a separate environment.

staintools 2.1.2 imports SPAMS at import time and pulls ``opencv-python``, which clashes with
the ``opencv-python-headless`` stainstyle uses, so it lives in its own virtual environment:

    python3 -m venv /tmp/peers
    /tmp/peers/bin/pip install numpy scikit-learn matplotlib opencv-python-headless
    /tmp/peers/bin/pip install --no-deps staintools spams-bin

This script runs staintools there (``--peer-python``), exchanging images and results through
``.npy`` files, and stainstyle here, with default parameters on both sides. For each image it
prints the angle between the two stain matrices, per stain vector; for each source image, the
mean absolute gray-level difference between the two normalizations onto the target
(``reference/torchstain/target.png``). staintools learns for one second (SPAMS ``iter=-1``)
and truncates its output (``astype(uint8)``); the numbers vary a little between runs.

    python benchmarks/vahadane_parity.py --peer-python /tmp/peers/bin/python --out results
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
from _common import ROOT, configure_logging, data_root, markdown_table, write_json, write_text

from stainstyle import VahadaneNormalizer
from stainstyle.data.images import read_image

#: The target, then the images whose stains and normalizations are compared.
TARGET = ("reference", "torchstain", "target.png")
SOURCES = (
    ("reference", "packaged", "tiatoolbox_target_image.png"),
    ("camelyon17_tiles", "center_0", "15018.png"),
    ("camelyon17_tiles", "center_2", "14011.png"),
    ("camelyon17_tiles", "center_4", "11631.png"),
)

#: Run by the peer environment's Python: stain matrices and normalizations by staintools.
PEER_CODE = """
import sys, numpy as np, staintools
from staintools.stain_extraction.vahadane_stain_extractor import VahadaneStainExtractor
folder, n = sys.argv[1], int(sys.argv[2])
images = [np.load(f"{folder}/image{i}.npy") for i in range(n)]
for i, image in enumerate(images):
    np.save(f"{folder}/stains{i}.npy", VahadaneStainExtractor.get_stain_matrix(image.copy()).T)
normalizer = staintools.StainNormalizer(method="vahadane")
normalizer.fit(images[0].copy())
for i, image in enumerate(images[1:], 1):
    np.save(f"{folder}/normalized{i}.npy", normalizer.transform(image.copy()))
"""


def angles(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Angle in degrees between the columns of two (3, 2) stain matrices."""
    cosines = np.sum(a * b, axis=0) / (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0))
    return np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0))).tolist()


def run_peer(peer_python: str, images: list[np.ndarray], folder: Path) -> None:
    """Stain matrices and normalizations of ``images`` by staintools, into ``folder``."""
    for i, image in enumerate(images):
        np.save(folder / f"image{i}.npy", image)
    command = [peer_python, "-c", PEER_CODE, str(folder), str(len(images))]
    subprocess.run(command, check=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def parity(peer_python: str) -> list[dict]:
    """One row per image: stain angles, and the gray-level difference of the normalizations."""
    names = [TARGET, *SOURCES]
    images = [read_image(data_root().joinpath(*name)) for name in names]
    with tempfile.TemporaryDirectory() as folder:
        run_peer(peer_python, images, Path(folder))
        theirs = [np.load(Path(folder) / f"stains{i}.npy") for i in range(len(images))]
        normalized = {i: np.load(Path(folder) / f"normalized{i}.npy") for i in range(1, len(names))}
    normalizer = VahadaneNormalizer().fit(images[0])
    rows = []
    for i, (name, image) in enumerate(zip(names, images, strict=True)):
        ours = VahadaneNormalizer().fit(image).stain_matrix_
        row = {"image": "/".join(name), "angles": angles(ours, theirs[i])}
        if i:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mine = normalizer.transform(image).astype(np.int16)
            row["mean_abs_gray_difference"] = float(np.abs(mine - normalized[i]).mean())
        rows.append(row)
    return rows


def render(rows: list[dict]) -> str:
    cells = [
        [
            row["image"],
            f"{row['angles'][0]:.2f}",
            f"{row['angles'][1]:.2f}",
            f"{row['mean_abs_gray_difference']:.2f}" if "mean_abs_gray_difference" in row else "",
        ]
        for row in rows
    ]
    headers = ["image", "H angle (deg)", "E angle (deg)", "mean abs gray difference (normalized)"]
    lines = markdown_table(headers, cells)
    lines.append(f"\nTarget of the normalizations: {'/'.join(TARGET)}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-python", default="/tmp/peers/bin/python")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    configure_logging("vahadane_parity")
    rows = parity(args.peer_python)
    write_json(args.out / "vahadane_parity.json", {"rows": rows})
    table = render(rows)
    write_text(args.out / "vahadane_parity.md", table + "\n")
    print(table)
    return rows


if __name__ == "__main__":
    main()
