"""Hostile image files against the reader: ``stainstyle.data.images`` and the loaders on it.

Entry points attacked: :func:`stainstyle.data.images.read_image_data` (and ``read_image``,
``read_image_header``), and :func:`stainstyle.data.load_manifest`, with a folder of corrupt,
truncated, empty, huge (a header claiming 100000 x 100000 pixels), multi-page, 16-bit, float,
32-bit, EXIF-rotated, transparent, unicode- and space-named files, plus a FIFO, a dangling link
and symbolic link loops; and concurrent reads with different size limits.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from _support import SPECIAL_ENTRIES, UNREADABLE_FILES, tree_digest, write_hostile_files
from PIL import Image

from stainstyle.data import load_manifest
from stainstyle.data.images import (
    ImageReadError,
    read_image,
    read_image_data,
    read_image_header,
)

# Pillow's DecompressionBombWarning, or any other warning, must not escape the reader.
pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray | None], dict[str, str]]:
    folder = tmp_path_factory.mktemp("hostile")
    expected = write_hostile_files(folder)
    return folder, expected, tree_digest(folder)


def _in_thread(function, *args, timeout: float = 30.0):
    """Run ``function(*args)`` in a thread; fail (not hang) if it blocks, e.g. on a FIFO."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = function(*args)
        except BaseException as error:  # handed to the test below
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{function.__name__}{args} blocked"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _names(kind: tuple[str, ...]) -> list[str]:
    return list(kind)


READABLE = [
    "rgb 16-bit.png",
    "rgb 16-bit.tif",
    "gray 16-bit.png",
    "float.tif",
    "exif rotated.jpg",
    "transparent.png",
    "palette.png",
    "ünïcødé тайл.png",
    "name with spaces.png",
]


@pytest.mark.parametrize("name", READABLE)
def test_readable_files_give_exact_upright_8_bit_rgb(hostile, name):
    folder, expected, _ = hostile
    data = _in_thread(read_image_data, folder / name)
    assert data.rgb.dtype == np.uint8 and data.rgb.ndim == 3 and data.rgb.shape[2] == 3
    np.testing.assert_array_equal(data.rgb, expected[name])


@pytest.mark.parametrize("name", _names(UNREADABLE_FILES) + _names(SPECIAL_ENTRIES))
@pytest.mark.parametrize("reader", [read_image, read_image_data])
def test_unreadable_files_raise_image_read_error_naming_the_file(hostile, name, reader):
    folder, _, _ = hostile
    path = folder / name
    with pytest.raises(ImageReadError) as info:
        _in_thread(reader, path)
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    "name, reason",
    [
        ("huge 100000x100000.png", "100000 x 100000 = 10,000,000,000 pixels is above the limit"),
        ("empty.png", "empty file (0 bytes)"),
        ("truncated.png", "truncated"),
        ("truncated.jpg", "runcated"),
        ("text.png", "not an image"),
        ("float out of range.tif", "float image with values from 0 to 3"),
        ("float nan.tif", "NaN or infinite"),
        ("int32.tif", "32-bit integer samples are not supported"),
        ("three pages.tif", "TIFF file with 3 pages"),
        ("animated.png", "PNG file with 2 frames"),
        ("fifo.png", "is a FIFO (named pipe), not an image file"),
        ("dangling.png", "dangling symbolic link to 'no such target.png'"),
        ("loop-a.png", "symbolic link loop"),
        ("sub/up", "is a folder, not an image file"),
    ],
)
def test_each_refusal_says_what_is_wrong(hostile, name, reason):
    folder, _, _ = hostile
    with pytest.raises(ImageReadError, match=None) as info:
        _in_thread(read_image, folder / name)
    assert reason in info.value.reason


def test_header_check_refuses_without_decoding(hostile):
    folder, _, _ = hostile
    assert read_image_header(folder / "truncated.png") == (32, 32)  # damage past the header
    for name in ("huge 100000x100000.png", "three pages.tif", "fifo.png", "empty.png"):
        with pytest.raises(ImageReadError, match="pixels|pages|FIFO|empty"):
            _in_thread(read_image_header, folder / name)


def test_reading_never_changes_the_files(hostile):
    folder, expected, before = hostile
    for name in expected:
        try:
            _in_thread(read_image_data, folder / name)
        except ImageReadError:
            pass
    assert tree_digest(folder) == before


def test_manifest_over_hostile_files_skips_each_with_one_warning(hostile, tmp_path):
    folder, expected, _ = hostile
    manifest = tmp_path / "m.csv"
    names = sorted(expected)
    manifest.write_text("file,label\n" + "".join(f"{n},0\n" for n in names), encoding="utf-8")
    bad = len(UNREADABLE_FILES) + len(SPECIAL_ENTRIES)
    with pytest.warns(UserWarning, match=f"skipped {bad} of {len(names)} unreadable"):
        tiles, labels, _ = load_manifest(manifest, folder, lazy=False, on_error="skip")
    assert len(tiles) == len(READABLE) == len(labels)
    with pytest.raises(ImageReadError):
        load_manifest(manifest, folder)
    with pytest.warns(UserWarning, match="skipped"):  # lazy: headers checked, FIFO not opened
        lazy, _, _ = load_manifest(manifest, folder, lazy=True, on_error="skip")
    damaged_past_the_header = {
        "truncated.png",  # (the JPEG is cut inside its header, so it is found here)
        "float out of range.tif",
        "float nan.tif",
        "int32.tif",
    }
    assert {Path(p).name for p in lazy.paths} == set(READABLE) | damaged_past_the_header


def test_concurrent_reads_with_different_limits_each_get_their_own(tmp_path, monkeypatch):
    tile = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    path = tmp_path / "tile.tif"
    Image.fromarray(tile).save(path)  # 1024 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600)

    def read(limit):
        try:
            return "ok" if np.array_equal(read_image(path, max_pixels=limit), tile) else "wrong"
        except ImageReadError:
            return "refused"

    limits = [None, 2048, 1000, 1024, 5000] * 40
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(read, limits))
    want = {None: "refused", 2048: "ok", 1000: "refused", 1024: "ok", 5000: "ok"}
    assert results == [want[limit] for limit in limits]
    assert Image.MAX_IMAGE_PIXELS == 600


def test_lazy_manifest_names_what_a_listed_path_is(hostile, tmp_path):
    folder, _, _ = hostile
    for name, reason in [
        ("fifo.png", "is a FIFO (named pipe)"),
        ("loop-a.png", "symbolic link loop"),
        ("dangling.png", "dangling symbolic link"),
        ("missing.png", "file not found"),
    ]:
        manifest = tmp_path / "m.csv"
        manifest.write_text(f"file,label\n{name},0\n", encoding="utf-8")
        with pytest.raises(ImageReadError, match=re.escape(reason)):
            _in_thread(lambda m=manifest: load_manifest(m, folder, lazy=True))
