import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from stainstyle.color.hsd import hsd_channel_densities, hsd_to_rgb, rgb_to_hsd


def test_smoke_and_cardinality(rng):
    rgb = rng.integers(0, 256, size=(2, 5, 7, 3), dtype=np.uint8)
    hsd = rgb_to_hsd(rgb)
    assert hsd.shape == rgb.shape and hsd.dtype == np.float64
    back = hsd_to_rgb(hsd)
    assert back.shape == rgb.shape and back.dtype == np.float64
    assert rgb_to_hsd(rgb[0, 0, 0]).shape == (3,)


def test_round_trip_random_tiles_within_one_gray_level(rng):
    rgb = rng.integers(0, 256, size=(4, 256, 256, 3), dtype=np.uint8)
    back = np.rint(hsd_to_rgb(rgb_to_hsd(rgb))).astype(int)
    assert np.abs(back - rgb).max() <= 1


def test_round_trip_exact_inside_the_clamp():
    levels = np.arange(1, 255, dtype=np.uint8)
    grid = np.stack(np.meshgrid(levels, levels[::7], levels[::11], indexing="ij"), -1)
    np.testing.assert_array_equal(np.rint(hsd_to_rgb(rgb_to_hsd(grid))), grid)


@settings(max_examples=50, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 6), st.integers(1, 6), st.just(3))))
def test_round_trip_property(rgb):
    back = np.rint(hsd_to_rgb(rgb_to_hsd(rgb)))
    assert np.abs(back - rgb.astype(float)).max() <= 1
    assert np.all(np.isfinite(rgb_to_hsd(rgb)))


def test_known_values():
    grey = rgb_to_hsd(np.array([100, 100, 100], dtype=np.uint8))
    np.testing.assert_allclose(grey, [0.0, 0.0, -np.log(100 / 255)], atol=1e-12)
    # Absorbing only red light (cyan) has c_x = 2, c_y = 0; only blue light, c_x = -1.
    density = 1.0
    cyan = hsd_to_rgb(np.array([2.0, 0.0, density / 3]))
    np.testing.assert_allclose(cyan, [255 * np.exp(-density), 255, 255])
    # The clamp keeps white and black finite: D in [0.0039, 5.54].
    extremes = rgb_to_hsd(np.array([[255, 255, 255], [0, 0, 0]], dtype=np.uint8))
    np.testing.assert_allclose(extremes[:, 2], [-np.log(254 / 255), np.log(255)])


def test_float_input_matches_uint8(rng):
    rgb = rng.integers(0, 256, size=(16, 3), dtype=np.uint8)
    np.testing.assert_allclose(rgb_to_hsd(rgb.astype(np.float32)), rgb_to_hsd(rgb), atol=1e-12)


def test_channel_densities_invert_the_definition(rng):
    rgb = rng.integers(1, 255, size=(64, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        hsd_channel_densities(rgb_to_hsd(rgb)), -np.log(rgb / 255.0), atol=1e-12
    )


def test_darker_means_denser():
    levels = np.repeat(np.arange(1, 255, dtype=np.uint8)[:, None], 3, axis=1)
    assert np.all(np.diff(rgb_to_hsd(levels)[:, 2]) < 0)


def test_out_of_range_hsd_is_clipped():
    hsd = np.array([[0.0, 0.0, -10.0], [0.0, 0.0, 1e6], [np.nan, 0.0, 1.0], [0.0, 0.0, -1e6]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with np.errstate(invalid="ignore"):  # NaN chromaticity: NaN densities, drawn black
            rgb = hsd_to_rgb(hsd)
    np.testing.assert_array_equal(rgb, [[255] * 3, [0] * 3, [0] * 3, [255] * 3])


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((4, 4), dtype=np.uint8), r"rgb: expected shape \(\.\.\., 3\), got \(4, 4\)"),
        (np.zeros((4, 3), dtype=bool), "rgb: expected dtype uint8 or a real dtype, got bool"),
        (np.zeros((4, 3), dtype=complex), "got complex128"),
    ],
)
def test_exceptions(bad, match):
    with pytest.raises(ValueError, match=match):
        rgb_to_hsd(bad)


def test_inverse_exceptions():
    with pytest.raises(ValueError, match=r"hsd: expected shape \(\.\.\., 3\), got \(2,\)"):
        hsd_to_rgb(np.zeros(2))


def test_real_dtypes_are_clamped_and_computed_in_float64():
    levels = np.array([[0, 255, 128], [1, 254, 7]])
    expected = rgb_to_hsd(levels.astype(np.uint8))
    for dtype in (np.int64, np.uint16, np.float32, np.float64):
        np.testing.assert_array_equal(rgb_to_hsd(levels.astype(dtype)), expected)
    hsd = np.random.default_rng(0).random((64, 3), dtype=np.float32)
    np.testing.assert_array_equal(
        hsd_channel_densities(hsd), hsd_channel_densities(hsd.astype(np.float64))
    )
