import numpy as np
import pytest
import torch
from _support import he_tiles, read_rgb, require_data, require_module

from stainstyle import ReinhardNormalizer
from stainstyle.color import float_to_uint8, lab_ruderman_to_rgb, rgb_to_lab_ruderman
from stainstyle.methods.reinhard import reinhard_scale, reinhard_stats
from stainstyle.tissue import tissue_mask

# Reinhard, Ashikhmin, Gooch & Shirley, "Color transfer between images" (2001), typed from the
# paper: RGB to LMS (eq. 4 combined with eq. 2), log10, then lαβ (eq. 6).
PAPER_RGB_TO_LMS = np.array(
    [[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]]
)
PAPER_LOG_LMS_TO_LAB = np.diag([1 / np.sqrt(3), 1 / np.sqrt(6), 1 / np.sqrt(2)]) @ np.array(
    [[1, 1, 1], [1, 1, -2], [1, -1, 0]]
)
#: lαβ (log10) of pixels computed by hand (40-digit decimal arithmetic), black clamped to 1.
PAPER_PIXELS = {
    (255, 255, 255): (4.167296, 0.000764, 0.000092),
    (200, 100, 150): (3.693613, -0.032993, 0.038660),
    (120, 60, 200): (3.532465, -0.262824, 0.020682),
    (1, 1, 1): (-0.000954, 0.000764, 0.000092),
    (0, 0, 0): (-0.000954, 0.000764, 0.000092),
}


def paper_lab(rgb):
    """lαβ as the paper defines it (log10), with intensities clamped to >= 1."""
    lms = np.maximum(np.asarray(rgb, dtype=np.float64), 1.0) @ PAPER_RGB_TO_LMS.T
    return np.log10(lms) @ PAPER_LOG_LMS_TO_LAB.T


def paper_rgb(lab):
    """The inverse of :func:`paper_lab` (not clipped)."""
    log_lms = np.asarray(lab) @ np.linalg.inv(PAPER_LOG_LMS_TO_LAB).T
    return 10.0**log_lms @ np.linalg.inv(PAPER_RGB_TO_LMS).T


def test_lab_ruderman_matches_the_papers_matrices_and_hand_computed_pixels():
    # The library uses the natural logarithm: every lαβ value is ln(10) times the paper's,
    # which cancels in Reinhard's transfer.
    pixels = np.array(list(PAPER_PIXELS), dtype=np.uint8)
    by_hand = np.array(list(PAPER_PIXELS.values()))
    np.testing.assert_allclose(paper_lab(pixels), by_hand, rtol=0, atol=1e-6)
    np.testing.assert_allclose(rgb_to_lab_ruderman(pixels), np.log(10) * by_hand, atol=1e-5)
    tile = he_tiles(1, 64, seed=3)[0]
    np.testing.assert_allclose(rgb_to_lab_ruderman(tile), np.log(10) * paper_lab(tile), atol=1e-9)
    back = lab_ruderman_to_rgb(np.log(10) * paper_lab(tile))
    np.testing.assert_allclose(back, np.maximum(tile, 1), atol=1e-6)
    # The fused float32 path of the estimator, on the same pixels.
    from stainstyle.methods.reinhard import _RudermanPixels

    np.testing.assert_allclose(
        _RudermanPixels(np.ascontiguousarray(tile)).lab,
        np.log(10) * paper_lab(tile),
        rtol=0,
        atol=1e-4,
    )


def test_transfer_matches_the_papers_recipe(target_tiles, source_tiles):
    # Reinhard's transfer written from the paper: per channel, subtract the source mean, scale
    # by the ratio of standard deviations, add the target mean; on tissue pixels' statistics.
    target = np.concatenate([paper_lab(t)[tissue_mask(t)] for t in target_tiles])
    normalizer = ReinhardNormalizer().fit(target_tiles)
    for tile in source_tiles:
        lab = paper_lab(tile)
        tissue = lab[tissue_mask(tile)]
        scaled = (lab - tissue.mean(0)) * (target.std(0) / tissue.std(0)) + target.mean(0)
        expected = np.clip(np.rint(paper_rgb(scaled)), 0, 255)
        diff = np.abs(normalizer.transform(tile).astype(int) - expected)
        assert diff.max() <= 1 and diff.mean() < 0.01


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
    # Flat means a spread below 1e-6: a spread of exactly 1e-6 is scaled.
    np.testing.assert_allclose(reinhard_scale(np.full(3, 1e-6), np.ones(3)), np.full(3, 1e6))


def test_passthrough_background_keeps_background_pixels(target_tiles, source_tiles):
    normalizer = ReinhardNormalizer(passthrough_background=True).fit(target_tiles)
    out = normalizer.transform(source_tiles)
    background = ~tissue_mask(source_tiles)
    np.testing.assert_array_equal(out[background], source_tiles[background])


def test_black_pixels_stay_finite(target_tiles, source_tiles):
    # Black is clamped to 1 before the logarithm: it maps as (1, 1, 1) does, to a finite colour.
    normalizer = ReinhardNormalizer().fit(target_tiles)
    tile = source_tiles[0].copy()
    tile[5:20, 5:20] = 0
    as_one = tile.copy()
    as_one[5:20, 5:20] = 1
    out = normalizer.transform(tile)
    np.testing.assert_array_equal(out, normalizer.transform(as_one))
    assert np.all(out[5:20, 5:20] == out[5, 5])
    expected = _reference_ruderman(tile, target_tiles)
    assert np.abs(out.astype(int) - expected).max() <= 1
    as_float = normalizer.transform(tile.astype(np.float32) / 255)
    assert np.all(np.isfinite(as_float))
    np.testing.assert_allclose(as_float * 255, out, atol=1e-3)


def test_cie_mode_matches_torchstain_on_reference_pair():
    torchstain = require_module("torchstain", extra="test")
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


@pytest.mark.parametrize("tissue_only", [True, False], ids=["tissue", "all-pixels"])
@pytest.mark.parametrize("as_tensor", [False, True], ids=["numpy", "tensor"])
def test_statistics_pool_every_pixel_over_batches_of_tiles_of_any_size(
    target_tiles, tissue_only, as_tensor
):
    # Tiles of different, non-square sizes in batches of one: each tile's pixels count by its
    # own size (or tissue), and every batch is pooled, as if all pixels were one image.
    tiles = [target_tiles[0][:40, :56], target_tiles[1][:64, :24], target_tiles[2]]
    given = [torch.from_numpy(np.ascontiguousarray(t)) for t in tiles] if as_tensor else tiles
    normalizer = ReinhardNormalizer(tissue_only=tissue_only, batch_size=1).fit(given)
    chosen = [tissue_mask(t) if tissue_only else np.ones(t.shape[:2], bool) for t in tiles]
    pixels = np.concatenate([rgb_to_lab_ruderman(t)[m] for t, m in zip(tiles, chosen, strict=True)])
    np.testing.assert_allclose(normalizer.target_means_, pixels.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(normalizer.target_stds_, pixels.std(0), rtol=1e-4, atol=1e-5)
