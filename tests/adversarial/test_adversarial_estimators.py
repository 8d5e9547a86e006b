"""Hostile inputs to the estimators: ``fit``, ``transform`` and ``tile_status`` of
:class:`stainstyle.base.StainNormalizer`, for every method of ``stainstyle.methods.METHODS`` and a
tiny :class:`stainstyle.sst.StainStyleTransfer`.

Attacks: blank targets (white, black, 1x1, one colour, blanks mixed with a good tile), group ids
that cannot be sorted or hashed, extreme shapes (1x5000, 5000x1, two pixels), hostile values and
dtypes (NaN, inf, negative zero, bool, object, float16), hostile memory layouts (negative
strides, non-contiguous views, Fortran order, read-only arrays) and concurrent use of one fitted
estimator from several threads.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from _support import he_tiles

import stainstyle
from stainstyle import BackgroundTileWarning, tile_status
from stainstyle.sst import StainStyleTransfer

#: The tiny network of the brief: one epoch on the CPU, in about a second.
TINY_SST = {
    "width": 4,
    "depth": 2,
    "crop_size": 16,
    "max_epochs": 1,
    "lambda_fp": 0,
    "device": "cpu",
}
ALL = [*sorted(stainstyle.METHODS), "sst"]


def make(name: str, **params):
    if name == "sst":
        return StainStyleTransfer(**TINY_SST, **params)
    return stainstyle.METHODS[name](**params)


TARGETS = he_tiles(4, 64, seed=11)
SOURCES = he_tiles(3, 64, seed=12)
_FITTED: dict[str, object] = {}


def fitted(name: str):
    """One fitted estimator per method, shared by the tests of this module (never modified)."""
    if name not in _FITTED:
        _FITTED[name] = make(name).fit(TARGETS)
    return _FITTED[name]


def quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BackgroundTileWarning)
        return function(*args, **kwargs)


# ---------------------------------------------------------------------- blank targets
BLANKS = {
    "white": lambda: np.full((2, 32, 32, 3), 255, np.uint8),
    "black": lambda: np.zeros((2, 32, 32, 3), np.uint8),
    "1x1": lambda: np.full((1, 1, 3), 128, np.uint8),
    "single-colour": lambda: np.full((48, 48, 3), (150, 60, 160), np.uint8),
    "single-colour-float": lambda: np.full((48, 48, 3), 0.4, np.float32),
    "list-of-blanks": lambda: [
        np.full((32, 32, 3), 255, np.uint8),
        np.zeros((8, 8, 3), np.uint8),
        np.full((1, 1, 3), 90, np.uint8),
    ],
}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("blank", sorted(BLANKS))
def test_blank_targets_are_rejected_with_one_clear_error(name, blank):
    with pytest.raises(ValueError, match="cannot learn a stain style") as error:
        make(name).fit(BLANKS[blank]())
    assert "tissue" in str(error.value) and "uniform" in str(error.value)


def test_blank_targets_are_rejected_by_partial_fit():
    with pytest.raises(ValueError, match="cannot learn a stain style"):
        make("sst").partial_fit(np.full((2, 32, 32, 3), 255, np.uint8))


@pytest.mark.parametrize("name", ALL)
def test_blanks_mixed_with_tissue_are_left_out_of_fit(name):
    good = [TARGETS[0], TARGETS[1]]
    mixed = [
        np.full((64, 64, 3), 255, np.uint8),
        good[0],
        np.zeros((64, 64, 3), np.uint8),
        TARGETS[2][:1, :1],
        good[1],
        np.full((40, 24, 3), (150, 60, 160), np.uint8),
    ]
    expected = quiet(make(name).fit(good).transform, SOURCES)
    out = quiet(make(name).fit(mixed).transform, SOURCES)
    np.testing.assert_array_equal(out, expected)


# ---------------------------------------------------------------------- group ids
MIXED_IDS = [None, "a", None, ("slide", 1)]
PLAIN_IDS = ["g0", "g1", "g0", "g2"]


def grouped_sources() -> np.ndarray:
    return np.concatenate([SOURCES, he_tiles(1, 64, seed=13)])


@pytest.mark.parametrize("name", ALL)
def test_unorderable_group_ids_work_or_are_refused_clearly(name):
    estimator = fitted(name) if name != "sst" else make("sst", gray_matching="histogram")
    if name == "sst":
        estimator.fit(TARGETS)
    tiles = grouped_sources()
    expected = quiet(estimator.transform, tiles, groups=PLAIN_IDS)
    np.testing.assert_array_equal(quiet(estimator.transform, tiles, groups=MIXED_IDS), expected)
    mixed_numbers = [1, "1", 1.0, np.int64(7)]  # 1 and 1.0 are one group
    np.testing.assert_array_equal(
        quiet(estimator.transform, tiles, groups=mixed_numbers),
        quiet(estimator.transform, tiles, groups=["a", "b", "a", "c"]),
    )
    np.testing.assert_array_equal(
        tile_status(estimator, tiles, groups=MIXED_IDS),
        tile_status(estimator, tiles, groups=PLAIN_IDS),
    )


@pytest.mark.parametrize("name", ["wsics", "reinhard"])
@pytest.mark.parametrize(
    "groups",
    [
        [["a"], "b", "a", "b"],
        ["a", "b", {"slide": 1}, "b"],
        np.array([np.zeros(2), "b", "a", "b"], dtype=object),
        [set(), "b", "a", "b"],
    ],
    ids=["list", "dict", "array", "set"],
)
def test_unhashable_group_ids_are_a_value_error(name, groups):
    with pytest.raises(ValueError, match="groups: ids must be hashable"):
        fitted(name).transform(grouped_sources(), groups=groups)
    with pytest.raises(ValueError, match="groups: ids must be hashable"):
        tile_status(fitted(name), grouped_sources(), groups=groups)


# ---------------------------------------------------------------------- extreme arrays
def _strip(length: int) -> np.ndarray:
    """A 1 x length strip of tissue."""
    row = he_tiles(1, 64, seed=14)[0, 40]
    return np.ascontiguousarray(np.resize(row, (1, length, 3)))


SHAPES = {
    "1x5000": lambda: _strip(5000),
    "5000x1": lambda: np.ascontiguousarray(_strip(5000).transpose(1, 0, 2)),
    "two-pixels": lambda: _strip(2),
    "1x1": lambda: _strip(1),
    "batch-of-1x300": lambda: np.stack([_strip(300)] * 3),
}


def _check_output(out, x, before):
    assert type(out) is type(x) or isinstance(x, list)
    assert out.shape == x.shape and out.dtype == x.dtype
    if out.dtype.kind == "f":
        assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_extreme_shapes(name, shape):
    x = SHAPES[shape]()
    before = x.copy()
    _check_output(quiet(fitted(name).transform, x), x, before)
    status = tile_status(fitted(name), x)
    assert status.shape == ((len(x),) if x.ndim == 4 else (1,))


BAD_VALUES = {
    "all-nan": (lambda: np.full((16, 16, 3), np.nan, np.float32), "NaN"),
    "one-nan": (
        lambda: np.where(np.eye(16, dtype=bool)[..., None], np.nan, np.full((16, 16, 3), 0.5)),
        "NaN",
    ),
    "inf": (lambda: np.full((16, 16, 3), np.inf), "infinite"),
    "minus-inf": (lambda: np.full((16, 16, 3), -np.inf, np.float32), "infinite"),
    "bool": (lambda: np.ones((16, 16, 3), bool), "dtype"),
    "object": (lambda: np.full((16, 16, 3), 1, dtype=object), "dtype"),
    "int16": (lambda: np.full((16, 16, 3), 100, np.int16), "dtype"),
    "complex": (lambda: np.full((16, 16, 3), 0.5, np.complex64), "dtype"),
    "above-one": (lambda: np.full((16, 16, 3), 1.5), r"\[0, 1\]"),
    "empty": (lambda: np.zeros((0, 16, 3), np.uint8), "empty"),
    "5-channels": (lambda: np.zeros((16, 16, 5), np.uint8), "channels"),
}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bad", sorted(BAD_VALUES))
def test_bad_values_and_dtypes_are_a_clear_value_error(name, bad):
    make_bad, message = BAD_VALUES[bad]
    with pytest.raises(ValueError, match=message):
        fitted(name).transform(make_bad())
    with pytest.raises(ValueError, match=message):
        make(name).fit(make_bad())


def _read_only(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x.flags.writeable = False
    return x


LAYOUTS = {
    "negative-row-stride": lambda x: x[:, ::-1],
    "negative-channel-stride": lambda x: x[..., ::-1],
    "every-other-pixel": lambda x: np.repeat(x, 2, axis=2)[:, :, ::2],
    "fortran-order": np.asfortranarray,
    "transposed": lambda x: x.transpose(0, 2, 1, 3),
    "read-only": _read_only,
    "negative-zero-float": lambda x: np.where(x > 200, -0.0, x / 255.0),
    "float16": lambda x: (x / 255.0).astype(np.float16),
}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_memory_layouts_and_float_kinds_change_nothing(name, layout):
    x = LAYOUTS[layout](SOURCES)
    before = x.copy()
    out = quiet(fitted(name).transform, x)
    _check_output(out, x, before)
    expected = quiet(fitted(name).transform, np.ascontiguousarray(x))
    np.testing.assert_array_equal(out, expected)
    one_tile = x[1]
    np.testing.assert_array_equal(quiet(fitted(name).transform, one_tile), expected[1])


@pytest.mark.parametrize("name", sorted(stainstyle.METHODS))
@pytest.mark.parametrize("layout", ["negative-row-stride", "fortran-order", "read-only"])
def test_fit_on_hostile_layouts_equals_fit_on_a_copy(name, layout):
    x = LAYOUTS[layout](TARGETS)
    before = x.copy()
    estimator = make(name).fit(x)
    np.testing.assert_array_equal(x, before)
    expected = make(name).fit(np.ascontiguousarray(x))
    np.testing.assert_array_equal(
        quiet(estimator.transform, SOURCES), quiet(expected.transform, SOURCES)
    )


# ---------------------------------------------------------------------- concurrent use
@pytest.mark.parametrize("name", ALL)
def test_one_fitted_estimator_serves_several_threads(name):
    estimator = fitted(name)
    inputs = [SOURCES, SOURCES[::-1], list(SOURCES[:2]), SOURCES[0]]
    expected = [quiet(estimator.transform, x) for x in inputs]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda x: quiet(estimator.transform, x), inputs * 2))
    for out, reference in zip(results, expected * 2, strict=True):
        np.testing.assert_array_equal(np.asarray(out), np.asarray(reference))
