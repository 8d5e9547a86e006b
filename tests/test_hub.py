"""Persistence: save_pretrained / from_pretrained / load / push_to_hub, for every method."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from numbers import Integral
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from _support import as_format1, he_tiles, read_model_file, read_rgb, require_data, write_model_file
from huggingface_hub import HfApi, ModelCard
from safetensors.torch import load_file
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import Interval

from stainstyle.base import StainNormalizer
from stainstyle.hub import (
    BUILTIN_METHODS,
    CONFIG_NAME,
    WEIGHTS_NAME,
    load,
    load_folder,
    register_normalizer,
)
from stainstyle.methods.gray import GrayNormalizer
from stainstyle.registry import method_class

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


# ------------------------------------------------------------------------------- fixtures
def _crops(paths: list[Path], size: int) -> np.ndarray:
    return np.stack([read_rgb(p)[:size, :size] for p in paths])


@pytest.fixture(scope="module")
def real_tiles() -> tuple[np.ndarray, np.ndarray]:
    """Target tiles from CAMELYON17 centre 0, source tiles from centre 2 (256x256 crops)."""
    root = require_data("camelyon17_tiles")
    target = _crops(sorted((root / "center_0").glob("*.png"))[:2], 256)
    source = _crops(sorted((root / "center_2").glob("*.png"))[:2], 256)
    return target, source


def _fitted(method: str, target: np.ndarray):
    cls = method_class(method)
    if method == "sst":
        # The smallest training run: persistence is what is tested, not colour quality.
        estimator = cls(
            width=4, depth=2, crop_size=16, window_size=32, max_epochs=1, lambda_fp=0, device="cpu"
        )
    else:
        estimator = cls()
    return estimator.fit(target)


class _ToyNet(torch.nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, width, 1)
        self.norm = torch.nn.BatchNorm2d(width)

    def forward(self, x):
        return self.norm(self.conv(x))


@register_normalizer
class ToyNetNormalizer(StainNormalizer):
    """Exercises every kind of fitted state: JSON, ndarray, numpy scalar, tensor, module."""

    _parameter_constraints = {
        **StainNormalizer._parameter_constraints,
        "width": [Interval(Integral, 3, None, closed="left")],
        "shape": [tuple],
        "helper": [None, object],
    }

    def __init__(self, *, width=3, shape=(2, 3), helper=None, background="passthrough",
                 batch_size=32):  # fmt: skip
        self.width = width
        self.shape = shape
        self.helper = helper
        self.background = background
        self.batch_size = batch_size

    def _fit(self, tiles, y):
        generator = torch.Generator().manual_seed(0)
        self.net_ = _ToyNet(self.width)
        with torch.no_grad():
            for p in self.net_.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
            self.net_.norm.running_mean += 0.25
        self.net_.eval()
        self.lut_ = np.arange(256, dtype=np.uint8)[::-1].copy()
        self.gain_ = np.float32(0.75)
        self.offset_ = torch.tensor([3.0, -2.0, 1.0], dtype=torch.float64)
        self.grid_ = self.shape
        self.history_ = {"loss": [0.5, 0.25], "note": None}

    def _build_modules(self):
        return {"net_": _ToyNet(self.width)}

    def _transform_batch(self, batch, tissue):
        with torch.no_grad():
            x = torch.tensor(batch).permute(0, 3, 1, 2).float() / 255
            y = self.net_(x)[:, :3].permute(0, 2, 3, 1).double().numpy()
        mapped = self.lut_[batch] * self.gain_ + 40 * y + self.offset_.numpy()
        return np.clip(np.rint(mapped), 0, 255).astype(np.uint8), np.zeros(len(batch), bool)


@pytest.fixture
def toy_tiles(rng) -> np.ndarray:
    return rng.integers(0, 200, size=(3, 32, 32, 3), dtype=np.uint8)


def _hub_cache(root: Path, repo_id: str, snapshots: dict[str, Path], main: str) -> Path:
    """Build a Hub cache layout by hand: ``models--org--name/{refs/main, snapshots/<commit>}``."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    for commit, folder in snapshots.items():
        shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(main)
    return root


@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> Path:
    """An empty Hub cache with offline mode on: nothing here may reach the network."""
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def _rewrite_weights(folder: Path, tensors: dict) -> None:
    """Replace the tensors of model.safetensors and update the checksum, as a forger would."""
    config, _ = read_model_file(folder)
    write_model_file(folder, config, tensors)


