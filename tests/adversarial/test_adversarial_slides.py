"""Hostile slides and requests against ``stainstyle.wsi``: reading, tiling and writing.

Entry points attacked: :func:`stainstyle.wsi.open_slide` and the reads of :class:`Slide`,
:func:`tile_grid` / :func:`sample_tiles`, and :func:`write_pyramid`, with truncated and corrupt
SVS and TIFF files, an empty file, a text file named ``.svs``, headers claiming absurd sizes, a
folder, a FIFO and a dangling link named like slides; impossible microns per pixel and regions;
reads of one slide from many threads; a writer killed mid-write; and the inputs' bytes.
"""

from __future__ import annotations

import hashlib
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from _support import ROOT, memory_cap, tree_digest
from _wsi_support import mosaic, svs_path, write_image_slide

from stainstyle._atomic import TEMPORARY_SUFFIX, remove_stale_temporaries
from stainstyle.wsi import (
    SlideReadError,
    SlideRequestError,
    open_slide,
    sample_tiles,
    slide_tissue_mask,
    tile_grid,
)

BACKENDS = ["tiffslide", "openslide"]

#: Hostile entries of the ``hostile`` fixture that no backend may open, with what is said.
UNREADABLE = {
    "empty.svs": "empty file",
    "text.svs": "not a slide",
    "truncated 10%.svs": "truncated",
    "truncated 50%.svs": "truncated",
    "truncated 90%.svs": "truncated",
    "truncated 99.9%.svs": "truncated",
    "truncated 5%.tif": "truncated",
    "truncated 50%.tif": "truncated",
    "truncated 95%.tif": "truncated",
    "truncated 99.9%.tif": "truncated",
    "absurd size.tif": "corrupt header",
    "absurd tile.tif": "absurd header",
    "folder.svs": "is a folder",
    "fifo.svs": "is a FIFO",
    "dangling.svs": "dangling symbolic link",
}


def _patch_header(source: Path, target: Path, values: dict[int, int]) -> None:
    """Copy a one-page TIFF, overwriting the values of some of its (inline) tags."""
    import tifffile

    data = bytearray(source.read_bytes())
    with tifffile.TiffFile(source) as tiff:
        tags = tiff.pages[0].tags
        for code, value in values.items():
            tag = tags[code]
            struct.pack_into("<H" if tag.dtype == 3 else "<I", data, tag.valueoffset, value)
    target.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    import tifffile

    folder = tmp_path_factory.mktemp("hostile slides")
    svs = svs_path().read_bytes()
    for fraction in ("10%", "50%", "90%", "99.9%"):
        cut = int(len(svs) * float(fraction[:-1]) / 100)
        (folder / f"truncated {fraction}.svs").write_bytes(svs[:cut])
    with tifffile.TiffFile(svs_path()) as tiff:  # random bytes inside the 6th tile's JPEG data
        offset = tiff.pages[0].dataoffsets[5]
    corrupt = bytearray(svs)
    corrupt[offset + 100 : offset + 2000] = np.random.default_rng(0).bytes(1900)
    (folder / "corrupt tile.svs").write_bytes(bytes(corrupt))

    pyramid = write_image_slide(
        folder / "pyramid.tif", mosaic(1300, 900), compression="deflate", mpp=0.25
    )
    data = pyramid.read_bytes()
    for fraction in ("5%", "50%", "95%", "99.9%"):
        cut = int(len(data) * float(fraction[:-1]) / 100)
        (folder / f"truncated {fraction}.tif").write_bytes(data[:cut])

    small = folder / "small.tif"
    tifffile.imwrite(
        small,
        np.full((512, 512, 3), 200, np.uint8),
        tile=(256, 256),
        photometric="rgb",
        metadata=None,
    )
    _patch_header(small, folder / "absurd size.tif", {256: 1_000_000, 257: 1_000_000})
    _patch_header(
        small, folder / "absurd tile.tif", {256: 60_000, 257: 60_000, 322: 65_520, 323: 65_520}
    )
    small.unlink()

    (folder / "empty.svs").write_bytes(b"")
    (folder / "text.svs").write_text("this is not a slide\n")
    (folder / "folder.svs").mkdir()
    os.mkfifo(folder / "fifo.svs")
    os.symlink("gone.svs", folder / "dangling.svs")
    return folder


