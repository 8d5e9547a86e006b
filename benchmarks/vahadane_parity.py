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
(``reference/torchstain/target.png``). staintools learns for one second (SPAMS ``iter=-1``),
so it gives other stains from run to run and with the load of the machine, and truncates its
output (``astype(uint8)``). It is therefore run ``--repeats`` times (5): each row gives the
median and the largest difference to those runs, and the same for staintools against its own
first run (its run-to-run spread, the noise floor of any comparison with it). stainstyle is
deterministic for its ``random_state``.

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

#: staintools' Vahadane with SPAMS run to convergence: batch dictionary learning (``batch=True``,
#: ``iter`` passes over all tissue pixels) instead of one second of online updates.
CONVERGED_CODE = PEER_CODE.replace(
    "folder, n = sys.argv[1], int(sys.argv[2])\n",
    "folder, n, passes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])\n"
    "import spams\n"
    "online = spams.trainDL\n"
    "spams.trainDL = lambda **kw: online(**kw, batch=True, iter=passes)\n",
)


def angles(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Angle in degrees between the columns of two (3, 2) stain matrices."""
    cosines = np.sum(a * b, axis=0) / (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0))
    return np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0))).tolist()


def run_peer(
    peer_python: str, images: list[np.ndarray], folder: Path, converged_passes: int = 0
) -> None:
    """Stain matrices and normalizations of ``images`` by staintools, into ``folder``.

    With ``converged_passes``, SPAMS learns by that many batch passes (:data:`CONVERGED_CODE`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        np.save(folder / f"image{i}.npy", image)
    command = [peer_python, "-c", PEER_CODE, str(folder), str(len(images))]
    if converged_passes:
        command = [peer_python, "-c", CONVERGED_CODE, str(folder), str(len(images))]
        command.append(str(converged_passes))
    subprocess.run(command, check=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def peer_runs(
    peer_python: str, images: list[np.ndarray], repeats: int, converged_passes: int = 0
) -> list[dict]:
    """``repeats`` runs of staintools: each a dict of ``stains`` and ``normalized`` lists."""
    runs = []
    with tempfile.TemporaryDirectory() as temporary:
        for repeat in range(repeats):
            folder = Path(temporary) / str(repeat)
            run_peer(peer_python, images, folder, converged_passes)
            runs.append(
                {
                    "stains": [np.load(folder / f"stains{i}.npy") for i in range(len(images))],
                    "normalized": [None]
                    + [np.load(folder / f"normalized{i}.npy") for i in range(1, len(images))],
                }
            )
    return runs


def _spread(values: list[float]) -> dict:
    return {"median": float(np.median(values)), "max": float(np.max(values))}


def _gray_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def parity(peer_python: str, repeats: int, converged_passes: int = 0) -> list[dict]:
    """One row per image: stain angles and gray-level differences, to staintools and in it.

    For every image: the angle of each stain vector between stainstyle's and each staintools
    run, and between each later staintools run and its first; for every source image, the
    same for the mean absolute gray difference of the normalizations onto the target. Each
    as the median and the largest over the runs. With ``converged_passes``, also the angles
    and gray differences of stainstyle and of each staintools run to one staintools run whose
    SPAMS learning ran that many batch passes (converged).
    """
    names = [TARGET, *SOURCES]
    images = [read_image(data_root().joinpath(*name)) for name in names]
    runs = peer_runs(peer_python, images, repeats)
    converged = peer_runs(peer_python, images, 1, converged_passes)[0] if converged_passes else None
    normalizer = VahadaneNormalizer().fit(images[0])
    rows = []
    for i, (name, image) in enumerate(zip(names, images, strict=True)):
        ours = VahadaneNormalizer().fit(image).stain_matrix_
        to_ours = [angles(ours, run["stains"][i]) for run in runs]
        in_peer = [angles(runs[0]["stains"][i], run["stains"][i]) for run in runs[1:]]
        row = {
            "image": "/".join(name),
            "h_angle": _spread([a[0] for a in to_ours]),
            "e_angle": _spread([a[1] for a in to_ours]),
            "peer_h_angle": _spread([a[0] for a in in_peer]) if in_peer else None,
            "peer_e_angle": _spread([a[1] for a in in_peer]) if in_peer else None,
        }
        if i:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mine = normalizer.transform(image)
            first = runs[0]["normalized"][i]
            row["gray_difference"] = _spread(
                [_gray_difference(mine, run["normalized"][i]) for run in runs]
            )
            row["peer_gray_difference"] = (
                _spread([_gray_difference(first, run["normalized"][i]) for run in runs[1:]])
                if len(runs) > 1
                else None
            )
        if converged is not None:
            _add_converged(row, i, ours, mine if i else None, runs, converged)
        rows.append(row)
    return rows


def _add_converged(row: dict, i: int, ours, mine, runs: list[dict], converged: dict) -> None:
    """Angles and gray differences to the converged staintools run, of ours and of each run."""
    row["converged_angles"] = angles(ours, converged["stains"][i])
    row["peer_converged_angles"] = _spread(
        [max(angles(run["stains"][i], converged["stains"][i])) for run in runs]
    )
    if mine is not None:
        reference = converged["normalized"][i]
        row["converged_gray"] = _gray_difference(mine, reference)
        row["peer_converged_gray"] = _spread(
            [_gray_difference(run["normalized"][i], reference) for run in runs]
        )


def _cell(spread: dict | None) -> str:
    return "" if spread is None else f"{spread['median']:.2f} ({spread['max']:.2f})"


def render(rows: list[dict], repeats: int) -> str:
    cells = [
        [
            row["image"],
            _cell(row["h_angle"]),
            _cell(row["e_angle"]),
            _cell(row.get("gray_difference")),
            _cell(row["peer_h_angle"]),
            _cell(row["peer_e_angle"]),
            _cell(row.get("peer_gray_difference")),
        ]
        for row in rows
    ]
    headers = [
        "image",
        "H angle (deg)",
        "E angle (deg)",
        "gray difference",
        "staintools vs itself: H",
        "E",
        "gray",
    ]
    lines = markdown_table(headers, cells)
    if any("converged_angles" in row for row in rows):
        lines += ["", *_converged_table(rows)]
    lines.append(
        f"\nMedian (largest) over {repeats} staintools runs: stainstyle against each run, and "
        "each later staintools run against its first. Gray difference: mean absolute "
        f"difference of the normalizations onto {'/'.join(TARGET)}, 0-255."
    )
    return "\n".join(lines)


def _converged_table(rows: list[dict]) -> list[str]:
    cells = [
        [
            row["image"],
            " / ".join(f"{a:.2f}" for a in row["converged_angles"]),
            f"{row['converged_gray']:.2f}" if "converged_gray" in row else "",
            _cell(row["peer_converged_angles"]),
            _cell(row.get("peer_converged_gray")),
        ]
        for row in rows
    ]
    headers = [
        "image",
        "stainstyle to converged: H / E angle",
        "gray",
        "staintools (1 s) to converged: largest angle",
        "gray",
    ]
    return markdown_table(headers, cells)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-python", default="/tmp/peers/bin/python")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    parser.add_argument("--repeats", type=int, default=5, help="staintools runs")
    parser.add_argument(
        "--converged-passes",
        type=int,
        default=0,
        help="also compare with staintools whose SPAMS runs this many batch passes (e.g. 100; "
        "minutes per image); 0: off",
    )
    args = parser.parse_args(argv)
    configure_logging("vahadane_parity")
    rows = parity(args.peer_python, args.repeats, args.converged_passes)
    write_json(args.out / "vahadane_parity.json", {"repeats": args.repeats, "rows": rows})
    table = render(rows, args.repeats)
    write_text(args.out / "vahadane_parity.md", table + "\n")
    print(table)
    return rows


if __name__ == "__main__":
    main()
