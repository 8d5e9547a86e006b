from __future__ import annotations

import dataclasses
import logging
import math
import warnings

import numpy as np
import pytest
from _support import DEGENERATE_TILES, ROOT, load_script, require_data, tile_batches
from hypothesis import HealthCheck, given, settings
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from stainstyle.base import BackgroundTileWarning, tile_status
from stainstyle.color.hsd import hsd_channel_densities, rgb_to_hsd
from stainstyle.methods._wsics_labels import (
    LABEL_BACKGROUND,
    LABEL_EOSIN,
    LABEL_HEMATOXYLIN,
    _knn_labels,
    _seed_masks,
    background_mask,
    detect_nuclei,
    disc_pixels,
    label_stain_classes,
    lower_percentile,
    min_nuclei,
    nucleus_radius_range,
    pack_rgb,
    unpack_rgb,
)
from stainstyle.methods._wsics_model import (
    class_statistics,
    class_weights,
    colour_class_statistics,
    fit_naive_bayes,
    map_hsd,
    naive_bayes_features,
)
from stainstyle.methods.wsics import (
    LabelledPixels,
    WSICSNormalizer,
    wsics_pool,
    wsics_source_model,
)
from stainstyle.metrics import ciede2000_lowpass


def nuclei_tile(seed=0, size=128, n_nuclei=25, eosin=(235, 150, 190), nucleus=(90, 60, 150)):
    """A pink tile with purple discs of radius 5 px and a white hole, plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    tile = np.empty((size, size, 3))
    tile[:] = eosin
    tile[: size // 8, : size // 8] = 250
    for cy, cx in rng.integers(8, size - 8, size=(n_nuclei, 2)):
        tile[(yy - cy) ** 2 + (xx - cx) ** 2 <= 25] = nucleus
    return np.clip(tile + rng.normal(0, 6, tile.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def fitted():
    return WSICSNormalizer().fit(np.stack([nuclei_tile(s) for s in range(3)]))


def load_fidelity():
    return load_script(ROOT / "benchmarks" / "fidelity.py")


# ---------------------------------------------------------------------- labelling
def test_lower_percentile_picks_the_nth_element_index():
    values = np.array([5.0, 1.0, 4.0, 2.0, 3.0, 9.0, 7.0, 8.0, 6.0, 0.0, 10.0])
    assert lower_percentile(values, 0.1) == 1.0  # index floor(10 * 0.1) = 1
    assert lower_percentile(values, 0.02) == 0.0
    assert lower_percentile(values, 1.0) == 10.0


def test_radius_range_and_nuclei_rule():
    assert nucleus_radius_range(0.5) == (3, 10)
    assert nucleus_radius_range(0.24) == (8, 21)
    assert nucleus_radius_range(100.0) == (1, 1)
    # 150 nuclei per 497.7 x 497.7 um.
    assert min_nuclei(995, 995, 0.5) == pytest.approx(150 * (995 * 0.5 / 497.7) ** 2, rel=1e-3)


def test_background_mask_thresholds():
    rgb = np.array([[250, 250, 250], [200, 200, 200], [0, 0, 0], [250, 120, 250]], np.uint8)
    np.testing.assert_array_equal(background_mask(rgb_to_hsd(rgb)), [True, False, True, False])
    # Pale: every channel density at most 0.22 (grey 204 has 0.223); black: D above 5.5.
    greys = np.array([[[204] * 3, [205] * 3]], np.uint8)  # an image, shape (1, 2, 3)
    np.testing.assert_array_equal(background_mask(rgb_to_hsd(greys)), [[False, True]])
    at_thresholds = np.array([[0.0, 0.0, 0.22], [0.0, 0.0, 0.22 + 1e-9], [0.0, 0.0, 5.5]])
    np.testing.assert_array_equal(background_mask(at_thresholds), [True, False, False])


def test_disc_pixels_cover_discs_and_clip_at_borders():
    disc, pixel = disc_pixels((20, 20), np.array([[10.0, 10.0, 3.0], [0.0, 0.0, 2.0]]))
    assert np.count_nonzero(disc == 0) == 29  # lattice points with y^2 + x^2 <= 9
    assert np.count_nonzero(disc == 1) == 6  # the quarter disc inside the image
    assert pixel.min() >= 0 and pixel.max() < 400


def test_labels_follow_the_stains():
    tile = nuclei_tile(0)
    labels = label_stain_classes(tile, 0.5, np.random.default_rng(0))
    assert labels.n_nuclei >= 20
    purple = np.all(np.abs(tile.astype(int) - (90, 60, 150)) < 25, axis=-1)
    pink = np.all(np.abs(tile.astype(int) - (235, 150, 190)) < 12, axis=-1)
    assert np.mean(labels.labels[purple] == LABEL_HEMATOXYLIN) > 0.95
    assert np.mean(labels.labels[pink] == LABEL_EOSIN) > 0.95
    white = tile.min(axis=-1) > 235
    assert white.any() and np.all(labels.labels[white] == LABEL_BACKGROUND)


def test_a_3x3_median_relabels_only_k_nn_pixels():
    # Reference: seeds, then the k-NN vote, then a 3x3 median (replicated border) of the map
    # eosin 0, background 1, hematoxylin 2 that relabels k-NN pixels unless it is background.
    from scipy.ndimage import median_filter

    tile = nuclei_tile(3)
    result = label_stain_classes(tile, 0.5, np.random.default_rng(0))
    hsd = rgb_to_hsd(tile)
    background = background_mask(hsd)
    nuclei = detect_nuclei(hsd[..., 2], 0.5)
    hema, eosin = _seed_masks(hsd, background, nuclei, np.random.default_rng(0))
    query = ~background.ravel() & ~hema & ~eosin
    sign = np.zeros(hema.shape, int)
    sign[hema], sign[eosin] = 1, -1
    sign[query] = _knn_labels(tile, hsd, hema, eosin, query)
    median = median_filter((sign + 1).reshape(background.shape), size=3, mode="nearest").ravel()
    relabel = query & (median != 1)
    assert np.any(sign[relabel] != median[relabel] - 1)  # the median changes some labels
    sign[relabel] = median[relabel] - 1
    expected = np.select([background.ravel(), sign > 0], [LABEL_BACKGROUND, LABEL_HEMATOXYLIN], 2)
    np.testing.assert_array_equal(result.labels.ravel(), expected)


def test_pale_nuclei_are_found():
    # Detection is relative to the tile's densest blurred pixel, however pale the stain.
    tile = nuclei_tile(0, nucleus=(150, 120, 190))  # mean density about 0.55
    assert label_stain_classes(tile, 0.5, np.random.default_rng(0)).n_nuclei >= 20


def test_nuclei_at_a_fine_pixel_size_are_found_where_they_are():
    # At 0.25 um per pixel the detector works on a shrunk image (radii 7 to 20 px); the
    # nuclei it reports are in full-resolution pixels. Twelve discs of radius 12 px.
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:192, :256]
    tile = np.empty((192, 256, 3))
    tile[:] = (235, 150, 190)
    centres = np.array([(r, c) for r in (32, 96, 160) for c in (32, 96, 160, 224)])
    for cy, cx in centres:
        tile[(yy - cy) ** 2 + (xx - cx) ** 2 <= 144] = (90, 60, 150)
    tile = np.clip(tile + rng.normal(0, 6, tile.shape), 0, 255).astype(np.uint8)
    nuclei = detect_nuclei(rgb_to_hsd(tile)[..., 2], 0.25)
    found = nuclei[np.lexsort((nuclei[:, 1], nuclei[:, 0]))]
    np.testing.assert_allclose(found[:, :2], centres, atol=1.0)
    np.testing.assert_allclose(found[:, 2], 12.0, atol=1.5)


@pytest.mark.parametrize(
    ("microns_per_pixel", "centre", "radius", "atol"),
    [
        (0.5, (30.0, 20.0), 6, 1.0),  # the 4x4 box blur moves a centre by half a pixel
        # Found on the image shrunk by 2: its pixel 20 stands for pixels 40 and 41, centre 40.5.
        (0.25, (40.5, 50.5), 12, 1e-9),
    ],
)
def test_a_lone_nucleus_is_found_where_it_is(microns_per_pixel, centre, radius, atol):
    yy, xx = np.mgrid[:96, :96]
    tile = np.empty((96, 96, 3), dtype=np.uint8)
    tile[:] = (235, 150, 190)
    tile[(yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2] = (90, 60, 150)
    nuclei = detect_nuclei(rgb_to_hsd(tile)[..., 2], microns_per_pixel)
    assert nuclei.shape == (1, 3)
    np.testing.assert_allclose(nuclei[0, :2], centre, atol=atol)


def test_a_nucleus_a_third_as_contrasted_as_the_darkest_is_found():
    # The blob threshold is 0.1 of the densest blurred pixel's scale: at 0.2 the pale one is lost.
    yy, xx = np.mgrid[:64, :96]
    tile = np.empty((64, 96, 3), dtype=np.uint8)
    tile[:] = (235, 150, 190)
    tile[(yy - 32) ** 2 + (xx - 24) ** 2 <= 36] = (60, 30, 120)
    tile[(yy - 32) ** 2 + (xx - 70) ** 2 <= 36] = (150, 100, 165)
    nuclei = detect_nuclei(rgb_to_hsd(tile)[..., 2], 0.5)
    np.testing.assert_allclose(np.sort(nuclei[:, 1]), [24, 70], atol=1.0)


def test_a_tile_without_blobs_has_no_nuclei():
    flat = np.full((32, 32), 0.3)
    assert detect_nuclei(flat, 0.5).shape == (0, 3)


def test_a_strip_too_thin_for_the_detector_has_no_nuclei():
    strip = nuclei_tile(0)[60:62]  # two rows across nuclei
    assert label_stain_classes(strip, 0.5, np.random.default_rng(0)).n_nuclei == 0
    assert detect_nuclei(rgb_to_hsd(strip)[..., 2], 0.5).shape == (0, 3)  # row, column, radius


def test_labels_are_reproducible():
    tile = nuclei_tile(1)
    first = label_stain_classes(tile, 0.5, np.random.default_rng(3)).labels
    second = label_stain_classes(tile, 0.5, np.random.default_rng(3)).labels
    np.testing.assert_array_equal(first, second)


def test_pack_rgb_is_24_bit_and_unpack_inverts_it():
    rgb = np.array([[[1, 2, 3], [255, 0, 128]], [[0, 255, 0], [7, 200, 9]]], dtype=np.uint8)
    packed = pack_rgb(rgb)
    np.testing.assert_array_equal(packed, [[66051, 16711808], [65280, 509961]])
    back = unpack_rgb(packed)
    assert back.dtype == np.uint8 and back.shape == (2, 2, 3)
    np.testing.assert_array_equal(back, rgb)


def _brute_force_votes(hsd, hema, eosin, query, k=7):
    """7-nearest-neighbour vote on features z-scored over the tile (a constant one left as is)."""
    flat = hsd.reshape(-1, 3)
    std = flat.std(axis=0)
    std[std == 0] = 1.0
    z = (flat - flat.mean(axis=0)) / std
    train = np.concatenate([z[hema], z[eosin]])
    sign = np.concatenate([np.ones(hema.sum()), -np.ones(eosin.sum())])
    dist = ((z[query][:, None, :] - train[None, :, :]) ** 2).sum(axis=-1)
    vote = sign[np.argsort(dist, axis=1)[:, :k]].sum(axis=1)
    return np.where(vote > 0, 1, -1)


def test_knn_labels_vote_on_z_scored_features():
    # Chromatic features of very different spreads and a constant density: only z-scoring
    # weighs them alike, and the constant one must not turn the distances into NaN.
    rng = np.random.default_rng(0)
    n = 90
    hsd = np.stack([rng.normal(0.5, 1.0, n), rng.normal(0.2, 0.01, n), np.full(n, 1.0)], -1)
    rgb = np.stack([np.arange(n), np.zeros(n), np.zeros(n)], -1).astype(np.uint8)[None]
    role = rng.permutation(np.repeat([0, 1, 2], n // 3))
    hema, eosin, query = role == 0, role == 1, role == 2
    votes = _knn_labels(rgb, hsd[None], hema, eosin, query)
    np.testing.assert_array_equal(votes, _brute_force_votes(hsd[None], hema, eosin, query))


def test_knn_labels_with_few_seeds():
    # Fewer than 7 seeds: every seed votes; 4 against 3 is hematoxylin (+1) and a tie eosin (-1).
    rng = np.random.default_rng(1)
    hsd = rng.normal(size=(1, 12, 3))
    rgb = np.stack([np.arange(12), np.zeros(12), np.zeros(12)], -1).astype(np.uint8)[None]
    hema, eosin = np.zeros(12, bool), np.zeros(12, bool)
    hema[:4], eosin[4:7] = True, True
    query = ~hema & ~eosin
    np.testing.assert_array_equal(_knn_labels(rgb, hsd, hema, eosin, query), np.ones(5))
    hema[3] = False
    query = ~hema & ~eosin
    np.testing.assert_array_equal(_knn_labels(rgb, hsd, hema, eosin, query), -np.ones(6))


def test_eosin_seeds_are_as_many_distinct_pixels_as_hematoxylin_seeds():
    tile = nuclei_tile(0)
    hsd = rgb_to_hsd(tile)
    background = background_mask(hsd)
    nuclei = detect_nuclei(hsd[..., 2], 0.5)
    hema, eosin = _seed_masks(hsd, background, nuclei, np.random.default_rng(0))
    assert 0 < np.count_nonzero(hema) == np.count_nonzero(eosin)
    assert not np.any(hema & eosin)


def test_seed_masks_match_a_nucleus_by_nucleus_reference():
    # Over 50 nuclei, so the 2nd percentile of density is above the least dense nucleus, and
    # cyan ones: red density as high as the purple nuclei', mean density the lowest.
    tile = nuclei_tile(2, size=256, n_nuclei=100)
    yy, xx = np.mgrid[:256, :256]
    for cy, cx in ((30, 100), (160, 40)):
        tile[(yy - cy) ** 2 + (xx - cx) ** 2 <= 25] = (40, 230, 240)
    hsd = rgb_to_hsd(tile)
    background = background_mask(hsd)
    nuclei = detect_nuclei(hsd[..., 2], 0.5)
    hema, eosin = _seed_masks(hsd, background, nuclei, np.random.default_rng(0))
    flat = hsd.reshape(-1, 3)
    red = hsd_channel_densities(flat)[:, 0]
    disc, pixel = disc_pixels(background.shape, nuclei)
    members = [pixel[disc == i] for i in range(len(nuclei))]
    mean_red = np.array([red[m].mean() for m in members])
    mean_density = np.array([flat[m, 2].mean() for m in members])
    t_red = np.sort(mean_red)[(len(nuclei) - 1) // 10]  # the 10th and 2nd lower percentiles
    t_density = np.sort(mean_density)[math.floor((len(nuclei) - 1) * 0.02)]
    expected = np.zeros(len(flat), bool)
    for m, r, d in zip(members, mean_red, mean_density, strict=True):
        if r >= t_red and d >= t_density:
            expected[m] = True
    expected &= ~background.ravel() & (red >= t_red)
    assert expected.sum() < sum(len(m) for m in members)  # some nuclei or pixels rejected
    np.testing.assert_array_equal(hema, expected)
    candidates = ~background.ravel()
    candidates[pixel] = False
    t_eosin = np.sort(red[candidates])[math.floor((candidates.sum() - 1) * 0.2)]
    eligible = candidates & (red <= t_eosin)
    assert not np.any(eosin & ~eligible)
    assert eosin.sum() == min(hema.sum(), eligible.sum())


def test_tile_without_seeds_is_labelled_zero():
    tile = np.full((32, 32, 3), (235, 150, 190), dtype=np.uint8)  # no nuclei, no seeds
    result = label_stain_classes(tile, 0.5, np.random.default_rng(0))
    assert result.n_nuclei == 0 and result.labels.dtype == np.uint8
    np.testing.assert_array_equal(result.labels, np.zeros((32, 32)))
    np.testing.assert_array_equal(result.hsd, rgb_to_hsd(tile))


# ---------------------------------------------------------------------- statistics and mapping
def _samples(rng, centre_h=(0.3, 0.1), centre_e=(-0.2, -0.1), n=4000):
    def cloud(centre, density):
        chroma = rng.normal(centre, (0.08, 0.02), size=(n, 2))
        return np.column_stack([chroma, rng.normal(density, 0.1, n)])

    return [
        cloud(centre_h, 1.2),
        cloud(centre_e, 0.6),
        np.column_stack([rng.normal(0, 0.01, (n, 2)), rng.normal(0.1, 0.02, n)]),
    ]


def test_statistics_of_a_rotated_cloud(rng):
    samples = _samples(rng)
    angle = 0.6
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    samples[0][:, :2] = (samples[0][:, :2] - (0.3, 0.1)) @ rotation.T + (0.3, 0.1)
    stats = class_statistics(samples)
    assert stats.angles[0] == pytest.approx(angle, abs=0.03)
    assert stats.angles[1] == pytest.approx(0.0, abs=0.03)
    np.testing.assert_allclose(stats.medians[0], (0.3, 0.1), atol=0.01)
    landmarks = stats.landmarks[0]
    assert np.all(np.diff(landmarks, axis=1) >= 0)
    assert landmarks[0, 4] - landmarks[0, 2] > 3 * (landmarks[1, 4] - landmarks[1, 2])
    np.testing.assert_allclose(stats.density_mean, (1.2, 0.6, 0.1), atol=0.01)
    np.testing.assert_array_equal(stats.counts, (4000, 4000, 4000))


@pytest.mark.parametrize("angle", [-1.2, -0.6, 0.6, 1.2])
def test_major_axis_angle_is_canonical(rng, angle):
    # The axis direction with c_x >= 0: angles in (-pi/2, pi/2], whichever way the cloud leans.
    samples = _samples(rng)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    samples[1][:, :2] = (samples[1][:, :2] - (-0.2, -0.1)) @ rotation.T + (-0.2, -0.1)
    assert class_statistics(samples).angles[1] == pytest.approx(angle, abs=0.03)


def test_statistics_of_tiny_and_flat_classes(rng):
    samples = _samples(rng)
    # One pixel: its own median, no axis, no spread; two pixels: the axis through them.
    samples[0] = np.array([[0.3, 0.1, 1.2]])
    samples[1] = np.array([[-0.3, 0.2, 0.5], [-0.1, 0.0, 0.7]])
    stats = class_statistics(samples)
    np.testing.assert_array_equal(stats.medians[0], (0.3, 0.1))
    assert stats.angles[0] == 0.0 and stats.density_std[0] == 0.0
    np.testing.assert_allclose(stats.landmarks[0], 0.0, atol=1e-15)
    assert (stats.density_mean[0], stats.counts[0]) == (1.2, 1)
    assert stats.angles[1] == pytest.approx(-math.pi / 4)
    # Per-axis upper median (-0.1, 0.2): the two pixels lie 0.1 * sqrt(2) either side along it.
    half = math.hypot(0.1, 0.1)
    np.testing.assert_allclose(stats.landmarks[1, 0, [0, -1]], (-half, half))
    # A cloud with no spread in c_x (an exact zero covariance): its axis is vertical, +pi/2.
    samples[0] = np.column_stack([np.full(50, 0.25), rng.normal(0.1, 0.05, 50), np.ones(50)])
    assert class_statistics(samples).angles[0] == math.pi / 2


def test_empty_background_is_measured_as_zero_and_left_unmapped(rng):
    samples = _samples(rng)
    with_background = class_statistics(samples)
    samples[2] = np.empty((0, 3))
    without = class_statistics(samples)
    np.testing.assert_array_equal(without.medians[2], (0.0, 0.0))
    assert (without.density_mean[2], without.density_std[2], without.counts[2]) == (0, 0, 0)
    hsd = np.array([[0.05, -0.02, 0.15], [-0.01, 0.01, 0.3]])
    background_only = np.array([[0.0, 0.0, 1.0]] * 2)
    for source, template in [(without, with_background), (with_background, without)]:
        np.testing.assert_array_equal(map_hsd(hsd, background_only, source, template), hsd)


def test_empty_stain_class_is_measured_as_zero(rng):
    samples = _samples(rng)
    samples[0] = np.empty((0, 3))
    stats = class_statistics(samples)
    np.testing.assert_array_equal(stats.medians[0], (0.0, 0.0))
    assert stats.angles[0] == 0.0 and stats.counts[0] == 0
    np.testing.assert_array_equal(stats.landmarks[0], np.zeros((2, 7)))


def test_a_single_background_pixel_is_a_background(rng):
    samples = _samples(rng)
    samples[2] = samples[2][:1]
    one = class_statistics(samples)
    many = class_statistics(_samples(rng))
    hsd = np.array([[0.05, -0.02, 0.15]])
    background_only = np.array([[0.0, 0.0, 1.0]])
    for source, template in [(one, many), (many, one)]:
        mapped = map_hsd(hsd, background_only, source, template)
        shifted = hsd[0, :2] - source.medians[2] + template.medians[2]
        np.testing.assert_allclose(mapped[0, :2], shifted, rtol=1e-12)


def test_landmarks_map_onto_the_template_landmarks(rng):
    source = class_statistics(_samples(rng))
    template_samples = _samples(rng, centre_h=(0.4, 0.15))
    template_samples[0][:, :2] *= (1.5, 0.7)
    template = class_statistics(template_samples)

    def unrotated(stats, major, minor):
        cos, sin = math.cos(stats.angles[0]), math.sin(stats.angles[0])
        return stats.medians[0] + (cos * major - sin * minor, sin * major + cos * minor)

    # Colours at source landmarks (P25 major, P75 minor; P1, P99; P99, P50) map onto the
    # template's same landmarks.
    for major, minor in [(2, 4), (1, 5), (5, 3)]:
        colour = unrotated(source, source.landmarks[0, 0, major], source.landmarks[0, 1, minor])
        hsd = np.array([[*colour, 1.2]])
        mapped = map_hsd(hsd, np.array([[1.0, 0.0, 0.0]]), source, template)
        expected = unrotated(
            template, template.landmarks[0, 0, major], template.landmarks[0, 1, minor]
        )
        np.testing.assert_allclose(mapped[0, :2], expected, atol=1e-8)


def test_background_is_shifted_by_its_median_and_standardized_in_density(rng):
    source = class_statistics(_samples(rng))
    template_samples = _samples(rng)
    template_samples[2] = template_samples[2] * (1.0, 1.0, 3.0) + (0.02, -0.03, 0.2)
    template = class_statistics(template_samples)
    hsd = np.array([[0.05, -0.02, 0.15], [-0.01, 0.01, 0.3]])
    mapped = map_hsd(hsd, np.array([[0.0, 0.0, 1.0]] * 2), source, template)
    np.testing.assert_allclose(
        mapped[:, :2], hsd[:, :2] - source.medians[2] + template.medians[2], rtol=1e-12
    )
    ratio = template.density_std[2] / source.density_std[2]
    np.testing.assert_allclose(
        mapped[:, 2],
        (hsd[:, 2] - source.density_mean[2]) * ratio + template.density_mean[2],
        rtol=1e-12,
    )


@pytest.mark.parametrize(("source_std", "ratio"), [(0.0, 1.0), (0.9e-6, 1.0), (1e-6, 0.3e6)])
def test_flat_source_density_is_shifted_not_scaled(rng, source_std, ratio):
    # A source density spread below 1e-6 is not rescaled (the ratio would blow up).
    source = class_statistics(_samples(rng))
    template = class_statistics(_samples(rng))
    spreads = template.density_std.copy()
    spreads[0] = 0.3
    template = dataclasses.replace(template, density_std=spreads)
    spreads = source.density_std.copy()
    spreads[0] = source_std
    source = dataclasses.replace(source, density_std=spreads)
    hsd = np.array([[0.3, 0.1, 1.25]])
    mapped = map_hsd(hsd, np.array([[1.0, 0.0, 0.0]]), source, template)
    expected = (1.25 - source.density_mean[0]) * ratio + template.density_mean[0]
    assert mapped[0, 2] == pytest.approx(expected, rel=1e-9)


def test_mapping_returns_float64_for_float32_colours(rng):
    stats = class_statistics(_samples(rng))
    hsd = np.array([[0.3, 0.1, 1.2], [-0.2, -0.1, 0.6]], dtype=np.float32)
    mapped = map_hsd(hsd, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), stats, stats)
    assert mapped.dtype == np.float64


def test_mapping_onto_itself_is_the_identity(rng):
    samples = _samples(rng)
    stats = class_statistics(samples)
    hsd = np.concatenate(samples)
    weights = class_weights(
        fit_naive_bayes(naive_bayes_features(hsd), np.repeat(np.arange(3), 4000)),
        naive_bayes_features(hsd),
    )
    inner = np.abs(hsd[:, 0]) < 0.5
    np.testing.assert_allclose(map_hsd(hsd, weights, stats, stats)[inner], hsd[inner], atol=1e-6)


def test_density_is_scaled_by_template_over_source_spread(rng):
    source = class_statistics(_samples(rng))
    template_samples = _samples(rng)
    template_samples[0][:, 2] = 2.0 + 2.0 * (template_samples[0][:, 2] - 1.2)
    template = class_statistics(template_samples)
    hematoxylin_only = np.array([[1.0, 0.0, 0.0]])
    hsd = np.array([[0.3, 0.1, 1.3]])  # 1 source std above the source mean
    mapped = map_hsd(hsd, hematoxylin_only, source, template)
    expected = template.density_mean[0] + template.density_std[0] * (
        (1.3 - source.density_mean[0]) / source.density_std[0]
    )
    assert mapped[0, 2] == pytest.approx(expected)
    assert mapped[0, 2] > 2.15  # the reference code's inverted ratio would give about 2.05


def test_chromatic_mapping_rotates_between_stain_axes(rng):
    source_samples, template_samples = _samples(rng), _samples(rng)
    angle = 0.5
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    template_samples[0][:, :2] = (template_samples[0][:, :2] - (0.3, 0.1)) @ rotation.T + (
        0.5,
        0.2,
    )
    source, template = class_statistics(source_samples), class_statistics(template_samples)
    # A point one unit-ish along the source major axis lands along the template's major axis.
    hsd = np.array([[0.3 + 0.1, 0.1, 1.2]])
    mapped = map_hsd(hsd, np.array([[1.0, 0.0, 0.0]]), source, template)
    offset = mapped[0, :2] - template.medians[0]
    assert math.atan2(offset[1], offset[0]) == pytest.approx(template.angles[0], abs=0.1)


def test_naive_bayes_weights_are_a_partition(rng):
    samples = _samples(rng)
    features = naive_bayes_features(np.concatenate(samples))
    tables = fit_naive_bayes(features, np.repeat(np.arange(3), 4000))
    queries = naive_bayes_features(
        np.concatenate([s[:50] for s in samples] + [np.full((1, 3), 99.0)])
    )
    weights = class_weights(tables, queries)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    assert np.all(weights >= 0)
    assert np.mean(np.argmax(weights[:150], axis=1) == np.repeat(np.arange(3), 50)) > 0.95


def _two_clusters(rng, n=300):
    """Features in two far-apart clusters (empty bins between), every class in both."""
    features = np.concatenate([rng.normal(0.0, 0.01, (n, 3)), rng.normal(1.0, 0.01, (n, 3))])
    return features, rng.integers(0, 3, 2 * n)


def test_class_weights_interpolate_the_tables_between_bins(rng):
    features, classes = _two_clusters(rng)
    tables = fit_naive_bayes(features, classes)
    low, high = features.min(axis=0), features.max(axis=0)
    queries = np.concatenate(
        [features[:40], [low, high, low - 0.5, high + 0.5, low + (high - low) * 0.987]]
    )
    weights = class_weights(tables, queries)
    # Linear interpolation of each feature's table at its bin position, clamped to the bins.
    position = (queries - low) / (high - low) * 100
    product = np.ones((len(queries), 3))
    for f in range(3):
        for k in range(3):
            product[:, k] *= np.interp(position[:, f], np.arange(100), tables.posterior[f, :, k])
    np.testing.assert_allclose(weights, product / product.sum(axis=1, keepdims=True), rtol=1e-9)


def test_class_weights_are_thirds_where_every_class_is_unseen(rng):
    features, classes = _two_clusters(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # empty bins are not a numerical problem
        tables = fit_naive_bayes(features, classes)
    np.testing.assert_array_equal(class_weights(tables, np.full((2, 3), 0.5)), 1 / 3)


def test_class_weighting_without_background_pixels(rng):
    features, classes = _two_clusters(rng)
    tables = fit_naive_bayes(features, classes % 2)
    weights = class_weights(tables, features[:50])
    np.testing.assert_array_equal(weights[:, 2], 0.0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)


def test_a_constant_feature_does_not_weigh(rng):
    features, classes = _two_clusters(rng)
    features[:, 2] = 0.7
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by its zero width
        tables = fit_naive_bayes(features, classes)
    queries = features[:20].copy()
    shifted = queries.copy()
    shifted[:, 2] = 20.0
    np.testing.assert_array_equal(class_weights(tables, shifted), class_weights(tables, queries))


def _reference_naive_bayes_table(values, classes, bins=100, sigma=3.0):
    """One feature's p(class | x) table, transcribed loop by loop from the reference C++."""
    low, high = values.min(), values.max()
    scale = bins / (high - low)
    table, px = np.zeros((bins, 3)), np.zeros(bins)
    priors = np.bincount(classes, minlength=3) / len(values)
    for value, k in zip(values, classes, strict=True):
        f = (value - low) * scale
        for j in range(max(0, int(f - 2.5 * sigma)), min(bins, int(f + 2.5 * sigma + 1))):
            table[j, k] += np.exp(-(((j - f) / sigma) ** 2))
            px[j] += np.exp(-(((j - f) / sigma) ** 2))
    px /= px.sum()
    table /= table.sum(axis=0)
    return np.where(px[:, None] > 0, table * priors / np.where(px > 0, px, 1)[:, None], table)


