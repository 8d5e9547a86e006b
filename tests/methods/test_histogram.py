import numpy as np
from _support import read_rgb, require_data
from skimage.exposure import match_histograms

from stainstyle import HistogramSpecification
from stainstyle.methods.histogram import channel_histograms, match_cdf_lut
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
