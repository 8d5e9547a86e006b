"""The same tiles give the same bits whatever the number of threads of the maths libraries.

Each classic method is fitted and applied to real tiles in two fresh processes, one with the
BLAS and OpenMP libraries on one thread and one on four, and the outputs are compared bit for
bit: a normalizer saved on one machine maps a tile as it does on any other.
"""

from __future__ import annotations

import os
import subprocess
import sys

from _support import ROOT, require_data

from stainstyle.registry import CLASSIC_METHODS

SCRIPT = """
import hashlib, sys, warnings
import numpy as np
sys.path.insert(0, "tests")
from _support import read_rgb
import stainstyle
from stainstyle.registry import make_normalizer

root = sys.argv[1]
def tiles(centre, n):
    from pathlib import Path
    paths = sorted((Path(root) / f"center_{centre}").glob("*.png"))[:n]
    return np.stack([read_rgb(p)[:256, :256] for p in paths])

warnings.simplefilter("ignore")
target, source = tiles(0, 6), tiles(2, 6)
for method in sys.argv[2:]:
    model = make_normalizer(method).fit(target)
    out = model.transform(source)
    print(method, hashlib.sha256(out.tobytes()).hexdigest())
"""


def digests(threads: int) -> dict[str, str]:
    """Each classic method's output digest, computed in a fresh process on ``threads`` threads."""
    root = require_data("camelyon17_tiles")
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    env = {**os.environ, **dict.fromkeys(names, str(threads))}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(root), *CLASSIC_METHODS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(line.split() for line in done.stdout.splitlines())


def test_outputs_do_not_depend_on_the_thread_count():
    one, four = digests(1), digests(4)
    assert set(one) == set(CLASSIC_METHODS)
    differ = [method for method in CLASSIC_METHODS if one[method] != four[method]]
    assert differ == [], f"outputs differ between 1 and 4 threads for {differ}"