def test_naive_bayes_tables_match_the_reference_loop(rng):
    features = rng.normal(size=(300, 3)) * (0.2, 0.1, 0.5)
    classes = rng.integers(0, 3, 300)
    tables = fit_naive_bayes(features, classes)
    for f in range(3):
        expected = _reference_naive_bayes_table(features[:, f], classes)
        np.testing.assert_allclose(tables.posterior[f], expected, rtol=1e-10, atol=1e-12)


def test_unique_colour_mapping_equals_per_pixel_mapping(fitted):
    tile = nuclei_tile(5, size=48)
    model = wsics_source_model(wsics_pool([tile], 0.5), 100)
    per_colour = fitted._map(tile, model)
    flat = tile.reshape(-1, 3)
    from stainstyle.methods._wsics_model import map_colours

    per_pixel = map_colours(rgb_to_hsd(flat), model.tables, model.statistics, fitted._template())
    np.testing.assert_array_equal(per_colour.reshape(-1, 3), per_pixel)


def test_pool_respects_the_class_quotas(monkeypatch):
    import stainstyle.methods.wsics as wsics

    tiles = [nuclei_tile(s) for s in range(4)]
    full = wsics_pool(tiles, 0.5)
    monkeypatch.setattr(wsics, "MAX_TRAINING_PIXELS", 1000)
    capped = wsics_pool(tiles, 0.5)
    assert [len(s) for s in capped.samples] == [
        min(len(s), limit) for s, limit in zip(full.samples, (450, 450, 100), strict=True)
    ]
    assert capped.n_tiles == full.n_tiles == 4
    # A uniform sample: the capped eosin density mean is close to the full one.
    assert capped.samples[1][:, 2].mean() == pytest.approx(full.samples[1][:, 2].mean(), rel=0.05)


