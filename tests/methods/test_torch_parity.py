"""The torch kernels of the classic methods against their numpy twins, on real H&E tiles.

Tensors are normalized by torch on their device; numpy arrays by numpy and OpenCV. The two
backends agree within a gray level: a mean absolute difference of at most 0.5 and a maximum of
at most 2 gray levels, on uint8 and float input, odd tile sizes and background tiles. Fitted
state from either backend is interchangeable. On the CPU, tensors never go through numpy.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import torch
from _support import read_rgb, require_data

from stainstyle import (
    GrayNormalizer,
    HistogramSpecification,
    MacenkoNormalizer,
    ReinhardNormalizer,
    VahadaneNormalizer,
    tile_status,
)
from stainstyle.base import BackgroundTileWarning

#: Every classic method with torch kernels, in the configurations whose kernels differ.
METHODS = {
    "reinhard": ReinhardNormalizer,
    "reinhard-cie": functools.partial(ReinhardNormalizer, space="lab_cie"),
    "reinhard-all-pixels": functools.partial(
        ReinhardNormalizer, tissue_only=False, passthrough_background=True
    ),
    "macenko": MacenkoNormalizer,
    "macenko-tissue": functools.partial(MacenkoNormalizer, tissue_only=True),
    "histogram": HistogramSpecification,
    "histogram-tissue": functools.partial(HistogramSpecification, tissue_only=True),
    "gray": GrayNormalizer,
    "vahadane": VahadaneNormalizer,
    "vahadane-tissue": functools.partial(VahadaneNormalizer, tissue_only=True),
}

#: The parity bounds, in gray levels.
MEAN_LIMIT, MAX_LIMIT = 0.5, 2


@functools.lru_cache(maxsize=1)
def camelyon() -> dict[int, list[np.ndarray]]:
    """The 512 x 512 CAMELYON17 tiles of each centre."""
    root = require_data("camelyon17_tiles")
    return {
        centre: [
            np.array(read_rgb(path)) for path in sorted((root / f"center_{centre}").glob("*.png"))
        ]
        for centre in range(5)
    }


def targets() -> np.ndarray:
    """Centre 0's tiles cut in 256 x 256 quarters."""
    return np.stack(
        [
            tile[r : r + 256, c : c + 256]
            for tile in camelyon()[0]
            for r in (0, 256)
            for c in (0, 256)
        ]
    )


def sources() -> np.ndarray:
    """A batch of 256 x 256 tiles of the other centres."""
    return np.stack(
        [tile[128:384, 100:356] for centre in (1, 2, 3, 4) for tile in camelyon()[centre]]
    )


def odd_tiles() -> list[np.ndarray]:
    """Real tiles of odd sizes, and background: near-white glass and a tile with a few cells."""
    real = camelyon()
    glass = np.clip(real[1][0][:97, :131].astype(int) // 4 + 215, 0, 255).astype(np.uint8)
    speck = glass.copy()
    speck[40:52, 60:72] = real[2][0][200:212, 200:212]
    tiles = [
        real[1][1][3:258, 7:258],  # 255 x 251
        real[2][2][:131, :197],
        real[3][0][11:300, 5:210],
        glass,
        speck,
        real[4][1][:64, :65],
    ]
    return [np.ascontiguousarray(tile) for tile in tiles]


def quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BackgroundTileWarning)
        return function(*args, **kwargs)


def differences(numpy_out: np.ndarray, torch_out: torch.Tensor, scale: float = 1.0):
    """Mean and maximum absolute difference in gray levels (``torch_out`` times ``scale``)."""
    a = np.asarray(numpy_out, dtype=np.float64)
    b = torch_out.cpu().double().numpy() * scale
    diff = np.abs(a - b)
    return float(diff.mean()), float(diff.max())


