"""Source statistics measured once (per slide, per group) and one fixed mapping for many tiles."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from _support import he_tiles, read_rgb, require_data

import stainstyle
from stainstyle import BackgroundTileWarning, tile_status
from stainstyle.sources import SourceStatistics
from stainstyle.sst import StainStyleTransfer

CLASSIC = sorted(stainstyle.METHODS)


def fitted(name: str, target: np.ndarray):
    if name == "sst":
        model = StainStyleTransfer(
            width=4, depth=2, crop_size=16, max_epochs=1, lambda_fp=0, device="cpu",
            gray_matching="histogram",
        )  # fmt: skip
    elif name == "wsics":
        model = stainstyle.WSICSNormalizer(microns_per_pixel=0.5, min_class_pixels=50)
    else:
        model = stainstyle.METHODS[name]()
    return model.fit(target)


@pytest.fixture(scope="module")
def region() -> np.ndarray:
    """A 512 x 512 region of real tissue (CAMELYON17, centre 1), every part holding tissue."""
    root = require_data("camelyon17_tiles")
    return read_rgb(sorted((root / "center_1").glob("*.png"))[0])[:512, :512]


@pytest.fixture(scope="module")
def target() -> np.ndarray:
    root = require_data("camelyon17_tiles")
    return np.stack([read_rgb(p)[:256, :256] for p in sorted((root / "center_0").glob("*.png"))])


def quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BackgroundTileWarning)
        return function(*args, **kwargs)


@pytest.mark.parametrize("name", [*CLASSIC, "sst"])
def test_groups_equal_one_fixed_mapping_per_group(name, target, region):
    model = fitted(name, target)
    tiles = np.stack(
        [region[:256, :256], region[:256, 256:], region[256:, :256], region[256:, 256:]]
    )
    groups = np.array(["b", "a", "b", "a"])
    grouped = quiet(model.transform, tiles, groups=groups)
    for group in ("a", "b"):
        members = groups == group
        statistics = model.source_statistics(tiles[members])
        assert statistics.modelled and statistics.n_tiles == 2
        fixed = quiet(model.transform, tiles[members], source=statistics)
        np.testing.assert_array_equal(grouped[members], fixed)
        np.testing.assert_array_equal(
            tile_status(model, tiles[members], source=statistics),
            tile_status(model, tiles, groups=groups)[members],
        )


@pytest.mark.parametrize("name", CLASSIC)
def test_tile_by_tile_with_fixed_statistics_has_no_seams(name, target, region):
    """The four quarters normalized separately join into exactly the region normalized at once."""
    model = fitted(name, target)
    quarters = [(slice(0, 256), slice(0, 256)), (slice(0, 256), slice(256, 512))]
    quarters += [(slice(256, 512), slice(0, 256)), (slice(256, 512), slice(256, 512))]
    statistics = model.source_statistics([region[rows, cols] for rows, cols in quarters])
    whole = model.transform(region, source=statistics)
    stitched = np.empty_like(region)
    for rows, cols in quarters:
        stitched[rows, cols] = model.transform(region[rows, cols], source=statistics)
    np.testing.assert_array_equal(stitched, whole)
    if name != "gray":  # per-tile statistics give each quarter its own mapping: seams
        own = np.empty_like(region)
        for rows, cols in quarters:
            own[rows, cols] = quiet(model.transform, region[rows, cols])
        assert not np.array_equal(own, whole)


def test_one_colour_maps_to_one_colour_across_tiles():
    model = stainstyle.ReinhardNormalizer().fit(he_tiles(4, 64, seed=1))
    tiles = he_tiles(3, 64, seed=2)
    tiles[:, 40, 40] = (120, 60, 150)  # the same pixel colour in three different tiles
    statistics = model.source_statistics(tiles)
    out = model.transform(tiles, source=statistics)
    assert len({tuple(out[i, 40, 40]) for i in range(3)}) == 1
    own = model.transform(tiles)
    assert len({tuple(own[i, 40, 40]) for i in range(3)}) > 1


def test_statistics_pickle_and_carry_the_source_stain_vectors():
    model = stainstyle.MacenkoNormalizer().fit(he_tiles(4, 64, seed=1))
    statistics = pickle.loads(pickle.dumps(model.source_statistics(he_tiles(3, 64, seed=2))))
    assert statistics.method == "MacenkoNormalizer" and statistics.modelled
    assert statistics.statistics.stain_matrix.shape == (3, 2)
    assert statistics.params == {"io": 240.0, "beta": 0.15, "alpha": 1.0, "tissue_only": False,
                                 "maxc_on_tissue": "deprecated"}  # fmt: skip
    out = model.transform(he_tiles(3, 64, seed=2), source=statistics)
    assert out.shape == (3, 64, 64, 3)


def test_statistics_of_another_normalizer_are_refused():
    tiles = he_tiles(3, 64, seed=2)
    reinhard = stainstyle.ReinhardNormalizer().fit(he_tiles(4, 64, seed=1))
    macenko = stainstyle.MacenkoNormalizer().fit(he_tiles(4, 64, seed=1))
    with pytest.raises(ValueError, match="source: measured by a ReinhardNormalizer"):
        macenko.transform(tiles, source=reinhard.source_statistics(tiles))
    cie = stainstyle.ReinhardNormalizer(space="lab_cie").fit(he_tiles(4, 64, seed=1))
    with pytest.raises(ValueError, match="source: measured by a ReinhardNormalizer with"):
        cie.transform(tiles, source=reinhard.source_statistics(tiles))
    with pytest.raises(ValueError, match="source: expected SourceStatistics"):
        reinhard.transform(tiles, source={"means": [0, 0, 0]})
    with pytest.raises(ValueError, match="groups, source: give one of them"):
        reinhard.transform(tiles, groups=[0, 0, 1], source=reinhard.source_statistics(tiles))


@pytest.mark.parametrize("name", CLASSIC)
def test_blank_sources_are_not_modelled_and_their_tiles_pass_through(name, target):
    model = fitted(name, target)
    blank = np.full((2, 64, 64, 3), 250, np.uint8)
    statistics = model.source_statistics(blank)
    assert not statistics.modelled and "none of the 2 tiles" in statistics.reason
    assert statistics.n_tiles == 0 and statistics.n_left_out == 2
    tiles = he_tiles(2, 64, seed=3)
    with pytest.warns(BackgroundTileWarning):
        out = model.transform(tiles, source=statistics)
    np.testing.assert_array_equal(out, tiles)
    assert set(tile_status(model, tiles, source=statistics)) == {"passthrough_degenerate"}


def test_a_single_stain_source_is_not_modelled_by_macenko():
    model = stainstyle.MacenkoNormalizer().fit(he_tiles(4, 64, seed=1))
    pink = np.clip(np.random.default_rng(0).normal((230, 150, 200), 8, (2, 64, 64, 3)), 0, 255)
    statistics = model.source_statistics(pink.astype(np.uint8))
    assert isinstance(statistics, SourceStatistics) and not statistics.modelled
    assert "Macenko" in statistics.reason or "stain" in statistics.reason
