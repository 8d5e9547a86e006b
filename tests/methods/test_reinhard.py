import numpy as np
import pytest
from _support import he_tiles, read_rgb, require_data

from stainstyle import ReinhardNormalizer
from stainstyle.color import float_to_uint8, lab_ruderman_to_rgb, rgb_to_lab_ruderman
from stainstyle.methods.reinhard import reinhard_scale, reinhard_stats
from stainstyle.tissue import tissue_mask


def _reference_ruderman(source, target):
    """Float64 reference: the spec's formulas, pooled target tissue statistics."""
    mean_t, std_t = reinhard_stats(rgb_to_lab_ruderman(target), tissue_mask(target))
    lab = rgb_to_lab_ruderman(source)
    mean, std = reinhard_stats(lab, tissue_mask(source))
    scale = reinhard_scale(std, std_t)
    return float_to_uint8(lab_ruderman_to_rgb(lab * scale + mean_t - mean * scale))


def test_float32_path_matches_float64_reference(target_tiles, source_tiles):
    normalizer = ReinhardNormalizer().fit(target_tiles)
    for tile in source_tiles:
        expected = _reference_ruderman(tile, target_tiles)
        diff = np.abs(normalizer.transform(tile).astype(int) - expected)
        assert diff.max() <= 1 and diff.mean() < 0.01


def test_target_statistics_are_pooled_not_averaged(target_tiles):
    normalizer = ReinhardNormalizer().fit(target_tiles)
    pooled = np.concatenate([rgb_to_lab_ruderman(t)[tissue_mask(t)] for t in target_tiles])
    np.testing.assert_allclose(normalizer.target_means_, pooled.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(normalizer.target_stds_, pooled.std(0), rtol=1e-4, atol=1e-6)


def test_self_transfer_is_near_identity(target_tiles):
    tile = target_tiles[0]
    out = ReinhardNormalizer().fit(tile).transform(tile)
    assert np.abs(out.astype(int) - tile).mean() < 1.0


def test_flat_channel_is_shifted_not_scaled():
    np.testing.assert_array_equal(
        reinhard_scale(np.array([0.0, 2.0, 1e-9]), np.ones(3)), [1, 0.5, 1]
    )


def test_passthrough_background_keeps_background_pixels(target_tiles, source_tiles):
    normalizer = ReinhardNormalizer(passthrough_background=True).fit(target_tiles)
    out = normalizer.transform(source_tiles)
    background = ~tissue_mask(source_tiles)
    np.testing.assert_array_equal(out[background], source_tiles[background])


def test_black_pixels_stay_finite(target_tiles, source_tiles):
    tile = source_tiles[0].copy()
    tile[5:20, 5:20] = 0
    out = ReinhardNormalizer().fit(target_tiles).transform(tile)
    assert out.dtype == np.uint8


def test_cie_mode_matches_torchstain_on_reference_pair():
    torchstain = pytest.importorskip("torchstain")
    folder = require_data("reference", "torchstain")
    source, target = read_rgb(folder / "source.png"), read_rgb(folder / "target.png")
    peer = torchstain.normalizers.ReinhardNormalizer(backend="numpy")
    peer.fit(target)
    expected = peer.normalize(source)
    ours = ReinhardNormalizer(space="lab_cie", tissue_only=False).fit(target).transform(source)
    # torchstain truncates where we round: the mean difference is about 0.5 gray levels
    assert np.abs(ours.astype(int) - expected).mean(axis=(0, 1)).max() <= 1.0


def test_a_one_pixel_strip_is_not_read_as_a_scalar():
    # Issue #12, defect 11: cv2.max(strip, (1, 1, 1, 1)) on a (1, 1, 3) strip returned the
    # scalar as a (4, 1) array. A 65537x1 tile ends in such a strip (strips of 65536 pixels).
    from stainstyle.methods.reinhard import _RudermanPixels

    column = np.ascontiguousarray(np.resize(he_tiles(1, 64, seed=5)[0, 40], (65537, 1, 3)))
    np.testing.assert_allclose(
        _RudermanPixels(column).lab, rgb_to_lab_ruderman(column), rtol=0, atol=1e-4
    )
    target = he_tiles(2, 64, seed=6)
    out = ReinhardNormalizer().fit(target).transform(column)
    assert out.shape == column.shape and out.dtype == np.uint8
    expected = _reference_ruderman(column, np.concatenate(list(target), axis=1))
    assert np.abs(out.astype(int) - expected).max() <= 1
