import numpy as np
import pytest
import torch

from stainstyle.sst._torch import build_seeded
from stainstyle.sst.classifier import TileNet
from stainstyle.sst.discriminator import DCGANDiscriminator
from stainstyle.sst.fusionnet import FusionNet, init_weights
from stainstyle.sst.losses import FeaturePreservingLoss, GANLoss


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"width": 64}, 78_532_803),
        ({"width": 64, "in_channels": 3}, 78_533_955),
        ({"width": 32}, 19_645_539),
        ({"width": 16}, 4_917_555),
    ],
)
def test_fusionnet_parameter_count(kwargs, expected):
    assert n_params(FusionNet(**kwargs)) == expected


@pytest.mark.parametrize("shape", [(17, 23), (1, 1), (5, 40), (64, 64), (33, 8)])
def test_fusionnet_keeps_shape(shape):
    net = FusionNet(width=4, depth=3).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 1, *shape) * 2 - 1)
    assert out.shape == (2, 3, *shape)
    assert out.abs().max() <= 1


def test_fusionnet_bad_args():
    with pytest.raises(ValueError, match="depth"):
        FusionNet(depth=0)
    with pytest.raises(ValueError, match="width"):
        FusionNet(width=0)


@pytest.mark.parametrize(("size", "expected"), [(64, 2_766_592), (256, 11_157_248)])
def test_discriminator_parameter_count(size, expected):
    disc = DCGANDiscriminator(size)
    assert n_params(disc) == expected
    assert disc(torch.zeros(2, 1, size, size), torch.zeros(2, 3, size, size)).shape == (2,)


def test_discriminator_rejects_bad_sizes():
    with pytest.raises(ValueError, match="crop_size"):
        DCGANDiscriminator(48)
    with pytest.raises(ValueError, match="condition"):
        DCGANDiscriminator(16, width=4)(torch.zeros(1, 1, 32, 32), torch.zeros(1, 3, 32, 32))


def test_gan_loss_labels():
    loss = GANLoss()
    logits = torch.tensor([3.0, -2.0])
    expected_real = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones(2))
    torch.testing.assert_close(loss(logits, True), expected_real)
    expected_fake = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.zeros(2))
    torch.testing.assert_close(loss(logits, False), expected_fake)
    assert loss.real_label.item() == 1.0 and loss.fake_label.item() == 0.0


@pytest.mark.parametrize("mode", ["gap_mse", "softmax_kl"])
def test_feature_loss_gradients_reach_generator_not_classifier(mode):
    torch.manual_seed(0)
    classifier = TileNet("resnet18", 2)
    # Give BatchNorm non-trivial running statistics, as a trained classifier has.
    classifier.train()
    with torch.no_grad():
        classifier(torch.rand(4, 3, 32, 32))
    before = {k: v.clone() for k, v in classifier.state_dict().items()}
    loss_fn = FeaturePreservingLoss(classifier, mode=mode)
    frozen_before = {k: v.clone() for k, v in loss_fn.classifier.state_dict().items()}
    generator = FusionNet(width=4, depth=2)
    torch.nn.ModuleDict({"g": generator, "fp": loss_fn}).train()
    assert not loss_fn.classifier.training

    real = torch.rand(2, 3, 32, 32)
    fake = (generator(torch.rand(2, 1, 32, 32)) + 1) / 2
    loss = loss_fn(real, fake)
    assert loss.item() > 0
    loss.backward()
    grads = [p.grad for p in generator.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    assert all(p.grad is None for p in loss_fn.classifier.parameters())
    for key, value in loss_fn.classifier.state_dict().items():
        torch.testing.assert_close(value, frozen_before[key], rtol=0, atol=0)
    for key, value in classifier.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_feature_loss_zero_on_identity():
    loss_fn = FeaturePreservingLoss(TileNet("resnet18", 2))
    x = torch.rand(2, 3, 32, 32)
    assert loss_fn(x, x).item() == pytest.approx(0.0, abs=1e-10)
    with pytest.raises(ValueError, match="mode"):
        FeaturePreservingLoss(TileNet("resnet18", 2), mode="l2")


def test_feature_loss_matches_formula():
    net = TileNet("resnet18", 2).eval()
    loss_fn = FeaturePreservingLoss(net)
    real, fake = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        fr, _ = net.features_and_logits(real)
        ff, _ = net.features_and_logits(fake)
    expected = ((fr - ff) ** 2).sum(1).mean() / 512
    assert loss_fn(real, fake).item() == pytest.approx(expected.item(), rel=1e-5)
    assert np.isfinite(loss_fn(real, fake).item())


@pytest.mark.parametrize(
    "build",
    [
        lambda: FusionNet(width=4, depth=2),
        lambda: DCGANDiscriminator(32, width=4),
        lambda: TileNet("resnet18", 3),
    ],
    ids=["fusionnet", "discriminator", "tilenet"],
)
def test_reset_parameters_sets_every_tensor_from_the_generator(build):
    with torch.device("meta"):
        net = build()
    net.to_empty(device="cpu")
    with torch.no_grad():
        for tensor in [*net.parameters(), *net.buffers()]:
            tensor.fill_(float("nan") if tensor.is_floating_point() else -1)
    global_state = torch.get_rng_state()
    net.reset_parameters(torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), global_state)  # nothing drawn from the global one
    for name, tensor in [*net.named_parameters(), *net.named_buffers()]:
        if tensor.is_floating_point():
            assert torch.isfinite(tensor).all(), name
        else:
            assert (tensor == 0).all(), name  # BatchNorm's num_batches_tracked
    again = build_seeded(lambda: {"net": build()}, 7)["net"]
    for (name, a), b in zip(net.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_tilenet_follows_torchvision_initialization():
    net = build_seeded(lambda: {"net": TileNet("resnet18", 2)}, 0)["net"]
    conv = net.resnet.layer4[0].conv2  # 512 x 512 x 3 x 3: fan_out 4608
    assert abs(conv.weight.std().item() - (2 / 4608) ** 0.5) < 1e-3
    bn = net.resnet.layer4[0].bn2
    assert torch.equal(bn.weight, torch.ones(512)) and torch.equal(bn.running_var, torch.ones(512))
    bound = 1 / 512**0.5
    assert net.resnet.fc.weight.abs().max() <= bound and net.resnet.fc.bias.abs().max() <= bound
    torch.testing.assert_close(net.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))


def test_init_refuses_layers_it_cannot_initialize():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="no initialization for Linear"):
        init_weights(net, torch.Generator())
