import numpy as np
import pytest
import torch
from _support import he_tiles, read_rgb, require_data

from stainstyle import MacenkoNormalizer, tile_status
from stainstyle.color import rgb_to_od
from stainstyle.methods.macenko import (
    HE_REFERENCE,
    MAX_CONCENTRATIONS_REFERENCE,
    _angle_percentiles,
    _sorted_percentiles,
    macenko_stain_matrix,
)
from stainstyle.tissue import MIN_TISSUE_PIXELS, tissue_mask


def _reference_stains(od_hat, alpha=1.0):
    """Float64 transcription of the stain vectors of Veta's normalizeStaining.m."""
    _, vectors = np.linalg.eigh(np.cov(od_hat.T))
    plane = vectors[:, 1:3]
    plane *= np.where(od_hat.mean(0) @ plane < 0, -1, 1)
    projected = od_hat @ plane
    phi = np.arctan2(projected[:, 1], projected[:, 0])
    lo, hi = np.percentile(phi, alpha), np.percentile(phi, 100 - alpha)
    v_min = plane @ [np.cos(lo), np.sin(lo)]
    v_max = plane @ [np.cos(hi), np.sin(hi)]
    return np.array([v_min, v_max] if v_min[0] > v_max[0] else [v_max, v_min]).T


def _reference_macenko(image, he_ref, maxc_ref, io=240.0, beta=0.15, alpha=1.0):
    """Float64 transcription of Veta's normalizeStaining.m (rounding instead of truncation)."""
    od = rgb_to_od(image.reshape(-1, 3), io)
    he = _reference_stains(od[~np.any(od < beta, axis=1)], alpha)
    concentrations = np.linalg.lstsq(he, od.T, rcond=None)[0]
    max_c = np.percentile(concentrations, 99, axis=1)
    normalized = io * np.exp(-he_ref @ (concentrations * (maxc_ref / max_c)[:, None]))
    return np.rint(np.clip(normalized.T, 0, 255)).reshape(image.shape).astype(np.uint8)


@pytest.mark.parametrize("name", ["example1", "example2"])
def test_reference_normalizer_reproduces_henorm_outputs(name):
    folder = require_data("reference", "henorm")
    image = read_rgb(folder / f"{name}.png")
    expected = read_rgb(folder / f"norm{name[-1]}.png")
    out = MacenkoNormalizer.from_reference().transform(image)
    assert np.abs(out.astype(int) - expected).mean(axis=(0, 1)).max() <= 1.0


def test_float32_path_matches_float64_reference(source_tiles):
    normalizer = MacenkoNormalizer.from_reference()
    for tile in source_tiles:
        expected = _reference_macenko(tile, HE_REFERENCE, MAX_CONCENTRATIONS_REFERENCE)
        diff = np.abs(normalizer.transform(tile).astype(int) - expected)
        assert diff.mean() < 0.05 and diff.max() <= 2


def test_fit_recovers_the_stains_it_was_rendered_with():
    tiles = he_tiles(6, 64, seed=4)
    stains = MacenkoNormalizer().fit(tiles).stain_matrix_
    h = np.array([0.65, 0.70, 0.29])
    e = np.array([0.07, 0.99, 0.11])
    assert stains[:, 0] @ (h / np.linalg.norm(h)) > 0.97
    assert stains[:, 1] @ (e / np.linalg.norm(e)) > 0.97


def test_fit_pools_targets_and_from_reference_validates(target_tiles):
    normalizer = MacenkoNormalizer().fit(target_tiles)
    assert normalizer.stain_matrix_.shape == (3, 2) and normalizer.max_concentrations_.shape == (2,)
    assert np.all(normalizer.stain_matrix_ > 0)
    with pytest.raises(ValueError, match="stain_matrix"):
        MacenkoNormalizer.from_reference(stain_matrix=np.ones((2, 3)))
    with pytest.raises(ValueError, match="max_concentrations"):
        MacenkoNormalizer.from_reference(max_concentrations=[1.0, -1.0])


