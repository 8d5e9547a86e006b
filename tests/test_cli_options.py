"""Command-line options and messages: what each command offers, and how a mistake is reported.

In-process runs of :func:`stainstyle.cli.main` on synthetic tiles; nothing here reaches the
network (the Hub is put offline, so a model name wrongly tried there fails differently).
"""

from __future__ import annotations

import huggingface_hub
import pytest
from _support import he_tiles
from PIL import Image

from stainstyle.cli import EXIT_USAGE, build_parser, main
from stainstyle.cli.benchmark import BENCHMARKS_DIR, benchmark_names


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty Hub cache in offline mode, and ``tmp_path`` as the working folder."""
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    Image.fromarray(he_tiles(1, 32, seed=0)[0]).save(tmp_path / "tile.png")
    return tmp_path


@pytest.mark.parametrize(
    "model",
    [
        "models/macenko-lab-b",  # typo under an existing folder
        "macenko-lab-a/",
        "macenko-lab-a",  # no namespace: not a Hub id
        "./macenko-lab-a",
        "../macenko-lab-a",
        "~/models/macenko",
        "/no/such/model",
        "a/b/c",
        "models\\macenko",
    ],
)
def test_mistyped_model_folder_is_not_tried_on_the_hub(model, offline, capsys):
    argv = ["normalize", "--model", model, "tile.png", "--out", "out"]
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"no such model folder: {model}" in err
    assert "Hub" in err and "cannot be fetched" not in err


def test_hub_repository_id_is_still_looked_up_on_the_hub(offline, capsys):
    assert main(["normalize", "--model", "org/absent", "tile.png", "--out", "out"]) != 0
    err = capsys.readouterr().err
    assert "'org/absent' (revision main): cannot be fetched from the Hugging Face Hub" in err
    assert "no such model folder" not in err


def test_unknown_benchmark_lists_the_benchmarks(capsys):
    assert main(["benchmark", "nosuch"]) == EXIT_USAGE
    err = capsys.readouterr().err
    names = benchmark_names()
    assert {"table1", "fidelity", "augmentation"} <= set(names)
    assert "_common" not in names
    assert f"benchmarks: {', '.join(names)}" in err
    assert "source checkout" not in err


def test_benchmark_without_a_checkout_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("stainstyle.cli.benchmark.BENCHMARKS_DIR", tmp_path / "benchmarks")
    assert main(["benchmark", "table1"]) == EXIT_USAGE
    assert "install stainstyle from a source checkout" in capsys.readouterr().err
    assert BENCHMARKS_DIR.is_dir()


@pytest.mark.parametrize(
    "argv, option",
    [
        (["normalize", "--method", "reinhard", "--target", "t", "--training-data", "x"],
         "--training-data"),  # normalize saves no model card
        (["fit", "--method", "reinhard", "--target", "t", "--device", "cuda"], "--device"),
    ],
)  # fmt: skip
def test_options_without_effect_are_refused(argv, option, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--out", "o", *(["x.png"] if argv[0] == "normalize" else [])])
    assert exit_.value.code == EXIT_USAGE
    assert f"unrecognized arguments: {option}" in capsys.readouterr().err


def _options(command: str) -> set[str]:
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    return {s for a in subparsers.choices[command]._actions for s in a.option_strings}


def test_each_command_offers_the_options_that_apply_to_it():
    assert "--training-data" in _options("fit") and "--training-data" in _options("train-sst")
    assert "--training-data" not in _options("normalize")
    assert "--training-data" not in _options("augment")  # saves no model either
    assert "--device" not in _options("fit")  # classic methods and augmenters: numpy
    assert "--device" not in _options("augment")
    for command in ("normalize", "train-sst", "normalize-slides"):
        assert "--device" in _options(command)
