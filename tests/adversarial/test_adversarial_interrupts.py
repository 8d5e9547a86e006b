"""Interrupting the command line: Ctrl-C, SIGTERM and SIGKILL in the middle of a run.

Entry point attacked: ``python -m stainstyle.cli normalize`` in a subprocess over a few hundred
small tiles (a few seconds of work), stopped by a signal once its first outputs are written.
Checked: one line on stderr and exit 130 (SIGINT) or 143 (SIGTERM), no traceback, no
temporary files, complete outputs; after SIGKILL, the next run removes the temporaries the
killed one left and completes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _support import he_tiles, interruptible
from PIL import Image

from stainstyle._atomic import TEMPORARY_SUFFIX

N_TILES = 300
#: The documented exit codes: 128 + the signal number, as shells report a signal.
EXIT_OK, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 130, 143


@pytest.fixture(scope="module")
def tiles(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("interrupts")
    inputs, target = base / "inputs", base / "target"
    (inputs / "part").mkdir(parents=True)
    target.mkdir()
    for i, tile in enumerate(he_tiles(N_TILES, 64, seed=4)):
        folder = inputs / "part" if i % 2 else inputs
        Image.fromarray(tile).save(folder / f"t{i:03d}.png")
    Image.fromarray(he_tiles(1, 64, seed=5)[0]).save(target / "target.png")
    return {"base": base, "inputs": inputs, "target": target}


def start(tiles: dict[str, Path], out: Path) -> subprocess.Popen:
    """A normalize run, one tile per batch (so it writes steadily)."""
    argv = ["normalize", "--method", "macenko", "--target", tiles["target"], tiles["inputs"],
            "--out", out, "--batch-size", "1"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "stainstyle.cli", *map(str, argv)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        preexec_fn=interruptible,
    )


def outputs(out: Path) -> list[Path]:
    """Output files, not counting what lies in (hidden) temporary folders."""
    if not out.is_dir():
        return []
    hidden = lambda p: any(part.startswith(".") for part in p.relative_to(out).parts)  # noqa: E731
    return [p for p in out.rglob("*") if p.is_file() and not hidden(p)]


def wait_for_outputs(process: subprocess.Popen, out: Path, count: int = 5) -> None:
    deadline = time.monotonic() + 240
    while len(outputs(out)) < count:
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "no outputs after 240 s"
        time.sleep(0.02)


def temporaries(out: Path) -> list[Path]:
    """Temporary folders and files (hidden entries) anywhere below ``out``."""
    return [p for p in out.rglob("*") if p.name.endswith(TEMPORARY_SUFFIX) or p.name[0] == "."]


@pytest.mark.parametrize(
    "signum, code, word",
    [
        (signal.SIGINT, EXIT_INTERRUPTED, "interrupted"),
        (signal.SIGTERM, EXIT_TERMINATED, "terminated"),
    ],
)
def test_a_signal_stops_the_run_with_one_line_and_keeps_complete_outputs(
    tiles, tmp_path, signum, code, word
):
    out = tmp_path / "out"
    process = start(tiles, out)
    wait_for_outputs(process, out)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.splitlines()[-1] == (
        f"stainstyle: normalize: {word}; outputs written so far are kept"
    )
    written = outputs(out)
    assert temporaries(out) == []
    assert 0 < len(written) < N_TILES, "the run ended before the signal"
    for path in written:  # each output complete
        with Image.open(path) as image:
            assert np.asarray(image).shape == (64, 64, 3)


def test_after_sigkill_the_next_run_removes_stale_temporaries_and_completes(tiles, tmp_path):
    out = tmp_path / "out"
    process = start(tiles, out)
    wait_for_outputs(process, out)
    process.kill()
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    # Where the kill lands is chance: also leave what a kill during a write leaves behind.
    (out / "part").mkdir(exist_ok=True)
    planted = [
        out / f".t000.png.{process.pid}-0badf00d{TEMPORARY_SUFFIX}",
        out / "part" / f".t001.png.{process.pid}-deadbeef{TEMPORARY_SUFFIX}",
    ]
    for path in planted:  # a writer's private folder, holding a partial file
        path.mkdir()
        (path / path.name.split(".")[1]).write_bytes(b"half a PNG")
    assert len(temporaries(out)) >= 2

    rerun = start(tiles, out)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == EXIT_OK, err
    assert "removed" in err and "left in" in err and "Traceback" not in err
    assert temporaries(out) == []
    assert len(outputs(out)) == N_TILES