def test_from_reference_stores_float64_and_names_non_numbers():
    normalizer = MacenkoNormalizer.from_reference(
        stain_matrix=[[1, 0], [1, 1], [0, 1]], max_concentrations=[2, 1]
    )
    assert normalizer.stain_matrix_.dtype == np.float64
    assert normalizer.max_concentrations_.dtype == np.float64
    with pytest.raises(ValueError, match="^stain_matrix: expected an array of numbers, got str$"):
        MacenkoNormalizer.from_reference(stain_matrix="hematoxylin")


def test_single_stain_tile_is_degenerate():
    tile = np.empty((64, 64, 3), np.uint8)
    tile[:] = np.rint(240 * np.exp(-np.linspace(0.3, 1.5, 64)[:, None, None] * [0.65, 0.70, 0.29]))
    normalizer = MacenkoNormalizer.from_reference()
    assert tile_status(normalizer, tile).tolist() == ["passthrough_degenerate"]
    with pytest.warns(UserWarning, match="could not model"):
        np.testing.assert_array_equal(normalizer.transform(tile), tile)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_degenerate_single_stain_target_raises(as_tensor):
    tile = np.empty((64, 64, 3), np.uint8)
    tile[:] = np.rint(240 * np.exp(-np.linspace(0.3, 1.5, 64)[:, None, None] * [0.65, 0.70, 0.29]))
    expected = (
        r"^MacenkoNormalizer: the target tiles hold a single stain \(the two estimated stain "
        r"vectors coincide\); fit on H&E-stained tissue$"
    )
    with pytest.raises(ValueError, match=expected):
        MacenkoNormalizer().fit(_tensor(tile) if as_tensor else tile)


def _tensor(array):
    return torch.from_numpy(array)


def _tile_with_stained_pixels(count):
    """A pale 64x64 tile with ``count`` H&E pixels that pass Macenko's every-channel filter.

    200 more pixels are tissue by the shared rule (dark in the red channel only), so that the
    tile is not background and reaches Macenko's own pixel count.
    """
    tile = np.full((64, 64, 3), 235, np.uint8)
    pixels = tile.reshape(-1, 3)
    pixels[1000:1200] = np.stack([np.linspace(150, 200, 200), [225] * 200, [230] * 200], axis=1)
    source = he_tiles(1, 64, seed=4)[0].reshape(-1, 3)
    pixels[:count] = source[tissue_mask(source, every_channel=True)][:count]
    return tile


@pytest.mark.parametrize("as_tensor", [False, True])
def test_fit_needs_at_least_min_tissue_pixels_through_the_stain_filter(as_tensor):
    def convert(tile):
        return _tensor(tile) if as_tensor else tile

    fitted = MacenkoNormalizer().fit(convert(_tile_with_stained_pixels(MIN_TISSUE_PIXELS)))
    assert fitted.stain_matrix_.shape == (3, 2)
    filter_words = (
        r"that pass the stain filter \(an optical density of at least beta=0\.15\)"
        if as_tensor
        else r"with an optical density of at least beta=0\.15 in every channel "
        r"\(Macenko's stain filter\)"
    )
    expected = (
        rf"^MacenkoNormalizer: the target tiles hold 99 pixels {filter_words}, at least 100 are "
        r"needed; are they pale or blank\?; fit on H&E-stained tissue$"
    )
    with pytest.raises(ValueError, match=expected):
        MacenkoNormalizer().fit(convert(_tile_with_stained_pixels(MIN_TISSUE_PIXELS - 1)))


def test_eigenvector_sign_does_not_matter(source_tiles):
    od = rgb_to_od(source_tiles[0].reshape(-1, 3))
    od = od[np.all(od >= 0.15, axis=1)]
    stains, degenerate = macenko_stain_matrix(od)
    assert not degenerate and np.all(stains.sum(axis=0) > 0)


def test_stain_matrix_is_the_references_at_the_default_alpha(source_tiles):
    od = rgb_to_od(source_tiles[1].reshape(-1, 3))
    od = od[np.all(od >= 0.15, axis=1)]
    stains, degenerate = macenko_stain_matrix(od)
    assert stains.shape == (3, 2) and stains.dtype == np.float64 and not degenerate
    np.testing.assert_allclose(stains, _reference_stains(od, alpha=1.0), atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(stains, axis=0), 1.0)


