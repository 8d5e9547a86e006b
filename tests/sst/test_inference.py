"""Windowed inference of the generator (``stainstyle.sst.inference.colorize``).

``colorize`` streams: it blends one row of windows at a time and rounds finished rows to uint8
at once. These tests pin its output to the whole-image accumulator it replaced, bit for bit,
and check that its memory does not grow with the image.
"""

import copy
import json

import numpy as np
import pytest
import torch
from _support import ROOT, run_python

from stainstyle.sst._torch import build_seeded, to_tensor, to_uint8
from stainstyle.sst.fusionnet import FusionNet
from stainstyle.sst.inference import (
    PASS_PIXELS,
    blend_weights,
    colorize,
    prepare_generator,
    window_starts,
)

CPU = torch.device("cpu")


@torch.no_grad()
def colorize_whole_image(generator, gray, *, window, overlap, device, batch_size=32):
    """The former implementation: one float32 accumulator of the whole output."""
    n, height, width = gray.shape
    tops, lefts = window_starts(height, window, overlap), window_starts(width, window, overlap)
    ph, pw = min(window, height), min(window, width)
    boxes = [(t, s) for t in tops for s in lefts]
    weights = torch.from_numpy(blend_weights(window, overlap)[:ph, :pw]).to(device)
    if len(boxes) == 1:
        weights = torch.ones_like(weights)
    accum = torch.zeros(n, 3, height, width, device=device)
    total = torch.zeros(height, width, device=device)
    patches = [(i, t, s) for i in range(n) for t, s in boxes]
    for start in range(0, len(patches), batch_size):
        chunk = patches[start : start + batch_size]
        batch = np.stack([gray[i, t : t + ph, s : s + pw] for i, t, s in chunk])
        y = (generator(to_tensor(batch, device) * 2 - 1).float() + 1) / 2
        for (i, t, s), out in zip(chunk, y, strict=True):
            accum[i, :, t : t + ph, s : s + pw] += out * weights
    for t, s in boxes:
        total[t : t + ph, s : s + pw] += weights
    return to_uint8(accum / total)


class PositionDependent(torch.nn.Module):
    """Colour that depends on the position in the window: windows disagree where they overlap."""

    def forward(self, x):
        h, w = x.shape[-2:]
        ramp = torch.linspace(-0.6, 0.4, w).view(1, 1, 1, w) * torch.linspace(1, 0.5, h).view(
            1, 1, h, 1
        )
        return torch.cat([x + ramp, x * 0.8 - ramp, (x * ramp).tanh()], dim=1).clamp(-1, 1)


@pytest.fixture(scope="module")
def fusionnet():
    return build_seeded(lambda: {"g": FusionNet(width=4, depth=2)}, 3)["g"].eval()


