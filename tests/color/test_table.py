"""The lazily filled lookup table over the 2**24 RGB colours."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from stainstyle.color.table import (
    FILL_PIXELS,
    FILL_QUANTUM,
    N_COLOURS,
    ColourTable,
    colour_keys,
    compute_colours,
    key_colours,
    map_distinct,
    map_pixels,
)


def inverted(colours: np.ndarray) -> np.ndarray:
    """A colour function for the tests: ``255 - c`` per channel, then the channels reversed."""
    return (255 - colours)[..., ::-1]


class Counted:
    """``inverted``, recording the colours of each call."""

    def __init__(self):
        self.calls: list[np.ndarray] = []

    def __call__(self, colours: np.ndarray) -> np.ndarray:
        self.calls.append(colours.copy())
        return inverted(colours)


def test_keys_pack_red_lowest_and_unpack_back():
    pixels = np.array([[1, 2, 3], [255, 255, 255], [0, 0, 0], [0, 0, 255]], np.uint8)
    np.testing.assert_array_equal(
        colour_keys(pixels), [1 + 2 * 256 + 3 * 65536, N_COLOURS - 1, 0, 255 << 16]
    )
    every = np.arange(N_COLOURS, dtype=np.int64)
    np.testing.assert_array_equal(colour_keys(key_colours(every)), every)


def test_keys_reuse_scratch_space():
    pixels = np.random.default_rng(0).integers(0, 256, (100, 3), dtype=np.uint8)
    wide = np.zeros((256, 8), np.uint8)
    keys = colour_keys(pixels, wide)
    assert np.shares_memory(keys, wide)
    np.testing.assert_array_equal(keys, colour_keys(pixels))


@pytest.mark.parametrize(
    "shape", [(2, 37, 41, 3), (300, 300, 3), (1, 1, 3), (5, 1, 3), (2, 3, 1, 1, 3)]
)
def test_the_table_maps_as_the_function_does(shape):
    images = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    table = ColourTable(inverted)
    np.testing.assert_array_equal(table.map(images), inverted(images))
    np.testing.assert_array_equal(table.map(images), inverted(images))  # warm
    assert table.n_computed == len(np.unique(colour_keys(images.reshape(-1, 3))))


def test_strided_views_and_empty_images():
    image = np.random.default_rng(2).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    table = ColourTable(inverted)
    for view in (image[::-1], image[:, ::3], image[10:20, 5:70], image.transpose(1, 0, 2)):
        np.testing.assert_array_equal(table.map(view), inverted(view))
    assert table.map(image[:0]).shape == (0, 80, 3)
    with pytest.raises(ValueError, match=r"images: expected shape .*, got \(10, 3\)"):
        table.map(image[0, :10])


def test_colours_are_computed_once_in_padded_batches():
    compute = Counted()
    table = ColourTable(compute)
    rng = np.random.default_rng(3)
    first = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)  # about 90,000 colours
    table.map(first)
    table.map(np.concatenate([first[:10], rng.integers(0, 256, (10, 300, 3), dtype=np.uint8)]))
    table.map(first[::-1])
    assert len(compute.calls) >= 3  # more than one batch for the first image
    distinct = [np.unique(colour_keys(call.reshape(-1, 3))) for call in compute.calls]
    for call, keys in zip(compute.calls, distinct, strict=True):
        assert call.shape[1:] == (1, 3) and call.dtype == np.uint8
        assert len(call) % FILL_QUANTUM == 0 and len(call) > len(keys)
        assert len(call) <= FILL_PIXELS
        padding = call[len(keys) :, 0]
        assert (padding == call[len(keys) - 1, 0]).all()  # repeats of the last colour
    computed = np.concatenate(distinct)
    assert len(np.unique(computed)) == len(computed) == table.n_computed


def test_pickling_leaves_the_table_behind():
    table = ColourTable(inverted)
    image = np.random.default_rng(4).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    out = table.map(image)
    payload = pickle.dumps(table)
    assert len(payload) < 1000
    copy = pickle.loads(payload)
    assert copy.n_computed == 0
    np.testing.assert_array_equal(copy.map(image), out)


def test_every_pixel_computed_equals_the_table():
    compute = Counted()
    images = np.random.default_rng(5).integers(0, 256, (3, 200, 250, 3), dtype=np.uint8)
    np.testing.assert_array_equal(map_pixels(compute, images), inverted(images))
    assert sum(len(call) for call in compute.calls) > images.size // 3  # repeats are computed
    for call in compute.calls:
        assert len(call) % FILL_QUANTUM == 0 and len(call) <= FILL_PIXELS
    np.testing.assert_array_equal(map_pixels(inverted, images), ColourTable(inverted).map(images))


def test_compute_colours_pads_each_batch_with_its_last_colour():
    compute = Counted()
    colours = np.random.default_rng(6).integers(0, 256, (FILL_PIXELS + 10, 3), dtype=np.uint8)
    np.testing.assert_array_equal(compute_colours(compute, colours), inverted(colours))
    first, second = compute.calls
    n = FILL_PIXELS - FILL_QUANTUM
    np.testing.assert_array_equal(first[:n, 0], colours[:n])
    assert len(first) == FILL_PIXELS and (first[n:, 0] == colours[n - 1]).all()
    rest = len(colours) - n  # FILL_QUANTUM + 10 colours: padded to two quanta
    np.testing.assert_array_equal(second[:rest, 0], colours[n:])
    assert len(second) == 2 * FILL_QUANTUM and (second[rest:, 0] == colours[-1]).all()


@pytest.mark.parametrize("table_min_pixels", [0, 1 << 20])
def test_distinct_colours_computed_once_equal_every_pixel_computed(table_min_pixels):
    compute = Counted()
    images = np.random.default_rng(7).integers(0, 64, (2, 120, 90, 3), dtype=np.uint8)
    out = map_distinct(compute, images, table_min_pixels)
    np.testing.assert_array_equal(out, map_pixels(inverted, images))
    distinct = len(np.unique(colour_keys(images.reshape(-1, 3))))
    computed = np.unique(np.concatenate([colour_keys(c.reshape(-1, 3)) for c in compute.calls]))
    assert len(computed) == distinct < images.size // 3


def test_colours_mapped_to_black_are_not_computed_again():
    # Black is the table entry 0xFF000000, the smallest that marks a computed colour.
    compute = Counted()
    table = ColourTable(lambda colours: np.zeros_like(compute(colours)))
    first = np.array([[[1, 2, 3], [4, 5, 6]]], np.uint8)
    np.testing.assert_array_equal(table.map(first), np.zeros_like(first))
    assert table.n_computed == 2
    second = np.array([[[1, 2, 3], [4, 5, 6], [7, 8, 9]]], np.uint8)
    np.testing.assert_array_equal(table.map(second), np.zeros_like(second))
    assert table.n_computed == 3
    assert [7, 8, 9] in compute.calls[-1][:, 0].tolist()
    assert [1, 2, 3] not in compute.calls[-1][:, 0].tolist()


def test_the_table_takes_four_bytes_a_colour():
    table = ColourTable(inverted)
    table.map(np.zeros((1, 1, 3), np.uint8))
    assert table._entries.nbytes == 4 * N_COLOURS == 64 << 20