@pytest.mark.parametrize(
    ("h", "e"),
    [((0.65, 0.70, 0.29), (0.07, 0.99, 0.11)), ((0.85, 0.46, 0.27), (0.62, 0.34, 0.71))],
)
def test_stains_either_side_of_the_mean_direction(h, e):
    # Mixtures whose stain amounts trade off (H + E about constant): the mean optical density
    # lies on the plane's second axis and the stains on either side of it. The first pair gets
    # that axis from eigh with a positive mean projection, the second with a negative one.
    h, e = np.array(h) / np.linalg.norm(h), np.array(e) / np.linalg.norm(e)
    share, amount = np.meshgrid(np.linspace(0, 1, 101), 0.6 * np.linspace(0.9, 1.1, 21))
    share, amount = share.reshape(-1, 1), amount.reshape(-1, 1)
    od = amount * (share * h + (1 - share) * e)
    stains, degenerate = macenko_stain_matrix(od.astype(np.float32))
    assert not degenerate
    assert stains[:, 0] @ h > 0.9999 and stains[:, 1] @ e > 0.9999


def test_stain_vectors_come_with_a_positive_component_sum():
    # A cloud far out along a positive normal, spread in a plane where one of its extreme
    # directions has a negative component sum: that stain vector is returned flipped.
    normal = np.array([1.0, 0.6, 0.6]) / np.linalg.norm([1.0, 0.6, 0.6])
    towards = np.array([0.0, -1.0, 0.4])
    towards -= (towards @ normal) * normal
    towards /= np.linalg.norm(towards)
    across = np.cross(normal, towards)
    side, radius = np.meshgrid(np.linspace(-0.5, 0.5, 101), np.linspace(0.28, 0.32, 5))
    od = 2.5 * normal + radius.reshape(-1, 1) * towards + side.reshape(-1, 1) * across
    stains, degenerate = macenko_stain_matrix(od.astype(np.float32))
    angle = np.arctan2(0.49, 0.3)
    extremes = [np.cos(angle) * towards + sign * np.sin(angle) * across for sign in (1, -1)]
    assert sorted(np.sign([extreme.sum() for extreme in extremes])) == [-1, 1]
    assert not degenerate and np.all(stains.sum(axis=0) > 0)
    np.testing.assert_allclose(np.linalg.norm(stains, axis=0), 1.0)
    for stain in stains.T:
        assert max(abs(stain @ extreme) for extreme in extremes) > 0.999


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 5000, 65_536, 300_000])
def test_fast_percentiles_equal_numpy(n):
    rng = np.random.default_rng(n)
    values = rng.normal(size=n).astype(np.float32)
    q = [0.0, 1.0, 50.0, 99.0, 100.0]
    np.testing.assert_allclose(_sorted_percentiles(values, q), np.percentile(values, q), atol=1e-6)
    points = rng.normal(size=(n, 2)).astype(np.float32)
    angles = np.arctan2(points[:, 1].astype(float), points[:, 0].astype(float))
    np.testing.assert_allclose(_angle_percentiles(points, q), np.percentile(angles, q), atol=1e-6)


@pytest.mark.parametrize("layout", ["ties", "sorted", "reversed", "strided"])
def test_fast_percentiles_equal_numpy_on_structured_values(layout):
    # Order and repetition that a strided sample could misjudge; the result must stay exact.
    rng = np.random.default_rng(0)
    values = {
        "ties": rng.integers(0, 5, 65_536).astype(np.float32),
        "sorted": np.sort(rng.random(65_536, dtype=np.float32)),
        "reversed": np.sort(rng.random(65_536, dtype=np.float32))[::-1].copy(),
        "strided": np.where(np.arange(65_536) % 64 == 0, 9.0, rng.random(65_536)).astype(
            np.float32
        ),
    }[layout]
    q = [1.0, 50.0, 99.0]
    np.testing.assert_allclose(_sorted_percentiles(values, q), np.percentile(values, q), atol=1e-6)


@pytest.fixture
def small_chunks(monkeypatch):
    """Stream images above 64x64 pixels, in chunks of 1024 pixels."""
    import stainstyle.methods._macenko_pixels as pixels

    monkeypatch.setattr(pixels, "IN_MEMORY_PIXELS", 64 * 64)
    monkeypatch.setattr(pixels, "CHUNK_PIXELS", 1024)
    return pixels