def _synthetic_pool(sizes, seed=0):
    """A pool of packed colours around purple, pink and white, ``sizes`` pixels per class."""
    rng = np.random.default_rng(seed)
    centres = ((90, 60, 150), (235, 150, 190), (245, 245, 245))
    colours = [
        pack_rgb(np.clip(rng.normal(centre, 12, (n, 3)), 0, 255).astype(np.uint8))
        for centre, n in zip(centres, sizes, strict=True)
    ]
    return LabelledPixels(colours=colours, n_nuclei=100, n_tiles=1)


@pytest.mark.parametrize(
    ("sizes", "stride"),
    [((6_001, 7_002, 1_997), 1), ((12_346, 20_001, 2_653), 3), ((120_001, 110_002, 19_997), 20)],
)
def test_class_weighting_is_trained_on_every_stride_th_pooled_pixel(sizes, stride):
    # Every pixel while the pool is small; else every stride-th pixel of the classes laid end
    # to end, the largest stride (at most 20) that keeps 10,000 pixels.
    pool = _synthetic_pool(sizes)
    model = wsics_source_model(pool, 500)
    every = np.concatenate(pool.colours)
    classes = np.repeat(np.arange(3), sizes)
    assert len(every[::stride]) >= 10_000 and (stride == 20 or len(every[:: stride + 1]) < 10_000)
    expected = fit_naive_bayes(
        naive_bayes_features(rgb_to_hsd(unpack_rgb(every[::stride]))), classes[::stride]
    )
    np.testing.assert_array_equal(model.tables.posterior, expected.posterior)
    np.testing.assert_array_equal(model.tables.minimum, expected.minimum)
    statistics = colour_class_statistics(pool.colours)
    np.testing.assert_array_equal(model.statistics.landmarks, statistics.landmarks)


