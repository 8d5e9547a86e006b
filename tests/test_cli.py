"""The ``stainstyle`` command line, run as a subprocess on real tiles and in-process for errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from _support import read_rgb, require_data, skip_or_fail
from PIL import Image

from stainstyle.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main, read_labels
from stainstyle.hub import load


def run_cli(*args: str | Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m stainstyle.cli ARGS`` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "stainstyle.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def tiles(tmp_path_factory) -> dict[str, Path]:
    """Real CAMELYON17 tiles copied at test time: a target folder and an input folder.

    The input folder holds three PNG tiles (one in a subfolder), a JPEG, a white tile (too
    little tissue) and a corrupt file.
    """
    root = require_data("camelyon17_tiles")
    base = tmp_path_factory.mktemp("cli")
    target, inputs = base / "target", base / "inputs"
    target.mkdir()
    (inputs / "sub").mkdir(parents=True)
    for path in sorted((root / "center_0").glob("*.png"))[:2]:
        shutil.copy(path, target / path.name)
    sources = sorted((root / "center_2").glob("*.png"))[:4]
    for path in sources[:2]:
        shutil.copy(path, inputs / path.name)
    shutil.copy(sources[2], inputs / "sub" / sources[2].name)
    Image.open(sources[3]).convert("RGB").save(inputs / "tile.jpg", quality=92)
    Image.fromarray(np.full((256, 256, 3), 250, np.uint8)).save(inputs / "white.png")
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    return {"base": base, "target": target, "inputs": inputs}


@pytest.fixture(scope="module")
def macenko_model(tiles) -> Path:
    out = tiles["base"] / "macenko-model"
    result = run_cli("fit", "--method", "macenko", "--target", tiles["target"], "--out", out)
    assert result.returncode == EXIT_OK, result.stderr
    return out


def _outputs(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


# --------------------------------------------------------------------- subprocess, real tiles
def test_fit_writes_a_model_folder(macenko_model):
    assert _outputs(macenko_model) == {"config.json", "model.safetensors", "README.md"}
    assert json.loads((macenko_model / "config.json").read_text())["class"] == "MacenkoNormalizer"
    assert "2 tiles from `target`" in (macenko_model / "README.md").read_text()


@pytest.mark.filterwarnings("ignore::stainstyle.base.BackgroundTileWarning")
def test_normalize_keeps_names_and_formats_and_skips_a_corrupt_file(tiles, macenko_model):
    inputs, out = tiles["inputs"], tiles["base"] / "normalized"
    result = run_cli("normalize", "--model", macenko_model, inputs, "--out", out)

    assert result.returncode == EXIT_FAILED
    assert f"{inputs / 'broken.png'}: cannot read image" in result.stderr
    assert "normalized 5 of 6 files" in result.stderr
    assert "1 passed through unchanged (1 with too little tissue" in result.stderr
    assert f"passed through unchanged: {inputs / 'white.png'}" in result.stderr
    expected = {p.relative_to(inputs).as_posix() for p in inputs.rglob("*.*")} - {"broken.png"}
    assert _outputs(out) == expected  # same names, no temporary files left behind

    normalizer = load(macenko_model)
    for name in sorted(expected):
        source, written = inputs / name, out / name
        with Image.open(source) as a, Image.open(written) as b:
            assert (a.format, a.size) == (b.format, b.size), name
        if name.endswith(".png"):  # lossless: exactly what the library computes
            np.testing.assert_array_equal(read_rgb(written), normalizer.transform(read_rgb(source)))
    assert not np.array_equal(read_rgb(out / "tile.jpg"), read_rgb(inputs / "tile.jpg"))
    np.testing.assert_array_equal(read_rgb(out / "white.png"), read_rgb(inputs / "white.png"))


def test_normalize_refuses_to_write_into_its_input_folder(tiles, macenko_model, capsys):
    inputs = tiles["inputs"]
    before = _outputs(inputs)
    result = run_cli("normalize", "--model", macenko_model, inputs, "--out", inputs / "normalized")
    assert result.returncode == EXIT_USAGE
    assert "never written into an input folder" in result.stderr
    assert (
        main(["normalize", "--model", str(macenko_model), str(inputs), "--out", str(inputs)]) == 2
    )
    assert "never written into an input folder" in capsys.readouterr().err
    assert _outputs(inputs) == before


def test_console_script_is_installed():
    script = shutil.which("stainstyle", path=str(Path(sys.executable).parent))
    if script is None:
        skip_or_fail("the stainstyle console script is not installed in this environment")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == EXIT_OK
    assert "Exit codes: 0 success, 1 some files failed, 2 usage error" in result.stdout
    assert "130 interrupted" in result.stdout


# ------------------------------------------------------------------------------- in-process
def test_one_step_normalize_matches_the_library(tiles, tmp_path, capsys):
    from stainstyle.methods.reinhard import ReinhardNormalizer

    source = sorted(tiles["inputs"].glob("*.png"))[0]
    code = main(
        ["normalize", "--method", "reinhard", "--target", str(tiles["target"]), str(source),
         "--out", str(tmp_path), "--batch-size", "2"]
    )  # fmt: skip
    assert code == EXIT_OK
    targets = [read_rgb(p) for p in sorted(tiles["target"].glob("*.png"))]
    expected = ReinhardNormalizer().fit(targets).transform(read_rgb(source))
    np.testing.assert_array_equal(read_rgb(tmp_path / source.name), expected)
    assert "normalized 1 of 1 files" in capsys.readouterr().err


def test_a_saved_vahadane_model_normalizes_as_the_library(tiles, tmp_path):
    from stainstyle import VahadaneNormalizer

    model, out = tmp_path / "vahadane", tmp_path / "out"
    assert main(["fit", "--method", "vahadane", "--target", str(tiles["target"]),
                 "--out", str(model), "-q"]) == EXIT_OK  # fmt: skip
    source = sorted(tiles["inputs"].glob("*.png"))[0]
    assert main(["normalize", "--model", str(model), str(source), "--out", str(out)]) == EXIT_OK
    targets = [read_rgb(p) for p in sorted(tiles["target"].glob("*.png"))]
    expected = VahadaneNormalizer().fit(targets).transform(read_rgb(source))
    np.testing.assert_array_equal(read_rgb(out / source.name), expected)
    assert isinstance(load(model), VahadaneNormalizer)


def test_model_from_an_offline_hub_cache(tiles, macenko_model, tmp_path, monkeypatch):
    commit = "c" * 40
    repo = tmp_path / "cache" / "models--lab--macenko"
    shutil.copytree(macenko_model, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    source = sorted(tiles["inputs"].glob("*.png"))[0]
    out = tmp_path / "out"
    assert main(["normalize", "--model", "lab/macenko", str(source), "--out", str(out)]) == 0
    expected = load(macenko_model).transform(read_rgb(source))
    np.testing.assert_array_equal(read_rgb(out / source.name), expected)


def test_on_error_stop_stops_at_the_first_failure(tiles, macenko_model, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    first = sorted(tiles["inputs"].glob("*.png"))[0]
    shutil.copy(first, inputs / "a.png")
    (inputs / "b.png").write_bytes(b"garbage")
    shutil.copy(first, inputs / "c.png")
    out = tmp_path / "out"
    args = ["normalize", "--model", str(macenko_model), str(inputs), "--out", str(out)]
    assert main([*args, "--on-error", "stop", "--batch-size", "1"]) == EXIT_FAILED
    assert _outputs(out) == {"a.png"}
    assert f"{inputs / 'b.png'}" in capsys.readouterr().err
    assert main([*args, "--batch-size", "1"]) == EXIT_FAILED  # skip: the rest continue
    assert _outputs(out) == {"a.png", "c.png"}


def test_refuses_to_overwrite_an_input_file_given_directly(tiles, macenko_model, tmp_path):
    source = tmp_path / "tile.png"
    shutil.copy(sorted(tiles["inputs"].glob("*.png"))[0], source)
    before = source.read_bytes()
    args = ["normalize", "--model", str(macenko_model), str(source), "--out", str(tmp_path)]
    assert main(args) == EXIT_USAGE
    assert source.read_bytes() == before


@pytest.mark.parametrize(
    "argv, message",
    [
        (["normalize", "--method", "reinhard", "x.png", "--out", "o"], "--method needs --target"),
        (["normalize", "--model", "m", "no/such/file.png", "--out", "o"], "no such file"),
        (["fit", "--method", "reinhard", "--target", "{tile}", "--out", "o", "--param", "nope=1"],
         "['nope'] not parameters of ReinhardNormalizer"),
        (["fit", "--method", "reinhard", "--target", "{tile}", "--out", "o", "--param", "x"],
         "expected KEY=VALUE"),
        (["normalize", "--model", "./missing-model", "{tile}", "--out", "{out}"],
         "no such model folder"),
        (["benchmark", "no_such_benchmark"], "no benchmark 'no_such_benchmark'"),
        (["train-sst", "--target", "{tile}", "--out", "{out}", "--device", "nonsense"],
         "--device nonsense"),
    ],
)  # fmt: skip
def test_usage_errors_exit_2(argv, message, tiles, tmp_path, capsys):
    tile = str(sorted(tiles["inputs"].glob("*.png"))[0])
    argv = [a.format(tile=tile, out=tmp_path / "out") for a in argv]
    assert main(argv) == EXIT_USAGE
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["fit"],
        ["normalize", "--out", "o", "x.png"],
        ["normalize", "--model", "m", "--method", "gray", "x.png", "--out", "o"],
        ["train-sst", "--target", "t", "--out", "o", "--preset", "huge"],
    ],
)
def test_argument_errors_exit_2(argv):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == EXIT_USAGE


@pytest.mark.parametrize(
    "command", [[], ["fit"], ["normalize"], ["augment"], ["train-sst"], ["benchmark"]]
)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == EXIT_OK
    assert "usage: stainstyle" in capsys.readouterr().out


def test_device_is_ignored_with_a_warning_by_numpy_methods(tiles, tmp_path, capsys):
    source = sorted(tiles["inputs"].glob("*.png"))[0]
    argv = ["normalize", "--method", "gray", "--target", str(source), str(source),
            "--out", str(tmp_path), "--device", "cuda"]  # fmt: skip
    assert main(argv) == EXIT_OK
    assert "--device cuda is ignored" in capsys.readouterr().err


def test_corrupt_model_is_a_failure_naming_the_file(tiles, macenko_model, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(macenko_model, model)
    (model / "model.safetensors").write_bytes(b"\x00" * 16)
    source = str(sorted(tiles["inputs"].glob("*.png"))[0])
    assert main(["normalize", "--model", str(model), source, "--out", str(tmp_path / "o")]) == 1
    assert f"{model / 'model.safetensors'}: not a readable safetensors" in capsys.readouterr().err


# --------------------------------------------------------------------------------- augment
@pytest.fixture(scope="module")
def randstainna_model(tiles) -> Path:
    out = tiles["base"] / "randstainna-model"
    args = ["fit", "--method", "randstainna", "--target", tiles["target"], "--out", out]
    result = run_cli(*args, "--param", "random_state=5", "--param", "spaces=lab")
    assert result.returncode == EXIT_OK, result.stderr
    return out


def _pixels(folder: Path) -> dict[str, np.ndarray]:
    return {name: read_rgb(folder / name) for name in sorted(_outputs(folder))}


def test_fit_saves_an_augmenter_that_augment_reads(tiles, randstainna_model, tmp_path):
    from stainstyle.augment import RandStainNA

    augmenter = load(randstainna_model)
    assert isinstance(augmenter, RandStainNA) and augmenter.n_tiles_ == 2
    assert augmenter.spaces_ == ("lab",) and augmenter.random_state == 5
    assert "stainstyle augment --model" in (randstainna_model / "README.md").read_text()
    inputs = tiles["inputs"]
    first, again = tmp_path / "first", tmp_path / "again"
    result = run_cli("augment", "--model", randstainna_model, "--seed", "3", inputs, "--out", first)
    assert result.returncode == EXIT_FAILED, result.stderr  # the corrupt file
    assert f"error: {inputs / 'broken.png'}" in result.stderr
    assert "augmented 5 of 6 files" in result.stderr and "1 passed through" in result.stderr
    assert _outputs(first) == _outputs(inputs) - {"broken.png"}
    # --seed: each image's draw depends on the seed and its name only, not on the other inputs.
    single = sorted(inputs.glob("*.png"))[0]
    assert main(["augment", "--model", str(randstainna_model), "--seed", "3", str(single),
                 "--out", str(again)]) == EXIT_OK  # fmt: skip
    produced = _pixels(first)
    np.testing.assert_array_equal(read_rgb(again / single.name), produced[single.name])
    assert not np.array_equal(produced[single.name], read_rgb(single))
    np.testing.assert_array_equal(produced["white.png"], read_rgb(inputs / "white.png"))
    # Another seed, another draw.
    other = tmp_path / "other"
    assert main(["augment", "--model", str(randstainna_model), "--seed", "4", str(single),
                 "--out", str(other)]) == EXIT_OK  # fmt: skip
    assert not np.array_equal(read_rgb(other / single.name), produced[single.name])


@pytest.mark.parametrize(
    "method, extra",
    [("hed", ["--param", "sigma=0.2"]), ("stain", ["--target", "{target}"])],
)
def test_augment_builds_an_augmenter_in_one_step(method, extra, tiles, tmp_path):
    from stainstyle.augment import HEDJitter, StainAugmenter

    source = sorted(tiles["inputs"].glob("*.png"))[0]
    extra = [a.format(target=tiles["target"]) for a in extra]
    argv = ["augment", "--method", method, *extra, "--seed", "0", str(source)]
    assert main([*argv, "--out", str(tmp_path / "a")]) == EXIT_OK
    assert main([*argv, "--out", str(tmp_path / "b")]) == EXIT_OK
    out = read_rgb(tmp_path / "a" / source.name)
    np.testing.assert_array_equal(out, read_rgb(tmp_path / "b" / source.name))
    assert out.shape == read_rgb(source).shape and not np.array_equal(out, read_rgb(source))
    # The library gives the same pixels for the same image stream.
    from stainstyle.cli.augment import image_stream

    if method == "hed":
        augmenter = HEDJitter(sigma=0.2)
    else:
        targets = [read_rgb(p) for p in sorted(tiles["target"].glob("*.png"))]
        augmenter = StainAugmenter().fit(targets)
    expected = augmenter(read_rgb(source), random_state=image_stream(0, Path(source.name)))
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["augment", "--method", "randstainna", "{tile}", "--out", "{out}"],
         "--method randstainna needs --target"),
        (["augment", "--method", "hed", "--target", "{tile}", "{tile}", "--out", "{out}"],
         "--method hed learns nothing from images"),
        (["augment", "--model", "{macenko}", "{tile}", "--out", "{out}"],
         "holds a MacenkoNormalizer, not an Augmenter"),
        (["normalize", "--model", "{randstainna}", "{tile}", "--out", "{out}"],
         "holds a RandStainNA, not a StainNormalizer"),
        (["augment", "--model", "{randstainna}", "--param", "p=1", "{tile}", "--out", "{out}"],
         "--target and --param go with --method"),
        (["augment", "--method", "hed", "--param", "sigma=2", "{tile}", "--out", "{out}"],
         "sigma: expected a number in [0, 1)"),
        (["fit", "--method", "stain", "--target", "{tile}", "--param", "normalizer=gray",
          "--out", "{out}"], "normalizer: expected one of"),
    ],
)  # fmt: skip
def test_augment_usage_errors(argv, message, tiles, macenko_model, randstainna_model, tmp_path,
                              capsys):  # fmt: skip
    names = {
        "tile": sorted(tiles["inputs"].glob("*.png"))[0],
        "out": tmp_path / "out",
        "macenko": macenko_model,
        "randstainna": randstainna_model,
    }
    code = main([a.format(**names) for a in argv])
    err = capsys.readouterr().err
    assert code in (EXIT_USAGE, EXIT_FAILED) and message in err, err
    assert "Traceback" not in err


def test_batch_size_is_ignored_with_a_warning_by_augmenters(tiles, tmp_path, capsys):
    source = str(sorted(tiles["inputs"].glob("*.png"))[0])
    argv = ["augment", "--method", "hed", source, "--out", str(tmp_path), "--batch-size", "4"]
    assert main(argv) == EXIT_OK
    assert "HEDJitter has no batches; --batch-size 4 is ignored" in capsys.readouterr().err


# --------------------------------------------------------------------------------- train-sst
def test_labels_csv_is_matched_by_relative_path_or_name(tmp_path):
    from stainstyle.cli import ImageFile

    images = [
        ImageFile(tmp_path / "a" / "x.png", Path("a/x.png")),
        ImageFile(tmp_path / "y.png", Path("y.png")),
    ]
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("file,label,scanner\na/x.png,1,s1\nother/y.png,0,s2\ny.png,0,s2\n")
    assert read_labels(csv_path, images) == ["1", "0"]
    csv_path.write_text("file,label\na/x.png,1\n")
    with pytest.raises(Exception, match="no label for 1 images"):
        read_labels(csv_path, images)


@pytest.mark.slow
def test_train_sst_saves_a_model_and_resumes(tiles, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    for path in sorted(tiles["target"].glob("*.png")):
        Image.open(path).crop((0, 0, 64, 64)).save(small / path.name)
    out = tmp_path / "sst"
    tiny = ["--param", "width=4", "--param", "depth=2", "--param", "crop_size=16",
            "--param", "lambda_fp=0", "--device", "cpu", "-q"]  # fmt: skip
    argv = ["train-sst", "--target", str(small), "--out", str(out), *tiny]
    assert main([*argv, "--max-epochs", "1"]) == EXIT_OK
    first = load(out)
    assert first.epoch_ == 1
    assert (tmp_path / "sst-checkpoints").is_dir()
    assert main([*argv, "--max-epochs", "2", "--resume"]) == EXIT_OK
    resumed = load(out)
    assert resumed.epoch_ == 2 and [h["epoch"] for h in resumed.history_] == [1, 2]
    # The first epoch comes from the checkpoint (its record, timings included, is the first
    # run's), and the second continues it: the same networks as two epochs in one run.
    assert resumed.history_[0] == first.history_[0]
    straight = tmp_path / "straight"
    argv = ["train-sst", "--target", str(small), "--out", str(straight), *tiny]
    assert main([*argv, "--max-epochs", "2"]) == EXIT_OK
    expected = load(straight)
    for name in ("generator_", "discriminator_"):
        weights = getattr(expected, name).state_dict()
        for key, value in getattr(resumed, name).state_dict().items():
            assert torch.equal(value, weights[key]), (name, key)
    losses = [{k: v for k, v in h.items() if k != "seconds"} for h in expected.history_]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history_] == losses


def test_benchmark_dispatches_to_the_script_with_its_arguments(tmp_path, monkeypatch):
    script = tmp_path / "demo.py"
    script.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "import helper\n"
        "Path(sys.argv[1]).write_text(' '.join(sys.argv[2:]) + helper.SUFFIX)\n"
        "sys.exit(3)\n"
    )
    (tmp_path / "helper.py").write_text("SUFFIX = '!'\n")  # a sibling module it imports
    monkeypatch.setattr("stainstyle.cli.benchmark.BENCHMARKS_DIR", tmp_path)
    path_before = list(sys.path)
    assert main(["benchmark", "demo", str(tmp_path / "out.txt"), "--fast", "x"]) == 3
    assert (tmp_path / "out.txt").read_text() == "--fast x!"
    assert sys.path == path_before


# ------------------------------------------------- issue #12: files, modes, options, errors
@pytest.fixture
def synthetic(tmp_path) -> dict[str, Path]:
    """Synthetic H&E tiles (no real data needed): a target folder and an input folder."""
    from _support import he_tiles

    target, inputs = tmp_path / "target", tmp_path / "inputs"
    target.mkdir()
    inputs.mkdir()
    for i, tile in enumerate(he_tiles(2, 64, seed=1)):
        Image.fromarray(tile).save(target / f"t{i}.png")
    for i, tile in enumerate(he_tiles(3, 64, seed=2)):
        Image.fromarray(tile).save(inputs / f"s{i}.png")
    return {"target": target, "inputs": inputs, "out": tmp_path / "out"}


def _reinhard(synthetic, *inputs, extra=()) -> list[str]:
    return ["normalize", "--method", "reinhard", "--target", str(synthetic["target"]),
            *map(str, inputs), "--out", str(synthetic["out"]), *extra]  # fmt: skip


def test_an_oversized_image_is_reported_and_the_others_are_normalized(synthetic, capsys):
    from _support import png_bytes

    bomb = synthetic["inputs"] / "bomb.png"
    bomb.write_bytes(png_bytes(100_000, 100_000, 8, 2, b"\0" * 16))
    assert main(_reinhard(synthetic, synthetic["inputs"])) == EXIT_FAILED
    err = capsys.readouterr().err
    assert f"{bomb}: 100000 x 100000 = 10,000,000,000 pixels is above the limit" in err
    assert "Traceback" not in err
    assert _outputs(synthetic["out"]) == {"s0.png", "s1.png", "s2.png"}


def test_max_pixels_option_refuses_or_admits_by_size(synthetic, capsys):
    source = synthetic["inputs"] / "big.png"
    Image.fromarray(np.tile(read_rgb(synthetic["inputs"] / "s0.png"), (2, 2, 1))).save(source)
    assert main(_reinhard(synthetic, source, extra=["--max-pixels", "10000"])) == EXIT_FAILED
    assert "128 x 128 = 16,384 pixels is above the limit of 10,000" in capsys.readouterr().err
    assert main(_reinhard(synthetic, source, extra=["--max-pixels", "16384"])) == EXIT_OK


def test_16_bit_gray_and_float_images_are_scaled_not_whited_or_blacked_out(synthetic, capsys):
    import cv2

    gray = np.linspace(20, 240, 64 * 64).reshape(64, 64)
    inputs = synthetic["inputs"]
    cv2.imwrite(str(inputs / "gray16.png"), np.rint(gray * 257).astype(np.uint16))
    Image.fromarray((gray / 255).astype(np.float32), mode="F").save(inputs / "float.tif")
    assert main(_reinhard(synthetic, inputs / "gray16.png", inputs / "float.tif")) == EXIT_OK
    err = capsys.readouterr().err
    assert "16-bit samples scaled to 8 bits" in err and "float samples in [0, 1]" in err
    from stainstyle.methods.reinhard import ReinhardNormalizer

    targets = [read_rgb(p) for p in sorted(synthetic["target"].glob("*.png"))]
    normalizer = ReinhardNormalizer().fit(targets)
    expected = np.repeat(np.rint(gray).astype(np.uint8)[..., None], 3, axis=-1)
    out = synthetic["out"]
    for name in ("gray16.png", "float.tif"):
        written = read_rgb(out / name)
        assert written.std() > 10, f"{name} came out flat"
        np.testing.assert_array_equal(written, normalizer.transform(expected))


def test_exif_rotated_jpeg_is_normalized_upright_and_written_upright(synthetic):
    stored = np.concatenate([read_rgb(synthetic["inputs"] / f"s{i}.png") for i in (0, 1)], 1)
    exif = Image.Exif()
    exif[0x0112] = 6
    source = synthetic["inputs"] / "rotated.jpg"
    Image.fromarray(stored).save(source, exif=exif.tobytes(), quality=95)
    assert main(_reinhard(synthetic, source)) == EXIT_OK
    with Image.open(synthetic["out"] / "rotated.jpg") as written:
        assert written.size == (64, 128)  # stored upright: 64 wide, 128 high
        assert written.getexif().get(0x0112, 1) == 1


def test_outputs_get_the_umask_mode_not_0600(synthetic):
    previous = os.umask(0o022)
    try:
        assert main(_reinhard(synthetic, synthetic["inputs"])) == EXIT_OK
    finally:
        os.umask(previous)
    for path in synthetic["out"].iterdir():
        assert path.stat().st_mode & 0o777 == 0o644, path


@pytest.mark.parametrize("quality", ["0", "-5", "101", "1000", "high"])
def test_jpeg_quality_outside_1_to_100_is_a_usage_error(synthetic, quality, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(_reinhard(synthetic, synthetic["inputs"], extra=["--jpeg-quality", quality]))
    assert exit_.value.code == EXIT_USAGE
    assert "expected an integer from 1 to 100" in capsys.readouterr().err
    assert not synthetic["out"].exists()


def test_out_naming_an_existing_file_is_a_usage_error(synthetic, tmp_path, capsys):
    existing = tmp_path / "existing.txt"
    existing.write_text("keep me")
    argv = _reinhard(synthetic, synthetic["inputs"])
    argv[argv.index("--out") + 1] = str(existing)
    assert main(argv) == EXIT_USAGE
    fit = ["fit", "--method", "reinhard", "--target", str(synthetic["target"]), "--out"]
    assert main([*fit, str(existing)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"--out {existing}: exists and is not a folder" in err
    assert existing.read_text() == "keep me"


def test_special_entries_in_input_folders_are_reported_as_skipped(synthetic, capsys):
    inputs = synthetic["inputs"]
    os.mkfifo(inputs / "pipe.png")
    os.symlink("gone.png", inputs / "dangling.png")
    os.symlink("loop.png", inputs / "loop.png")
    (inputs / "sub").mkdir()
    os.symlink("..", inputs / "sub" / "up")
    assert main(_reinhard(synthetic, inputs)) == EXIT_OK
    err = capsys.readouterr().err
    assert f"skipped {inputs / 'pipe.png'}: is a FIFO (named pipe)" in err
    assert f"skipped {inputs / 'dangling.png'}: dangling symbolic link to 'gone.png'" in err
    assert f"skipped {inputs / 'loop.png'}: symbolic link loop" in err
    assert f"skipped {inputs / 'sub' / 'up'}: symbolic link loop (to an enclosing folder)" in err
    assert _outputs(synthetic["out"]) == {"s0.png", "s1.png", "s2.png"}


def test_a_fifo_given_directly_is_a_usage_error(synthetic, capsys):
    pipe = synthetic["inputs"] / "pipe.png"
    os.mkfifo(pipe)
    assert main(_reinhard(synthetic, pipe)) == EXIT_USAGE
    assert f"{pipe}: is a FIFO (named pipe), not an image file or folder" in capsys.readouterr().err


def test_an_unexpected_error_is_one_line_and_exit_1(synthetic, monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("something nobody planned for")

    monkeypatch.setattr("stainstyle.cli.normalize.run", broken)
    assert main(_reinhard(synthetic, synthetic["inputs"])) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "normalize: error: RuntimeError: something nobody planned for (--debug" in err
    assert "Traceback" not in err
    assert main(["--debug", *_reinhard(synthetic, synthetic["inputs"])]) == EXIT_FAILED
    assert "Traceback" in capsys.readouterr().err


def test_a_file_that_fails_alone_does_not_stop_the_run(synthetic, monkeypatch, capsys):
    import stainstyle.cli.normalize

    original = stainstyle.cli.normalize.normalize_images

    def fail_on_dark(normalizer, images):
        if any(image.mean() < 60 for image in images):
            raise ValueError("cannot model this tile")
        return original(normalizer, images)

    monkeypatch.setattr(stainstyle.cli.normalize, "normalize_images", fail_on_dark)
    Image.fromarray(np.full((64, 64, 3), 30, np.uint8)).save(synthetic["inputs"] / "dark.png")
    argv = _reinhard(synthetic, synthetic["inputs"], extra=["--batch-size", "1"])
    assert main(argv) == EXIT_FAILED
    assert "dark.png: ValueError: cannot model this tile" in capsys.readouterr().err
    assert _outputs(synthetic["out"]) == {"s0.png", "s1.png", "s2.png"}


def test_python_dash_m_stainstyle_runs_the_command():
    result = subprocess.run(
        [sys.executable, "-m", "stainstyle", "--version"], capture_output=True, text=True
    )
    assert result.returncode == EXIT_OK and result.stdout.startswith("stainstyle ")
