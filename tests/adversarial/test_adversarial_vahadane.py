"""Hostile inputs for Vahadane and stain separation: huge images, pure stains, odd shapes."""

import warnings

import numpy as np
import pytest
from _support import he_tiles, traced_peak

from stainstyle import BackgroundTileWarning, VahadaneNormalizer, separate_stains, tile_status
from stainstyle.separation import RUIFROK_HE, reconstruct


@pytest.fixture(scope="module")
def fitted():
    return VahadaneNormalizer().fit(he_tiles(4, 64, seed=1))


@pytest.fixture
def small_chunks(monkeypatch):
    """Stream images above 64x64 pixels, in chunks of 1024 pixels."""
    import stainstyle.methods._macenko_pixels as pixels
    import stainstyle.methods.vahadane as vahadane

    monkeypatch.setattr(vahadane, "IN_MEMORY_PIXELS", 64 * 64)
    monkeypatch.setattr(pixels, "IN_MEMORY_PIXELS", 64 * 64)
    monkeypatch.setattr(pixels, "CHUNK_PIXELS", 1024)


def test_streamed_image_equals_the_image_held_whole(fitted, small_chunks, monkeypatch):
    # The sample, the percentiles and the mapping of a streamed image are those of the whole.
    image = np.concatenate(list(he_tiles(3, 96, seed=5)), axis=1)  # 96 x 288
    streamed = fitted.transform(image)
    import stainstyle.methods._macenko_pixels as pixels
    import stainstyle.methods.vahadane as vahadane

    monkeypatch.setattr(vahadane, "IN_MEMORY_PIXELS", 1 << 22)
    monkeypatch.setattr(pixels, "IN_MEMORY_PIXELS", 1 << 22)
    np.testing.assert_array_equal(streamed, fitted.transform(image))
    assert streamed.shape == image.shape


def test_huge_image_keeps_memory_bounded(fitted):
    # 4096 x 4096 (48 MB): above the in-memory limit, so optical densities are never all held.
    import cv2

    image = cv2.resize(he_tiles(1, 256, seed=3)[0], (4096, 4096), interpolation=cv2.INTER_LINEAR)
    out, peak = traced_peak(lambda: fitted.transform(image))
    assert out.shape == image.shape
    assert peak < 3 * image.nbytes  # output (1x) plus strips and masks, not 12 bytes a pixel


@pytest.mark.parametrize("stain", ["hematoxylin", "eosin"])
def test_pure_stain_tiles_pass_through(fitted, stain):
    column = RUIFROK_HE[:, 0 if stain == "hematoxylin" else 1]
    density = np.linspace(0.2, 1.8, 64)[:, None, None]
    tile = np.rint(255 * np.exp(-density * column)).astype(np.uint8).repeat(64, axis=1)
    assert tile_status(fitted, tile).tolist() == ["passthrough_degenerate"]
    with pytest.warns(BackgroundTileWarning):
        np.testing.assert_array_equal(fitted.transform(tile), tile)


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 500, 3), (500, 1, 3), (3, 3, 3)])
def test_extreme_shapes_pass_through_or_map(fitted, shape):
    tile = np.full(shape, (150, 60, 160), np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BackgroundTileWarning)
        out = fitted.transform(tile)
        maps = fitted.stain_concentrations(tile)
    assert out.shape == shape and maps.shape == (*shape[:2], 2)
    assert separate_stains(tile, RUIFROK_HE).shape == (*shape[:2], 2)


def test_float_input_equals_uint8_input(fitted):
    tile = he_tiles(1, 64, seed=7)[0]
    as_float = fitted.transform(tile.astype(np.float32) / 255)
    np.testing.assert_array_equal(np.rint(as_float * 255).astype(np.uint8), fitted.transform(tile))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values_are_refused(fitted, bad):
    tile = np.full((16, 16, 3), 0.5)
    tile[3, 4, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        fitted.transform(tile)
    with pytest.raises(ValueError, match="NaN or infinite"):
        fitted.stain_concentrations(tile)
    with pytest.raises(ValueError, match="NaN or infinite"):
        VahadaneNormalizer().fit(tile)


def test_extreme_concentrations_rebuild_without_overflow():
    out = reconstruct(np.array([[0.0, 0.0], [1e6, 1e6], [1e-30, 0.0]]), RUIFROK_HE)
    np.testing.assert_array_equal(out, [[240, 240, 240], [0, 0, 0], [240, 240, 240]])
