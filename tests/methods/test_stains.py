"""What Macenko and Vahadane share: the concentration scale and the H and E maps of tiles."""

import dataclasses

import numpy as np
import pytest
import torch
from _support import he_tiles

from stainstyle import BackgroundTileWarning, MacenkoNormalizer
from stainstyle.methods._stains import MIN_CONCENTRATION, concentration_scale
from stainstyle.tissue import tissue_mask

# ------------------------------------------------------------------------- concentration scale
SOURCE = [[2.0, 0.5], [MIN_CONCENTRATION, 2 * MIN_CONCENTRATION], [0.0, 4.0]]
TARGET = np.array([1.0, 2.0])
# target / source, and 1 for a stain at or below MIN_CONCENTRATION (absent: not rescaled)
EXPECTED = [[0.5, 4.0], [1.0, 2.0 / (2 * MIN_CONCENTRATION)], [1.0, 0.5]]


@pytest.mark.parametrize("row", range(len(SOURCE)))
def test_concentration_scale_of_an_array(row):
    scale = concentration_scale(np.array(SOURCE[row]), TARGET)
    assert isinstance(scale, np.ndarray) and scale.dtype == np.float64
    np.testing.assert_allclose(scale, EXPECTED[row], rtol=1e-12)


def test_concentration_scale_of_a_tensor_per_tile():
    scale = concentration_scale(torch.tensor(SOURCE, dtype=torch.float64), TARGET)
    assert isinstance(scale, torch.Tensor) and scale.dtype == torch.float64
    np.testing.assert_allclose(scale.numpy(), EXPECTED, rtol=1e-12)


# -------------------------------------------------------------------- stain concentration maps
def _tiles():
    """Two H&E tiles of different stain amounts, a single-stain, a uniform and a faint tile."""
    first, second = he_tiles(2, 64, seed=3)
    second = np.clip(255 - (255 - second.astype(int)) * 0.6, 0, 255).astype(np.uint8)
    single = np.empty((64, 64, 3), np.uint8)
    single[:] = np.rint(
        240 * np.exp(-np.linspace(0.3, 1.5, 64)[:, None, None] * [0.65, 0.70, 0.29])
    )
    uniform = np.full((64, 64, 3), (150, 90, 160), np.uint8)
    faint = np.full((64, 64, 3), 235, np.uint8)
    faint.reshape(-1, 3)[:50] = first[tissue_mask(first)][:50]  # too few to be normalized
    return first, second, single, uniform, faint


@pytest.fixture(scope="module")
def normalizer():
    return MacenkoNormalizer().fit(he_tiles(2, 64, seed=8))


def test_maps_are_float32_and_zero_off_tissue_and_on_passed_tiles(normalizer):
    first, _, single, uniform, faint = _tiles()
    with pytest.warns(BackgroundTileWarning, match="3 of 4 tiles passed through unchanged"):
        maps = normalizer.stain_concentrations(np.stack([single, uniform, first, faint]))
    assert maps.dtype == np.float32 and maps.shape == (4, 64, 64, 2)
    assert not maps[[0, 1, 3]].any()
    background = ~tissue_mask(first)
    assert background.any() and not maps[2][background].any() and maps[2].any()


def test_unmodelled_tiles_are_named_and_the_rest_still_mapped(normalizer):
    first, _, single, uniform, _ = _tiles()
    tiles = np.stack([uniform, single, first])
    raising = MacenkoNormalizer(background="raise").fit(he_tiles(2, 64, seed=8))
    with pytest.raises(ValueError, match=r"2 of 3 tiles .* first offending indices: \[0, 1\]$"):
        raising.stain_concentrations(tiles)
    with pytest.warns(BackgroundTileWarning, match="2 of 3 tiles passed through unchanged"):
        maps = normalizer.stain_concentrations(tiles)
    assert not maps[:2].any() and maps[2].any()


def test_a_group_or_given_statistics_give_every_member_the_same_stains(normalizer):
    first, second, *_ = _tiles()
    tiles = np.stack([first, second])
    own = normalizer.stain_concentrations(tiles)
    np.testing.assert_array_equal(normalizer.stain_concentrations(tiles, groups=["a", "b"]), own)
    pooled = normalizer.source_statistics(tiles)
    grouped = normalizer.stain_concentrations(tiles, groups=["slide", "slide"])
    np.testing.assert_array_equal(grouped, normalizer.stain_concentrations(tiles, source=pooled))
    assert grouped[0].any() and not np.array_equal(grouped[0], own[0])


def test_given_statistics_still_pass_tiles_without_tissue(normalizer):
    first, _, _, _, faint = _tiles()
    statistics = normalizer.source_statistics(first)
    with pytest.warns(BackgroundTileWarning, match="1 of 2 tiles"):
        maps = normalizer.stain_concentrations(np.stack([first, faint]), source=statistics)
    assert maps[0].any() and not maps[1].any()
    # Statistics marked unmodelled pass every tile, whatever stains they carry.
    unmodelled = dataclasses.replace(statistics, modelled=False, reason="marked unmodelled")
    with pytest.warns(BackgroundTileWarning, match="1 of 1 tiles"):
        assert not normalizer.stain_concentrations(first, source=unmodelled).any()