def test_source_model_needs_min_class_pixels_of_each_stain():
    pool = _synthetic_pool((700, 600, 50))
    assert wsics_source_model(pool, 600) is not None
    assert wsics_source_model(pool, 601) is None
    assert wsics_source_model(_synthetic_pool((600, 700, 50)), 601) is None


# ---------------------------------------------------------------------- estimator contract
def test_fit_returns_self_and_sets_attributes():
    normalizer = WSICSNormalizer()
    assert normalizer.fit(nuclei_tile(0)) is normalizer
    assert normalizer.medians_.shape == (3, 2) and normalizer.angles_.shape == (2,)
    assert normalizer.landmarks_.shape == (2, 2, 7)
    assert normalizer.density_mean_.shape == normalizer.density_std_.shape == (3,)
    assert normalizer.n_tiles_fit_ == 1 and normalizer.n_nuclei_ > 10


def test_fit_uses_its_random_state(monkeypatch):
    import stainstyle.methods.wsics as wsics

    monkeypatch.setattr(wsics, "MAX_TRAINING_PIXELS", 2000)  # the quota sample draws pixels
    tile = nuclei_tile(0)
    medians = {}
    for seed in (3, 2000):
        template = colour_class_statistics(wsics_pool([tile], 0.5, seed).colours)
        medians[seed] = WSICSNormalizer(random_state=seed).fit(tile).medians_
        np.testing.assert_array_equal(medians[seed], template.medians)
    assert not np.array_equal(medians[3], medians[2000])


