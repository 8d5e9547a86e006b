import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from stainstyle import GrayNormalizer, gray_normalize


def test_equals_pillow_on_every_colour():
    levels = np.arange(256, dtype=np.uint8)
    every = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(4096, 4096, 3)
    expected = np.asarray(Image.fromarray(every).convert("L"))
    np.testing.assert_array_equal(gray_normalize(every), expected)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_equals_pillow_on_random_tiles(height, width, seed):
    tile = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        gray_normalize(tile), np.asarray(Image.fromarray(tile).convert("L"))
    )


def test_estimator_replicates_gray(target_tiles):
    out = GrayNormalizer().fit(target_tiles).transform(target_tiles)
    np.testing.assert_array_equal(out[..., 0], gray_normalize(target_tiles))
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_strided_and_batched_input_equals_pillow():
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, (3, 90, 800, 3), dtype=np.uint8)  # 216,000 pixels: 4 strips
    view = batch[:, ::-1, ::3]
    expected = np.stack(
        [np.asarray(Image.fromarray(np.ascontiguousarray(t)).convert("L")) for t in view]
    )
    np.testing.assert_array_equal(gray_normalize(view), expected)


def test_gray_is_uint8_and_bad_input_is_named():
    assert gray_normalize(np.zeros((2, 5, 3), np.uint8)).dtype == np.uint8
    with pytest.raises(ValueError, match=r"rgb: expected shape \(\.\.\., 3\), got \(2, 4\)"):
        gray_normalize(np.zeros((2, 4), np.uint8))
    with pytest.raises(ValueError, match="rgb: expected dtype uint8, got float64"):
        gray_normalize(np.zeros((2, 3)))
    import torch

    with pytest.raises(ValueError, match="rgb: expected dtype uint8, got torch.float32"):
        gray_normalize(torch.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"rgb: expected shape \(\.\.\., 3\), got \(2, 4\)"):
        gray_normalize(torch.zeros((2, 4), dtype=torch.uint8))


def test_estimator_defaults_and_fitted_count(target_tiles):
    assert GrayNormalizer().get_params() == {"background": "passthrough", "batch_size": 32}
    assert GrayNormalizer().fit(target_tiles).n_tiles_fit_ == len(target_tiles)
