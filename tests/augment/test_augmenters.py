"""Properties every augmenter has: layout, dtype, identity, spread, numpy-torch parity."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _support import he_tiles, read_rgb, require_data, tile_batches
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from _augmenters import NAMES, make, tissue_mean  # noqa: E402

from stainstyle.augment import HED_LIGHT, HED_STRONG, HEDJitter, RandStainNA  # noqa: E402

TILES = he_tiles(3, 48, seed=1)
FAST = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(batch=tile_batches(max_tiles=3, max_side=40), strength=st.sampled_from([0.05, 0.2, 0.5]))
def test_numpy_and_torch_agree_for_the_same_seed(name, batch, strength):
    numpy_out = make(name, strength, random_state=7)(batch)
    torch_out = make(name, strength, random_state=7)(nchw(batch)).permute(0, 2, 3, 1).numpy()
    assert numpy_out.shape == batch.shape and numpy_out.dtype == np.uint8
    assert np.abs(numpy_out.astype(int) - torch_out).max() <= 1


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(batch=tile_batches(max_tiles=3, max_side=40))
def test_float_input_gives_float_output_near_the_uint8_result(name, batch):
    floats = batch.astype(np.float32) / 255
    out = make(name, random_state=1)(floats)
    assert out.dtype == np.float32 and out.shape == batch.shape
    assert np.all(np.isfinite(out)) and out.min() >= 0 and out.max() <= 1
    as_uint8 = make(name, random_state=1)(batch)
    assert np.abs(out * 255 - as_uint8).max() <= 1.0
    # Channels first, as torchvision: a channels-last tensor whose height is 3 would be ambiguous.
    tensor_out = make(name, random_state=1)(nchw(floats))
    assert tensor_out.dtype == torch.float32
    assert np.abs(tensor_out.permute(0, 2, 3, 1).numpy() - out).max() * 255 <= 1.0


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(batch=tile_batches(max_tiles=3, max_side=40))
def test_strength_zero_is_the_identity(name, batch):
    augmenter = make(name, 0.0)
    assert np.array_equal(augmenter(batch), batch)
    assert torch.equal(augmenter(nchw(batch)), nchw(batch))
    floats = batch / 255.0
    assert np.array_equal(augmenter(floats), floats)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("shape", "layout"),
    [((2, 3, 24, 20), "chw"), ((3, 24, 20), "chw"), ((2, 24, 20, 3), "hwc"), ((24, 20, 3), "hwc")],
)
@pytest.mark.parametrize(
    "dtype", [torch.uint8, torch.float32, torch.float64, torch.float16, torch.bfloat16], ids=str
)
def test_tensor_shape_dtype_and_device_kept(name, shape, layout, dtype):
    tiles = he_tiles(2, 24, seed=5)[:, :, :20]
    x = torch.from_numpy(tiles)
    x = x if dtype == torch.uint8 else x.to(dtype) / 255
    if layout == "chw":
        x = x.permute(0, 3, 1, 2)
    x = x[0] if len(shape) == 3 else x
    out = make(name)(x)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert not torch.isnan(out.float()).any()
    assert not torch.equal(out, x)


@pytest.mark.parametrize("name", NAMES)
def test_numpy_tile_batch_and_list(name):
    augmenter = make(name)
    one = augmenter(TILES[0])
    assert one.shape == TILES[0].shape and one.dtype == np.uint8
    listed = augmenter([TILES[0], TILES[1][:40, :30]])
    assert isinstance(listed, list) and listed[1].shape == (40, 30, 3)


@pytest.mark.parametrize("name", NAMES)
def test_background_tiles_pass_through_unchanged(name):
    white = np.full((32, 32, 3), 250, np.uint8)
    black = np.zeros((32, 32, 3), np.uint8)
    batch = np.stack([white, he_tiles(1, 32, seed=2)[0], black])
    for strength in (0.2, 0.6):
        out = make(name, strength)(batch)
        assert np.array_equal(out[0], white) and np.array_equal(out[2], black)
        assert not np.array_equal(out[1], batch[1])
        tensor_out = make(name, strength)(nchw(batch))
        assert torch.equal(tensor_out[0], nchw(batch)[0])
        assert torch.equal(tensor_out[2], nchw(batch)[2])
    floats = batch.astype(np.float64) / 255 + 1e-9  # not representable on the uint8 grid
    out = make(name)(floats)
    assert np.array_equal(out[0], floats[0]) and np.array_equal(out[2], floats[2])


@pytest.mark.parametrize("name", NAMES)
def test_same_stream_draws_new_parameters_per_call_and_seed_reproduces(name):
    augmenter = make(name, random_state=3)
    first, second = augmenter(TILES), augmenter(TILES)
    assert not np.array_equal(first, second)
    assert np.array_equal(make(name, random_state=3)(TILES), first)
    assert np.array_equal(make(name, random_state=None)(TILES, random_state=3), first)
    generator = np.random.default_rng(3)
    assert np.array_equal(make(name, random_state=generator)(TILES), first)


def real_tiles(count: int = 4, size: int = 128) -> np.ndarray:
    folder = require_data("camelyon17_tiles")
    paths = sorted(folder.rglob("*.png"))[:count]
    return np.stack([read_rgb(path)[:size, :size] for path in paths])


@pytest.mark.parametrize("name", NAMES)
def test_spread_of_tile_colour_grows_with_strength(name):
    tile = real_tiles(1)[0]
    copies = np.repeat(tile[None], 24, axis=0)
    spreads = [tissue_mean(make(name, s, random_state=0)(copies)).std(axis=0).sum()
               for s in (0.0, 0.05, 0.2, 0.6)]  # fmt: skip
    assert spreads[0] == 0
    assert spreads[0] < spreads[1] < spreads[2] < spreads[3], spreads


def test_hed_presets_are_the_papers():
    assert (HED_LIGHT, HED_STRONG) == (0.05, 0.2)
    tiles = real_tiles(2)
    light = HEDJitter("light", random_state=0)(tiles)
    assert np.array_equal(light, HEDJitter(0.05, random_state=0)(tiles))


def test_randstainna_fit_on_real_tiles_picks_each_space():
    tiles = real_tiles(4)
    augmenter = RandStainNA(random_state=0).fit(tiles)
    assert augmenter.n_tiles_ == 4 and augmenter.loc_.shape == (3, 2, 3)
    assert np.all(augmenter.scale_ >= 0)
    drawn = augmenter._draw(np.random.default_rng(0), 300)["space"]
    assert set(np.unique(drawn)) == {0, 1, 2}
    single = RandStainNA("hed", std_hyper=-1.0, random_state=0).fit(tiles)
    out = single(tiles)  # every tile to the average template: spread shrinks
    assert tissue_mean(out).std(axis=0).sum() < tissue_mean(tiles).std(axis=0).sum()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_tensor_stays_on_its_device_and_agrees_with_numpy(name):
    x = nchw(TILES).cuda()
    out = make(name, random_state=4)(x)
    assert out.device == x.device and out.dtype == torch.uint8
    expected = make(name, random_state=4)(TILES)
    assert np.abs(out.permute(0, 2, 3, 1).cpu().numpy().astype(int) - expected).max() <= 1