def test_defaults_are_the_documented_ones():
    assert WSICSNormalizer().get_params() == {
        "microns_per_pixel": 0.5,
        "min_class_pixels": 500,
        "random_state": 2000,
        "background": "passthrough",
        "batch_size": 32,
    }


def test_fit_needs_min_class_pixels_of_each_stain():
    tile = nuclei_tile(0)
    counts = wsics_pool([tile], 0.5).class_sizes()
    fewest = min(counts[:2])
    assert WSICSNormalizer(min_class_pixels=fewest).fit(tile).n_tiles_fit_ == 1
    message = (
        rf"at least {fewest + 1} hematoxylin and eosin pixels; got 1 of 1 tiles with enough "
        rf"nuclei and {counts[0]} hematoxylin, {counts[1]} eosin pixels \(is "
        r"microns_per_pixel=0.5 right for these tiles\?\)"
    )
    with pytest.raises(ValueError, match=message):
        WSICSNormalizer(min_class_pixels=fewest + 1).fit(tile)


def test_fit_logs_its_template(caplog):
    tiles = np.stack([nuclei_tile(s) for s in range(3)])
    pool = wsics_pool(list(tiles), 0.5)
    with caplog.at_level(logging.INFO, logger="stainstyle.methods.wsics"):
        WSICSNormalizer().fit(tiles)
    assert [r.getMessage() for r in caplog.records if r.name == "stainstyle.methods.wsics"] == [
        f"WSICS template from 3 tiles: {pool.n_nuclei} nuclei, "
        f"{pool.class_sizes()} pixels per class"
    ]