@pytest.mark.parametrize("kind", ["random", "ties", "one-value", "sorted"])
def test_streamed_percentiles_equal_numpy(small_chunks, kind):
    rng = np.random.default_rng(7)
    images = {
        "random": rng.integers(0, 256, (3, 70, 90, 3)),
        "ties": rng.integers(100, 104, (3, 70, 90, 3)),  # four optical densities per channel
        "one-value": np.full((3, 70, 90, 3), 120),
        "sorted": np.sort(rng.integers(0, 256, (3, 70 * 90 * 3))).reshape(3, 70, 90, 3),
    }[kind].astype(np.uint8)
    stream = small_chunks.ODStream(list(images), 240.0, 0.15)
    assert stream.whole is None
    survey = stream.survey()
    weights = np.array([0.3, -0.7, 1.1], dtype=np.float32)

    def values(od):  # elementwise, so that chunks and the whole agree bit for bit
        return od[:, 0] * weights[0] + od[:, 1] * weights[1] + od[:, 2] * weights[2]

    every = np.concatenate([rgb_to_od(image.reshape(-1, 3)).astype(np.float32) for image in images])
    keep = np.concatenate([tissue_mask(image, every_channel=True).ravel() for image in images])
    q = [0.0, 1.0, 37.5, 50.0, 99.0, 100.0]
    for on_tissue, pixels in ((True, every[keep]), (False, every)):
        (got,) = small_chunks.stream_percentiles(stream, survey, on_tissue, [(values, q, None)])
        np.testing.assert_allclose(got, np.percentile(values(pixels), q), rtol=0, atol=1e-6)
    assert survey.n_tissue == np.count_nonzero(keep) and survey.n_every == len(every)


@pytest.mark.parametrize("kind", ["random", "ties"])
def test_streamed_percentiles_equal_numpy_at_every_half_percent(small_chunks, kind):
    # Every rank position relative to the sampled brackets: below, at and above their ends.
    rng = np.random.default_rng(11)
    high = 256 if kind == "random" else 110
    images = rng.integers(100, high, (2, 70, 90, 3)).astype(np.uint8)
    stream = small_chunks.ODStream(list(images), 240.0, 0.15)
    survey = stream.survey()
    q = np.linspace(0.0, 100.0, 201).tolist()

    def values(od):
        return od[:, 0] - 0.5 * od[:, 2]

    every = np.concatenate([rgb_to_od(image.reshape(-1, 3)).astype(np.float32) for image in images])
    keep = np.concatenate([tissue_mask(image, every_channel=True).ravel() for image in images])
    for on_tissue, pixels in ((True, every[keep]), (False, every)):
        (got,) = small_chunks.stream_percentiles(stream, survey, on_tissue, [(values, q, None)])
        np.testing.assert_allclose(got, np.percentile(values(pixels), q), rtol=0, atol=1e-6)


def test_streamed_percentiles_stay_exact_when_the_sample_misleads(small_chunks):
    # Every SAMPLE_STRIDE-th pixel is dark, so the strided sample holds only dark pixels and
    # both of its brackets miss (at 320,000 pixels even the widened one); the last pass counts
    # over the whole range.
    rng = np.random.default_rng(5)
    images = rng.integers(150, 230, (2, 400, 400, 3)).astype(np.uint8)
    pixels = images.reshape(-1, 3)
    pixels[:: small_chunks.SAMPLE_STRIDE] = 20
    stream = small_chunks.ODStream(list(images), 240.0, 0.15)
    survey = stream.survey()
    assert np.all(survey.every_sample == survey.every_sample[0])
    q = [1.0, 50.0, 99.0]

    def values(od):
        return od[:, 1]

    every = rgb_to_od(pixels).astype(np.float32)
    (got,) = small_chunks.stream_percentiles(stream, survey, False, [(values, q, None)])
    np.testing.assert_allclose(got, np.percentile(values(every), q), rtol=0, atol=1e-6)