@functools.cache
def fitted(name: str):
    """The method fitted on centre 0 by numpy and by torch (CPU tensors)."""
    target = targets()
    return quiet(METHODS[name]().fit, target), quiet(METHODS[name]().fit, torch.from_numpy(target))


def fitted_state(model) -> dict[str, np.ndarray]:
    return {k: v for k, v in vars(model).items() if k.endswith("_") and not k.startswith("_")}


@pytest.mark.parametrize("name", METHODS)
def test_fits_agree_and_are_numpy(name):
    by_numpy, by_torch = fitted(name)
    numpy_state, torch_state = fitted_state(by_numpy), fitted_state(by_torch)
    assert numpy_state.keys() == torch_state.keys()
    for key, value in numpy_state.items():
        other = torch_state[key]
        assert type(other) is type(value), key
        if isinstance(value, np.ndarray):
            assert other.dtype == value.dtype and other.shape == value.shape, key
            # The torch kernels sum in float32 (the numpy path in fixed-order float64), so the
            # fitted values agree to float32's accuracy over a tile's sums, whatever the
            # number of threads: 1e-4 relative (one thread: Macenko's maxima 4e-5 apart).
            np.testing.assert_allclose(other, value, rtol=1e-4, atol=1e-5, err_msg=key)
        else:
            assert other == value, key


@pytest.mark.parametrize("name", METHODS)
def test_batch_parity_uint8_and_float(name):
    by_numpy, by_torch = fitted(name)
    batch = sources()
    expected = quiet(by_numpy.transform, batch)
    out = quiet(by_torch.transform, torch.from_numpy(batch))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8
    mean, most = differences(expected, out)
    assert mean <= MEAN_LIMIT and most <= MAX_LIMIT, (name, mean, most)
    for dtype in (torch.float32, torch.float64):
        floats = torch.from_numpy(batch).to(dtype) / 255
        out = quiet(by_torch.transform, floats)
        assert out.dtype == dtype and out.shape == floats.shape
        mean, most = differences(expected, out, 255.0)
        assert mean <= MEAN_LIMIT and most <= MAX_LIMIT + 1e-3, (name, dtype, mean, most)


@pytest.mark.parametrize("name", METHODS)
def test_odd_sizes_and_background_parity(name):
    by_numpy, by_torch = fitted(name)
    tiles = odd_tiles()
    expected = quiet(by_numpy.transform_with_status, tiles)
    out, status = quiet(by_torch.transform_with_status, [torch.from_numpy(t) for t in tiles])
    np.testing.assert_array_equal(status, expected[1])
    assert "passthrough_background" in status.tolist()
    for i, (want, got) in enumerate(zip(expected[0], out, strict=True)):
        assert isinstance(got, torch.Tensor) and tuple(got.shape) == want.shape
        if status[i] != "ok":
            np.testing.assert_array_equal(got.numpy(), tiles[i])
        mean, most = differences(want, got)
        assert mean <= MEAN_LIMIT and most <= MAX_LIMIT, (name, i, mean, most)
    np.testing.assert_array_equal(tile_status(by_torch, torch.from_numpy(tiles[3])), status[3:4])


@pytest.mark.parametrize("name", METHODS)
def test_fitted_state_is_interchangeable(name, tmp_path):
    """A torch fit maps numpy tiles as a numpy fit does, also after saving and loading."""
    by_numpy, by_torch = fitted(name)
    batch = sources()[:8]
    expected = quiet(by_numpy.transform, batch)
    mean, most = differences(expected, torch.from_numpy(quiet(by_torch.transform, batch)))
    assert mean <= MEAN_LIMIT and most <= MAX_LIMIT
    by_torch.save_pretrained(tmp_path / "model")
    loaded = type(by_torch).from_pretrained(tmp_path / "model")
    np.testing.assert_array_equal(quiet(loaded.transform, batch), quiet(by_torch.transform, batch))
    out = quiet(loaded.transform, torch.from_numpy(batch))
    mean, most = differences(expected, out)
    assert mean <= MEAN_LIMIT and most <= MAX_LIMIT


