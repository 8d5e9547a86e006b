import numpy as np
import pytest
from skimage.color import lab2rgb, rgb2lab

from stainstyle.color import (
    float_to_uint8,
    lab_cie_to_rgb,
    lab_ruderman_to_rgb,
    od_to_rgb,
    rgb_to_lab_cie,
    rgb_to_lab_ruderman,
    rgb_to_od,
)
from stainstyle.color.od import od_lut


def test_od_known_values_and_lut():
    np.testing.assert_allclose(rgb_to_od(np.array([239, 119, 0])), [0.0, np.log(2), np.log(240)])
    np.testing.assert_allclose(od_lut(240.0, np.float64), rgb_to_od(np.arange(256)))


def test_od_round_trip_within_one_level(rng):
    rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    back = od_to_rgb(-np.log(np.maximum(rgb, 1) / 240.0))
    assert np.abs(back.astype(int) - np.minimum(np.maximum(rgb, 1), 255)).max() <= 1


def test_ruderman_round_trip_and_known_axes(rng):
    rgb = rng.integers(1, 256, (16, 16, 3)).astype(float)
    np.testing.assert_allclose(lab_ruderman_to_rgb(rgb_to_lab_ruderman(rgb)), rgb, rtol=1e-9)
    gray = rgb_to_lab_ruderman(np.array([128.0, 128.0, 128.0]))
    assert abs(gray[2]) < 1e-3  # beta (red-green) vanishes on grey, up to the matrix's rounding


def test_cie_equals_skimage(rng):
    rgb = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    np.testing.assert_allclose(rgb_to_lab_cie(rgb), rgb2lab(rgb / 255.0))
    lab = rgb_to_lab_cie(rgb)
    np.testing.assert_allclose(lab_cie_to_rgb(lab), lab2rgb(lab) * 255.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_to_uint8_clips_rounds_and_cleans(dtype):
    values = np.array([[-3, 0.5, 1.5, 2.5, 254.6, 300, np.nan, np.inf, -np.inf]], dtype=dtype)
    np.testing.assert_array_equal(float_to_uint8(values), [[0, 0, 2, 2, 255, 255, 0, 255, 0]])


def test_od_to_rgb_clips_rounds_and_maps_nan_to_white():
    od = np.array([-1.0, -0.0625, 0.0, 10.0, np.inf, np.nan])  # 652.4, 255.5, 240, 0.01, 0, nan
    out = od_to_rgb(od)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [255, 255, 240, 0, 0, 255])


def test_float32_input_is_computed_in_float64():
    rgb = np.array([[12.5, 128.25, 250.0]], dtype=np.float32)
    wide = rgb.astype(np.float64)
    for forward in (rgb_to_od, rgb_to_lab_ruderman, rgb_to_lab_cie):
        assert forward(rgb).dtype == np.float64
        np.testing.assert_array_equal(forward(rgb), forward(wide))
    lab = rgb_to_lab_cie(wide).astype(np.float32)
    assert lab_cie_to_rgb(lab).dtype == np.float64
    np.testing.assert_array_equal(lab_cie_to_rgb(lab), lab_cie_to_rgb(lab.astype(np.float64)))
    # io * exp(-od) of these float32 densities lies 3e-6 above k + 0.5: float32 arithmetic
    # rounds it down, float64 up.
    od = np.array([0.05348865, 0.6403966, 1.0923817, 1.6851497], dtype=np.float32)
    np.testing.assert_array_equal(od_to_rgb(od), [228, 127, 81, 45])


def test_row_strips_cut_about_the_given_pixels_per_strip():
    from stainstyle.color.quantize import STRIP_PIXELS, row_strips

    assert STRIP_PIXELS // 700 == 93
    assert row_strips((300, 700, 3)) == [
        slice(0, 93),
        slice(93, 186),
        slice(186, 279),
        slice(279, 300),
    ]
    assert row_strips((3, 100_000, 3)) == [slice(0, 1), slice(1, 2), slice(2, 3)]  # a row a strip
    assert row_strips((40_000, 0, 3), pixels=40_000) == [slice(0, 40_000)]  # empty rows: 1 pixel
    assert row_strips((5, 4), pixels=8) == [slice(0, 2), slice(2, 4), slice(4, 5)]