def test_a_streamed_survey_sums_the_tissue_and_samples_every_stride_th_pixel(small_chunks):
    # Strips of 11 rows (990 pixels) are no multiple of the stride, and beta is not the default.
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, 70, 90, 3)).astype(np.uint8)
    stream = small_chunks.ODStream(list(images), 240.0, 0.3)
    assert stream.whole is None
    survey = stream.survey()
    every = np.concatenate([rgb_to_od(image.reshape(-1, 3), 240.0) for image in images])
    keep = np.concatenate(
        [tissue_mask(image, 240.0, 0.3, every_channel=True).ravel() for image in images]
    )
    tissue = every[keep]
    assert survey.n_tissue == len(tissue) and survey.n_every == len(every)
    np.testing.assert_allclose(survey.total, tissue.sum(axis=0), rtol=1e-6)
    np.testing.assert_allclose(survey.second, tissue.T @ tissue, rtol=1e-6)
    stride = small_chunks.SAMPLE_STRIDE
    assert survey.tissue_sample.dtype == survey.every_sample.dtype == np.float32
    assert max(len(chunk) for _, chunk in stream.chunks()) <= small_chunks.CHUNK_PIXELS
    np.testing.assert_allclose(survey.tissue_sample, tissue[::stride], rtol=0, atol=1e-6)
    np.testing.assert_allclose(survey.every_sample, every[::stride], rtol=0, atol=1e-6)


def _ranked_values(od):
    """One value per pixel (n, 3) -> (n,) that orders pixels by all three densities."""
    return od[:, 0] + 0.25 * od[:, 1] + 0.0625 * od[:, 2]


def _streamed_random_images(module, seed):
    """A stream over two random 70 x 90 images, its survey, and every pixel's density."""
    images = np.random.default_rng(seed).integers(0, 256, (2, 70, 90, 3)).astype(np.uint8)
    stream = module.ODStream(list(images), 240.0, 0.15)
    every = np.concatenate([rgb_to_od(image.reshape(-1, 3)).astype(np.float32) for image in images])
    return stream, stream.survey(), every


def test_streamed_percentiles_between_the_two_largest_values(small_chunks):
    stream, survey, every = _streamed_random_images(small_chunks, seed=4)
    values = _ranked_values
    n = len(every)
    top = np.sort(values(every))[-2:]
    assert top[1] - top[0] > 1e-3
    q = [100.0 * (n - 1.5) / (n - 1)]  # halfway between the ranks n - 2 and n - 1
    (got,) = small_chunks.stream_percentiles(stream, survey, False, [(values, q, None)])
    np.testing.assert_allclose(got, [top.mean()], rtol=0, atol=1e-6)


def test_images_up_to_the_in_memory_limit_together_are_held_whole(small_chunks):
    def whole(*shapes):
        return small_chunks.ODStream([np.full((*s, 3), 90, np.uint8) for s in shapes], 240.0, 0.15)

    assert whole((64, 64)).whole is not None
    assert whole((20, 150)).whole is not None  # 3,000 pixels, though 150 x 150 would not fit
    assert whole((64, 65)).whole is None
    two = whole((32, 64), (32, 64))
    assert two.whole is not None and two.survey().n_every == two.survey().n_tissue == 64 * 64
    assert len(two.whole[1]) == 64 * 64
    tissue_only = small_chunks.ODStream.of_tissue(np.ones((5, 3), np.float32)).survey()
    assert tissue_only.n_tissue == 5 and tissue_only.n_every == 0


def test_a_counting_pass_resolves_exactly_the_ranks_inside_each_bracket(small_chunks):
    # Eight tied values; a bracket resolves a rank below it, strictly inside or at either end
    # (even where both ends are one value) and leaves every other rank to a later pass.
    rng = np.random.default_rng(6)
    levels = np.array([40, 60, 80, 100, 120, 140, 160, 180], np.uint8)
    images = levels[rng.integers(0, 8, (1, 70, 90))][..., None].repeat(3, axis=-1)
    stream = small_chunks.ODStream(list(images), 240.0, 0.15)
    assert stream.whole is None

    def values(od):
        return od[:, 0]

    ordered = np.sort(values(rgb_to_od(images.reshape(-1, 3)).astype(np.float32)))
    ends = np.flatnonzero(np.diff(ordered)) + 1  # first rank of each value but the smallest
    ranks = sorted(
        {0, len(ordered) - 1, *(ends - 1).tolist(), *ends.tolist(), *(ends + 1).tolist()}
    )
    value = np.unique(ordered)  # decreasing intensity, increasing optical density
    for lo, hi in ((value[2], value[5]), (value[3], value[3]), (value[2] - 0.01, value[5] + 0.01)):
        found = [{}, {}]
        jobs = [(values, [], None), (values, [], None)]  # the first has nothing pending
        small_chunks._count_pass(
            stream, False, jobs, [[], ranks], [[], [(lo, hi)] * len(ranks)], found
        )
        expected = {r: float(ordered[r]) for r in ranks if lo <= ordered[r] <= hi}
        assert found == [{}, expected]


