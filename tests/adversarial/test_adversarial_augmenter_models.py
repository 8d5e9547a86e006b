"""Hostile saved augmenters against ``stainstyle.load`` and ``stainstyle augment``.

Entry points attacked: loading a saved :class:`~stainstyle.augment.RandStainNA`,
:class:`~stainstyle.augment.StainAugmenter` or :class:`~stainstyle.augment.HEDJitter` (corrupt
and truncated ``model.safetensors``; configurations forged with wrong types, shapes, ranges and
names, their checksum recomputed as a deliberate forger would), the ``augment`` command with
such a folder, and concurrent use of one output or model folder (two ``augment`` runs writing
the same folder; saves racing loads). Every failure is one ``ValueError`` naming the file, or on
the command line one line and exit code 1, never a traceback.
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _support import he_tiles, read_model_file, read_rgb, skip_or_fail, write_model_file
from PIL import Image

from stainstyle.augment import HEDJitter, RandStainNA, StainAugmenter
from stainstyle.cli import EXIT_FAILED, EXIT_OK, main
from stainstyle.cli.augment import image_stream
from stainstyle.hub import CONFIG_NAME, WEIGHTS_NAME, load

TILES = he_tiles(4, 48, seed=2)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """One saved folder per augmenter."""
    root = tmp_path_factory.mktemp("augmenters")
    models = {
        "randstainna": RandStainNA(random_state=1).fit(TILES),
        "stain": StainAugmenter("macenko", random_state=1).fit(TILES),
        "hed": HEDJitter(sigma=0.1, random_state=1),
    }
    for name, model in models.items():
        model.save_pretrained(root / name)
    return {name: root / name for name in models}


def copy_of(saved: dict[str, Path], name: str, tmp_path: Path) -> Path:
    folder = tmp_path / name
    shutil.copytree(saved[name], folder)
    return folder


# ------------------------------------------------------------------------------ corrupt files
@pytest.mark.parametrize("name", ["randstainna", "stain", "hed"])
@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda data: data[: len(data) // 2], "safetensors"),
        (lambda data: data[:7], "safetensors"),
        (lambda data: b"\x00" * len(data), "safetensors"),
        (lambda data: data[:-8] + bytes(8), ""),  # the last tensor bytes, or the header
    ],
    ids=["half", "seven-bytes", "zeros", "tail"],
)
def test_corrupt_and_truncated_files_are_refused(saved, tmp_path, name, damage, message):
    folder = copy_of(saved, name, tmp_path)
    path = folder / WEIGHTS_NAME
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=str(path).replace("\\", "\\\\")) as error:
        load(folder)
    assert message in str(error.value)


# ------------------------------------------------------------------------------ forged configs
def _scale_negative(config, tensors):
    tensors["scale_"] = -tensors["scale_"]


def _loc_nan(config, tensors):
    tensors["loc_"] = torch.full_like(tensors["loc_"], float("nan"))


def _one_row_fewer(config, tensors):
    for key in ("loc_", "scale_"):
        tensors[key] = tensors[key][:2].contiguous()
        config["arrays"][key]["shape"] = [2, 2, 3]


def _all_rows_one_space(config, tensors):
    config["fitted"]["spaces_"] = {"__tuple__": ["lab"]}


def _spaces_unknown(config, tensors):
    config["fitted"]["spaces_"] = {"__tuple__": ["lab", "rgb", "hed"]}


def _spaces_a_list(config, tensors):
    config["fitted"]["spaces_"] = ["lab", "hsv", "hed"]


def _spaces_param_other(config, tensors):
    config["params"]["spaces"] = "lab"


def _n_tiles(value):
    def forge(config, tensors):
        config["fitted"]["n_tiles_"] = value

    return forge


def _loc_four_dims(config, tensors):
    tensors["loc_"] = tensors["loc_"][None].contiguous()
    config["arrays"]["loc_"]["shape"] = [1, 3, 2, 3]


def _loc_int(config, tensors):
    tensors["loc_"] = tensors["loc_"].to(torch.int64)
    config["arrays"]["loc_"]["dtype"] = "int64"


def _param(name, value):
    def forge(config, tensors):
        config["params"][name] = value

    return forge


def _fitted(name, value):
    def forge(config, tensors):
        config["fitted"][name] = value

    return forge


def _parallel_stains(config, tensors):
    tensors["stain_matrix_"] = torch.tensor(
        [[0.6, 0.6], [0.7, 0.7], [0.3, 0.3]], dtype=torch.float64
    )


def _stains_shape(config, tensors):
    tensors["stain_matrix_"] = torch.ones((2, 3), dtype=torch.float64)
    config["arrays"]["stain_matrix_"]["shape"] = [2, 3]


def _extra_attribute(config, tensors):
    config["fitted"]["alpha_"] = 1.0


def _renamed_class(new):
    def forge(config, tensors):
        config["class"] = new

    return forge


FORGERIES = {
    "randstainna": [
        (_scale_negative, "scale_': expected values >= 0"),
        (_loc_nan, "loc_': expected finite values"),
        (_one_row_fewer, "spaces_ names 3 colour spaces, loc_ has 2 rows"),
        (_all_rows_one_space, "spaces_ names 1 colour spaces, loc_ has 3 rows"),
        (_spaces_unknown, "spaces_': expected distinct names among"),
        (_spaces_a_list, "spaces_': expected a non-empty tuple"),
        (_spaces_param_other, "differs from the spaces fitted"),
        (_n_tiles(-1), "n_tiles_': expected an int in"),
        (_n_tiles("many"), "n_tiles_': expected an int"),
        (_n_tiles(True), "n_tiles_': expected an int"),
        (_loc_four_dims, "loc_': expected shape ('any', 2, 3)"),
        (_loc_int, "loc_': expected a dtype of kind 'f'"),
        (_param("p", 2), "p: expected a probability"),
        (_param("std_hyper", "big"), "std_hyper: expected a number"),
        (_param("distribution", None), "distribution: expected 'normal' or 'laplace'"),
        (_param("random_state", -3), "random_state"),
        (_renamed_class("StainAugmenter"), "do not match those StainAugmenter declares"),
        (_renamed_class("Augmenter"), "unknown normalizer class 'Augmenter'"),
    ],
    "stain": [
        (_parallel_stains, "zero or parallel"),
        (_stains_shape, "stain_matrix_': expected shape (3, 2)"),
        (_fitted("lambda1_", -1.0), "lambda1_': expected a number in [0.0"),
        (_fitted("lambda1_", "0.01"), "lambda1_': expected a number, got str"),
        (_fitted("io_", 0), "io_': expected a number in [1.0"),
        (_fitted("io_", None), "io_': expected a number"),
        (_param("normalizer", "gray"), "normalizer: expected one of"),
        (_param("normalizer", {"class": "MacenkoNormalizer"}), "normalizer: expected a Macenko"),
        (_param("sigma1", [0.1]), "sigma1: expected a number in [0, 1)"),
        (_extra_attribute, "unknown ['alpha_']"),
    ],
    "hed": [
        (_param("sigma", 5), "sigma: expected a number in [0, 1)"),
        (_param("sigma", "huge"), "sigma: expected a number >= 0, 'light' or 'strong'"),
        (_param("io", 0), "io: expected a blank-field intensity"),
        (_param("shift", 1), "unknown ['shift']"),
        (_extra_attribute, "unknown ['alpha_']"),
    ],
}
CASES = [(name, forge, message) for name, cases in FORGERIES.items() for forge, message in cases]


@pytest.mark.parametrize(
    "name, forge, message", CASES, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(CASES)]
)
def test_forged_configurations_are_refused_naming_the_problem(
    saved, tmp_path, name, forge, message
):
    folder = copy_of(saved, name, tmp_path)
    config, tensors = read_model_file(folder)
    config, tensors = copy.deepcopy(config), dict(tensors)
    forge(config, tensors)
    write_model_file(folder, config, tensors)
    with pytest.raises((ValueError, TypeError)) as error:
        load(folder)
    assert str(folder / WEIGHTS_NAME) in str(error.value)
    assert message in str(error.value)


def test_a_forged_model_is_one_line_and_exit_1_on_the_command_line(saved, tmp_path, capsys):
    folder = copy_of(saved, "randstainna", tmp_path)
    config, tensors = read_model_file(folder)
    _one_row_fewer(config, tensors)
    write_model_file(folder, config, tensors)
    tile = tmp_path / "tile.png"
    Image.fromarray(TILES[0]).save(tile)
    out = tmp_path / "out"
    assert main(["augment", "--model", str(folder), str(tile), "--out", str(out)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "Traceback" not in err and "loc_ has 2 rows" in err
    assert all(line.startswith("stainstyle: ") for line in err.splitlines())
    errors = [line for line in err.splitlines() if " error: " in line]
    assert len(errors) == 1 and "loc_ has 2 rows" in errors[0]
    assert not out.exists() or not any(out.iterdir())


def test_saving_a_state_that_would_not_load_is_refused(tmp_path):
    augmenter = RandStainNA().fit(TILES)
    augmenter.loc_ = augmenter.loc_[:2]
    with pytest.raises(ValueError, match="RandStainNA: cannot be saved: fitted attributes"):
        augmenter.save_pretrained(tmp_path)
    stains = StainAugmenter().fit(TILES)
    stains.stain_matrix_ = np.full((3, 2), np.nan)
    with pytest.raises(ValueError, match="stain_matrix_: cannot be saved: expected finite"):
        stains.save_pretrained(tmp_path)
    assert not (tmp_path / WEIGHTS_NAME).exists()


# ------------------------------------------------------------------------------ concurrency
def _augment(model: Path, seed: int, inputs: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "stainstyle", "augment", "--model", str(model), "--seed",
         str(seed), "-q", str(inputs), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def test_two_runs_writing_one_output_folder_leave_whole_images(saved, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    tiles = he_tiles(12, 96, seed=9)
    for i, tile in enumerate(tiles):
        Image.fromarray(tile).save(inputs / f"t{i:02d}.png")
    augmenter = load(saved["randstainna"])
    expected = {
        seed: {
            f"t{i:02d}.png": augmenter(tile, random_state=image_stream(seed, Path(f"t{i:02d}.png")))
            for i, tile in enumerate(tiles)
        }
        for seed in (1, 2)
    }
    out = tmp_path / "out"
    runs = [_augment(saved["randstainna"], seed, inputs, out) for seed in (1, 2)]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == EXIT_OK, err
        assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == sorted(expected[1])  # no temporaries
    for name in expected[1]:
        written = read_rgb(out / name)
        assert any(np.array_equal(written, expected[seed][name]) for seed in (1, 2)), name


def test_loads_during_concurrent_saves_of_augmenters_never_fail(tmp_path):
    if not hasattr(os, "fork") or sys.platform == "darwin":
        skip_or_fail("needs os.fork (Linux)")
    models = [RandStainNA(random_state=0).fit(TILES[:2]), RandStainNA(random_state=0).fit(TILES)]
    assert not np.allclose(models[0].loc_, models[1].loc_)
    folder = tmp_path / "model"
    models[0].save_pretrained(folder)
    savers = []
    for model in models:
        pid = os.fork()
        if pid == 0:  # child: never returns into the test runner
            try:
                while True:
                    model.save_pretrained(folder)
            finally:
                os._exit(0)
        savers.append(pid)
    failures, seen, loads = [], set(), 0
    try:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            try:
                loaded = load(folder)
                matches = [i for i, m in enumerate(models) if np.array_equal(loaded.loc_, m.loc_)]
                assert len(matches) == 1 and np.array_equal(
                    loaded.scale_, models[matches[0]].scale_
                )
                seen.add(matches[0])
            except Exception as err:  # noqa: BLE001 - every failure is counted and shown
                failures.append(f"{type(err).__name__}: {err}")
            loads += 1
    finally:
        for pid in savers:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert not failures, f"{len(failures)} of {loads} loads failed, e.g. {failures[:3]}"
    assert loads > 10
    assert (folder / CONFIG_NAME).is_file()
