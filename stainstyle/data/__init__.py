"""Tiles for tests, benchmarks and training: a synthetic H&E generator and real-data loaders.

- :mod:`~stainstyle.data.synthetic` and :mod:`~stainstyle.data.styles`: procedural, labeled
  H&E tiles rendered in several lab styles (:func:`make_tiles`, :func:`render_pair`).
- :mod:`~stainstyle.data.images`: the one image-file reader and writer of the library
  (:func:`read_image`, :func:`read_image_data`, :func:`write_image`).
- :mod:`~stainstyle.data.loaders`: ``(tiles, labels, groups)`` from a folder tree, a CSV
  manifest, AMi-Br, PatchCamelyon and CAMELYON17-WILDS.
- :mod:`~stainstyle.data.splits`: splits that keep each slide in one part.
- :mod:`~stainstyle.data.datasets`: PyTorch datasets with flips and 90-degree rotations.
"""

from stainstyle.data.datasets import TileDataset, augment_tile
from stainstyle.data.images import (
    IMAGE_SUFFIXES,
    ImageData,
    ImageReadError,
    read_image,
    read_image_data,
    read_image_header,
    write_image,
)
from stainstyle.data.loaders import (
    Groups,
    H5Tiles,
    LazyTiles,
    load_amibr,
    load_camelyon17_wilds,
    load_folder,
    load_manifest,
    load_pcam,
)
from stainstyle.data.splits import leave_domain_out, split_by_slide
from stainstyle.data.styles import BUILTIN_STYLES, StainStyle, get_style, random_style
from stainstyle.data.synthetic import Tissue, make_tiles, make_tissue, render, render_pair

__all__ = [
    "BUILTIN_STYLES",
    "IMAGE_SUFFIXES",
    "Groups",
    "H5Tiles",
    "ImageData",
    "ImageReadError",
    "LazyTiles",
    "StainStyle",
    "TileDataset",
    "Tissue",
    "augment_tile",
    "get_style",
    "leave_domain_out",
    "load_amibr",
    "load_camelyon17_wilds",
    "load_folder",
    "load_manifest",
    "load_pcam",
    "make_tiles",
    "make_tissue",
    "random_style",
    "read_image",
    "read_image_data",
    "read_image_header",
    "render",
    "render_pair",
    "split_by_slide",
    "write_image",
]