def test_pool_skips_parts_without_tissue_or_enough_nuclei(monkeypatch):
    import stainstyle.methods._wsics_labels as labels

    rng = np.random.default_rng(0)
    blank = np.full((128, 128, 3), 250, np.uint8)
    stroma = np.clip(rng.normal((220, 140, 185), 10, (128, 128, 3)), 0, 255).astype(np.uint8)
    used = [nuclei_tile(1), nuclei_tile(2)]
    image = np.concatenate(
        [np.concatenate([blank, used[0]], 1), np.concatenate([stroma, used[1]], 1)]
    )
    monkeypatch.setattr(labels, "REFERENCE_TILE_UM", 64.0)  # parts of 128x128 at 0.5 um
    pooled = wsics_pool([image], 0.5)
    alone = wsics_pool(used, 0.5)
    assert pooled.n_tiles == 2
    assert pooled.n_nuclei == sum(
        label_stain_classes(t, 0.5, np.random.default_rng(2000)).n_nuclei for t in used
    )
    for a, b in zip(pooled.colours, alone.colours, strict=True):
        np.testing.assert_array_equal(a, b)


def test_pool_needs_more_nuclei_than_the_rule(monkeypatch):
    import stainstyle.methods._wsics_labels as labels

    tile = nuclei_tile(1)
    n = label_stain_classes(tile, 0.5, np.random.default_rng(2000)).n_nuclei
    area = 128 * 128 * 0.5**2  # a power of two: the rule's count is exact
    monkeypatch.setattr(labels, "NUCLEI_PER_SQUARE_UM", n / area)
    assert wsics_pool([tile], 0.5).n_tiles == 0
    monkeypatch.setattr(labels, "NUCLEI_PER_SQUARE_UM", (n - 1) / area)
    assert wsics_pool([tile], 0.5).n_tiles == 1


def test_clone_and_params():
    normalizer = WSICSNormalizer(microns_per_pixel=0.25, random_state=None)
    assert clone(normalizer).get_params() == normalizer.get_params()
    assert normalizer.set_params(min_class_pixels=10).min_class_pixels == 10


def test_not_fitted():
    with pytest.raises(NotFittedError):
        WSICSNormalizer().transform(nuclei_tile(0))


@pytest.mark.parametrize(
    "params",
    [
        {"microns_per_pixel": 0},
        {"microns_per_pixel": "0.5"},
        {"min_class_pixels": 0},
        {"random_state": -1},
    ],
)
def test_bad_parameters(params):
    with pytest.raises(ValueError, match=next(iter(params))):
        WSICSNormalizer(**params).fit(nuclei_tile(0))


def test_fit_rejects_tiles_without_stains():
    # Blank and single-colour targets: the screening every method shares.
    with pytest.raises(ValueError, match="X: WSICSNormalizer cannot learn a stain style"):
        WSICSNormalizer().fit(np.full((2, 64, 64, 3), 255, np.uint8))
    with pytest.raises(ValueError, match="X: WSICSNormalizer cannot learn a stain style"):
        WSICSNormalizer().fit(np.full((64, 64, 3), (200, 120, 180), np.uint8))
    # Tissue without nuclei: WSICS's own rule.
    rng = np.random.default_rng(0)
    stroma = np.clip(rng.normal((220, 140, 185), 10, (64, 64, 3)), 0, 255).astype(np.uint8)
    with pytest.raises(ValueError, match="X: WSICS needs target tiles"):
        WSICSNormalizer().fit(stroma)


