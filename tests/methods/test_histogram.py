from fractions import Fraction

import cv2
import numpy as np
import torch
from _support import read_rgb, require_data
from skimage.exposure import match_histograms

from stainstyle import HistogramSpecification
from stainstyle.methods.histogram import _match_cdf_luts, channel_histograms, match_cdf_lut
from stainstyle.tissue import tissue_mask


def test_matches_skimage_match_histograms_after_rounding():
    folder = require_data("reference", "torchstain")
    source, target = read_rgb(folder / "source.png"), read_rgb(folder / "target.png")
    expected = np.rint(
        match_histograms(source.astype(float), target.astype(float), channel_axis=-1)
    )
    out = HistogramSpecification().fit(target).transform(source)
    assert np.abs(out - expected).mean() <= 1.0


def test_pooled_histogram_equals_concatenated_pixels(target_tiles, source_tiles):
    normalizer = HistogramSpecification().fit(target_tiles)
    pooled = np.concatenate([t.reshape(-1, 3) for t in target_tiles])[None]
    expected = np.rint(
        match_histograms(source_tiles[0].astype(float), pooled.astype(float), channel_axis=-1)
    )
    assert np.abs(normalizer.transform(source_tiles[0]) - expected).max() <= 1


def test_lut_is_monotone_and_identity_on_same_histogram(target_tiles):
    counts = channel_histograms(target_tiles)
    assert counts.shape == (3, 256) and counts[0].sum() == target_tiles[..., 0].size
    lut = match_cdf_lut(counts[1], counts[1])
    present = counts[1] > 0
    np.testing.assert_array_equal(lut[present], np.flatnonzero(present))
    assert np.all(np.diff(match_cdf_lut(counts[0], counts[2]).astype(int)) >= 0)


def test_tissue_mask_mode_keeps_background(target_tiles, source_tiles):
    out = HistogramSpecification(tissue_only=True).fit(target_tiles).transform(source_tiles)
    background = ~tissue_mask(source_tiles)
    np.testing.assert_array_equal(out[background], source_tiles[background])


def test_lut_of_a_one_pixel_source():
    """Below the pixel's value the source CDF is 0, from it on 1: the target's extremes."""
    source = np.zeros(256, dtype=np.int64)
    source[100] = 1
    target = np.zeros(256, dtype=np.int64)
    target[[40, 90, 200]] = [5, 10, 5]
    lut = match_cdf_lut(source, target)
    np.testing.assert_array_equal(lut[:100], 40)
    np.testing.assert_array_equal(lut[100:], 200)


def test_lut_rounds_a_value_just_below_a_half_down_in_numpy_and_torch():
    """Source CDF 32769/65536 between target CDF 2/65521 at 0 and 1 at 255 maps to
    255 (32769 * 65521 - 2 * 65536) / (65536 * 65519) = 127.4999991: 127, although float32
    rounds it to 127.5 and so to 128."""
    source = np.zeros(256, dtype=np.int64)
    source[[100, 200]] = [32769, 32767]
    target = np.zeros(256, dtype=np.int64)
    target[[0, 255]] = [2, 65519]
    exact = Fraction(255 * (32769 * 65521 - 2 * 65536), 65536 * 65519)
    assert 127 < exact < Fraction(255, 2) and np.float32(float(exact)) == 127.5
    lut = match_cdf_lut(source, target)
    np.testing.assert_array_equal(lut[100:200], 127)
    torch_luts = _match_cdf_luts(
        torch.as_tensor(np.tile(source, (2, 3, 1))), np.tile(target, (3, 1))
    )
    np.testing.assert_array_equal(torch_luts.numpy(), np.tile(lut, (2, 3, 1)))


def test_target_histogram_pools_every_batch_and_only_tissue_when_asked(target_tiles):
    counts = HistogramSpecification(batch_size=1).fit(target_tiles).target_counts_
    np.testing.assert_array_equal(counts, channel_histograms(target_tiles))
    tissue = tissue_mask(target_tiles)
    model = HistogramSpecification(tissue_only=True, batch_size=1).fit(target_tiles)
    np.testing.assert_array_equal(model.target_counts_, channel_histograms(target_tiles, tissue))


def test_slide_statistics_map_every_tile_with_the_pooled_histogram(target_tiles, source_tiles):
    normalizer = HistogramSpecification().fit(target_tiles)
    statistics = normalizer.source_statistics(source_tiles)
    assert statistics.modelled
    source_counts = channel_histograms(source_tiles)
    target_counts = normalizer.target_counts_
    lut = np.stack([match_cdf_lut(source_counts[c], target_counts[c]) for c in range(3)])
    expected = np.stack([lut[c][source_tiles[..., c]] for c in range(3)], axis=-1)
    np.testing.assert_array_equal(normalizer.transform(source_tiles, source=statistics), expected)


def test_large_tiles_are_looked_up_by_byte_pairs_as_by_single_bytes():
    """Large images go through the pair tables; odd layouts take the single-byte path.

    Both give each tile's own table applied to every pixel, as OpenCV's ``LUT`` does.
    """
    from stainstyle.methods import histogram

    rng = np.random.default_rng(7)
    side = 1024
    images = rng.integers(0, 256, (3, side, side, 3), dtype=np.uint8)
    luts = rng.integers(0, 256, (3, 3, 256), dtype=np.uint8)
    tensor = torch.from_numpy(images)
    cases = {
        "two large tiles": (tensor[:2].reshape(2, -1, 3), luts[:2], True),
        "a tile at an even offset": (tensor[1:2].reshape(1, -1, 3), luts[1:2], True),
        "a tile two bytes in": (
            tensor.reshape(-1)[2:].narrow(0, 0, 3 * side * side).reshape(1, -1, 3),
            luts[:1],
            True,
        ),
        "a 2048 x 2048 image: two blocks of pairs": (
            tensor[:2].reshape(1, -1, 3).repeat(1, 2, 1),
            luts[:1],
            True,
        ),
        "an odd number of pixels": (
            tensor.reshape(1, -1, 3)[:, : side * side + 1],
            luts[:1],
            False,
        ),
        "strided pixels": (
            torch.from_numpy(rng.integers(0, 256, (1, side * side, 4), dtype=np.uint8))[..., :3],
            luts[:1],
            False,
        ),
        "an odd byte offset": (
            tensor.reshape(-1)[1:].narrow(0, 0, 3 * side * side).reshape(1, -1, 3),
            luts[:1],
            False,
        ),
    }
    for name, (pixels, tables, by_pairs) in cases.items():
        assert histogram._pairs_fit(pixels) == by_pairs, name
        got = histogram._apply_luts(torch.from_numpy(tables), pixels).numpy()
        for tile, table, mapped in zip(pixels.numpy(), tables, got, strict=True):
            expected = cv2.LUT(tile[None], table.T[:, None, :].copy())[0]
            np.testing.assert_array_equal(mapped, expected, err_msg=name)