def test_float_to_uint8_takes_integers_and_scalars():
    np.testing.assert_array_equal(float_to_uint8(np.array([[-3, 300, 7]])), [[0, 255, 7]])
    scalar = float_to_uint8(np.float64(3.6))
    assert scalar.shape == () and scalar == 4


def _every_colour_class():
    """RGB 0-255 covering dark (linear sRGB segment, XYZ below the cube-root knee), black,
    saturated and bright colours, as a (1, 64, 65, 3) float64 batch."""
    levels = np.array([0, 1, 2, 5, 9, 10, 11, 30, 64, 128, 200, 254, 255], dtype=np.float64)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    rng = np.random.default_rng(4)
    extra = rng.uniform(0, 255, (64 * 65 - len(grid), 3))
    return np.concatenate([grid, extra]).reshape(1, 64, 65, 3)


@pytest.mark.filterwarnings("ignore:Conversion from CIE-LAB")
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_batch_lab_conversions_equal_the_reference_conversions(backend):
    """The xp-generic conversions (numpy and torch) equal the float64 reference functions."""
    import torch

    from stainstyle.color.lab import cie_of, rgb_of_cie, rgb_of_ruderman, ruderman_of

    xp = np if backend == "numpy" else torch
    rgb = _every_colour_class()

    def run(function, values):
        out = function(xp, values if xp is np else torch.from_numpy(values))
        assert out.dtype == (np.float64 if xp is np else torch.float64)
        return out if xp is np else out.numpy()

    lab = run(ruderman_of, rgb)  # black clamped to 1 before the logarithm, as the reference
    np.testing.assert_allclose(lab, rgb_to_lab_ruderman(rgb), rtol=1e-12, atol=1e-12)
    # Out-of-gamut lαβ (shifted and stretched) comes back unclipped, as the reference.
    stretched = lab * [1.0, 3.0, 3.0] + [0.5, 0.2, -0.2]
    np.testing.assert_allclose(
        run(rgb_of_ruderman, stretched), lab_ruderman_to_rgb(stretched), rtol=1e-12
    )
    cie = run(cie_of, rgb)
    np.testing.assert_allclose(cie, rgb2lab(rgb / 255.0), rtol=1e-9, atol=1e-9)
    # Dark, bright and out-of-gamut L*a*b* (L* below 8 takes the linear segment): clipped RGB.
    lab_grid = np.stack(
        np.meshgrid([0.0, 3.0, 7.9, 8.1, 50.0, 99.0, 100.0], [-120, -20, 0, 20, 120],
                    [-120, -20, 0, 20, 120], indexing="ij"), -1
    ).reshape(1, 7, 25, 3).astype(np.float64)  # fmt: skip
    for values in (cie, lab_grid):
        np.testing.assert_allclose(
            run(rgb_of_cie, values), lab2rgb(values) * 255.0, rtol=1e-9, atol=1e-9
        )


@pytest.mark.parametrize("pixels", [1, 16, 4096])
def test_float_to_uint8_rounds_float64_exactly_like_rint(pixels):
    # 101.4999985 and 254.4999999 are below a half in float64 and round up once cast to
    # float32; 255.6 must clip to 255, not round to 256 and wrap.
    values = np.array([101.4999985, 254.4999999, 0.4999999999, 255.6, 0.7, np.nan])
    rgb = np.resize(values, (pixels, 6))
    expected = np.resize(np.array([101, 254, 0, 255, 1, 0], dtype=np.uint8), (pixels, 6))
    np.testing.assert_array_equal(float_to_uint8(rgb.copy()), expected)
    np.testing.assert_array_equal(float_to_uint8(rgb[:, ::2].copy()), expected[:, ::2])


def test_float_to_uint8_float32_fast_path_matches_rint(rng):
    rgb = rng.uniform(-20.0, 275.0, (64, 48, 3)).astype(np.float32)
    rgb[0, :4, 0] = [np.nan, np.inf, -np.inf, 0.7]
    expected = np.rint(np.clip(np.nan_to_num(rgb, nan=0.0), 0, 255)).astype(np.uint8)
    out = float_to_uint8(rgb.copy())
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(float_to_uint8(rgb[:, ::2]), expected[:, ::2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("shape", [(0,), (0, 3), (4, 0, 3), (2, 0, 0, 3)])
def test_float_to_uint8_keeps_the_shape_of_an_empty_array(dtype, shape):
    out = float_to_uint8(np.zeros(shape, dtype=dtype))
    assert out.dtype == np.uint8 and out.shape == shape
