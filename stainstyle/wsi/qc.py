"""The quality-control sheet of a cohort: every slide before and after, and its stain vectors.

:func:`slide_qc` gathers what the sheet shows of one slide (:class:`SlideQC`): thumbnails of
the input and of the output, and, for the methods that model stain vectors (Macenko), the
slide's H and E vectors before normalization (its source statistics) and after (measured
again, the same way, on a sample of the written output). :func:`qc_sheet` draws the sheet with
Pillow: a plot of every slide's stain vectors before (hollow) and after (filled) around the
target's (crosses), projected on the plane of optical-density space orthogonal to gray, then
each slide's thumbnails side by side. A slide whose output's stain vectors are far from the
target's (more than :data:`STAIN_ANGLE_WARNING` degrees) or that failed is labelled in red, so
that it stands out at a glance.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from stainstyle._atomic import atomic_path
from stainstyle.wsi.normalize import FAILED, SKIPPED, WRITTEN, SlideResult, tissue_sample
from stainstyle.wsi.reader import SlideReadError, SlideRequestError, open_slide

logger = logging.getLogger(__name__)

#: Output stain vectors further than this from the target's, in degrees, are flagged.
STAIN_ANGLE_WARNING = 15.0

#: Longest side of each thumbnail on the sheet, in pixels, for up to 64 slides; larger cohorts
#: get smaller thumbnails (:func:`thumbnail_side`), down to :data:`MIN_THUMBNAIL_SIDE`.
THUMBNAIL_SIDE = 192
MIN_THUMBNAIL_SIDE = 48

#: An orthonormal basis of the plane of optical-density space orthogonal to gray (1, 1, 1):
#: stain vectors projected on it differ by hue, the way they differ between labs.
_PLANE = np.array([[1.0, -1.0, 0.0], [1.0, 1.0, -2.0]]) / np.array([[math.sqrt(2)], [math.sqrt(6)]])

_STATUS_COLOURS = {WRITTEN: (25, 120, 60), SKIPPED: (90, 90, 90), FAILED: (200, 30, 30)}
_STAIN_COLOURS = ((90, 40, 140), (215, 50, 110))  # haematoxylin, eosin
_PAD, _LINE = 8, 16
_PLOT_SIDE = 420


@dataclass(frozen=True, eq=False)
class SlideQC:
    """What the quality-control sheet shows of one slide.

    Attributes
    ----------
    name : str
        The slide's file name.
    status : {"written", "skipped", "failed"}
        As in its :class:`~stainstyle.wsi.SlideResult`.
    before, after : ndarray of shape (h, w, 3), dtype uint8, or None
        Thumbnails of the input and of the output; None when unreadable or not written.
    stains_before, stains_after : ndarray of shape (3, 2), dtype float64, or None
        H and E stain vectors (columns; rows R, G, B, optical density) of the input and of the
        output; None for methods without stain vectors or when not measurable.
    error : str
        The slide's error, when it failed.
    """

    name: str
    status: str
    before: np.ndarray | None
    after: np.ndarray | None
    stains_before: np.ndarray | None = None
    stains_after: np.ndarray | None = None
    error: str = ""

    def stain_angles(self, target: np.ndarray | None) -> tuple[float, float] | None:
        """Angles in degrees between the output's H and E vectors and the target's.

        Parameters
        ----------
        target : ndarray of shape (3, 2) or None
            The normalizer's target stain vectors.

        Returns
        -------
        tuple of (float, float) or None
            ``(H, E)``; None without both matrices.
        """
        if target is None or self.stains_after is None:
            return None
        return tuple(_angle(self.stains_after[:, k], target[:, k]) for k in range(2))


def thumbnail_side(n_slides: int) -> int:
    """Side of the thumbnails on the sheet of ``n_slides`` slides.

    :data:`THUMBNAIL_SIDE` up to 64 slides, then shrinking as one over the square root of the
    count, to no less than :data:`MIN_THUMBNAIL_SIDE`: the sheet's area grows no faster than
    the cohort's, and a sheet of a thousand slides is about 4300 x 3600 pixels.

    Parameters
    ----------
    n_slides : int
        Slides on the sheet.

    Returns
    -------
    int
    """
    side = THUMBNAIL_SIDE * math.sqrt(64 / max(n_slides, 64))
    return max(MIN_THUMBNAIL_SIDE, int(side))


def slide_qc(
    result: SlideResult,
    normalizer,
    *,
    side: int = THUMBNAIL_SIDE,
    tile_size: int = 256,
    mpp: float | None = None,
    sample: int = 64,
    random_state: int = 0,
) -> SlideQC:
    """Thumbnails and stain vectors of one slide, before and after normalization.

    Nothing here raises for a slide that cannot be read: what cannot be measured is None.

    Parameters
    ----------
    result : SlideResult
        The slide's result; its statistics give the stain vectors before, when measured.
    normalizer : StainNormalizer
        The fitted normalizer; stain vectors are measured when it has ``stain_matrix_``.
    side : int, default=THUMBNAIL_SIDE
        Longest side of the thumbnails.
    tile_size : int, default=256
        Side of the tiles sampled to measure stain vectors.
    mpp : float, optional
        Microns per pixel the input was normalized at (its sample when the run did not measure
        it, e.g. a skipped slide).
    sample : int, default=64
        Most tissue tiles sampled from the output (and from a skipped slide's input).
    random_state : int, default=0
        Seed of the samples.

    Returns
    -------
    SlideQC
    """
    written = result.status != FAILED and result.output.is_file()
    stains_before = stains_after = None
    if hasattr(normalizer, "stain_matrix_"):
        stains_before = _stains_of(result.statistics)
        if stains_before is None and result.status == SKIPPED:
            stains_before = _measure_stains(
                result.input, normalizer, sample, tile_size, mpp, random_state
            )
        if written:
            stains_after = _measure_stains(
                result.output, normalizer, sample, tile_size, None, random_state
            )
    return SlideQC(
        name=result.input.name,
        status=result.status,
        before=_thumbnail(result.input, side),
        after=_thumbnail(result.output, side) if written else None,
        stains_before=stains_before,
        stains_after=stains_after,
        error=result.error,
    )


def qc_sheet(
    entries: list[SlideQC], target: np.ndarray | None = None, title: str = ""
) -> np.ndarray:
    """Draw the quality-control sheet of a cohort.

    Parameters
    ----------
    entries : list of SlideQC
        The slides, in the order they are numbered.
    target : ndarray of shape (3, 2), optional
        The normalizer's target stain vectors (H, E columns), drawn as crosses.
    title : str, optional
        First line of the sheet.

    Returns
    -------
    ndarray of shape (H, W, 3), dtype uint8
        The sheet, RGB.
    """
    font = _font()
    side = thumbnail_side(len(entries))
    panel_w, panel_h = 2 * side + 3 * _PAD, side + 3 * _LINE + 2 * _PAD
    # About 4:3 overall: columns ~ sqrt(n * panel_h / panel_w * 4 / 3).
    columns = math.ceil(math.sqrt(max(len(entries), 1) * panel_h / panel_w * 4 / 3))
    columns = max(1, min(columns, len(entries)))
    has_plot = any(e.stains_before is not None or e.stains_after is not None for e in entries)
    plot_h = _PLOT_SIDE + _PAD if has_plot else 0
    header_h = 2 * _LINE + _PAD
    width = max(columns * panel_w, _PLOT_SIDE + 2 * _PAD + 260)
    rows = math.ceil(len(entries) / columns)
    sheet = Image.new("RGB", (width, header_h + plot_h + rows * panel_h), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((_PAD, _PAD // 2), title, fill="black", font=font)
    counts = {s: sum(e.status == s for e in entries) for s in (WRITTEN, SKIPPED, FAILED)}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no slides"
    draw.text(
        (_PAD, _PAD // 2 + _LINE), f"{len(entries)} slides: {summary}", fill="black", font=font
    )
    if has_plot:
        _draw_stain_plot(draw, (_PAD, header_h), entries, target, font)
    for index, entry in enumerate(entries):
        row, col = divmod(index, columns)
        origin = (col * panel_w, header_h + plot_h + row * panel_h)
        _draw_panel(sheet, draw, origin, side, (index + 1, entry), target, font)
    return np.asarray(sheet)


def write_qc_sheet(
    path: str | os.PathLike,
    entries: list[SlideQC],
    target: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """Draw the quality-control sheet (:func:`qc_sheet`) and write it as PNG, atomically.

    Parameters
    ----------
    path : str or path-like
        Output PNG; its folder must exist.
    entries : list of SlideQC
        The slides.
    target : ndarray of shape (3, 2), optional
        The normalizer's target stain vectors.
    title : str, optional
        First line of the sheet.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    with atomic_path(path) as temporary:
        Image.fromarray(qc_sheet(entries, target, title)).save(temporary, format="PNG")
    return path


# ---------------------------------------------------------------------------- measuring
def _thumbnail(path: Path, side: int) -> np.ndarray | None:
    try:
        with open_slide(path) as slide:
            return slide.thumbnail(side)
    except (SlideReadError, SlideRequestError) as error:
        logger.debug("no thumbnail of %s: %s", path, error)
        return None


def _stains_of(statistics) -> np.ndarray | None:
    """The stain matrix carried by source statistics, when they carry one."""
    if statistics is None or not statistics.modelled:
        return None
    matrix = getattr(statistics.statistics, "stain_matrix", None)
    return None if matrix is None else np.asarray(matrix, dtype=np.float64)


def _measure_stains(path: Path, normalizer, n, tile_size, mpp, random_state) -> np.ndarray | None:
    """Stain vectors of a sample of a slide's tissue, measured as the normalizer measures them."""
    try:
        with open_slide(path) as slide:
            tiles = tissue_sample(slide, n, tile_size, mpp, random_state=random_state)
    except (SlideReadError, SlideRequestError) as error:
        logger.debug("no stain vectors of %s: %s", path, error)
        return None
    return _stains_of(normalizer.source_statistics(tiles))


def _angle(u: np.ndarray, v: np.ndarray) -> float:
    cosine = abs(float(u @ v)) / max(float(np.linalg.norm(u) * np.linalg.norm(v)), 1e-12)
    return math.degrees(math.acos(min(1.0, cosine)))


# ---------------------------------------------------------------------------- drawing
def _font(size: int = 13) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _fit_text(draw: ImageDraw.ImageDraw, text: str, width: int, font) -> str:
    """``text``, shortened with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _draw_panel(sheet, draw, origin, side: int, numbered: tuple[int, SlideQC], target, font):
    """One slide: its number, name and status, and its thumbnails before and after."""
    x, y = origin
    number, entry = numbered
    angles = entry.stain_angles(target)
    flagged = entry.status == FAILED or (angles is not None and max(angles) > STAIN_ANGLE_WARNING)
    colour = (200, 30, 30) if flagged else _STATUS_COLOURS.get(entry.status, (0, 0, 0))
    text_w = 2 * side + _PAD
    draw.text((x + _PAD, y + _PAD), _fit_text(draw, f"{number}. {entry.name}", text_w, font),
              fill="black", font=font)  # fmt: skip
    if entry.status == FAILED:
        detail = entry.error.splitlines()[0] if entry.error else "failed"
    elif angles is not None:
        detail = f"{entry.status}; after: H {angles[0]:.1f} deg, E {angles[1]:.1f} deg from target"
    else:
        detail = entry.status
    draw.text((x + _PAD, y + _PAD + _LINE), _fit_text(draw, detail, text_w, font),
              fill=colour, font=font)  # fmt: skip
    top = y + _PAD + 2 * _LINE + _PAD // 2
    for k, (label, image) in enumerate((("before", entry.before), ("after", entry.after))):
        left = x + _PAD + k * (side + _PAD)
        draw.rectangle((left, top, left + side - 1, top + side - 1),
                       outline=(200, 200, 200))  # fmt: skip
        if image is not None:
            thumb = Image.fromarray(image)
            thumb.thumbnail((side, side))
            sheet.paste(thumb, (left, top))
        else:
            draw.text((left + _PAD, top + _PAD), "none", fill=(150, 150, 150), font=font)
        draw.text((left + 2, top + side + 1), label, fill=(90, 90, 90), font=font)


def _draw_stain_plot(draw, origin, entries: list[SlideQC], target, font) -> None:
    """Every slide's H and E vectors before (hollow, numbered), after (filled), and the target."""
    x0, y0 = origin
    side = _PLOT_SIDE
    points = []  # (xy on the plane, stain, filled, label)
    for number, entry in enumerate(entries, start=1):
        for matrix, filled in ((entry.stains_before, False), (entry.stains_after, True)):
            if matrix is not None:
                for k in range(2):
                    points.append((_project(matrix[:, k]), k, filled, str(number)))
    marks = [] if target is None else [(_project(target[:, k]), k) for k in range(2)]
    every = np.array([p[0] for p in points] + [m[0] for m in marks])
    low, high = every.min(axis=0), every.max(axis=0)
    span = max(float((high - low).max()), 1e-3) * 1.15
    centre = (low + high) / 2

    def to_pixels(xy):
        u, v = (np.asarray(xy) - centre) / span + 0.5
        return x0 + u * side, y0 + (1 - v) * side

    draw.rectangle((x0, y0, x0 + side, y0 + side), outline=(120, 120, 120))
    for xy, stain, filled, label in points:
        px, py = to_pixels(xy)
        colour = _STAIN_COLOURS[stain]
        draw.ellipse(
            (px - 4, py - 4, px + 4, py + 4), outline=colour, fill=colour if filled else None
        )
        if not filled:
            draw.text((px + 5, py - 7), label, fill=colour, font=font)
    for xy, stain in marks:
        px, py = to_pixels(xy)
        draw.line((px - 8, py - 8, px + 8, py + 8), fill="black", width=2)
        draw.line((px - 8, py + 8, px + 8, py - 8), fill="black", width=2)
        draw.text((px + 9, py + 2), "target " + "HE"[stain], fill="black", font=font)
    legend_x = x0 + side + 2 * _PAD
    legend = [
        ("Stain vectors in optical density,", (0, 0, 0)),
        ("projected orthogonally to gray", (0, 0, 0)),
        ("hollow, numbered: before", (0, 0, 0)),
        ("filled: after (measured on the output)", (0, 0, 0)),
        ("cross: target", (0, 0, 0)),
        ("haematoxylin", _STAIN_COLOURS[0]),
        ("eosin", _STAIN_COLOURS[1]),
    ]
    for i, (text, colour) in enumerate(legend):
        draw.text((legend_x, y0 + i * _LINE), text, fill=colour, font=font)


def _project(vector: np.ndarray) -> np.ndarray:
    """A stain vector, made unit length, on the plane orthogonal to gray: ``(2,)``."""
    vector = np.asarray(vector, dtype=np.float64)
    return _PLANE @ (vector / max(float(np.linalg.norm(vector)), 1e-12))
