"""Every ``stainstyle`` subcommand over one folder of hostile files (``python -m stainstyle``).

Entry point attacked: the command line (``stainstyle fit``, ``normalize --model``,
``normalize --method``, ``augment --model``, ``augment --method``, ``train-sst`` and
``benchmark``), on a folder holding a few good H&E tiles and every hostile file of
``_support.write_hostile_files``: a header claiming 100000 x 100000 pixels, empty,
truncated, non-image, multi-page, animated, 16-bit, float, 32-bit,
EXIF-rotated, transparent, unicode- and space-named files, a FIFO, a dangling link and
symbolic link loops. Checked: the documented exit codes, each bad file named on stderr, no
Python traceback, the inputs unchanged (SHA-256), outputs with the umask mode.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _support import (
    SPECIAL_ENTRIES,
    UNREADABLE_FILES,
    he_tiles,
    tree_digest,
    write_hostile_files,
)
from PIL import Image

from stainstyle._atomic import TEMPORARY_SUFFIX
from stainstyle.cli import EXIT_FAILED, EXIT_USAGE, main

UMASK = 0o027


def run_stainstyle(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m stainstyle ARGS`` under umask 027, on one thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "stainstyle", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,  # a FIFO opened for reading would block: fail, do not hang
        env=env,
        preexec_fn=lambda: os.umask(UMASK),
    )


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("cli-hostile")
    folder = base / "inputs"
    expected = write_hostile_files(folder)
    for i, tile in enumerate(he_tiles(4, 64, seed=3)):
        Image.fromarray(tile).save(folder / f"good {i}.png")
    readable = sorted(name for name, pixels in expected.items() if pixels is not None)
    readable += [f"good {i}.png" for i in range(4)]
    return {
        "base": base,
        "folder": folder,
        "readable": readable,
        "digest": tree_digest(folder),
    }


def assert_clean_report(result: subprocess.CompletedProcess, folder: Path, code: int) -> None:
    """Exit code as documented, each bad file and skipped entry named, no traceback."""
    err = result.stderr
    assert result.returncode == code, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    for name in UNREADABLE_FILES:
        assert f"error: {folder / name}: " in err, name
    for name in SPECIAL_ENTRIES:
        assert f"skipped {folder / name}: " in err, name
    assert all(line.startswith("stainstyle: ") for line in err.splitlines()), err[-3000:]


def assert_umask_modes(folder: Path) -> None:
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o666 & ~UMASK, path
        assert not path.name.endswith(TEMPORARY_SUFFIX), path


@pytest.fixture(scope="module")
def fitted(hostile) -> tuple[subprocess.CompletedProcess, Path]:
    out = hostile["base"] / "macenko"
    folder = hostile["folder"]
    return run_stainstyle("fit", "--method", "macenko", "--target", folder, "--out", out), out


def test_fit_reports_every_bad_file_and_fits_on_the_rest(hostile, fitted):
    result, out = fitted
    assert_clean_report(result, hostile["folder"], EXIT_FAILED)
    assert f"fitting MacenkoNormalizer on {len(hostile['readable'])} target tiles" in result.stderr
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "README.md"}


@pytest.mark.parametrize("source", ["model", "method"])
def test_normalize_reports_every_bad_file_and_writes_the_rest(hostile, fitted, source):
    folder, out = hostile["folder"], hostile["base"] / f"normalized-{source}"
    if source == "model":
        how = ["--model", fitted[1]]
    else:
        how = ["--method", "reinhard", "--target", folder]
    result = run_stainstyle("normalize", *how, folder, "--out", out)
    assert_clean_report(result, folder, EXIT_FAILED)
    assert sorted(p.name for p in out.iterdir()) == sorted(hostile["readable"])
    assert_umask_modes(out)
    readable = len(hostile["readable"])
    assert f"normalized {readable} of {readable + len(UNREADABLE_FILES)} files" in result.stderr
    assert "16-bit samples scaled to 8 bits" in result.stderr


def test_normalize_on_error_stop_stops_at_the_first_bad_file(hostile, fitted, capsys):
    folder, out = hostile["folder"], hostile["base"] / "stopped"
    argv = ["normalize", "--model", str(fitted[1]), str(folder), "--out", str(out)]
    assert main([*argv, "--on-error", "stop", "--batch-size", "1"]) == EXIT_FAILED
    err = capsys.readouterr().err
    first_bad = sorted(UNREADABLE_FILES)[0]
    assert f"error: {folder / first_bad}: " in err and "Traceback" not in err
    assert err.count("stainstyle: error: ") == 1
    written = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert written == [name for name in sorted(hostile["readable"]) if name < first_bad]


@pytest.mark.parametrize("source", ["model", "method"])
def test_augment_reports_every_bad_file_and_writes_the_rest(hostile, source):
    folder, out = hostile["folder"], hostile["base"] / f"augmented-{source}"
    if source == "model":
        model = hostile["base"] / "randstainna"
        fit = run_stainstyle("fit", "--method", "randstainna", "--target", folder, "--out", model)
        assert_clean_report(fit, folder, EXIT_FAILED)
        how = ["--model", model]
    else:
        how = ["--method", "stain", "--target", folder]
    result = run_stainstyle("augment", *how, "--seed", "0", folder, "--out", out)
    assert_clean_report(result, folder, EXIT_FAILED)
    assert sorted(p.name for p in out.iterdir()) == sorted(hostile["readable"])
    assert_umask_modes(out)
    readable = len(hostile["readable"])
    assert f"augmented {readable} of {readable + len(UNREADABLE_FILES)} files" in result.stderr


def test_train_sst_reports_every_bad_file_and_trains_on_the_rest(hostile):
    folder, out = hostile["folder"], hostile["base"] / "sst"
    tiny = ["--max-epochs", "1", "--param", "width=4", "--param", "depth=2",
            "--param", "crop_size=16", "--param", "lambda_fp=0", "--device", "cpu"]  # fmt: skip
    result = run_stainstyle("train-sst", "--target", folder, "--out", out, *tiny, "-q")
    assert_clean_report(result, folder, EXIT_FAILED)
    assert (out / "model.safetensors").is_file()


def test_benchmark_with_a_bad_name_is_a_usage_error(hostile, capsys):
    assert main(["benchmark", "no_such_benchmark", str(hostile["folder"])]) == EXIT_USAGE
    assert "no benchmark 'no_such_benchmark'" in capsys.readouterr().err


def test_a_fifo_named_on_the_command_line_is_a_usage_error_and_never_opened(hostile, capsys):
    folder = hostile["folder"]
    fifo, out = folder / "fifo.png", hostile["base"] / "unused"
    argv = ["normalize", "--method", "gray", "--target", str(fifo), str(folder), "--out", str(out)]
    assert main(argv) == EXIT_USAGE  # os.stat only: a FIFO opened for reading would block here
    assert f"{fifo}: is a FIFO (named pipe), not an image file or folder" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["normalize", "--method", "gray", "--target", "{folder}", "{dangling}", "--out", "{out}"],
         "dangling symbolic link to 'no such target.png'"),
        (["normalize", "--method", "gray", "--target", "{folder}", "{loop}", "--out", "{out}"],
         "symbolic link loop"),
        (["normalize", "--method", "gray", "--target", "{folder}", "{folder}", "--out", "{file}"],
         "exists and is not a folder"),
        (["fit", "--method", "gray", "--target", "{folder}", "--out", "{file}"],
         "exists and is not a folder"),
        (["train-sst", "--target", "{folder}", "--out", "{file}"], "exists and is not a folder"),
    ],
)  # fmt: skip
def test_bad_paths_are_usage_errors(hostile, args, message, capsys):
    folder = hostile["folder"]
    names = {
        "dangling": folder / "dangling.png",
        "loop": folder / "loop-a.png",
        "folder": folder,
        "file": folder / "good 0.png",
        "out": hostile["base"] / "unused",
    }
    assert main([a.format(**names) for a in args]) == EXIT_USAGE
    assert message in capsys.readouterr().err
    assert not (hostile["base"] / "unused").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--jpeg-quality", "0"], "expected an integer from 1 to 100, got 0"),
        (["--jpeg-quality", "1000"], "expected an integer from 1 to 100, got 1000"),
        (["--max-pixels", "-1"], "expected an integer >= 1, got -1"),
        (["--max-pixels", "many"], "expected an integer >= 1, got 'many'"),
    ],
)
def test_bad_option_values_are_usage_errors(hostile, args, message, capsys):
    folder = str(hostile["folder"])
    argv = ["normalize", "--method", "gray", "--target", folder, folder, "--out", "unused"]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, *args])
    assert exit_.value.code == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_inputs_are_unchanged_by_every_run(hostile):
    # Runs last in this file: every command above read the folder.
    assert tree_digest(hostile["folder"]) == hostile["digest"]