def test_sorted_percentiles_at_100_with_the_maximum_outside_the_sample():
    # The sample's bracket of the largest rank ends at the second largest value, one short.
    values = np.random.default_rng(8).random(65_536).astype(np.float32)
    values[0], values[1] = 1.5, 2.0  # a strided sample pixel, and one left out of the sample
    q = [50.0, 100.0]
    np.testing.assert_array_equal(_sorted_percentiles(values, q), np.percentile(values, q))


def test_streamed_percentiles_at_every_one_of_the_largest_ranks(small_chunks):
    # From ranks where the sampled bracket ends inside the sample to ranks where it runs past it.
    stream, survey, every = _streamed_random_images(small_chunks, seed=12)
    values = _ranked_values
    n = len(every)
    q = (100.0 * np.arange(n - 1600, n) / (n - 1)).tolist()
    (got,) = small_chunks.stream_percentiles(stream, survey, False, [(values, q, None)])
    np.testing.assert_allclose(got, np.percentile(values(every), q), rtol=0, atol=1e-6)


def test_streamed_percentiles_sort_nan_values_last(small_chunks):
    rng = np.random.default_rng(13)
    images = rng.integers(0, 256, (2, 70, 90, 3)).astype(np.uint8)
    stream = small_chunks.ODStream(list(images), 240.0, 0.15)
    survey = stream.survey()

    def values(od):  # NaN for about a tenth of the pixels
        return np.where(od[:, 0] > 2.2, np.nan, od[:, 1])

    every = np.concatenate([rgb_to_od(image.reshape(-1, 3)).astype(np.float32) for image in images])
    ordered = np.sort(values(every))  # NaN last
    assert 0.05 < np.mean(np.isnan(ordered)) < 0.2
    q = [50.0, 100.0]
    position = np.array(q) / 100.0 * (len(ordered) - 1)
    below = np.floor(position).astype(int)
    above = np.minimum(below + 1, len(ordered) - 1)
    expected = ordered[below] + (position - below) * (ordered[above] - ordered[below])
    (got,) = small_chunks.stream_percentiles(stream, survey, False, [(values, q, None)])
    assert np.isfinite(got[0]) and np.isnan(got[1])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_a_streamed_tile_matches_the_in_memory_estimate(small_chunks):
    tiles = he_tiles(4, 96, seed=9)
    normalizer = MacenkoNormalizer().fit(tiles[:2])
    in_memory = [normalizer.transform(tile) for tile in tiles]
    fitted_in_memory = MacenkoNormalizer(tissue_only=True).fit(tiles)
    small_chunks.IN_MEMORY_PIXELS = 1000
    streamed = [normalizer.transform(tile) for tile in tiles]
    for a, b in zip(in_memory, streamed, strict=True):
        # The streamed moments are summed chunk by chunk in float64, the in-memory ones in one
        # float32 product: the stain vectors agree to rounding, the images to one gray level.
        difference = np.abs(a.astype(int) - b)
        assert difference.max() <= 1 and np.count_nonzero(difference) < 0.01 * difference.size
    fitted = MacenkoNormalizer(tissue_only=True).fit(tiles)
    np.testing.assert_allclose(fitted.stain_matrix_, fitted_in_memory.stain_matrix_, atol=1e-4)
    np.testing.assert_allclose(
        fitted.max_concentrations_, fitted_in_memory.max_concentrations_, rtol=1e-4
    )
