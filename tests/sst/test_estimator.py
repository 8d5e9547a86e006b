import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone

import stainstyle.sst.train as train_module
from stainstyle.sst import StainStyleTransfer, TileClassifier
from stainstyle.sst.estimator import FeatureLossDisabledWarning
from stainstyle.sst.fusionnet import FusionNet

TINY = {"width": 4, "depth": 2, "crop_size": 16, "train_batch_size": 4, "device": "cpu"}


def tiny(**kwargs):
    return StainStyleTransfer(**{**TINY, "lambda_fp": 0.0, "max_epochs": 2, **kwargs})


def test_fit_transform_any_size(tiles):
    sst = tiny().fit(tiles)
    assert sst.epoch_ == 2 and len(sst.history_) == 2
    assert {"d", "gan", "l1", "fp", "g", "val_psnr"} <= set(sst.history_[0])
    assert isinstance(sst.generator_, FusionNet) and not sst.generator_.training
    for shape in [(32, 32), (37, 23), (15, 9), (64, 50)]:
        tile = np.ascontiguousarray(np.resize(tiles[0], (*shape, 3)))
        out = sst.transform(tile)
        assert out.shape == tile.shape and out.dtype == np.uint8


def test_float_input_gives_float_output(tiles):
    sst = tiny(max_epochs=1).fit(tiles)
    out = sst.transform(tiles[:2] / 255.0)
    assert out.shape == (2, 32, 32, 3) and out.dtype == np.float64


def test_same_seed_identical_outputs(tiles):
    a = tiny(random_state=3).fit(tiles).transform(tiles[:4])
    b = tiny(random_state=3).fit(tiles).transform(tiles[:4])
    np.testing.assert_array_equal(a, b)
    c = tiny(random_state=4).fit(tiles).transform(tiles[:4])
    assert not np.array_equal(a, c)


def test_crash_and_resume(tiles, tmp_path, monkeypatch):
    real_save = train_module.save_checkpoint

    def crash_after_epoch_2(directory, modules, state, config, **options):
        path = real_save(directory, modules, state, config, **options)
        if state.epoch == 2:
            raise KeyboardInterrupt("simulated crash")
        return path

    monkeypatch.setattr(train_module, "save_checkpoint", crash_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        tiny(max_epochs=4, checkpoint_dir=str(tmp_path)).fit(tiles)
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["checkpoint.json", "state-epoch00002.safetensors"]

    resumed = tiny(max_epochs=4, checkpoint_dir=str(tmp_path), resume=True).fit(tiles)
    assert resumed.epoch_ == 4
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3, 4]
    out = resumed.transform(tiles[:2])
    assert out.shape == (2, 32, 32, 3)
    assert np.isfinite(resumed.history_[-1]["val_psnr"])
    # Weights, optimizer moments and the sampler all come back: same result as no crash.
    uninterrupted = tiny(max_epochs=4).fit(tiles)
    np.testing.assert_array_equal(out, uninterrupted.transform(tiles[:2]))
    for name in ("generator_", "discriminator_"):
        expected = getattr(uninterrupted, name).state_dict()
        for key, value in getattr(resumed, name).state_dict().items():
            assert torch.equal(value, expected[key]), (name, key)
    for name in ("opt_g", "opt_d"):  # Adam's step counts and moments, and its settings
        ours = getattr(resumed._modules, name).state_dict()
        theirs = getattr(uninterrupted._modules, name).state_dict()
        # The checkpoint keeps the groups as JSON: Adam's betas come back as a list.
        as_lists = [{k: list(v) if isinstance(v, tuple) else v for k, v in group.items()}
                    for group in theirs["param_groups"]]  # fmt: skip
        assert ours["param_groups"] == as_lists
        assert ours["state"].keys() == theirs["state"].keys() and ours["state"]
        for index, moments in ours["state"].items():
            assert moments.keys() == theirs["state"][index].keys()
            for key, value in moments.items():
                assert torch.equal(value, theirs["state"][index][key]), (name, index, key)
    assert resumed._state.step == uninterrupted._state.step
    assert resumed._state.rng.bit_generator.state == uninterrupted._state.rng.bit_generator.state


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_half_precision_tensors_come_back_in_their_dtype(tiles, dtype):
    sst = tiny(max_epochs=1).fit(tiles)
    tensor = torch.from_numpy(tiles[:2]).to(dtype) / 255
    out = sst.transform(tensor)
    assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.shape == tensor.shape
    expected = sst.transform(tensor.float().numpy())
    np.testing.assert_allclose(out.float().numpy(), expected, rtol=2**-8, atol=0)


def test_resume_without_checkpoint_starts_fresh(tiles, tmp_path):
    sst = tiny(max_epochs=1, checkpoint_dir=str(tmp_path / "new"), resume=True).fit(tiles)
    assert sst.epoch_ == 1 and (tmp_path / "new" / "checkpoint.json").exists()


def test_warm_start_and_partial_fit(tiles):
    sst = tiny(max_epochs=1).fit(tiles)
    sst.set_params(warm_start=True).fit(tiles)
    assert sst.epoch_ == 2
    sst.partial_fit(tiles)
    assert sst.epoch_ == 3 and len(sst.history_) == 3
    sst.set_params(warm_start=False).fit(tiles)
    assert sst.epoch_ == 1
    fresh = tiny().partial_fit(tiles)
    assert fresh.epoch_ == 1


def test_continue_training_after_save_and_load(tiles, tmp_path):
    sst = tiny(max_epochs=1).fit(tiles)
    sst.save_pretrained(tmp_path / "model")
    loaded = StainStyleTransfer.from_pretrained(tmp_path / "model")
    np.testing.assert_array_equal(loaded.transform(tiles[:2]), sst.transform(tiles[:2]))
    loaded.partial_fit(tiles)
    assert loaded.epoch_ == 2 and len(loaded.history_) == 2
    assert loaded.transform(tiles[:2]).shape == (2, 32, 32, 3)


