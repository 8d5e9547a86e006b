import numpy as np
import pytest
import torch
from _support import read_rgb, require_data
from scipy.optimize import minimize, nnls

from stainstyle import (
    MacenkoNormalizer,
    VahadaneNormalizer,
    reconstruct,
    ruifrok_concentrations,
    separate_stains,
)
from stainstyle.separation import (
    RUIFROK_HE,
    RUIFROK_RGB_FROM_HED,
    check_stain_matrix,
    complete_stain_matrix,
    nonnegative_lasso,
    residual_vector,
)
from stainstyle.tissue import tissue_mask


def beer_lambert(size=32, seed=0):
    """A tile rendered from known non-negative H and E concentrations, with their maps."""
    rng = np.random.default_rng(seed)
    concentrations = rng.uniform(0, 1.5, (size, size, 2))
    concentrations[: size // 4] = 0  # background rows
    return reconstruct(concentrations, RUIFROK_HE), concentrations


# ------------------------------------------------------------------------------ smoke, shapes
def test_shapes_dtypes_and_layouts():
    tile, _ = beer_lambert()
    maps = separate_stains(tile, RUIFROK_HE)
    assert maps.shape == (32, 32, 2) and maps.dtype == np.float32 and np.all(maps >= 0)
    batch = separate_stains(np.stack([tile, tile]), RUIFROK_HE)
    assert batch.shape == (2, 32, 32, 2)
    np.testing.assert_array_equal(batch[1], maps)
    listed = separate_stains([tile, tile[:8]], RUIFROK_HE)
    assert [m.shape for m in listed] == [(32, 32, 2), (8, 32, 2)]
    np.testing.assert_array_equal(separate_stains(tile / 255.0, RUIFROK_HE), maps)
    np.testing.assert_array_equal(separate_stains(torch.from_numpy(tile), RUIFROK_HE), maps)
    assert reconstruct(maps, RUIFROK_HE).shape == (32, 32, 3)


def test_ruifrok_matrix_is_scikit_images():
    from skimage.color import rgb_from_hed

    np.testing.assert_allclose(RUIFROK_RGB_FROM_HED, rgb_from_hed)
    np.testing.assert_allclose(np.linalg.norm(RUIFROK_HE, axis=0), 1.0)
    tile, _ = beer_lambert()
    np.testing.assert_array_equal(ruifrok_concentrations(tile), separate_stains(tile, RUIFROK_HE))


# ------------------------------------------------------------------------------ known values
@pytest.mark.parametrize("lambda1", [0.0, 0.01, 0.1])
def test_closed_form_equals_the_lasso_optimum(lambda1):
    rng = np.random.default_rng(1)
    stains = np.abs(rng.normal(size=(3, 2)))
    od = rng.normal(0.4, 0.6, (300, 3))
    found = nonnegative_lasso(od, stains, lambda1).astype(np.float64)

    def cost(c, x):
        return 0.5 * np.sum((x - stains @ c) ** 2) + lambda1 * c.sum()

    for x, c in zip(od, found, strict=True):
        best = minimize(cost, [0.1, 0.1], args=(x,), bounds=[(0, None)] * 2, method="L-BFGS-B",
                        options={"ftol": 1e-15, "gtol": 1e-12})  # fmt: skip
        assert cost(c, x) <= best.fun + 1e-6


def test_zero_penalty_is_nonnegative_least_squares():
    rng = np.random.default_rng(2)
    stains = np.array([[0.6, 0.1], [0.7, 0.9], [0.3, -0.2]])  # a Macenko-like negative entry
    od = rng.normal(0.3, 0.5, (200, 3))
    expected = np.array([nnls(stains, x)[0] for x in od])
    np.testing.assert_allclose(nonnegative_lasso(od, stains), expected, atol=1e-5)


# ------------------------------------------------------------------------------ round trip
def test_forth_and_back_gives_the_tissue_within_two_gray_levels():
    tile, truth = beer_lambert()
    maps = separate_stains(tile, RUIFROK_HE)
    tissue = tissue_mask(tile)
    assert np.abs(reconstruct(maps, RUIFROK_HE).astype(int) - tile)[tissue].max() <= 2
    np.testing.assert_allclose(maps[tissue], truth[tissue], atol=0.08)  # uint8 rounding
    assert not maps[~tissue].any()  # background: no stain


def test_residual_maps_shape_dtype_and_layouts():
    tile, _ = beer_lambert()
    maps = separate_stains(tile, RUIFROK_HE, residual=True)
    assert maps.shape == (32, 32, 3) and maps.dtype == np.float32
    batch = ruifrok_concentrations(np.stack([tile, tile]), residual=True)
    assert batch.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(batch[0], maps)
    listed = separate_stains([tile, tile[:8]], RUIFROK_HE, residual=True)
    assert [m.shape for m in listed] == [(32, 32, 3), (8, 32, 3)]
    # Pure H and E mixtures: the residual is (float32) zero and H, E are the two-stain maps.
    tissue = tissue_mask(tile)
    assert np.abs(maps[tissue, 2]).max() < 0.02  # the uint8 rounding of the tile
    np.testing.assert_allclose(maps[..., :2], separate_stains(tile, RUIFROK_HE), atol=0.02)


def test_residual_vector_completes_an_orthonormal_direction():
    rng = np.random.default_rng(3)
    stains = np.abs(rng.normal(size=(3, 2)))
    third = residual_vector(stains)
    np.testing.assert_allclose(stains.T @ third, 0, atol=1e-12)
    assert np.linalg.norm(third) == pytest.approx(1.0)
    complete = complete_stain_matrix(stains)
    assert complete.shape == (3, 3)
    np.testing.assert_array_equal(complete[:, :2], stains)
    assert abs(np.linalg.det(complete)) > 0


def test_residual_carries_what_two_stains_cannot():
    """A pixel off the H-E plane: two maps lose it, three rebuild it."""
    tile = np.full((4, 4, 3), [200, 120, 90], np.uint8)
    two = separate_stains(tile, RUIFROK_HE)
    three = separate_stains(tile, RUIFROK_HE, residual=True)
    assert np.abs(three[..., 2]).min() > 0.1
    assert np.abs(reconstruct(two, RUIFROK_HE).astype(int) - tile).max() > 2
    assert np.abs(reconstruct(three, RUIFROK_HE).astype(int) - tile).max() <= 1


def real_tiles() -> list[np.ndarray]:
    """One CAMELYON17 tile of each of the five centres."""
    root = require_data("camelyon17_tiles")
    return [read_rgb(sorted((root / f"center_{c}").glob("*.png"))[0]) for c in range(5)]


@pytest.mark.parametrize("method", [None, MacenkoNormalizer, VahadaneNormalizer])
def test_real_tissue_rebuilds_within_two_gray_levels_with_the_residual(method):
    for tile in real_tiles():
        if method is None:
            stains, io = RUIFROK_HE, 240.0
        else:
            model = method().fit(tile)
            stains, io = model.stain_matrix_, model.io
        maps = separate_stains(tile, stains, io=io, residual=True)
        rebuilt = reconstruct(maps, stains, io=io).astype(int)
        tissue = tissue_mask(tile)
        assert tissue.mean() > 0.2
        assert np.abs(rebuilt - tile)[tissue].max() <= 2
        assert not maps[~tissue].any()  # background: no stain, no residual
        np.testing.assert_array_equal(reconstruct(maps, stains, io=io)[~tissue], round(io))


def test_background_is_the_blank_field():
    white = np.full((8, 8, 3), 250, np.uint8)
    assert not separate_stains(white, RUIFROK_HE).any()
    assert not separate_stains(white, RUIFROK_HE, residual=True).any()
    np.testing.assert_array_equal(reconstruct(np.zeros((2, 2)), RUIFROK_HE), 240)


# ------------------------------------------------------------------------------ exceptions
@pytest.mark.parametrize(
    "matrix, match",
    [
        (np.ones((2, 3)), "shape"),
        ([[1, 1], [0, 0], [0, 0]], "parallel"),
        ([[np.nan, 1], [0, 0], [0, 1]], "NaN"),
        ("abc", "expected an array"),
    ],
)
def test_invalid_stain_matrices_are_refused(matrix, match):
    with pytest.raises(ValueError, match=f"stain_matrix: .*{match}"):
        check_stain_matrix(matrix)
    with pytest.raises(ValueError, match="stain_matrix"):
        separate_stains(np.zeros((4, 4, 3), np.uint8), matrix)


def test_invalid_arguments_name_themselves():
    tile = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="od: expected shape"):
        nonnegative_lasso(np.zeros((4, 2)), RUIFROK_HE)
    with pytest.raises(ValueError, match="lambda1"):
        separate_stains(tile, RUIFROK_HE, lambda1=-1.0)
    with pytest.raises(ValueError, match="io"):
        separate_stains(tile, RUIFROK_HE, io=0)
    with pytest.raises(ValueError, match="X: .*NaN"):
        separate_stains(np.full((4, 4, 3), np.nan), RUIFROK_HE)
    with pytest.raises(ValueError, match="lambda1: the exact three-stain"):
        separate_stains(tile, RUIFROK_HE, lambda1=0.01, residual=True)
    with pytest.raises(ValueError, match="concentrations: expected shape"):
        reconstruct(np.zeros((4, 4)), RUIFROK_HE)
    with pytest.raises(ValueError, match="stain_matrix: .*parallel"):
        reconstruct(np.zeros((4, 3)), [[1, 1], [0, 0], [0, 0]])
    with pytest.raises(ValueError, match="concentrations: .*NaN"):
        reconstruct(np.full((4, 2), np.nan), RUIFROK_HE)