def _edit_config(folder: Path, edit) -> None:
    """Edit the authoritative configuration (embedded in model.safetensors), checksum updated."""
    config, tensors = read_model_file(folder)
    edit(config)
    write_model_file(folder, config, tensors)


def _machine_local_defaults(estimator) -> dict:
    names = getattr(type(estimator), "_machine_local_params", ())
    return {k: v for k, v in type(estimator)().get_params().items() if k in names}


# ---------------------------------------------------------------------- round trip, all methods
@pytest.mark.parametrize("method", sorted(BUILTIN_METHODS))
def test_round_trip_folder_and_offline_hub_cache(method, real_tiles, tmp_path, offline_hub):
    target, source = real_tiles
    if method == "sst":  # small tiles keep the network's training and inference short
        target, source = target[:, :32, :32], source[:, :32, :32]
    estimator = _fitted(method, target)
    expected = estimator.transform(source)
    assert not np.array_equal(expected, source)  # the comparison below is not of passthroughs

    folder = tmp_path / "saved"
    estimator.save_pretrained(folder)
    assert {p.name for p in folder.iterdir()} == {CONFIG_NAME, WEIGHTS_NAME, "README.md"}

    from_folder = type(estimator).from_pretrained(folder)
    assert type(from_folder) is type(estimator)
    # Machine-local parameters (a device, a checkpoint folder) come back as their defaults.
    assert from_folder.get_params() == {
        **estimator.get_params(),
        **_machine_local_defaults(estimator),
    }
    np.testing.assert_array_equal(from_folder.transform(source), expected)

    _hub_cache(offline_hub, f"stainstyle-test/{method}", {COMMIT_A: folder}, main=COMMIT_A)
    from_cache = load(f"stainstyle-test/{method}")
    assert type(from_cache) is type(estimator)
    np.testing.assert_array_equal(from_cache.transform(source), expected)


def test_every_kind_of_fitted_state_round_trips(toy_tiles, tmp_path):
    estimator = ToyNetNormalizer(shape=(4, 5)).fit(toy_tiles)
    estimator.save_pretrained(tmp_path)
    loaded = load(tmp_path)

    assert isinstance(loaded, ToyNetNormalizer)
    assert loaded.shape == (4, 5) and loaded.grid_ == (4, 5)
    assert loaded.history_ == {"loss": [0.5, 0.25], "note": None}
    assert loaded.lut_.dtype == np.uint8 and np.array_equal(loaded.lut_, estimator.lut_)
    assert isinstance(loaded.gain_, np.float32) and loaded.gain_ == estimator.gain_
    assert loaded.offset_.dtype == torch.float64 and torch.equal(loaded.offset_, estimator.offset_)
    assert not loaded.net_.training
    for key, value in estimator.net_.state_dict().items():
        assert torch.equal(loaded.net_.state_dict()[key], value), key
    np.testing.assert_array_equal(loaded.transform(toy_tiles), estimator.transform(toy_tiles))


def test_config_records_class_params_version_and_statistics(toy_tiles, tmp_path):
    GrayNormalizer(batch_size=7).fit(toy_tiles).save_pretrained(tmp_path)
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert config["class"] == "GrayNormalizer"
    assert config["params"] == {"background": "passthrough", "batch_size": 7}
    assert config["fitted"] == {"n_tiles_fit_": 3}
    assert config["stainstyle_version"] == importlib.import_module("stainstyle").__version__
    assert config["stainstyle_format"] == 2 and len(config["content_sha256"]) == 64
    assert read_model_file(tmp_path)[0] == config  # the same configuration, embedded


def test_non_json_param_is_saved_as_null_with_a_note_and_can_be_restored(toy_tiles, tmp_path):
    helper = object()
    ToyNetNormalizer(helper=helper).fit(toy_tiles).save_pretrained(tmp_path)
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert config["params"]["helper"] is None
    assert "object" in config["unsaved"]["helper"]
    assert load(tmp_path).helper is None
    assert load(tmp_path, helper=helper).helper is helper


def test_overrides_replace_saved_params(toy_tiles, tmp_path):
    GrayNormalizer().fit(toy_tiles).save_pretrained(tmp_path)
    assert load(tmp_path, batch_size=5).batch_size == 5