@pytest.mark.parametrize("name", METHODS)
def test_source_statistics_and_groups_on_tensors(name):
    by_numpy, by_torch = fitted(name)
    batch = sources()[:12]
    groups = np.repeat(["a", "b", "c"], 4)
    expected = quiet(by_numpy.transform, batch, groups)
    out = quiet(by_torch.transform, torch.from_numpy(batch), groups)
    mean, most = differences(expected, out)
    assert mean <= MEAN_LIMIT and most <= MAX_LIMIT, (name, mean, most)
    statistics = quiet(by_torch.source_statistics, torch.from_numpy(batch[:4]))
    expected = quiet(by_numpy.transform, batch[:4], source=by_numpy.source_statistics(batch[:4]))
    out = quiet(by_torch.transform, torch.from_numpy(batch[:4]), source=statistics)
    mean, most = differences(expected, out)
    assert mean <= MEAN_LIMIT and most <= MAX_LIMIT, (name, mean, most)


class _Transfers:
    """Records the size of every tensor handed to numpy, and refuses numpy's tile entry points."""

    def __init__(self, monkeypatch, method):
        import stainstyle.base as base

        self.sizes: list[int] = []
        numpy_of, listed = torch.Tensor.numpy, torch.Tensor.tolist

        def record(original):
            def wrapper(tensor, *args, **kwargs):
                self.sizes.append(tensor.numel())
                return original(tensor, *args, **kwargs)

            return wrapper

        def refuse(*args, **kwargs):
            raise AssertionError("a tensor reached the numpy path")

        monkeypatch.setattr(torch.Tensor, "numpy", record(numpy_of))
        monkeypatch.setattr(torch.Tensor, "tolist", record(listed))
        monkeypatch.setattr(torch.Tensor, "__array__", refuse)
        for name in ("as_tiles", "screen_tiles", "tissue_mask"):
            monkeypatch.setattr(base, name, refuse)
        monkeypatch.setattr(type(method), "_transform_batch", refuse)


@pytest.mark.parametrize("name", METHODS)
def test_cpu_tensors_never_go_through_numpy(name, monkeypatch):
    """Only statistics and per-tile flags leave torch: no array of pixels does."""
    by_numpy, _ = fitted(name)
    target = torch.from_numpy(targets()[:4].copy())
    batch = torch.from_numpy(sources()[:6].copy())
    model = METHODS[name]()
    transfers = _Transfers(monkeypatch, model)
    quiet(model.fit, target)
    out = quiet(model.transform, batch)
    out_float = quiet(model.transform, batch.float() / 255)
    quiet(model.transform, batch, source=quiet(model.source_statistics, batch[:3]))
    assert isinstance(out, torch.Tensor) and isinstance(out_float, torch.Tensor)
    # Vahadane learns each stain matrix on a sample of at most n_pixels tissue pixels
    limit = 3 * model.n_pixels if name.startswith("vahadane") else 3 * 256
    assert max(transfers.sizes) <= limit < batch[0].numel()


@pytest.mark.parametrize("name", METHODS)
def test_module_form_in_a_training_step(name):
    _, by_torch = fitted(name)
    normalize = by_torch.as_module()
    assert isinstance(normalize, torch.nn.Module) and not list(normalize.parameters())
    channels_last = torch.from_numpy(sources()[:4])
    batch = channels_last.permute(0, 3, 1, 2).float().div(255).requires_grad_(False)
    layer = torch.nn.Conv2d(3, 4, 3)
    out = quiet(normalize, batch)
    assert out.shape == batch.shape and out.dtype == batch.dtype and not out.requires_grad
    layer(out).mean().backward()
    assert layer.weight.grad is not None
    expected = quiet(by_torch.transform, channels_last.float() / 255)
    torch.testing.assert_close(out, expected.permute(0, 3, 1, 2), rtol=0, atol=0)
    with pytest.raises(ValueError, match="expected a torch.Tensor"):
        normalize(np.zeros((2, 8, 8, 3), np.uint8))