def test_bad_inputs(fitted):
    with pytest.raises(ValueError, match="X: expected 3"):
        fitted.transform(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(ValueError, match="X: float input must lie in"):
        fitted.transform(np.full((8, 8, 3), 2.0))
    with pytest.raises(ValueError, match=r"groups: expected one group id per tile, shape \(2,\)"):
        fitted.transform(np.stack([nuclei_tile(1), nuclei_tile(2)]), groups=[0, 0, 1])


DEGENERATE = {**DEGENERATE_TILES, "eosin-only": np.full((64, 64, 3), (200, 120, 180), np.uint8)}


@pytest.mark.parametrize("tile", list(DEGENERATE.values()), ids=list(DEGENERATE))
def test_degenerate_tiles_pass_through_with_a_warning(fitted, tile):
    with pytest.warns(BackgroundTileWarning):
        out = fitted.transform(tile)
    np.testing.assert_array_equal(out, tile)


def test_tile_without_nuclei_is_degenerate(fitted):
    rng = np.random.default_rng(0)
    stroma = np.clip(rng.normal((220, 140, 185), 10, (64, 64, 3)), 0, 255).astype(np.uint8)
    assert tile_status(fitted, stroma)[0] == "passthrough_degenerate"


quick = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _nuclei_tiles(n, size, seed):
    return np.stack([nuclei_tile(seed + i, size=size) for i in range(n)])


@quick
@given(tile_batches(max_side=70, source_size=72, extra_kinds={"nuclei": _nuclei_tiles}))
def test_any_shape_and_content(fitted, tiles):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BackgroundTileWarning)
        out = fitted.transform(tiles)
        as_float = fitted.transform(tiles.astype(np.float32) / 255)
        grouped = fitted.transform(tiles, groups=np.arange(len(tiles)) % 2)
    assert out.shape == tiles.shape and out.dtype == np.uint8
    assert grouped.shape == tiles.shape and grouped.dtype == np.uint8
    assert as_float.dtype == np.float32 and np.all(np.isfinite(as_float))


# ---------------------------------------------------------------------- groups
def test_groups_pool_statistics(fitted):
    tiles = np.stack([nuclei_tile(s, nucleus=(110, 50, 160)) for s in range(10, 14)])
    alone = fitted.transform(tiles)
    one_group = fitted.transform(tiles, groups=["a"] * 4)
    singletons = fitted.transform(tiles, groups=[0, 1, 2, 3])
    np.testing.assert_array_equal(singletons, alone)
    assert not np.array_equal(one_group, alone)
    # Group order and ids do not matter, only membership.
    np.testing.assert_array_equal(fitted.transform(tiles, groups=[7, 7, 7, 7]), one_group)
    assert list(tile_status(fitted, tiles, groups=[0, 0, 1, 1])) == ["ok"] * 4


def test_group_of_tiles_of_different_sizes(fitted):
    tiles = [nuclei_tile(40, size=96), nuclei_tile(41, size=128), nuclei_tile(42, size=96)]
    out = fitted.transform(tiles, groups=[0, 0, 0])
    assert [o.shape for o in out] == [t.shape for t in tiles]
    # One group, one colour mapping: a colour present in every tile maps alike in every tile.
    packed = [pack_rgb(t).ravel() for t in tiles]
    shared = np.intersect1d(np.intersect1d(packed[0], packed[1]), packed[2])[:20]
    assert len(shared) > 0
    for colour in shared:
        mapped = {tuple(o.reshape(-1, 3)[p == colour][0]) for o, p in zip(out, packed, strict=True)}
        assert len(mapped) == 1


def test_unmodelled_source_says_why(fitted):
    rng = np.random.default_rng(0)
    stroma = np.clip(rng.normal((220, 140, 185), 10, (64, 64, 3)), 0, 255).astype(np.uint8)
    statistics = fitted.source_statistics(stroma)
    assert not statistics.modelled
    assert statistics.reason == (
        "WSICS: fewer than 500 hematoxylin or eosin pixels in tiles with enough nuclei "
        "(is microns_per_pixel=0.5 right?)"
    )


def test_degenerate_group_passes_through(fitted):
    blank_stroma = np.full((64, 64, 3), (200, 120, 180), np.uint8)
    tiles = [nuclei_tile(20), blank_stroma, nuclei_tile(21)]
    with pytest.warns(BackgroundTileWarning):
        out = fitted.transform(tiles, groups=[0, 1, 0])
    np.testing.assert_array_equal(out[1], blank_stroma)
    assert list(tile_status(fitted, tiles, groups=[0, 1, 0])) == [
        "ok",
        "passthrough_degenerate",
        "ok",
    ]


# ---------------------------------------------------------------------- real data
def test_fit_and_transform_the_same_set_changes_it_little():
    fidelity = load_fidelity()
    fit_tiles, _, _, _ = fidelity.load_mitos_split(require_data("mitos_atypia_pairs"))
    tiles = fit_tiles[::10]
    normalizer = WSICSNormalizer(microns_per_pixel=0.25).fit(tiles)
    out = normalizer.transform(tiles, groups=np.zeros(len(tiles)))
    assert np.abs(out.astype(int) - tiles).mean() < 3


@pytest.mark.slow
def test_beats_raw_on_scanner_pairs():
    fidelity = load_fidelity()
    fit_tiles, source, reference, _ = fidelity.load_mitos_split(require_data("mitos_atypia_pairs"))
    normalizer = WSICSNormalizer(microns_per_pixel=0.25).fit(fit_tiles)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BackgroundTileWarning)
        out = normalizer.transform(source)
    raw = ciede2000_lowpass(source, reference).mean()
    wsics = ciede2000_lowpass(out, reference).mean()
    assert wsics < raw - 1.0, (raw, wsics)


def test_save_and_load_round_trip(fitted, tmp_path):
    from stainstyle.hub import load

    fitted.save_pretrained(tmp_path / "wsics")
    loaded = load(tmp_path / "wsics")
    assert isinstance(loaded, WSICSNormalizer)
    tile = nuclei_tile(30)
    np.testing.assert_array_equal(loaded.transform(tile), fitted.transform(tile))


# ---------------------------------------------------------------------- large images
def test_labelling_tiles_cover_the_image():
    from stainstyle.methods._wsics_labels import labelling_tile_side, labelling_tiles

    assert labelling_tile_side(0.5) == 996 and labelling_tile_side(0.243) == 2048
    assert labelling_tile_side(0.1) == 2048
    assert labelling_tile_side(1000.0) == 1  # at least a pixel
    image = np.arange(300 * 250 * 3, dtype=np.uint32).astype(np.uint8).reshape(300, 250, 3)
    assert next(labelling_tiles(image, 497.7 / 300)) is image  # one tile: the image itself
    parts = list(labelling_tiles(image, 497.7 / 100))  # tiles of at most 100x100
    assert len(parts) == 3 * 3 and all(max(p.shape[:2]) <= 100 for p in parts)
    rows = [np.concatenate(parts[i : i + 3], axis=1) for i in range(0, 9, 3)]
    np.testing.assert_array_equal(np.concatenate(rows), image)
    side_by_side = list(labelling_tiles(image[:100, :150], 497.7 / 100))  # a 1 x 2 grid
    assert [p.shape[:2] for p in side_by_side] == [(100, 75), (100, 75)]