@pytest.mark.parametrize("name", sorted(UNREADABLE))
@pytest.mark.parametrize("backend", [None, *BACKENDS])
def test_unreadable_files_are_refused_naming_the_file(hostile, name, backend):
    path = hostile / name
    with memory_cap(256 << 20), pytest.raises(SlideReadError) as caught:
        open_slide(path, backend=backend)
    assert str(caught.value).startswith(f"{path}: ")
    if backend is None:
        assert UNREADABLE[name] in str(caught.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_corrupt_tile_fails_where_it_is(hostile, backend):
    path = hostile / "corrupt tile.svs"
    with open_slide(path, backend=backend) as slide:
        if backend == "tiffslide":  # OpenSlide refuses every read after its first error
            assert slide.read_level(0, (0, 0, 240, 240)).shape == (240, 240, 3)
        with pytest.raises(
            SlideReadError, match=r"corrupt tile\.svs: cannot read 240x240 pixels at \(1200, 0\)"
        ):
            slide.read_level(0, (1200, 0, 240, 240))


@pytest.mark.parametrize("mpp", [-1.0, 0.0, float("nan"), float("inf"), 1e-6, 1e9, "fine"])
def test_impossible_mpp_requests_are_named(hostile, mpp):
    path = hostile / "pyramid.tif"
    with open_slide(path) as slide, memory_cap(256 << 20):
        with pytest.raises(SlideRequestError, match=r"pyramid\.tif: "):
            tile_grid(slide, 256, mpp=mpp)
        with pytest.raises(SlideRequestError, match=r"pyramid\.tif: "):
            sample_tiles(slide, n=4, mpp=mpp)


def test_regions_out_of_bounds_are_white_or_refused_without_allocating(hostile):
    with open_slide(hostile / "pyramid.tif") as slide, memory_cap(256 << 20):
        assert np.all(slide.read_level(0, (2**40, -(2**40), 16, 16)) == 255)
        assert np.all(slide.read_region((-(10**12), 0), 2, (8, 8)) == 255)
        with pytest.raises(SlideRequestError, match="more than"):
            slide.read_level(0, (0, 0, 100_000, 100_000))
        with pytest.raises(SlideRequestError, match="more than"):
            slide.read_scaled((0, 0, 1300, 900), (100_000, 100_000))
        with pytest.raises(SlideRequestError, match="size: expected positive"):
            slide.read_level(0, (0, 0, -5, 10))
        # A box a million times the slide: only the slide's pixels are read.
        far = slide.read_scaled((-1e9, -1e9, 2e9, 2e9), (64, 64))
        assert far.shape == (64, 64, 3) and np.all(far == 255)
        with pytest.raises(SlideRequestError, match="box: expected a non-empty rectangle"):
            slide.read_scaled((0, 0, float("nan"), 10), (8, 8))


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_reads_of_one_slide_return_the_right_pixels(hostile, backend):
    for path in (svs_path(), hostile / "pyramid.tif"):
        with open_slide(path, backend=backend) as slide:
            rng = np.random.default_rng(1)
            requests = []
            for _ in range(200):
                level = int(rng.integers(slide.level_count))
                width, height = slide.level_dimensions[level]
                x, y = int(rng.integers(-50, width)), int(rng.integers(-50, height))
                requests.append(
                    (level, (x, y, int(rng.integers(1, 300)), int(rng.integers(1, 300))))
                )
            expected = [slide.read_level(level, box) for level, box in requests]
            with ThreadPoolExecutor(8) as pool:
                got = list(pool.map(lambda r: slide.read_level(*r), requests * 3))
            for a, b in zip(expected * 3, got, strict=True):
                np.testing.assert_array_equal(a, b)


_SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from stainstyle.wsi import write_pyramid
    row = np.full((256, 2048, 3), 180, np.uint8)
    def rows():
        for _ in range(64):
            time.sleep(0.05)
            yield row
    write_pyramid(sys.argv[1], rows(), size=(2048, 64 * 256), compression="deflate")
    """
)


def test_a_killed_writer_leaves_no_file_and_removable_temporaries(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "writer.py"
    script.write_text(_SLOW_WRITER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, script, out / "slide.tif"], env=env, cwd=ROOT)
    deadline = time.monotonic() + 120
    while not any(p.name.endswith(TEMPORARY_SUFFIX) and any(p.iterdir()) for p in out.iterdir()):
        assert process.poll() is None, "the writer ended before it was killed"
        assert time.monotonic() < deadline, "the writer never started"
        time.sleep(0.05)
    time.sleep(0.5)  # well inside level 0
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    left = list(out.iterdir())
    assert not (out / "slide.tif").exists()
    assert len(left) == 1 and left[0].name.startswith(".slide.tif.")
    assert remove_stale_temporaries(out) == left
    assert list(out.iterdir()) == []


def test_inputs_are_never_modified(hostile, tmp_path):
    before = tree_digest(hostile)
    real = hashlib.sha256(svs_path().read_bytes()).hexdigest()
    for path in sorted(hostile.iterdir()):
        try:
            with open_slide(path) as slide:
                slide.thumbnail(256)
                slide_tissue_mask(slide, max_side=256)
        except (SlideReadError, SlideRequestError):
            pass
    with open_slide(svs_path()) as slide:
        sample_tiles(slide, n=4, size=128)
        write_image_slide(tmp_path / "copy.tif", slide.read_level(0, (0, 0, 1024, 1024)))
    assert tree_digest(hostile) == before
    assert hashlib.sha256(svs_path().read_bytes()).hexdigest() == real