#: Non-default parameters of the stain-matrix methods: the torch kernels honour them as numpy does.
TUNED = {
    "macenko": functools.partial(MacenkoNormalizer, io=250.0, beta=0.3, alpha=5.0),
    "vahadane": functools.partial(VahadaneNormalizer, io=250.0, beta=0.3, lambda_lasso=0.1),
}


@pytest.mark.parametrize("name", TUNED)
def test_non_default_parameters_parity(name):
    target, batch = targets()[::4], sources()[::8]
    by_numpy = quiet(TUNED[name]().fit, target)
    by_torch = quiet(TUNED[name]().fit, torch.from_numpy(target))
    for key, value in fitted_state(by_numpy).items():
        np.testing.assert_allclose(getattr(by_torch, key), value, rtol=1e-4, atol=1e-5, err_msg=key)
    mean, most = differences(
        quiet(by_numpy.transform, batch), quiet(by_torch.transform, torch.from_numpy(batch))
    )
    assert mean <= MEAN_LIMIT and most <= MAX_LIMIT, (name, mean, most)


#: H and E stain vectors of synthetic tiles (Macenko's reference), unit length.
H_STAIN, E_STAIN = np.array([0.5626, 0.7201, 0.4062]), np.array([0.2159, 0.8012, 0.5581])