def test_a_large_image_is_labelled_in_parts(fitted, monkeypatch):
    import stainstyle.methods._wsics_labels as labels

    image = np.concatenate(
        [np.concatenate([nuclei_tile(s), nuclei_tile(s + 1)], axis=1) for s in (50, 52)]
    )
    parts = [image[:128, :128], image[:128, 128:], image[128:, :128], image[128:, 128:]]
    monkeypatch.setattr(labels, "REFERENCE_TILE_UM", 64.0)  # tiles of 128x128 at 0.5 um
    pooled = wsics_pool([image], 0.5)
    separately = wsics_pool(parts, 0.5)
    assert pooled.n_tiles == separately.n_tiles == 4
    for a, b in zip(pooled.colours, separately.colours, strict=True):
        np.testing.assert_array_equal(a, b)
    model = wsics_source_model(separately, fitted.min_class_pixels)
    np.testing.assert_array_equal(fitted.transform(image), fitted._map(image, model))


def test_table_mapping_equals_unique_colour_mapping(fitted, monkeypatch):
    import stainstyle.methods.wsics as wsics

    tiles = np.stack([nuclei_tile(s) for s in (60, 61)])
    model = wsics_source_model(wsics_pool(list(tiles), 0.5), 100)
    expected = fitted._map(tiles, model)
    monkeypatch.setattr(wsics, "TABLE_MIN_PIXELS", 0)
    monkeypatch.setattr(wsics, "COLOUR_CHUNK", 1000)
    np.testing.assert_array_equal(fitted._map(tiles, model), expected)
    np.testing.assert_array_equal(fitted._map(tiles[1, ::-1], model), expected[1, ::-1])


def _few_colours_pool():
    """Hematoxylin of one colour, eosin of two, background of one pixel."""
    purple, pink, pale, white = pack_rgb(
        np.array([(90, 60, 150), (235, 150, 190), (225, 140, 185), (250, 250, 250)], np.uint8)
    )
    colours = [np.full(5, purple), np.array([pink, pale, pale]), np.array([white])]
    return LabelledPixels(colours=colours, n_nuclei=1, n_tiles=1)


@pytest.mark.parametrize("pool_kind", ["tiles", "few-colours"])
def test_colour_statistics_from_counts_equal_plain_statistics(monkeypatch, pool_kind):
    import stainstyle.methods._wsics_model as model

    if pool_kind == "tiles":
        pool = wsics_pool([nuclei_tile(s) for s in range(3)], 0.5)
    else:
        pool = _few_colours_pool()
    plain = class_statistics(pool.samples)
    monkeypatch.setattr(model, "MAX_PLAIN_PIXELS", 0)
    counted = model.colour_class_statistics(pool.colours)
    # Order statistics are the same elements; sums equal to rounding.
    np.testing.assert_array_equal(counted.medians, plain.medians)
    np.testing.assert_array_equal(counted.counts, plain.counts)
    np.testing.assert_allclose(counted.angles, plain.angles, rtol=0, atol=1e-12)
    np.testing.assert_allclose(counted.landmarks, plain.landmarks, rtol=0, atol=1e-12)
    np.testing.assert_allclose(counted.density_mean, plain.density_mean, rtol=1e-12)
    np.testing.assert_allclose(counted.density_std, plain.density_std, rtol=1e-12)


@pytest.fixture(scope="module")
def labelled_in_order():
    """Per class, the packed colours of tiles 70-75 in labelling order and their random keys."""
    tiles = [nuclei_tile(s) for s in range(70, 76)]
    rng = np.random.default_rng(2000)
    colours, keys = [[], [], []], [[], [], []]
    for tile in tiles:
        labels = label_stain_classes(tile, 0.5, np.random.default_rng(2000))
        for k, label in enumerate((LABEL_HEMATOXYLIN, LABEL_EOSIN, LABEL_BACKGROUND)):
            colours[k].append(pack_rgb(tile)[labels.labels == label])
            keys[k].append(rng.random(len(colours[k][-1])))
    return tiles, [np.concatenate(c) for c in colours], [np.concatenate(k) for k in keys]


def _quota_total(n_eosin, outgrown_by):
    """The MAX_TRAINING_PIXELS whose eosin quota (45 %) is ``n_eosin - outgrown_by``."""
    total = math.ceil((n_eosin - outgrown_by) / 0.45)
    while int(0.45 * total) > n_eosin - outgrown_by:
        total -= 1
    assert int(0.45 * total) == n_eosin - outgrown_by
    return total


@pytest.mark.parametrize(
    "eosin_excess",
    [None, 0, 1, "quarter", "pruned"],
    ids=["under-quota", "exactly-quota", "one-over", "a-quarter-over", "pruned-often"],
)
def test_pool_keeps_the_smallest_keys_in_key_order_once_a_class_outgrows_it(
    monkeypatch, labelled_in_order, eosin_excess
):
    # A class within its quota keeps every pixel in labelling order; one that outgrows it
    # (by a pixel, by up to a quarter before any pruning, or pruned along the way) keeps the
    # quota's pixels with the smallest keys, in key order.
    import stainstyle.methods.wsics as wsics

    tiles, everything, keys = labelled_in_order
    n_eosin = len(everything[1])
    if eosin_excess is None:
        total = 2 * n_eosin + 10
    elif eosin_excess == "quarter":
        total = _quota_total(n_eosin, n_eosin // 5)  # outgrown by 25 %, never pruned
    elif eosin_excess == "pruned":
        total = 4000
    else:
        total = _quota_total(n_eosin, eosin_excess)
    monkeypatch.setattr(wsics, "MAX_TRAINING_PIXELS", total)
    pooled = wsics_pool(tiles, 0.5)
    for k, share in enumerate((0.45, 0.45, 0.10)):
        limit = int(share * total)
        if len(everything[k]) <= limit:
            expected = everything[k]
        else:
            expected = everything[k][np.argsort(keys[k])[:limit]]
        np.testing.assert_array_equal(pooled.colours[k], expected)
    if eosin_excess == "pruned":  # every class pruned along the way
        quotas = (0.45, 0.45, 0.10)
        assert all(len(c) > 1.25 * int(q * total) for c, q in zip(everything, quotas, strict=True))
