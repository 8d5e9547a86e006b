import warnings

import numpy as np
import pytest
from _support import he_tiles, read_rgb, require_data
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from stainstyle import BackgroundTileWarning, MacenkoNormalizer, VahadaneNormalizer, tile_status
from stainstyle.color import rgb_to_od
from stainstyle.methods._sparse_nmf import _parallel, learn_dictionary, sparse_codes
from stainstyle.methods.vahadane import _sample_ranks, vahadane_stain_matrix
from stainstyle.separation import RUIFROK_HE, check_stain_matrix, reconstruct
from stainstyle.sources import UnmodelledSource
from stainstyle.tissue import tissue_mask

#: Stain vectors unlike Ruifrok's (the solver's start), to recover from rendered tiles.
TRUE_H = np.array([0.55, 0.78, 0.30])
TRUE_E = np.array([0.15, 0.93, 0.33])
TRUE = np.stack([TRUE_H, TRUE_E], axis=1) / np.linalg.norm([TRUE_H, TRUE_E], axis=1)


def angles(found, truth):
    cosines = np.sum(found * truth, axis=0) / np.linalg.norm(found, axis=0)
    return np.degrees(np.arccos(np.clip(cosines, -1, 1)))


def render(h_scale=1.0, e_scale=1.0, size=128, seed=0, stains=TRUE, noise=1.0, io=255):
    """A Beer-Lambert tile of sparse concentrations (pure H, pure E and mixed regions)."""
    rng = np.random.default_rng(seed)
    concentrations = rng.exponential(0.6, (size, size, 2)) * [h_scale, e_scale]
    region = rng.integers(0, 3, (size // 8, size // 8)).repeat(8, 0).repeat(8, 1)
    concentrations[region == 0, 1] = 0  # hematoxylin only
    concentrations[region == 1, 0] = 0  # eosin only
    tile = reconstruct(concentrations, stains, io=io)
    return np.clip(np.rint(tile + rng.normal(0, noise, tile.shape)), 0, 255).astype(np.uint8)


def objective(od, atoms, lambda1):
    codes = sparse_codes(od, atoms, lambda1)
    return 0.5 * np.sum((od - codes @ atoms.T) ** 2) + lambda1 * codes.sum()


# ------------------------------------------------------------------------------ known values
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_recovers_the_stains_it_was_rendered_with(seed):
    found = VahadaneNormalizer().fit(render(seed=seed)).stain_matrix_
    assert np.all(angles(found, TRUE) < 3.0)
    np.testing.assert_allclose(np.linalg.norm(found, axis=0), 1.0)
    assert np.all(found >= 0)


@pytest.mark.parametrize("h_scale, e_scale", [(1.0, 0.2), (0.2, 1.0)])
def test_hematoxylin_and_eosin_never_swap(h_scale, e_scale):
    # One stain dominant, then the other: hematoxylin stays first.
    found = VahadaneNormalizer().fit(render(h_scale, e_scale)).stain_matrix_
    assert np.all(angles(found, TRUE) < angles(found, TRUE[:, ::-1]))


@pytest.mark.parametrize("size", [128, 192])  # all tissue pixels; a sample of 16384 of them
def test_function_twin_gives_the_estimators_stain_matrix(size):
    # With their defaults, the function and the estimator learn on the same pixels (the same
    # sample of the tile's tissue, by rank) with the same penalty.
    tile = render(size=size)
    od = rgb_to_od(tile[tissue_mask(tile, 255.0)], 255.0)
    assert (len(od) > 1 << 14) is (size > 128)
    stains, degenerate = vahadane_stain_matrix(od)
    assert not degenerate
    fitted = VahadaneNormalizer().fit(tile).stain_matrix_
    np.testing.assert_allclose(stains, fitted, atol=1e-4)


def test_zero_passes_leave_the_start():
    stains, degenerate = vahadane_stain_matrix(tissue_od(), max_iter=0)
    np.testing.assert_allclose(stains, RUIFROK_HE, atol=1e-15)
    assert not degenerate


def test_the_sample_is_of_distinct_pixels_in_order():
    # Ranks sorted and without repeats: each sampled pixel counts once, and the ranks can be
    # found chunk by chunk in a streamed image.
    ranks = _sample_ranks(1000, 600, np.random.default_rng(0))
    assert len(ranks) == 600 and np.all(np.diff(ranks) > 0) and 0 <= ranks[0] < ranks[-1] < 1000


def test_each_pass_lowers_the_objective():
    od = rgb_to_od(render().reshape(-1, 3), 255.0)
    od = od[od.max(axis=1) > 0.15][:3000]
    previous = objective(od, RUIFROK_HE, 0.1)
    for n_iter in (1, 2, 4, 8, 16):
        atoms = learn_dictionary(od, RUIFROK_HE, 0.1, n_iter, 0.0).atoms
        current = objective(od, atoms, 0.1)
        assert current <= previous + 1e-9
        previous = current


def tissue_od(size=128, limit=3000):
    od = rgb_to_od(render(size=size).reshape(-1, 3), 255.0)
    return od[od.max(axis=1) > 0.15][:limit]


def axis_od(n=500, seed=0):
    """Sparse densities of two stains that absorb in one channel each (red, green)."""
    rng = np.random.default_rng(seed)
    codes = rng.exponential(0.6, (n, 2)) * (rng.random((n, 2)) < 0.6)
    return codes @ np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


#: A start with column norms 1.5 and 0.6: the first is projected onto the unit ball.
START = np.array([[0.8, 0.2, 0.5], [0.3, 0.9, 0.4]]).T
START = START / np.linalg.norm(START, axis=0) * [1.5, 0.6]


@pytest.mark.parametrize("od", [tissue_od(), axis_od()], ids=["tissue", "axis"])
def test_one_pass_is_the_projected_block_coordinate_update(od):
    # Mairal et al. 2010, Algorithm 2 with non-negative atoms, from the projected start: each
    # column in turn solves its least squares for the codes, then is clipped at 0 and scaled
    # into the unit ball. On "axis" the blue entry of the first column is negative before the
    # projection.
    atoms = START / np.maximum(np.linalg.norm(START, axis=0), 1.0)
    codes = sparse_codes(od, atoms, 0.1)
    gram, cross = codes.T @ codes, od.T @ codes
    for k in (0, 1):
        column = atoms[:, k] + (cross[:, k] - atoms @ gram[:, k]) / gram[k, k]
        column = np.maximum(column, 0.0)
        atoms[:, k] = column / max(np.linalg.norm(column), 1.0)
    learned = learn_dictionary(od, START, 0.1, 1, 0.0)
    np.testing.assert_allclose(learned.atoms, atoms, rtol=0, atol=1e-12)
    assert learned.n_iter == 1 and learned.used.tolist() == [True, True]


@pytest.mark.parametrize("od", [tissue_od(), axis_od()], ids=["tissue", "axis"])
def test_the_dictionary_stays_in_its_constraint_set(od):
    # Non-negative atoms of norm at most 1 after any number of passes, though the unconstrained
    # least squares of "axis" would give its atoms negative blue entries.
    for max_iter in (1, 5, 50):
        atoms = learn_dictionary(od, START, 0.1, max_iter, 0.0).atoms
        assert np.all(atoms >= 0)
        assert np.all(np.linalg.norm(atoms, axis=0) <= 1.0 + 1e-12)


def test_passes_are_counted_and_resume_where_they_stopped():
    od = tissue_od()
    three = learn_dictionary(od, RUIFROK_HE, 0.1, 3, 0.0)
    two = learn_dictionary(od, RUIFROK_HE, 0.1, 2, 0.0)
    resumed = learn_dictionary(od, two.atoms, 0.1, 1, 0.0)
    assert (three.n_iter, two.n_iter, resumed.n_iter) == (3, 2, 1)
    np.testing.assert_allclose(resumed.atoms, three.atoms, rtol=0, atol=1e-12)
    assert not np.allclose(two.atoms, three.atoms, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "norms, sine_squared, parallel",
    [
        ((1.0, 0.5), 0.5e-6, True),
        ((1.0, 0.5), 0.75e-6, True),
        ((1.0, 0.5), 2e-6, False),
        ((0.3, 1.0), 0.75e-6, True),
        ((0.3, 1.0), 2e-6, False),
        ((1.0, 1.0), 1.0, False),  # orthogonal unit atoms
        ((0.0, 1.0), 1.0, True),  # a zero atom
    ],
)
def test_atoms_are_parallel_where_the_lasso_refuses_them(norms, sine_squared, parallel):
    # The Gram determinant over the product of the squared norms is the squared sine of the
    # angle between the atoms, whatever their norms: below 1e-6 (0.057 degrees) they are one
    # stain, as for the stain matrices separation accepts.
    angle = np.arcsin(np.sqrt(sine_squared))
    atoms = np.array([[1.0, 0.0, 0.0], [np.cos(angle), np.sin(angle), 0.0]]).T * norms
    assert _parallel(atoms) is parallel
    if parallel:
        with pytest.raises(ValueError, match="zero or parallel"):
            check_stain_matrix(atoms)
    else:
        check_stain_matrix(atoms)


def test_a_single_stain_ends_on_the_last_dictionary_the_lasso_accepts():
    # Densities of one stain between Ruifrok's two: the atoms close in on it until a pass
    # would make them parallel; the dictionary before that pass is returned.
    stain = 0.95 * RUIFROK_HE[:, 0] + 0.05 * RUIFROK_HE[:, 1]
    stain /= np.linalg.norm(stain)
    od = np.linspace(0.2, 2.0, 400)[:, None] * stain
    learned = learn_dictionary(od, RUIFROK_HE, 0.1, 100, 2e-4)
    check_stain_matrix(learned.atoms)
    assert learned.n_iter < 100 and learned.used.tolist() == [True, True]
    assert np.all(angles(learned.atoms, np.stack([stain, stain], axis=1)) < 0.5)


def test_float32_densities_are_learned_in_float64():
    # The estimator passes float32 densities (its lookup table): the factorization widens them
    # first, so it learns exactly what it learns from the same values in float64.
    od = tissue_od().astype(np.float32)
    single = learn_dictionary(od, RUIFROK_HE, 0.1, 20, 0.0)
    double = learn_dictionary(od.astype(np.float64), RUIFROK_HE, 0.1, 20, 0.0)
    assert single.atoms.dtype == np.float64
    np.testing.assert_array_equal(single.atoms, double.atoms)


def test_pixels_too_faint_for_the_penalty_use_no_atom():
    # Every density is below lambda1 along both (unit) atoms: all codes are 0, no atom is used,
    # the dictionary stays at its start and the first pass, moving nothing, ends the iterations.
    od = np.random.default_rng(0).uniform(0.0, 0.05, (500, 3))  # norms below 0.087
    learned = learn_dictionary(od, RUIFROK_HE, 0.1, 10, 0.0)
    assert learned.used.tolist() == [False, False] and learned.n_iter == 1
    np.testing.assert_array_equal(learned.atoms, RUIFROK_HE)


def test_transform_maps_a_tile_onto_the_target_style():
    target = render(seed=3)
    other = np.array([[0.70, 0.60, 0.38], [0.05, 0.90, 0.45]]).T
    source = render(seed=4, stains=other / np.linalg.norm(other, axis=0))
    normalizer = VahadaneNormalizer().fit(target)
    out = normalizer.transform(source)
    refit = VahadaneNormalizer().fit(out).stain_matrix_
    assert np.all(angles(refit, normalizer.stain_matrix_) < 3.0)
    assert np.abs(out.mean((0, 1)) - target.mean((0, 1))).max() < 10


def test_parity_ingredients_against_macenko_on_real_tiles(source_tiles):
    # Both stain-matrix methods find hematoxylin first on real tissue.
    for tile in source_tiles[:3]:
        vahadane = VahadaneNormalizer().fit(tile).stain_matrix_
        macenko = MacenkoNormalizer().fit(tile).stain_matrix_
        assert vahadane[0, 0] > vahadane[0, 1] and macenko[0, 0] > macenko[0, 1]


# ------------------------------------------------------------------------------ determinism
def test_same_random_state_same_output_and_tiles_independent_of_their_batch():
    tiles = he_tiles(4, 64, seed=2)
    normalizer = VahadaneNormalizer().fit(render())
    batch = normalizer.transform(tiles)
    np.testing.assert_array_equal(batch, clone(normalizer).fit(render()).transform(tiles))
    for i in range(len(tiles)):
        np.testing.assert_array_equal(batch[i], normalizer.transform(tiles[i]))


def test_random_state_picks_the_sample():
    tile = render(size=256)
    first = VahadaneNormalizer(n_pixels=256, random_state=0).fit(tile).stain_matrix_
    second = VahadaneNormalizer(n_pixels=256, random_state=1).fit(tile).stain_matrix_
    assert not np.array_equal(first, second)
    assert np.all(angles(first, second) < 3.0)


@pytest.mark.parametrize("n_pixels", [2000, 1 << 14])
@pytest.mark.parametrize("tissue_only", [False, True])
def test_a_streamed_fit_equals_the_fit_of_the_images_held_whole(monkeypatch, n_pixels, tissue_only):
    # Streamed in chunks of 1024 pixels, the images give the same tissue sample (ranks counted
    # across chunks and images) and the same exact percentiles as held whole.
    import stainstyle.methods._macenko_pixels as pixels
    import stainstyle.methods.vahadane as vahadane

    tiles = list(he_tiles(3, 72, seed=8))
    tiles[1][:24] = 250  # background rows: tissue_only changes the percentiles
    normalizer = VahadaneNormalizer(n_pixels=n_pixels, tissue_only=tissue_only)
    whole = clone(normalizer).fit(tiles)
    monkeypatch.setattr(vahadane, "IN_MEMORY_PIXELS", 64 * 64)
    monkeypatch.setattr(pixels, "IN_MEMORY_PIXELS", 64 * 64)
    monkeypatch.setattr(pixels, "CHUNK_PIXELS", 1024)
    streamed = clone(normalizer).fit(tiles)
    np.testing.assert_array_equal(streamed.stain_matrix_, whole.stain_matrix_)
    np.testing.assert_allclose(streamed.max_concentrations_, whole.max_concentrations_, rtol=1e-6)


# ------------------------------------------------------------------------------ edge cases
@pytest.mark.parametrize("stain", [0, 1])
def test_single_stain_tile_is_passed_through(stain):
    tile = np.empty((64, 64, 3), np.uint8)
    density = np.linspace(0.3, 1.5, 64)[:, None, None]
    tile[:] = np.rint(255 * np.exp(-density * TRUE[:, stain]))
    normalizer = VahadaneNormalizer().fit(render())
    assert tile_status(normalizer, tile).tolist() == ["passthrough_degenerate"]
    with pytest.warns(BackgroundTileWarning, match="could not model"):
        np.testing.assert_array_equal(normalizer.transform(tile), tile)
    message = r"tiles hold a single stain \(the two learned stain vectors coincide\); fit on"
    with pytest.raises(ValueError, match=message):
        VahadaneNormalizer().fit(tile)


def test_not_fitted_and_invalid_parameters():
    with pytest.raises(NotFittedError):
        VahadaneNormalizer().transform(render())
    with pytest.raises(ValueError, match="lambda1"):
        VahadaneNormalizer(lambda1=0.0).fit(render())
    with pytest.raises(ValueError, match="n_pixels"):
        VahadaneNormalizer(n_pixels=1).fit(render())


def test_tissue_only_changes_only_the_maximum_concentrations():
    tile = render()
    tile[:32] = 250  # background rows
    everywhere = VahadaneNormalizer().fit(tile)
    on_tissue = VahadaneNormalizer(tissue_only=True).fit(tile)
    np.testing.assert_array_equal(everywhere.stain_matrix_, on_tissue.stain_matrix_)
    # A quarter of the pixels is background, of concentration 0: by default (all pixels) the
    # 99th percentile falls lower in the tissue's concentrations.
    assert np.all(on_tissue.max_concentrations_ > everywhere.max_concentrations_)


# ------------------------------------------------------------------------------ separation
@pytest.mark.parametrize("cls", [VahadaneNormalizer, MacenkoNormalizer])
def test_stain_concentrations_rebuild_the_tissue(cls):
    io = cls().io
    tile = render(noise=0.0, io=io)
    normalizer = cls().fit(render(seed=5, io=io))
    maps = normalizer.stain_concentrations(tile)
    assert maps.shape == (128, 128, 2) and maps.dtype == np.float32 and np.all(maps >= 0)
    own = normalizer._estimate([tile], 100)[0].stain_matrix
    rebuilt = reconstruct(maps, own, io=normalizer.io).astype(int)
    tissue = tissue_mask(tile)
    error = np.abs(rebuilt - tile)[tissue]
    assert error.mean() <= 2.0


def test_stain_concentrations_layouts_groups_and_passthrough():
    normalizer = VahadaneNormalizer().fit(render())
    tiles = np.stack([render(seed=6, size=64), np.full((64, 64, 3), 250, np.uint8)])
    with pytest.warns(BackgroundTileWarning):
        maps = normalizer.stain_concentrations(tiles)
    assert maps.shape == (2, 64, 64, 2) and not maps[1].any() and maps[0].any()
    as_list = normalizer.stain_concentrations([tiles[0], tiles[0][:32]])
    assert [m.shape for m in as_list] == [(64, 64, 2), (32, 64, 2)]
    np.testing.assert_array_equal(as_list[0], maps[0])
    statistics = normalizer.source_statistics(tiles[:1])
    fixed = normalizer.stain_concentrations(tiles[:1], source=statistics)
    grouped = normalizer.stain_concentrations(tiles[:1], groups=["slide"])
    np.testing.assert_array_equal(fixed, grouped)
    with pytest.raises(ValueError, match="background='raise'"):
        VahadaneNormalizer(background="raise").fit(render()).stain_concentrations(tiles)


def test_real_tissue_rebuilds_from_its_own_stains():
    tile = read_rgb(sorted(require_data("camelyon17_tiles", "center_0").glob("*.png"))[0])
    normalizer = VahadaneNormalizer(lambda_lasso=0.0).fit(tile)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        maps = normalizer.stain_concentrations(tile)
    rebuilt = reconstruct(maps, normalizer.stain_matrix_, io=normalizer.io).astype(int)
    error = np.abs(rebuilt - tile)[tissue_mask(tile)]
    assert error.mean() < 6.0


# ------------------------------------------------------------------------------ boundaries
def test_images_pool_their_pixels_as_one_image_stacked_by_rows():
    # Tissue pixels are ranked row-major image after image, so two tiles give the estimate of
    # their vertical stack exactly (sample, stains and percentiles over every pixel).
    top, bottom = render(seed=3, size=64), render(seed=4, size=64)
    for tissue_only in (False, True):
        normalizer = VahadaneNormalizer(n_pixels=2000, tissue_only=tissue_only)
        pair = clone(normalizer).fit([top, bottom])
        stacked = clone(normalizer).fit(np.concatenate([top, bottom]))
        np.testing.assert_array_equal(pair.stain_matrix_, stacked.stain_matrix_)
        np.testing.assert_array_equal(pair.max_concentrations_, stacked.max_concentrations_)


def test_exactly_the_needed_tissue_pixels_are_enough():
    normalizer = VahadaneNormalizer(n_pixels=100)
    assert normalizer._sample_ranks(100, 100) is None  # all of them, no sample
    message = r"^hold 99 tissue pixels \(an optical density of at least beta=0\.15 in some "
    message += r"channel\), at least 100 are needed; are they pale or blank\?$"
    with pytest.raises(UnmodelledSource, match=message):
        normalizer._sample_ranks(99, 100)


@pytest.mark.parametrize("shape", [(21, 15), (33, 17)])
def test_odd_sized_tiles_too_large_to_hold_whole_transform_in_strips(monkeypatch, shape):
    # Streamed, no concentrations are kept from the estimate: the transform computes them
    # strip by strip, whatever the tile's pixel count, and agrees with the tile held whole.
    import stainstyle.methods._macenko_pixels as pixels
    import stainstyle.methods.vahadane as vahadane

    normalizer = VahadaneNormalizer().fit(render(seed=5))
    tile = render(seed=6, size=64)[: shape[0], : shape[1]]
    whole = normalizer.transform(tile)
    monkeypatch.setattr(vahadane, "IN_MEMORY_PIXELS", 64)
    monkeypatch.setattr(pixels, "IN_MEMORY_PIXELS", 64)
    streamed = normalizer.transform(tile)
    assert streamed.shape == tile.shape and streamed.dtype == np.uint8
    assert np.abs(streamed.astype(int) - whole).max() <= 1


def sparse_densities(stains, seed, n=500):
    """Tissue optical densities ``(m, 3)`` of sparse exponential amounts of two stains."""
    rng = np.random.default_rng(seed)
    amounts = rng.exponential(0.5, (n, 2)) * (rng.random((n, 2)) < 0.7)
    od = amounts @ stains.T
    return od[od.max(axis=1) > 0.15]


def test_the_larger_red_stain_comes_first_whichever_atom_learned_it():
    # Two stains both closer to Ruifrok's eosin than to its hematoxylin: the atom started at
    # hematoxylin ends on the stain of smaller red density, and the columns are swapped back.
    stains = np.array([[0.261, 0.379], [0.893, 0.924], [0.368, 0.057]])
    stains /= np.linalg.norm(stains, axis=0)
    od = sparse_densities(stains, seed=1)
    atoms = learn_dictionary(od, RUIFROK_HE, 0.1, 100, 2e-4).atoms
    assert atoms[0, 0] < atoms[0, 1] and atoms[1, 0] > atoms[0, 1]  # learned E first
    found, degenerate = vahadane_stain_matrix(od)
    assert not degenerate
    np.testing.assert_array_equal(found, atoms[:, ::-1] / np.linalg.norm(atoms[:, ::-1], axis=0))
    assert np.all(angles(found, stains[:, ::-1]) < 3.0)


def test_a_stain_matrix_with_an_unused_atom_is_degenerate():
    # One atom codes no pixel (it stays apart from the other): the matrix is refused all the
    # same, though its two columns are far from parallel.
    stains = np.array([[0.43, 0.09], [0.02, 0.02], [0.68, 0.85]])
    od = sparse_densities(stains / np.linalg.norm(stains, axis=0), seed=0)
    dictionary = learn_dictionary(od, RUIFROK_HE, 0.1, 100, 2e-4)
    assert dictionary.used.tolist() == [True, False]
    found, degenerate = vahadane_stain_matrix(od)
    assert degenerate and found[:, 0] @ found[:, 1] < 0.99


def test_tissue_only_pools_tiles_of_different_sizes():
    tiles = [render(seed=3, size=64), render(seed=4, size=64)[:40, :24].copy()]
    tiles[0][:16] = 250  # background rows
    everywhere = VahadaneNormalizer().fit(tiles)
    on_tissue = VahadaneNormalizer(tissue_only=True).fit(tiles)
    np.testing.assert_array_equal(everywhere.stain_matrix_, on_tissue.stain_matrix_)
    assert np.all(on_tissue.max_concentrations_ > everywhere.max_concentrations_)
