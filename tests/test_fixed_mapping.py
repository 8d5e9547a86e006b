"""One fixed mapping per slide: ``normalizer.fixed_mapping(statistics)``, a colour lookup.

Its output must equal ``transform_with_status(X, source=statistics)`` bit for bit, for every
method, whatever the tiles (sizes, dtypes, background and uniform tiles); every distinct colour
is computed once, in any order and from any thread.
"""

from __future__ import annotations

import functools
import pickle
import threading
import warnings

import numpy as np
import pytest
from _support import DEGENERATE_TILES, he_tiles, read_rgb, require_data
from sklearn.exceptions import NotFittedError

import stainstyle
from stainstyle import BackgroundTileWarning
from stainstyle.base import FixedMapping
from stainstyle.color.table import FILL_QUANTUM, ColourTable, colour_keys, key_colours

#: Every classic method, with the options that change its per-pixel work.
CLASSIC = {
    "reinhard": lambda: stainstyle.ReinhardNormalizer(),
    "reinhard-background": lambda: stainstyle.ReinhardNormalizer(
        tissue_only=False, passthrough_background=True
    ),
    "reinhard-cie": lambda: stainstyle.ReinhardNormalizer(space="lab_cie"),
    "macenko": lambda: stainstyle.MacenkoNormalizer(tissue_only=True),
    "histogram": lambda: stainstyle.HistogramSpecification(),
    "histogram-tissue": lambda: stainstyle.HistogramSpecification(tissue_only=True),
    "gray": lambda: stainstyle.GrayNormalizer(),
    "wsics": lambda: stainstyle.WSICSNormalizer(min_class_pixels=50),
    "vahadane": lambda: stainstyle.VahadaneNormalizer(random_state=0),
}


def sst():
    from stainstyle.sst import StainStyleTransfer

    return StainStyleTransfer(
        width=4, depth=2, crop_size=16, max_epochs=1, lambda_fp=0, device="cpu",
        gray_matching="histogram",
    )  # fmt: skip


def quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BackgroundTileWarning)
        return function(*args, **kwargs)


@functools.lru_cache(maxsize=1)
def camelyon() -> dict[int, list[np.ndarray]]:
    """The 512 x 512 CAMELYON17 tiles of each centre."""
    root = require_data("camelyon17_tiles")
    return {
        centre: [read_rgb(path) for path in sorted((root / f"center_{centre}").glob("*.png"))]
        for centre in range(5)
    }


@functools.cache
def fitted(name: str):
    """A normalizer fitted on centre 0, and statistics of a sample of centre 2 (a "slide")."""
    model = sst() if name == "sst" else CLASSIC[name]()
    model.fit(np.stack([tile[:256, :256] for tile in camelyon()[0]]))
    return model, model.source_statistics([tile[::2, ::2] for tile in camelyon()[2]])


def mixed_tiles() -> list[np.ndarray]:
    """Real tiles of odd sizes, synthetic tiles, background and uniform tiles, as a list."""
    real = camelyon()
    tiles = [
        real[1][0][:256, :256],
        real[2][1][3:258, 7:258],  # 255 x 251
        real[3][2][:131, 100:197],
        real[4][3][200:264, :300],
        real[2][4][:1, :512],  # one row
        *he_tiles(2, 64, seed=5),
    ]
    return tiles + [DEGENERATE_TILES[name] for name in ("white", "black", "single-colour")]


def assert_same(mapping: FixedMapping, model, statistics, X) -> np.ndarray:
    """The mapping's output and statuses equal ``transform_with_status(X, source=...)``."""
    out, status = mapping.transform_with_status(X)
    expected, expected_status = model.transform_with_status(X, source=statistics)
    np.testing.assert_array_equal(status, expected_status)
    if isinstance(X, list):
        assert isinstance(out, list) and len(out) == len(expected)
        for got, want in zip(out, expected, strict=True):
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
    else:
        assert out.dtype == expected.dtype == X.dtype
        np.testing.assert_array_equal(out, expected)
    return status


#: The methods whose fixed mapping keeps a colour table.
TABLED = [
    name for name in CLASSIC if name.split("-")[0] in ("reinhard", "macenko", "wsics", "vahadane")
]