@pytest.mark.parametrize(
    ("shape", "window", "overlap", "batch_size"),
    [
        ((37, 23), 16, 4, 7),
        ((16, 16), 16, 4, 32),
        ((5, 90), 16, 4, 3),
        ((70, 45), 16, 0, 5),
        ((61, 29), 16, 12, 32),
        ((9, 100), 8, 7, 1),
        ((100, 9), 8, 7, 64),
        ((131, 67), 32, 8, 6),
        ((3, 3), 16, 4, 2),
    ],
)
@pytest.mark.parametrize("net", ["fusionnet", "position"])
def test_streaming_equals_whole_image_accumulator(shape, window, overlap, batch_size, net, request):
    generator = request.getfixturevalue("fusionnet") if net == "fusionnet" else PositionDependent()
    gray = np.random.default_rng(sum(shape)).integers(0, 256, (3, *shape), dtype=np.uint8)
    kwargs = {"window": window, "overlap": overlap, "device": CPU, "batch_size": batch_size}
    expected = colorize_whole_image(generator, gray, **kwargs)
    out = colorize(generator, gray, **kwargs)
    assert out.shape == (3, *shape, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


def test_input_is_not_modified(fusionnet):
    gray = np.random.default_rng(0).integers(0, 256, (2, 40, 40), dtype=np.uint8)
    before = gray.copy()
    colorize(fusionnet, gray, window=16, overlap=4, device=CPU)
    np.testing.assert_array_equal(gray, before)


@pytest.mark.parametrize(
    ("gray", "kwargs", "match"),
    [
        (np.zeros((8, 8), np.uint8), {}, r"gray: expected a uint8 array of shape \(N, H, W\)"),
        (np.zeros((1, 8, 8), np.float32), {}, "dtype float32"),
        (np.zeros((1, 8, 8), np.uint8), {"overlap": 16}, "overlap=16"),
        (np.zeros((1, 8, 8), np.uint8), {"overlap": -1}, "overlap=-1"),
        (np.zeros((1, 8, 8), np.uint8), {"batch_size": 0}, "batch_size: expected an int >= 1"),
    ],
)
def test_bad_arguments(gray, kwargs, match):
    with pytest.raises(ValueError, match=match):
        colorize(PositionDependent(), gray, **{"window": 16, "overlap": 4, "device": CPU, **kwargs})


MEMORY_SCRIPT = """
import contextlib, json, resource, sys
import numpy as np, torch
from stainstyle.sst.inference import colorize

class GrayToRGB(torch.nn.Module):
    def forward(self, x):
        return x.repeat(1, 3, 1, 1)

def peak_rss():
    # VmHWM is this process's own peak; ru_maxrss also counts the parent's RSS at fork time.
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))

side = int(sys.argv[1])
gray = np.empty((1, side, side), np.uint8)
gray[0] = (np.arange(side) % 251).astype(np.uint8)[None, :]
cpu = torch.device("cpu")
colorize(GrayToRGB(), gray[:, :300, :300], window=128, overlap=32, device=cpu)  # warm up
with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # start the peak from here (Linux >= 4.0)
with open("/proc/self/statm") as f:
    before = int(f.read().split()[1]) * resource.getpagesize()
out = colorize(GrayToRGB(), gray, window=128, overlap=32, device=cpu, batch_size=8)
assert out.shape == (1, side, side, 3)
print(json.dumps({"extra": peak_rss() - before, "image": side * side * 3}))
"""


def test_memory_is_bounded_by_a_band_of_windows(tmp_path):
    """Peak memory of colorize beyond its output stays far below the image's own size."""
    script = tmp_path / "colorize_memory.py"
    script.write_text(MEMORY_SCRIPT)
    result = json.loads(run_python([script, 2048], cwd=ROOT).strip().splitlines()[-1])
    # The output itself is 1x the image (H*W*3 bytes) and the band about 0.5x at this size; the
    # former whole-image accumulator and its uint8 conversion needed about 18x.
    assert result["extra"] < 4.0 * result["image"], result


class RecordsBatches(torch.nn.Module):
    """A pointwise colouring that records how many windows each forward pass gets."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return torch.cat([x, -x, x * 0.5], dim=1)


def test_whole_tiles_are_coloured_in_one_window_without_blending(fusionnet):
    gray = np.random.default_rng(5).integers(0, 256, (5, 40, 24), dtype=np.uint8)
    out = colorize(fusionnet, gray, window=64, overlap=16, device=CPU, batch_size=2)
    with torch.no_grad():
        direct = to_uint8((fusionnet(to_tensor(gray) * 2 - 1) + 1) / 2)
    np.testing.assert_array_equal(out, direct)


def test_windows_per_pass_are_capped_by_pixels():
    generator = RecordsBatches()
    gray = np.zeros((20, 512, 512), dtype=np.uint8)
    colorize(generator, gray, window=512, overlap=128, device=CPU, batch_size=32)
    assert generator.batches == [PASS_PIXELS // 512**2] * (20 // 8) + [20 % 8]


def test_prepared_generator_folds_batchnorm_and_computes_the_same(fusionnet):
    trained = copy.deepcopy(fusionnet).train()
    x = torch.rand(4, 1, 24, 40) * 2 - 1
    with torch.no_grad():
        trained(x)  # moves the BatchNorm running statistics away from their initial values
        trained.eval()
        expected = trained(x)
        before = {k: v.clone() for k, v in trained.state_dict().items()}
        prepared = prepare_generator(trained, CPU)
        got = prepared(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())
    assert not prepared.training
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    for key, value in trained.state_dict().items():
        assert torch.equal(value, before[key]), key  # the trained generator is left alone
