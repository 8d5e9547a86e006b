"""Whole-slide images: open and read slides, find their tissue, cut tiles, write pyramids.

- :mod:`~stainstyle.wsi.reader`: :func:`open_slide` and :class:`Slide` (SVS, generic and
  OME-TIFF through tiffslide, every other vendor format through OpenSlide): levels,
  microns per pixel, regions, resampled reads, thumbnails.
- :mod:`~stainstyle.wsi.tissue`: :func:`slide_tissue_mask`, the project's tissue rule on a
  thumbnail.
- :mod:`~stainstyle.wsi.tiles`: :func:`tile_grid`, :func:`iter_tiles` (tissue tiles at a
  requested mpp, with overlap) and :func:`sample_tiles` (random tissue tiles for ``fit``).
- :mod:`~stainstyle.wsi.writer`: :func:`write_pyramid`, a streaming pyramidal BigTIFF writer.

Needs the ``wsi`` extra (``pip install 'stainstyle[wsi]'``); the libraries are imported when a
slide is opened or written, so this package imports without them.
"""

from stainstyle.wsi.reader import Slide, SlideReadError, SlideRequestError, open_slide
from stainstyle.wsi.tiles import NoTissueError, Tile, TileGrid, iter_tiles, sample_tiles, tile_grid
from stainstyle.wsi.tissue import TissueMask, slide_tissue_mask
from stainstyle.wsi.writer import downsample_2x, pyramid_dimensions, write_pyramid

__all__ = [
    "NoTissueError",
    "Slide",
    "SlideReadError",
    "SlideRequestError",
    "Tile",
    "TileGrid",
    "TissueMask",
    "downsample_2x",
    "iter_tiles",
    "open_slide",
    "pyramid_dimensions",
    "sample_tiles",
    "slide_tissue_mask",
    "tile_grid",
    "write_pyramid",
]