@pytest.mark.parametrize("name", [*CLASSIC, "sst"])
def test_the_mapping_equals_transform_with_the_same_statistics(name):
    model, statistics = fitted(name)
    mapping = model.fixed_mapping(statistics)
    assert mapping.has_table == (name in TABLED)
    tiles = mixed_tiles()
    status = assert_same(mapping, model, statistics, tiles)
    assert {"ok", "passthrough_background", "passthrough_degenerate"} <= set(status)
    assert status[-1] == "passthrough_degenerate" and status[-3] == "passthrough_background"
    # Again on a warm table, as a batch, and as float input of both precisions.
    batch = np.stack([tile[:32, :32] for tile in tiles if min(tile.shape[:2]) >= 32])
    assert_same(mapping, model, statistics, batch)
    for dtype in (np.float32, np.float64):
        assert_same(mapping, model, statistics, [tile.astype(dtype) / 255 for tile in tiles])
    assert_same(mapping, model, statistics, tiles[0])  # one tile


@pytest.mark.parametrize("name", TABLED)
def test_the_table_holds_the_methods_own_mapping(name):
    """Tile by tile, each method's own code gives the table's colours, but for rare roundings.

    OpenCV computes the last pixels of an array with scalar code, which can differ in the last
    bit of a float: after rounding, a pixel by one level. The table computes every colour in
    the vector loops, so that its value is the same wherever it is met.
    """
    model, statistics = fitted(name)
    mapping = model.fixed_mapping(statistics)
    tiles = [tile[:, :509] for tile in camelyon()[3]]
    out = mapping.transform(tiles)
    n_off = 0
    for tile, mapped in zip(tiles, out, strict=True):
        own, degenerate = model._transform_tissue(tile[None], context=statistics.statistics)
        assert not degenerate.any()
        difference = np.abs(own[0].astype(int) - mapped).max(axis=-1)
        assert difference.max() <= 1
        n_off += np.count_nonzero(difference)
    assert n_off <= 1e-5 * sum(tile.size // 3 for tile in tiles)


@pytest.mark.parametrize("name", ["reinhard", "macenko"])
def test_a_colours_value_does_not_depend_on_the_colours_met_with_it(name):
    model, statistics = fitted(name)
    tiles = camelyon()[4]
    keys = np.unique(np.concatenate([colour_keys(tile.reshape(-1, 3)) for tile in tiles]))
    colours = key_colours(np.random.default_rng(0).permutation(keys)[:60_000])[:, None]

    def table() -> ColourTable:
        return ColourTable(functools.partial(model._map_colours, statistics.statistics))

    at_once = table().map(colours)
    in_threes = table()
    pieces = [in_threes.map(colours[i : i + 3]) for i in range(0, len(colours), 3)]
    np.testing.assert_array_equal(np.concatenate(pieces), at_once)


def test_each_colour_is_computed_once(monkeypatch):
    model, statistics = fitted("reinhard")
    calls = []
    own = type(model)._transform_batch

    def counted(self, batch, tissue, *, context=None):
        assert batch.shape[0] == 1 and batch.shape[2] == 1  # colours as one image, one pixel wide
        assert batch.shape[1] % FILL_QUANTUM == 0
        calls.append(np.unique(colour_keys(batch.reshape(-1, 3))))
        return own(self, batch, tissue, context=context)

    monkeypatch.setattr(type(model), "_transform_batch", counted)
    mapping = model.fixed_mapping(statistics)
    tiles = [tile[:256, :256] for tile in camelyon()[1]]
    mapping.transform(tiles[:3])
    mapping.transform(tiles[1:])  # two tiles again, two new ones
    _, status = mapping.transform_with_status([tile[::-1] for tile in tiles])  # nothing new
    assert set(status) == {"ok"}
    computed = np.concatenate(calls)
    assert len(np.unique(computed)) == len(computed) == mapping.n_colours  # none twice
    met = np.unique(np.concatenate([colour_keys(tile.reshape(-1, 3)) for tile in tiles]))
    np.testing.assert_array_equal(np.unique(computed), met)


def test_threads_sharing_one_mapping_get_what_one_thread_gets():
    model, statistics = fitted("macenko")
    parts = [
        [tile[rows, cols] for tile in camelyon()[centre]]
        for centre in (1, 3)
        for rows, cols in ((slice(0, 256), slice(0, 512)), (slice(256, 512), slice(0, 512)))
    ]  # four lists of tiles, colours shared between them
    serial = [model.fixed_mapping(statistics).transform(part) for part in parts]
    mapping = model.fixed_mapping(statistics)
    start = threading.Barrier(len(parts))
    results: list = [None] * len(parts)

    def work(i: int) -> None:
        start.wait()
        results[i] = mapping.transform(parts[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(parts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got, want in zip(results, serial, strict=True):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_pickled_mapping_leaves_its_table_behind_and_fills_it_again():
    model, statistics = fitted("wsics")
    mapping = model.fixed_mapping(statistics)
    tiles = np.stack([tile[:128, :128] for tile in camelyon()[2]])
    out = mapping.transform(tiles)
    assert mapping.n_colours > 10_000
    payload = pickle.dumps(mapping)
    assert len(payload) < 1 << 20  # the 64 MiB table stays behind
    copy = pickle.loads(payload)
    assert copy.n_colours == 0 and copy.source.n_tiles == statistics.n_tiles
    np.testing.assert_array_equal(copy.transform(tiles), out)
    assert copy.n_colours == mapping.n_colours


def test_the_mapping_keeps_the_normalizer_it_was_made_with():
    model = stainstyle.ReinhardNormalizer().fit(he_tiles(4, 64, seed=1))
    tiles = he_tiles(3, 64, seed=2)
    statistics = model.source_statistics(tiles)
    mapping = model.fixed_mapping(statistics)
    before = mapping.transform(tiles)
    model.fit(he_tiles(4, 64, seed=9))  # refitting the normalizer does not touch the mapping
    np.testing.assert_array_equal(mapping.transform(tiles), before)
    assert not np.array_equal(model.transform(tiles, source=statistics), before)


def test_the_mapping_warns_and_raises_as_transform_does():
    model = stainstyle.HistogramSpecification(background="raise").fit(he_tiles(4, 64, seed=1))
    mapping = model.fixed_mapping(model.source_statistics(he_tiles(3, 64, seed=2)))
    tiles = np.stack([he_tiles(1, 32, seed=3)[0], DEGENERATE_TILES["white"]])
    with pytest.raises(ValueError, match="background='raise'; first offending indices: \\[1\\]"):
        mapping.transform(tiles)
    model.set_params(background="passthrough")
    mapping = model.fixed_mapping(model.source_statistics(he_tiles(3, 64, seed=2)))
    with pytest.warns(BackgroundTileWarning, match="1 of 2 tiles passed through"):
        out = mapping.transform(tiles)
    np.testing.assert_array_equal(out[1], tiles[1])


@pytest.mark.parametrize("name", ["reinhard", "macenko", "wsics"])
def test_unmodelled_statistics_pass_tissue_tiles_through_as_degenerate(name):
    model, _ = fitted(name)
    statistics = model.source_statistics(np.full((2, 64, 64, 3), 250, np.uint8))
    assert not statistics.modelled
    mapping = model.fixed_mapping(statistics)
    assert not mapping.has_table and mapping.n_colours == 0
    tiles = mixed_tiles()
    status = assert_same(mapping, model, statistics, tiles)
    assert set(status) == {"passthrough_background", "passthrough_degenerate"}
    out = quiet(mapping.transform, tiles)
    for got, tile in zip(out, tiles, strict=True):
        np.testing.assert_array_equal(got, tile)


def test_statistics_of_another_normalizer_are_refused():
    tiles = he_tiles(3, 64, seed=2)
    reinhard = stainstyle.ReinhardNormalizer().fit(he_tiles(4, 64, seed=1))
    macenko = stainstyle.MacenkoNormalizer().fit(he_tiles(4, 64, seed=1))
    with pytest.raises(ValueError, match="source: measured by a ReinhardNormalizer"):
        macenko.fixed_mapping(reinhard.source_statistics(tiles))
    cie = stainstyle.ReinhardNormalizer(space="lab_cie").fit(he_tiles(4, 64, seed=1))
    with pytest.raises(ValueError, match="source: measured by a ReinhardNormalizer with"):
        cie.fixed_mapping(reinhard.source_statistics(tiles))
    with pytest.raises(ValueError, match="source: expected SourceStatistics"):
        reinhard.fixed_mapping({"means": [0, 0, 0]})
    with pytest.raises(NotFittedError):
        stainstyle.ReinhardNormalizer().fixed_mapping(reinhard.source_statistics(tiles))


def test_the_mapping_says_what_it_is():
    model, statistics = fitted("reinhard")
    mapping = model.fixed_mapping(statistics)
    assert repr(mapping) == "FixedMapping(ReinhardNormalizer, colour table, 0 colours)"
    with pytest.warns(BackgroundTileWarning):  # uniform: screened out, not mapped
        mapping.transform(DEGENERATE_TILES["single-colour"])
    assert mapping.n_colours == 0
    mapping.transform(he_tiles(1, 32, seed=4))
    assert mapping.n_colours > 0
    n_colours = mapping.n_colours
    assert repr(mapping) == f"FixedMapping(ReinhardNormalizer, colour table, {n_colours} colours)"
    model, statistics = fitted("histogram")
    assert repr(model.fixed_mapping(statistics)) == "FixedMapping(HistogramSpecification, per tile)"