def test_mixin_keeps_the_scikit_learn_contract(toy_tiles):
    estimator = GrayNormalizer(batch_size=4)
    assert clone(estimator).get_params() == {"background": "passthrough", "batch_size": 4}
    assert clone(estimator.fit(toy_tiles)).get_params() == estimator.get_params()


def test_saving_twice_replaces_the_model_card(toy_tiles, tmp_path):
    estimator = GrayNormalizer().fit(toy_tiles)
    estimator.save_pretrained(tmp_path, model_card_kwargs={"training_data": "first cohort"})
    estimator.save_pretrained(tmp_path, model_card_kwargs={"training_data": "second cohort"})
    text = (tmp_path / "README.md").read_text()
    assert "second cohort" in text and "first cohort" not in text


def test_model_card_metadata_training_data_and_benchmark(toy_tiles, tmp_path):
    ToyNetNormalizer().fit(toy_tiles).save_pretrained(
        tmp_path,
        model_card_kwargs={
            "training_data": "3 synthetic 32x32 tiles",
            "benchmark": {"ssim_vs_paired": 0.8125},
            "license": "bsd-3-clause",
        },
    )
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.library_name == "stainstyle"
    assert {"histopathology", "stain-normalization", "toynetnormalizer"} <= set(card.data.tags)
    assert card.data.license == "bsd-3-clause"
    assert "3 synthetic 32x32 tiles" in card.text
    assert "| `ssim_vs_paired` | 0.8125 |" in card.text
    assert 'stainstyle.load("path/to/this/folder")' in card.text


# --------------------------------------------------------------------------- Hub cache, offline
def test_offline_load_through_environment_variables_in_a_fresh_process(toy_tiles, tmp_path):
    estimator = GrayNormalizer().fit(toy_tiles)
    estimator.save_pretrained(tmp_path / "saved")
    cache = _hub_cache(tmp_path / "cache", "org/gray", {COMMIT_A: tmp_path / "saved"}, COMMIT_A)
    np.save(tmp_path / "tiles.npy", toy_tiles)
    code = (
        "import numpy as np, stainstyle.hub as hub; "
        f"tiles = np.load({str(tmp_path / 'tiles.npy')!r}); "
        f"np.save({str(tmp_path / 'out.npy')!r}, hub.load('org/gray').transform(tiles))"
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(cache),
        "HF_HOME": str(tmp_path),
    }
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), estimator.transform(toy_tiles))


def test_revision_can_be_pinned(toy_tiles, tmp_path, offline_hub):
    GrayNormalizer(batch_size=1).fit(toy_tiles).save_pretrained(tmp_path / "a")
    GrayNormalizer(batch_size=2).fit(toy_tiles).save_pretrained(tmp_path / "b")
    _hub_cache(
        offline_hub, "org/gray", {COMMIT_A: tmp_path / "a", COMMIT_B: tmp_path / "b"}, COMMIT_A
    )
    assert load("org/gray").batch_size == 1
    assert load("org/gray", revision=COMMIT_B).batch_size == 2
    assert GrayNormalizer.from_pretrained("org/gray", revision=COMMIT_A).batch_size == 1


def test_repository_missing_from_the_offline_cache_is_a_clear_error(offline_hub):
    with pytest.raises(OSError, match="'org/absent'.*cannot be fetched"):
        load("org/absent")


def test_revision_does_not_apply_to_a_folder(toy_tiles, tmp_path):
    GrayNormalizer().fit(toy_tiles).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="revision"):
        load(tmp_path, revision=COMMIT_A)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        load(tmp_path / "nope" / "model")


# ------------------------------------------------------------------------------------ pushing
@pytest.fixture
def fake_hub(monkeypatch) -> dict:
    """Replace the network layer at the HfApi boundary; record what would be uploaded."""
    calls = {}

    def create_repo(self, repo_id, *, private=None, exist_ok=False, **kwargs):
        calls["create_repo"] = {"repo_id": repo_id, "private": private, "exist_ok": exist_ok}
        return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        calls["upload_folder"] = {"repo_id": repo_id, "files": files, **kwargs}
        return f"https://huggingface.co/{repo_id}/commit/{COMMIT_A}"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls


def test_push_uploads_exactly_the_saved_files(toy_tiles, tmp_path, fake_hub):
    calls = fake_hub
    estimator = ToyNetNormalizer().fit(toy_tiles)
    url = estimator.push_to_hub("lab/toy", private=True, commit_message="first model")

    assert url.endswith(COMMIT_A)
    assert calls["create_repo"] == {"repo_id": "lab/toy", "private": True, "exist_ok": True}
    upload = calls["upload_folder"]
    assert upload["repo_id"] == "lab/toy" and upload["commit_message"] == "first model"
    assert sorted(upload["files"]) == ["README.md", CONFIG_NAME, WEIGHTS_NAME]
    assert 'stainstyle.load("lab/toy")' in upload["files"]["README.md"].decode()
    for name, content in upload["files"].items():
        (tmp_path / name).write_bytes(content)
    np.testing.assert_array_equal(
        load(tmp_path).transform(toy_tiles), estimator.transform(toy_tiles)
    )


def test_save_pretrained_can_push_too(toy_tiles, tmp_path, fake_hub):
    estimator = GrayNormalizer().fit(toy_tiles)
    estimator.save_pretrained(tmp_path / "gray", push_to_hub=True, repo_id="lab/gray", private=True)
    assert fake_hub["create_repo"]["private"] is True
    assert fake_hub["upload_folder"]["repo_id"] == "lab/gray"
    uploaded = fake_hub["upload_folder"]["files"]
    assert uploaded[CONFIG_NAME] == (tmp_path / "gray" / CONFIG_NAME).read_bytes()
    assert uploaded[WEIGHTS_NAME] == (tmp_path / "gray" / WEIGHTS_NAME).read_bytes()


def test_unfitted_normalizer_cannot_be_saved_or_pushed(tmp_path):
    with pytest.raises(NotFittedError):
        GrayNormalizer().save_pretrained(tmp_path)
    with pytest.raises(NotFittedError):
        GrayNormalizer().push_to_hub("lab/gray")


# ----------------------------------------------------------------------------------- security
@pytest.fixture
def saved_toy(toy_tiles, tmp_path) -> Path:
    folder = tmp_path / "saved"
    ToyNetNormalizer().fit(toy_tiles).save_pretrained(folder)
    return folder


