from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from _support import DEGENERATE_TILES, ROOT, load_script, require_data, tile_batches
from hypothesis import HealthCheck, given, settings
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from stainstyle.base import BackgroundTileWarning, tile_status
from stainstyle.color.hsd import rgb_to_hsd
from stainstyle.methods._wsics_labels import (
    LABEL_BACKGROUND,
    LABEL_EOSIN,
    LABEL_HEMATOXYLIN,
    background_mask,
    disc_pixels,
    label_stain_classes,
    lower_percentile,
    min_nuclei,
    nucleus_radius_range,
    pack_rgb,
)
from stainstyle.methods._wsics_model import (
    class_statistics,
    class_weights,
    fit_naive_bayes,
    map_hsd,
    naive_bayes_features,
)
from stainstyle.methods.wsics import WSICSNormalizer, wsics_pool, wsics_source_model
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


def test_labels_are_reproducible():
    tile = nuclei_tile(1)
    first = label_stain_classes(tile, 0.5, np.random.default_rng(3)).labels
    second = label_stain_classes(tile, 0.5, np.random.default_rng(3)).labels
    np.testing.assert_array_equal(first, second)


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


# ---------------------------------------------------------------------- estimator contract
def test_fit_returns_self_and_sets_attributes():
    normalizer = WSICSNormalizer()
    assert normalizer.fit(nuclei_tile(0)) is normalizer
    assert normalizer.medians_.shape == (3, 2) and normalizer.angles_.shape == (2,)
    assert normalizer.landmarks_.shape == (2, 2, 7)
    assert normalizer.density_mean_.shape == normalizer.density_std_.shape == (3,)
    assert normalizer.n_tiles_fit_ == 1 and normalizer.n_nuclei_ > 10


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
    image = np.arange(300 * 250 * 3, dtype=np.uint32).astype(np.uint8).reshape(300, 250, 3)
    assert next(labelling_tiles(image, 497.7 / 300)) is image  # one tile: the image itself
    parts = list(labelling_tiles(image, 497.7 / 100))  # tiles of at most 100x100
    assert len(parts) == 3 * 3 and all(max(p.shape[:2]) <= 100 for p in parts)
    rows = [np.concatenate(parts[i : i + 3], axis=1) for i in range(0, 9, 3)]
    np.testing.assert_array_equal(np.concatenate(rows), image)


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


def test_colour_statistics_from_counts_equal_plain_statistics(monkeypatch):
    import stainstyle.methods._wsics_model as model

    pool = wsics_pool([nuclei_tile(s) for s in range(3)], 0.5)
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


def test_pruned_pool_is_the_sample_of_the_smallest_keys(monkeypatch):
    # However often a class is pruned, the pool holds the pixels with the smallest keys of all.
    import stainstyle.methods.wsics as wsics

    tiles = [nuclei_tile(s) for s in range(70, 76)]
    monkeypatch.setattr(wsics, "MAX_TRAINING_PIXELS", 4000)
    pooled = wsics_pool(tiles, 0.5)
    rng = np.random.default_rng(2000)
    colours, keys = [[], [], []], [[], [], []]
    for tile in tiles:
        labels = label_stain_classes(tile, 0.5, np.random.default_rng(2000))
        for k, label in enumerate((LABEL_HEMATOXYLIN, LABEL_EOSIN, LABEL_BACKGROUND)):
            colours[k].append(pack_rgb(tile)[labels.labels == label])
            keys[k].append(rng.random(len(colours[k][-1])))
    for k, limit in enumerate((1800, 1800, 400)):
        everything, key = np.concatenate(colours[k]), np.concatenate(keys[k])
        assert len(everything) > 1.25 * limit  # pruned along the way
        expected = everything[np.argsort(key)[:limit]]
        np.testing.assert_array_equal(pooled.colours[k], expected)
