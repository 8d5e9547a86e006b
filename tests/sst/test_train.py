import json

import numpy as np
import pytest
import torch

from stainstyle.sst.checkpoint import TrainState, load_checkpoint, save_checkpoint
from stainstyle.sst.classifier import TileNet
from stainstyle.sst.discriminator import DCGANDiscriminator
from stainstyle.sst.fusionnet import FusionNet
from stainstyle.sst.inference import blend_weights, colorize, window_starts
from stainstyle.sst.losses import FeaturePreservingLoss
from stainstyle.sst.setup import TrainConfig, make_modules
from stainstyle.sst.train import (
    jitter_gray,
    make_pairs,
    split_pairs,
    train,
    train_step,
)

CPU = torch.device("cpu")


class GrayToRGB(torch.nn.Module):
    def forward(self, x):
        return x.repeat(1, 3, 1, 1)


class PositionDependent(torch.nn.Module):
    """Adds a border-dependent offset: windows disagree near their borders."""

    def forward(self, x):
        h, w = x.shape[-2:]
        ramp = torch.linspace(-0.2, 0.2, w).view(1, 1, 1, w).expand(1, 1, h, w)
        return (x + ramp).repeat(1, 3, 1, 1).clamp(-1, 1)


@pytest.mark.parametrize(
    ("length", "window", "overlap"), [(5, 8, 2), (8, 8, 2), (9, 8, 2), (100, 32, 8)]
)
def test_windows_cover_the_image(length, window, overlap):
    starts = window_starts(length, window, overlap)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s : s + window] = True
    assert covered.all() and starts[0] == 0
    assert all(b - a <= window - overlap for a, b in zip(starts, starts[1:], strict=False))


def test_blend_weights_positive():
    w = blend_weights(16, 4)
    assert w.shape == (16, 16) and w.min() > 0 and w[8, 8] == 1


@pytest.mark.parametrize("shape", [(70, 45), (16, 16), (5, 90)])
def test_colorize_windows_reproduce_a_pointwise_generator(shape):
    gray = np.random.default_rng(0).integers(0, 256, (2, *shape), dtype=np.uint8)
    out = colorize(GrayToRGB(), gray, window=16, overlap=4, device=CPU, batch_size=7)
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=-1))


def test_colorize_blends_smoothly():
    gray = np.full((1, 16, 64), 128, np.uint8)
    out = colorize(PositionDependent(), gray, window=16, overlap=8, device=CPU)[0, 8, :, 0]
    jumps = np.abs(np.diff(out.astype(int)))
    # Hard window edges would jump by the full ramp (about 25 levels); blended, steps stay small.
    assert jumps.max() <= 4


def test_jitter_gray():
    rng = np.random.default_rng(0)
    gray = torch.rand(64, 1, 8, 8)
    assert torch.equal(jitter_gray(gray, 0.0, 1.0, rng), gray)
    assert torch.equal(jitter_gray(gray, 0.2, 0.0, rng), gray)
    out = jitter_gray(gray, 0.2, 0.5, rng)
    assert out.min() >= 0 and out.max() <= 1
    changed = (out - gray).abs().flatten(1).amax(1) > 1e-6
    assert 10 < changed.sum() < 54


def _modules(feature_loss=None, seed=0):
    torch.manual_seed(seed)
    config = TrainConfig(crop_size=16, batch_size=4)
    return make_modules(
        FusionNet(width=4, depth=2), DCGANDiscriminator(16, width=8), feature_loss, config, CPU
    ), config


