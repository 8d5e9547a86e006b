"""Whole-slide images: read slides, find their tissue, cut tiles, write pyramids, normalize.

- :mod:`~stainstyle.wsi.reader`: :func:`open_slide` and :class:`Slide` (SVS, generic and
  OME-TIFF through tiffslide, every other vendor format through OpenSlide): levels,
  microns per pixel, regions, resampled reads, thumbnails.
- :mod:`~stainstyle.wsi.tissue`: :func:`slide_tissue_mask`, the project's tissue rule on a
  thumbnail.
- :mod:`~stainstyle.wsi.tiles`: :func:`tile_grid`, :func:`iter_tiles` (tissue tiles at a
  requested mpp, with overlap) and :func:`sample_tiles` (random tissue tiles for ``fit``).
- :mod:`~stainstyle.wsi.writer`: :func:`write_pyramid`, a streaming pyramidal BigTIFF writer.
- :mod:`~stainstyle.wsi.normalize`: :func:`normalize_slide`, one slide with one fixed mapping
  into a pyramid, without seams.
- :mod:`~stainstyle.wsi.cohort`: :func:`normalize_slides`, many slides on a Dask cluster, with
  the manifest (:mod:`~stainstyle.wsi.manifest`) and the quality-control sheet
  (:mod:`~stainstyle.wsi.qc`).

Needs the ``wsi`` extra (``pip install 'stainstyle[wsi]'``); the libraries are imported when a
slide is opened or written or a cluster started, so this package imports without them.
"""

from stainstyle.wsi.cohort import SLIDE_SUFFIXES, normalize_slides, plan_outputs
from stainstyle.wsi.manifest import Manifest, read_manifest, write_manifest
from stainstyle.wsi.normalize import (
    SlideResult,
    context_margin,
    normalize_slide,
    tissue_sample,
)
from stainstyle.wsi.qc import SlideQC, qc_sheet, slide_qc, thumbnail_side, write_qc_sheet
from stainstyle.wsi.reader import Slide, SlideReadError, SlideRequestError, open_slide
from stainstyle.wsi.tiles import NoTissueError, Tile, TileGrid, iter_tiles, sample_tiles, tile_grid
from stainstyle.wsi.tissue import TissueMask, slide_tissue_mask
from stainstyle.wsi.writer import downsample_2x, pyramid_dimensions, write_pyramid

__all__ = [
    "SLIDE_SUFFIXES",
    "Manifest",
    "NoTissueError",
    "Slide",
    "SlideQC",
    "SlideReadError",
    "SlideRequestError",
    "SlideResult",
    "Tile",
    "TileGrid",
    "TissueMask",
    "context_margin",
    "downsample_2x",
    "iter_tiles",
    "normalize_slide",
    "normalize_slides",
    "open_slide",
    "plan_outputs",
    "pyramid_dimensions",
    "qc_sheet",
    "read_manifest",
    "sample_tiles",
    "slide_qc",
    "slide_tissue_mask",
    "thumbnail_side",
    "tile_grid",
    "tissue_sample",
    "write_manifest",
    "write_pyramid",
    "write_qc_sheet",
]