def test_feature_loss_off_warns(tiles):
    with pytest.warns(FeatureLossDisabledWarning, match="feature-preserving loss is off"):
        sst = tiny(lambda_fp=1.0, max_epochs=1).fit(tiles)
    assert sst.feature_loss_ is False and sst.history_[0]["fp"] == 0.0


def test_feature_loss_with_given_classifier(tiles):
    y = np.arange(len(tiles)) % 2
    clf = TileClassifier(arch="resnet18", epochs=1, batch_size=6, device="cpu").fit(tiles, y)
    before = {k: v.clone() for k, v in clf.model_.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error", FeatureLossDisabledWarning)
        sst = tiny(lambda_fp=1.0, max_epochs=1, classifier=clf).fit(tiles)
    assert sst.feature_loss_ is True and sst.history_[0]["fp"] > 0
    assert sst.classifier_ is None
    for key, value in clf.model_.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    assert not clf.model_.training


def test_feature_loss_with_labels_trains_classifier(tiles):
    y = np.arange(len(tiles)) % 2
    sst = tiny(lambda_fp=1.0, max_epochs=1).fit(tiles, y)
    assert isinstance(sst.classifier_, TileClassifier) and sst.feature_loss_ is True
    assert sst.classifier_.arch_ == "resnet18"
    assert sst.history_[0]["fp"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_paper_preset_without_gpu_says_so(tiles, caplog):
    with pytest.warns(UserWarning, match="sized for a GPU"):
        StainStyleTransfer(preset="paper", **{**TINY, "lambda_fp": 0.0, "max_epochs": 1}).fit(tiles)
    # Said once: as a warning, not also as a log record.
    assert not [r for r in caplog.records if "sized for a GPU" in r.getMessage()]


def test_presets_resolve_sizes(tiles):
    sst = StainStyleTransfer(preset="cpu", max_epochs=1, lambda_fp=0, device="cpu")
    sst.fit(tiles[:4])
    assert (sst.width_, sst.depth_, sst.crop_size_, sst.disc_width_) == (16, 4, 32, 32)
    # A crop larger than the tiles shrinks to the largest power of two that fits.
    sst = StainStyleTransfer(crop_size=64, max_epochs=1, lambda_fp=0, device="cpu")
    assert sst.fit(tiles[:4, :24, :30]).crop_size_ == 16


def test_build_modules_rebuilds_the_networks(tiles):
    sst = tiny(max_epochs=1).fit(tiles)
    expected = sst.transform(tiles[:2])
    rebuilt = clone(sst)
    for name in ("width_", "depth_", "crop_size_", "disc_width_"):
        setattr(rebuilt, name, getattr(sst, name))
    modules = rebuilt._build_modules()
    for name, module in modules.items():
        module.load_state_dict(getattr(sst, name).state_dict(), strict=True)
        setattr(rebuilt, name, module)
    np.testing.assert_array_equal(rebuilt.transform(tiles[:2]), expected)


def test_clone_and_params():
    sst = StainStyleTransfer(preset="paper", width=8)
    assert clone(sst).get_params() == sst.get_params()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"preset": "gpu"}, "preset"),
        ({"lambda_l1": -1.0}, "lambda_l1"),
        ({"fp_mode": "l2"}, "fp_mode"),
        ({"classifier": "resnet"}, "classifier"),
        ({"crop_size": 4}, "crop_size"),
    ],
)
def test_bad_params(tiles, kwargs, match):
    with pytest.raises(ValueError, match=match):
        StainStyleTransfer(**kwargs).fit(tiles)


def test_tiles_too_small(tiles):
    # Tissue tiles 6 pixels high: a 6x6 blank tile is already rejected as holding no tissue.
    with pytest.raises(ValueError, match="at least 8x8"):
        tiny().fit(np.ascontiguousarray(tiles[:2, 20:26]))


def test_background_passes_through(tiles):
    sst = tiny(max_epochs=1).fit(tiles)
    white = np.full((1, 32, 32, 3), 250, np.uint8)
    with pytest.warns(UserWarning, match="passed through unchanged"):
        np.testing.assert_array_equal(sst.transform(white), white)


class _GrayToRGB(torch.nn.Module):
    def forward(self, x):
        return x.repeat(1, 3, 1, 1)


def test_gray_matching(tiles):
    sst = tiny(max_epochs=1).fit(tiles)
    assert sst.gray_histogram_.shape == (256,) and sst.gray_histogram_.sum() == tiles[..., 0].size
    # Without gray matching the gray histograms of groups are measured and not used.
    np.testing.assert_array_equal(
        sst.transform(tiles[:4], groups=[0, 0, 1, 1]), sst.transform(tiles[:4])
    )
    # A generator that just shows its gray input reveals what the matching feeds it.
    sst.generator_ = _GrayToRGB()
    darker = (tiles * 0.7).astype(np.uint8)  # the same tissue from a darker lab
    reference = sst.transform(tiles)[..., 0].astype(float)
    plain = sst.transform(darker)[..., 0]
    sst.set_params(gray_matching="histogram")
    per_tile = sst.transform(darker)[..., 0]
    per_group = sst.transform(darker, groups=[0] * 6 + [1] * 6)[..., 0]
    whole = sst.transform(darker, groups=[0] * 12)[..., 0]

    def error(out):
        return np.abs(out - reference).mean()

    assert error(per_tile) < error(plain) / 4 and error(per_group) < error(plain) / 4
    # Pooled over all tiles, the gray histogram equals the target's: the matching undoes it.
    assert error(whole) < 2
