"""Tiles for tests, benchmarks and training: a synthetic H&E generator and real-data loaders."""

from stainstyle.data.styles import BUILTIN_STYLES, StainStyle, get_style, random_style
from stainstyle.data.synthetic import Tissue, make_tiles, make_tissue, render, render_pair

__all__ = [
    "BUILTIN_STYLES",
    "StainStyle",
    "Tissue",
    "get_style",
    "make_tiles",
    "make_tissue",
    "random_style",
    "render",
    "render_pair",
]
