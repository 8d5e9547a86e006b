"""``stainstyle normalize-slides``: exit codes, messages naming the slides, outputs, reruns.

One run goes through a fresh process and its own local cluster, as a user runs it; the others
call :func:`stainstyle.cli.main` in-process with ``--scheduler`` pointing at a cluster of
threads, which starts in a moment.
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
from _support import interruptible, require_module
from _wsi_support import (
    fitted_normalizer,
    temporaries,
    threaded_cluster,
    write_image_slide,
    write_slides,
)

from stainstyle.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, main
from stainstyle.wsi import open_slide

dask = require_module("dask", extra="wsi")


@pytest.fixture(scope="module")
def scheduler():
    with threaded_cluster() as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "reinhard"
    fitted_normalizer("reinhard").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> list[Path]:
    return write_slides(tmp_path_factory.mktemp("slides") / "slides", 2, size=(1024, 768))


def normalize_slides(capsys, *args) -> tuple[int, str]:
    """``stainstyle normalize-slides ARGS`` in-process: the exit code and stderr."""
    code = main(["normalize-slides", *map(str, args)])
    return code, capsys.readouterr().err


# ---------------------------------------------------------------------------- a user's run
def test_a_folder_with_a_corrupt_slide_and_a_missing_one_exits_1(tmp_path, model, slides):
    folder = slides[0].parent
    corrupt = tmp_path / "in" / "corrupt.svs"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"")
    missing = tmp_path / "in" / "missing.ndpi"
    out = tmp_path / "out"
    argv = ["normalize-slides", model, folder, corrupt, missing, "--out", out, "--workers", "1"]
    completed = subprocess.run(
        [sys.executable, "-m", "stainstyle", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert completed.returncode == EXIT_FAILED, completed.stderr
    stderr = completed.stderr
    assert f"error: {corrupt}: empty file (0 bytes)" in stderr
    assert f"error: {missing}: file not found" in stderr
    assert "2 file(s) failed" in stderr and "Traceback" not in stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.csv", "manifest.json", "qc.png", "slide-0.tiff", "slide-1.tiff"
    ]  # fmt: skip
    for slide in slides:
        with open_slide(out / f"{slide.stem}.tiff") as normalized:
            assert normalized.dimensions == (1024, 768)


def test_ctrl_c_exits_130_and_a_rerun_finishes(tmp_path, capsys, scheduler, model):
    slides = write_slides(tmp_path / "slides", 6, size=(1024, 768))
    out = tmp_path / "out"
    argv = ["normalize-slides", model, slides[0].parent, "--out", out, "--workers", "2"]
    process = subprocess.Popen(
        [sys.executable, "-m", "stainstyle", *map(str, argv)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=interruptible,
    )
    deadline = time.monotonic() + 120
    while not (out / "manifest.csv").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the command and its workers
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "normalize-slides: interrupted; outputs written so far are kept" in stderr
    assert "Traceback" not in stderr.split("stainstyle: normalize-slides: interrupted")[-1]
    finished = [row.split(",")[1] for row in (out / "manifest.csv").read_text().splitlines()[1:]]
    assert finished and set(finished) == {"written"}
    code, stderr = normalize_slides(capsys, model, *slides, "--out", out, "--scheduler", scheduler)
    assert code == EXIT_OK, stderr
    assert not temporaries(tmp_path)
    for slide in slides:
        with open_slide(out / f"{slide.stem}.tiff") as normalized:
            normalized.read_level(0, (0, 0, 1024, 768))


# ---------------------------------------------------------------------------- in-process
def test_rerun_skips_and_overwrite_redoes(tmp_path, capsys, scheduler, model, slides):
    out = tmp_path / "out"
    common = [model, *slides, "--out", out, "--scheduler", scheduler, "--compression", "zstd"]
    code, stderr = normalize_slides(capsys, *common)
    assert code == EXIT_OK, stderr
    assert stderr.count("] written ") == 2
    written = {p: p.stat().st_mtime_ns for p in out.glob("*.tiff")}
    code, stderr = normalize_slides(capsys, *common)
    assert code == EXIT_OK and stderr.count("] skipped ") == 2
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.tiff")} == written
    code, stderr = normalize_slides(capsys, *common, "--overwrite", "-q")
    assert code == EXIT_OK and stderr == ""
    assert all(p.stat().st_mtime_ns != t for p, t in written.items())


def test_resolution_options_reach_the_outputs(tmp_path, capsys, scheduler, model, slides):
    out = tmp_path / "out"
    args = ["--mpp", "1.0", "--tile-size", "512", "--jpeg-quality", "80", "--sample", "4"]
    code, stderr = normalize_slides(
        capsys, model, slides[0], "--out", out, "--scheduler", scheduler, *args
    )
    assert code == EXIT_OK, stderr
    with open_slide(out / "slide-0.tiff") as slide:
        assert slide.dimensions == (512, 384) and slide.mpp == pytest.approx((1.0, 1.0))
        assert slide.properties["tiffslide.level[0].tile-width"] == "512"


def test_slides_that_fail_are_named_and_the_others_written(
    tmp_path, capsys, scheduler, model, slides
):
    (tmp_path / "in").mkdir()
    glass = write_image_slide(tmp_path / "in" / "glass.tif", np.full((512, 512, 3), 240, np.uint8))
    text = tmp_path / "in" / "notes.svs"
    text.write_text("not a slide\n" * 50)
    out = tmp_path / "out"
    code, stderr = normalize_slides(
        capsys, model, slides[0], glass, text, "--out", out, "--scheduler", scheduler
    )
    assert code == EXIT_FAILED
    assert f"error: {glass}: no tissue" in stderr
    assert f"error: {text}: not a slide this library can read" in stderr
    assert (out / "slide-0.tiff").is_file()
    code, stderr = normalize_slides(
        capsys, model, slides[1], "--out", out, "--scheduler", scheduler, "--mpp", "0.1"
    )
    assert code == EXIT_FAILED
    assert f"error: {slides[1]}: 0.1 um/px requested, finer than level 0" in stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{model}", "{slides}", "--out", "{slides}/out"], "is the input folder"),
        (["{model}", "{slides}", "{twin}", "--out", "{tmp}/o"], "would both be written as"),
        (["{tmp}/no-model", "{slides}", "--out", "{tmp}/o"], "MODEL:"),
        (["{model}", "{fifo}", "--out", "{tmp}/o"], "is a FIFO"),
        (["{model}", "{tmp}/empty", "--out", "{tmp}/o"], "no image files"),
        (["{model}", "{slides}", "--out", "{tmp}/o", "--scheduler", "tcp://127.0.0.1:1"],
         "--scheduler"),
    ],
)  # fmt: skip
def test_usage_errors_exit_2(tmp_path, capsys, model, slides, argv, message):
    twin = tmp_path / "twin" / "slide-0.ndpi"
    twin.parent.mkdir()
    twin.write_bytes(b"x")
    os.mkfifo(tmp_path / "fifo.svs")
    (tmp_path / "empty").mkdir()
    names = {
        "model": model, "slides": slides[0].parent, "twin": twin, "tmp": tmp_path,
        "fifo": tmp_path / "fifo.svs",
    }  # fmt: skip
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        code, stderr = normalize_slides(capsys, *(a.format(**names) for a in argv))
    assert code == EXIT_USAGE, stderr
    assert message in stderr and "Traceback" not in stderr
    assert not (slides[0].parent / "out").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["--workers", "2", "--scheduler", "tcp://x:1"],
        ["--mpp", "-1"],
        ["--mpp", "nan"],
        ["--tile-size", "300"],
        ["--compression", "lzw"],
        ["--sample", "0"],
    ],
)
def test_invalid_option_values_exit_2(tmp_path, model, slides, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(["normalize-slides", str(model), str(slides[0]), "--out", str(tmp_path), *argv])
    assert exit_info.value.code == EXIT_USAGE