def test_train_step_updates_generator_not_the_frozen_classifier():
    classifier = TileNet("resnet18", 2)
    classifier.train()
    with torch.no_grad():
        classifier(torch.rand(4, 3, 32, 32))  # non-trivial BatchNorm statistics
    fp = FeaturePreservingLoss(classifier)
    frozen = {k: v.clone() for k, v in fp.classifier.state_dict().items()}
    modules, config = _modules(fp)
    before = [p.detach().clone() for p in modules.generator.parameters()]
    modules.generator.train()
    gray, color = torch.rand(4, 1, 16, 16) * 2 - 1, torch.rand(4, 3, 16, 16) * 2 - 1
    losses = train_step(modules, gray, color, config)
    assert set(losses) == {"d", "gan", "l1", "fp", "g"} and losses["fp"] > 0
    assert any(
        not torch.equal(a, b) for a, b in zip(before, modules.generator.parameters(), strict=True)
    )
    for key, value in fp.classifier.state_dict().items():
        assert torch.equal(value, frozen[key]), key
    assert all(p.grad is None for p in fp.classifier.parameters())
    assert all(p.requires_grad for p in modules.discriminator.parameters())


def test_checkpoint_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (6, 20, 20, 3), dtype=np.uint8)
    pairs = make_pairs(list(tiles), [t[..., 0] for t in tiles])
    modules, config = _modules()
    config.checkpoint_dir = str(tmp_path)
    state = train(modules, pairs, config, TrainState.start(0), 2, device=CPU, validation=pairs[:2])
    assert state.epoch == 2 and "val_psnr" in state.history[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint.json",
        "state-epoch00002.safetensors",
    ]
    meta = json.loads((tmp_path / "checkpoint.json").read_text())
    assert meta["epoch"] == 2 and meta["tensors"] == "state-epoch00002.safetensors"

    fresh, _ = _modules(seed=1)
    restored = load_checkpoint(tmp_path, fresh, CPU)
    assert restored.epoch == 2 and restored.step == state.step
    assert restored.rng.bit_generator.state == state.rng.bit_generator.state
    for a, b in zip(
        modules.generator.state_dict().values(), fresh.generator.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    saved = modules.opt_g.state_dict()["state"]
    loaded = fresh.opt_g.state_dict()["state"]
    assert saved.keys() == loaded.keys()
    for index in saved:
        for key in saved[index]:
            assert torch.equal(
                torch.as_tensor(saved[index][key]), torch.as_tensor(loaded[index][key])
            )
    assert load_checkpoint(tmp_path / "missing", fresh, CPU) is None


def test_checkpoint_of_other_sizes_is_rejected(tmp_path):
    modules, config = _modules()
    save_checkpoint(tmp_path, modules, TrainState.start(0), config)
    other = make_modules(
        FusionNet(width=8, depth=2), DCGANDiscriminator(16, width=8), None, config, CPU
    )
    with pytest.raises(ValueError, match="other network sizes"):
        load_checkpoint(tmp_path, other, CPU)


def test_time_budget_stops_training():
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    pairs = make_pairs(list(tiles), [t[..., 0] for t in tiles])
    modules, config = _modules()
    config.time_budget = 1e-6
    state = train(modules, pairs, config, TrainState.start(0), 50, device=CPU)
    assert state.epoch == 1 and state.history[0]["steps"] == 1


@pytest.mark.parametrize(("n", "fraction", "n_val"), [(10, 0.1, 1), (10, 0.25, 2), (3, 0.9, 2)])
def test_split_pairs_holds_out_a_seeded_share(n, fraction, n_val):
    pairs = [np.full((4, 4, 4), i, np.uint8) for i in range(n)]
    training, validation = split_pairs(pairs, fraction, seed=0)
    assert len(validation) == n_val and len(training) == n - n_val
    ids = sorted(int(p[0, 0, 0]) for p in training + validation)
    assert ids == list(range(n))  # every tile once, in one of the two
    again = split_pairs(pairs, fraction, seed=0)
    assert [p[0, 0, 0] for p in again[1]] == [p[0, 0, 0] for p in validation]


def test_split_pairs_keeps_a_single_tile_for_training():
    pair = np.zeros((4, 4, 4), np.uint8)
    training, validation = split_pairs([pair], 0.5, seed=0)
    assert len(training) == 1 and validation == []