class _Payload:
    """Unpickling this creates a marker file: proof that something was executed."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_tampered_weights_are_rejected(saved_toy):
    weights = saved_toy / WEIGHTS_NAME
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{WEIGHTS_NAME}: its SHA-256 does not match"):
        load(saved_toy)


def test_corrupt_weights_with_a_matching_checksum_are_rejected(saved_toy):
    as_format1(saved_toy)  # the checksum of the whole file lives in config.json
    (saved_toy / WEIGHTS_NAME).write_bytes(b"\xff" * 64)
    config = json.loads((saved_toy / CONFIG_NAME).read_text())
    config["weights_sha256"] = hashlib.sha256(b"\xff" * 64).hexdigest()
    (saved_toy / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"{WEIGHTS_NAME}: not a readable safetensors file"):
        load(saved_toy)


def test_array_with_a_mismatched_shape_is_rejected(saved_toy):
    tensors = load_file(saved_toy / WEIGHTS_NAME)
    tensors["lut_"] = tensors["lut_"][:10].clone()
    _rewrite_weights(saved_toy, tensors)
    with pytest.raises(ValueError, match=rf"{WEIGHTS_NAME}: tensor 'lut_' has .* shape \[10\]"):
        load(saved_toy)


def test_module_weights_with_a_mismatched_shape_are_rejected(saved_toy):
    tensors = load_file(saved_toy / WEIGHTS_NAME)
    tensors["net_.conv.weight"] = torch.zeros(5, 3, 1, 1)
    _rewrite_weights(saved_toy, tensors)
    with pytest.raises(ValueError, match=rf"{WEIGHTS_NAME}: its tensors do not fit module 'net_'"):
        load(saved_toy)


def test_unlisted_tensors_are_rejected(saved_toy):
    tensors = load_file(saved_toy / WEIGHTS_NAME)
    tensors["extra"] = torch.zeros(2)
    _rewrite_weights(saved_toy, tensors)
    with pytest.raises(ValueError, match="not listed in its configuration: \\['extra'\\]"):
        load(saved_toy)


@pytest.mark.parametrize("name", ["os.system", "builtins:eval", "NotANormalizer"])
def test_unknown_class_is_rejected_without_importing_anything(saved_toy, name):
    _edit_config(saved_toy, lambda config: config.update({"class": name}))
    modules_before = set(sys.modules)
    with pytest.raises(ValueError, match=rf"{WEIGHTS_NAME} .*: unknown normalizer class"):
        load(saved_toy)
    assert set(sys.modules) == modules_before


def test_unknown_class_in_a_format_1_folder_is_rejected(saved_toy):
    as_format1(saved_toy)
    config = json.loads((saved_toy / CONFIG_NAME).read_text())
    config["class"] = "os.system"
    (saved_toy / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"{CONFIG_NAME}: unknown normalizer class"):
        load(saved_toy)


def test_pickle_checkpoint_instead_of_safetensors_is_refused_and_never_unpickled(saved_toy):
    marker = saved_toy.parent / "executed"
    (saved_toy / WEIGHTS_NAME).unlink()
    (saved_toy / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ValueError, match="pickle files \\['pytorch_model.bin'\\].*never unpickles"):
        load(saved_toy)
    assert not marker.exists()


def test_folder_of_pickles_without_config_is_refused(tmp_path):
    marker = tmp_path / "executed"
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(FileNotFoundError, match=rf"{CONFIG_NAME}: not found.*pickle files"):
        load(tmp_path)
    assert not marker.exists()


def test_missing_weights_file_is_named(saved_toy):
    (saved_toy / WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=rf"{WEIGHTS_NAME}: not found"):
        load(saved_toy)


def test_invalid_json_config_is_named(saved_toy):
    _, tensors = read_model_file(saved_toy)
    write_model_file(saved_toy, "{not json", tensors)
    with pytest.raises(ValueError, match=rf"{WEIGHTS_NAME} .*: not valid JSON"):
        load(saved_toy)


def test_invalid_json_config_of_a_format_1_folder_is_named(saved_toy):
    as_format1(saved_toy)
    (saved_toy / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ValueError, match=rf"{CONFIG_NAME}: not valid JSON"):
        load(saved_toy)


def test_config_from_another_program_is_rejected(saved_toy):
    as_format1(saved_toy)
    (saved_toy / CONFIG_NAME).write_text(json.dumps({"hidden_size": 512}))
    with pytest.raises(ValueError, match="not written by stainstyle"):
        load(saved_toy)


def test_invalid_saved_parameter_is_named(saved_toy):
    _edit_config(saved_toy, lambda config: config["params"].update(batch_size=-3))
    with pytest.raises(ValueError, match=rf"{WEIGHTS_NAME} .*: invalid parameters.*batch_size"):
        load(saved_toy)


def test_loading_with_the_wrong_class_is_a_type_error(saved_toy):
    with pytest.raises(TypeError, match="holds a ToyNetNormalizer, not a GrayNormalizer"):
        GrayNormalizer.from_pretrained(saved_toy)


def test_unsupported_fitted_attribute_is_saved_as_null_with_a_warning(toy_tiles, tmp_path, caplog):
    # A class that declares no fitted attributes: whatever fit set is saved.
    estimator = ToyNetNormalizer().fit(toy_tiles)
    estimator.model_ = object()
    estimator.save_pretrained(tmp_path)
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert config["fitted"]["model_"] is None
    assert "object" in config["unsaved"]["model_"]
    assert "ToyNetNormalizer.model_ (object) is not saved" in caplog.text
    assert load(tmp_path).model_ is None


def test_undeclared_fitted_attribute_of_a_declaring_class_is_refused_when_saving(
    toy_tiles, tmp_path
):
    estimator = GrayNormalizer().fit(toy_tiles)
    estimator.model_ = object()
    with pytest.raises(ValueError, match=r"GrayNormalizer: cannot be saved.*unknown \['model_'\]"):
        estimator.save_pretrained(tmp_path)
    assert not (tmp_path / WEIGHTS_NAME).exists()


def test_registry_refuses_a_second_class_with_a_builtin_name():
    duplicate = type("GrayNormalizer", (GrayNormalizer,), {})
    with pytest.raises(ValueError, match="already registered"):
        register_normalizer(duplicate)
    with pytest.raises(TypeError, match="StainNormalizer subclass"):
        register_normalizer(dict)


def test_load_folder_is_the_shared_loading_path(saved_toy, toy_tiles):
    loaded = load_folder(saved_toy)
    assert isinstance(loaded, ToyNetNormalizer)


def test_incomplete_config_is_named(saved_toy):
    _edit_config(saved_toy, lambda config: config.pop("arrays"))
    with pytest.raises(
        ValueError, match=rf"{WEIGHTS_NAME} .*: incomplete, lacks the keys \['arrays'\]"
    ):
        load(saved_toy)


def test_fitted_module_without_a_rebuild_hook_is_refused_when_saving(toy_tiles, tmp_path):
    estimator = GrayNormalizer().fit(toy_tiles)
    estimator.net_ = torch.nn.Linear(2, 2)
    with pytest.raises(TypeError, match="no _build_modules"):
        estimator.save_pretrained(tmp_path)


# ------------------------------------------------------------------- folder format 2, format 1
def test_config_json_is_for_people_an_edited_one_is_ignored_with_a_warning(
    toy_tiles, tmp_path, caplog
):
    estimator = ToyNetNormalizer().fit(toy_tiles)
    estimator.save_pretrained(tmp_path)
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    config["params"]["width"] = 5
    (tmp_path / CONFIG_NAME).write_text(json.dumps(config))
    loaded = load(tmp_path)
    assert loaded.width == 3
    assert f"{tmp_path / CONFIG_NAME}: differs from the configuration embedded" in caplog.text
    np.testing.assert_array_equal(loaded.transform(toy_tiles), estimator.transform(toy_tiles))

    (tmp_path / CONFIG_NAME).unlink()
    assert load(tmp_path).width == 3


@pytest.mark.parametrize("method", ["gray", "reinhard", "macenko", "histogram", "wsics"])
def test_folders_of_format_1_still_load(method, target_tiles, source_tiles, tmp_path):
    estimator = method_class(method)().fit(target_tiles)
    estimator.save_pretrained(tmp_path)
    as_format1(tmp_path)
    assert json.loads((tmp_path / CONFIG_NAME).read_text())["stainstyle_format"] == 1
    np.testing.assert_array_equal(
        load(tmp_path).transform(source_tiles), estimator.transform(source_tiles)
    )


def test_tampered_weights_of_a_format_1_folder_are_rejected(saved_toy):
    as_format1(saved_toy)
    data = bytearray((saved_toy / WEIGHTS_NAME).read_bytes())
    data[-1] ^= 0xFF
    (saved_toy / WEIGHTS_NAME).write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{WEIGHTS_NAME}: its SHA-256 does not match"):
        load(saved_toy)


def test_two_saves_of_one_model_are_identical_files(toy_tiles, tmp_path):
    estimator = ToyNetNormalizer().fit(toy_tiles)
    estimator.save_pretrained(tmp_path / "a")
    estimator.save_pretrained(tmp_path / "b")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


# ------------------------------------------------------ fitted state: declarations, overrides
def test_overriding_a_parameter_the_fitted_state_depends_on_is_refused(target_tiles, tmp_path):
    from stainstyle.methods.reinhard import ReinhardNormalizer

    ReinhardNormalizer().fit(target_tiles).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"^space: .*lab_ruderman.*fit a new model"):
        load(tmp_path, space="lab_cie")
    with pytest.raises(ValueError, match=r"^tissue_mask: "):
        load(tmp_path, tissue_mask=False)
    with pytest.raises(ValueError, match=r"^tissue_only: "):
        load(tmp_path, tissue_only=False)
    assert load(tmp_path, space="lab_ruderman").space == "lab_ruderman"  # the saved value
    loaded = load(tmp_path, batch_size=3, passthrough_background=True)
    assert loaded.batch_size == 3 and loaded.passthrough_background is True


def test_from_reference_refuses_zero_stain_vectors():
    from stainstyle.methods.macenko import MacenkoNormalizer

    with pytest.raises(ValueError, match=r"^stain_matrix: .*positive norm"):
        MacenkoNormalizer.from_reference(stain_matrix=np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"^stain_matrix: .*finite"):
        MacenkoNormalizer.from_reference(stain_matrix=np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match=r"^max_concentrations: "):
        MacenkoNormalizer.from_reference(max_concentrations=[1.0, 0.0])
    with pytest.raises(ValueError, match=r"^stain_matrix: expected an array of numbers"):
        MacenkoNormalizer.from_reference(stain_matrix=[["a", "b"]] * 3)


def test_every_fitted_attribute_of_each_method_is_declared(target_tiles):
    from stainstyle._persistence.capture import fitted_names

    for method in sorted(BUILTIN_METHODS):
        estimator = _fitted(method, target_tiles[:, :32, :32] if method == "sst" else target_tiles)
        declared = type(estimator)._fitted_attributes
        assert set(fitted_names(estimator)) == set(declared), method
        params = set(estimator.get_params())
        assert set(type(estimator)._fit_dependent_params) <= params, method
        assert set(type(estimator)._machine_local_params) <= params, method


# ------------------------------------------------------- machine-local run settings (defect 6)
def test_a_loaded_model_does_not_resume_from_the_trainers_checkpoints(tmp_path, monkeypatch):
    from _support import he_tiles

    import stainstyle.sst.estimator as sst_module

    tiny = dict(width=4, depth=2, crop_size=16, max_epochs=1, lambda_fp=0)
    checkpoints = tmp_path / "checkpoints"
    trainer = sst_module.StainStyleTransfer(
        **tiny, checkpoint_dir=str(checkpoints), resume=True, device="cpu"
    ).fit(he_tiles(4, 32, seed=1))
    trainer.save_pretrained(tmp_path / "model")
    params = json.loads((tmp_path / "model" / CONFIG_NAME).read_text())["params"]
    assert (params["checkpoint_dir"], params["resume"], params["device"]) == (None, False, "auto")
    assert str(checkpoints) not in (tmp_path / "model" / "README.md").read_text()
    before = {p.name: p.stat().st_mtime_ns for p in checkpoints.iterdir()}

    loaded = load(tmp_path / "model")
    assert (loaded.checkpoint_dir, loaded.resume, loaded.device) == (None, False, "auto")
    assert load(tmp_path / "model", device="cpu").device == "cpu"  # overrides still apply

    opened = []
    real_load_checkpoint = sst_module.load_checkpoint
    monkeypatch.setattr(
        sst_module,
        "load_checkpoint",
        lambda folder, *a, **k: opened.append(folder) or real_load_checkpoint(folder, *a, **k),
    )
    other_tiles = he_tiles(4, 32, seed=7)
    loaded.set_params(device="cpu").fit(other_tiles)
    assert opened == []
    assert {p.name: p.stat().st_mtime_ns for p in checkpoints.iterdir()} == before

    fresh = sst_module.StainStyleTransfer(**tiny, device="cpu").fit(other_tiles)
    saved_weights = trainer.generator_.state_dict()
    for key, value in loaded.generator_.state_dict().items():
        torch.testing.assert_close(value, fresh.generator_.state_dict()[key], rtol=0, atol=0)
    assert any(
        not torch.equal(value, saved_weights[key])
        for key, value in loaded.generator_.state_dict().items()
        if value.is_floating_point()
    )


def test_a_state_that_loading_would_refuse_is_not_saved(target_tiles, toy_tiles, tmp_path):
    from stainstyle.methods.reinhard import ReinhardNormalizer

    estimator = ReinhardNormalizer().fit(target_tiles)
    estimator.target_stds_ = np.array([1.0, np.nan, 1.0])
    with pytest.raises(ValueError, match=r"ReinhardNormalizer.target_stds_: cannot be saved"):
        estimator.save_pretrained(tmp_path / "reinhard")
    toy = ToyNetNormalizer().fit(toy_tiles)
    with torch.no_grad():
        toy.net_.conv.weight[0] = float("inf")
    with pytest.raises(ValueError, match=r"ToyNetNormalizer.net_: cannot be saved.*finite"):
        toy.save_pretrained(tmp_path / "toy")
    assert not (tmp_path / "reinhard" / WEIGHTS_NAME).exists()


def test_a_big_endian_fitted_array_saves_and_loads(tmp_path):
    from stainstyle.methods.reinhard import ReinhardNormalizer

    tiles = he_tiles(2, 64, seed=5)
    model = ReinhardNormalizer().fit(tiles)
    expected = model.transform(tiles)
    model.target_means_ = model.target_means_.astype(">f8")
    model.save_pretrained(tmp_path / "model")
    loaded = load(tmp_path / "model")
    assert loaded.target_means_.dtype == np.float64
    np.testing.assert_array_equal(loaded.transform(tiles), expected)