def traded_stains(n: int, seed: int = 0) -> np.ndarray:
    """``n`` uint8 pixels (io = 240) whose H and E concentrations trade off at a constant sum.

    The principal axis of their optical densities runs from E to H, across the mean: the
    projections onto it take both signs, as in tiles of nuclei beside stroma.
    """
    rng = np.random.default_rng(seed)
    share = rng.uniform(0.2, 0.8, n)
    total = 0.6 * (1 + 0.05 * rng.standard_normal(n))
    od = np.stack([share * total, (1 - share) * total], 1) @ np.stack([H_STAIN, E_STAIN])
    return np.clip(np.rint(240 * np.exp(-od)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("seed", [0, 1])
def test_traded_stains_are_recovered_by_both_backends(seed):
    """The eigenvector signs are made canonical: the stain angles do not wrap around at pi."""
    tile = traded_stains(48 * 48, seed).reshape(48, 48, 3)
    by_numpy = MacenkoNormalizer().fit(tile)
    by_torch = MacenkoNormalizer().fit(torch.from_numpy(tile))
    for model in (by_numpy, by_torch):
        assert model.stain_matrix_[:, 0] @ H_STAIN > 0.99
        assert model.stain_matrix_[:, 1] @ E_STAIN > 0.99
    np.testing.assert_allclose(by_torch.stain_matrix_, by_numpy.stain_matrix_, atol=1e-4)
    mean, most = differences(by_numpy.transform(tile), by_torch.transform(torch.from_numpy(tile)))
    assert mean <= MEAN_LIMIT and most <= MAX_LIMIT


@pytest.mark.parametrize(
    ("method", "stained_by"),
    [(MacenkoNormalizer, np.all), (VahadaneNormalizer, np.any)],
    ids=["macenko", "vahadane"],
)
def test_exactly_the_needed_stained_pixels_are_enough_for_both_backends(method, stained_by):
    """A tile with exactly ``min_tissue_pixels`` pixels through the method's tissue filter
    (every channel for Macenko, any channel for Vahadane) gets its own stains."""
    model = method().fit(traded_stains(48 * 48, 1).reshape(48, 48, 3))
    pixels = traded_stains(200)
    od = -np.log((pixels.astype(float) + 1) / 240)
    stained = pixels[stained_by(od >= model.beta, axis=1)][:100]
    tile = np.full((32, 32, 3), 255, np.uint8)
    tile.reshape(-1, 3)[:100] = stained  # min_tissue_pixels(32, 32) is 100
    for x in (tile, torch.from_numpy(tile)):
        np.testing.assert_array_equal(tile_status(model, x), ["ok"])
    mean, most = differences(model.transform(tile), model.transform(torch.from_numpy(tile)))
    assert mean <= MEAN_LIMIT and most <= MAX_LIMIT


def test_stains_off_the_positive_octant_agree_on_both_backends():
    """Pixels of near-constant ``r + g + 1.2 b`` optical density put the stain plane at a slant.

    Their estimated stain directions have negative components; the column signs are still
    made the same by both backends.
    """
    rng = np.random.default_rng(0)
    share = rng.uniform(0, 1, (48 * 48, 1))
    side = np.array([1.0, -1.0, 0.0]) * rng.normal(0, 0.03, (48 * 48, 1))
    od = share * np.array([0.2, 0.2, 1.3]) + (1 - share) * np.array([1.2, 0.5, 0.25]) + side
    tile = np.clip(np.rint(240 * np.exp(-od) - 1), 0, 255).astype(np.uint8).reshape(48, 48, 3)
    by_numpy = MacenkoNormalizer().fit(tile)
    by_torch = MacenkoNormalizer().fit(torch.from_numpy(tile))
    assert (by_numpy.stain_matrix_ < 0).any()
    np.testing.assert_allclose(by_torch.stain_matrix_, by_numpy.stain_matrix_, atol=1e-4)
    np.testing.assert_allclose(
        by_torch.max_concentrations_, by_numpy.max_concentrations_, atol=1e-4
    )


def test_tensor_optical_density_matches_the_float32_table():
    """Every uint8 intensity maps to the numpy path's float32 optical density, to its rounding.

    The torch path computes ``ln(io) - ln(I + 1)`` in float32; the table rounds the float64
    value once. They differ by at most one unit in the last place of values below 8 (4.8e-7).
    """
    from stainstyle.color.od import od_lut
    from stainstyle.methods._stain_tensors import optical_density

    pixels = torch.arange(256, dtype=torch.uint8).reshape(1, -1, 1).expand(1, 256, 3)
    od = optical_density(pixels, 250.0)
    assert od.dtype == torch.float32 and od.shape == (1, 256, 3)
    np.testing.assert_allclose(od[0, :, 1].numpy(), od_lut(250.0, np.float32), rtol=0, atol=4.8e-7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", METHODS)
def test_cuda_parity(name):
    by_numpy, _ = fitted(name)
    device = torch.device("cuda")
    model = quiet(METHODS[name]().fit, torch.from_numpy(targets()).to(device))
    for key, value in fitted_state(by_numpy).items():
        np.testing.assert_allclose(getattr(model, key), value, rtol=1e-4, atol=1e-4, err_msg=key)
    batch = sources()
    out = quiet(model.transform, torch.from_numpy(batch).to(device))
    assert out.device.type == "cuda"
    mean, most = differences(quiet(by_numpy.transform, batch), out)
    assert mean <= MEAN_LIMIT and most <= MAX_LIMIT, (name, mean, most)
    tiles = odd_tiles()
    out, status = quiet(
        model.transform_with_status, [torch.from_numpy(t).to(device) for t in tiles]
    )
    np.testing.assert_array_equal(status, quiet(by_numpy.transform_with_status, tiles)[1])
    statistics = quiet(model.source_statistics, torch.from_numpy(batch[:4]).to(device))
    expected = quiet(by_numpy.transform, batch[:4], source=by_numpy.source_statistics(batch[:4]))
    out = quiet(model.transform, torch.from_numpy(batch[:4]).to(device), source=statistics)
    assert out.device.type == "cuda"
    mean, most = differences(expected, out)
    assert mean <= MEAN_LIMIT and most <= MAX_LIMIT, (name, mean, most)
