import numpy as np
import pytest
import torch
from scipy.optimize import minimize, nnls

from stainstyle import reconstruct, ruifrok_concentrations, separate_stains
from stainstyle.separation import (
    RUIFROK_HE,
    RUIFROK_RGB_FROM_HED,
    check_stain_matrix,
    nonnegative_lasso,
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


def test_background_is_the_blank_field():
    white = np.full((8, 8, 3), 250, np.uint8)
    assert not separate_stains(white, RUIFROK_HE).any()
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
    with pytest.raises(ValueError, match="concentrations: expected shape"):
        reconstruct(np.zeros((4, 3)), RUIFROK_HE)
    with pytest.raises(ValueError, match="concentrations: .*NaN"):
        reconstruct(np.full((4, 2), np.nan), RUIFROK_HE)
