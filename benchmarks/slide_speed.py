"""Whole-slide speed and memory: read, decode, normalize, encode and write a slide end to end.

Builds tiled JPEG BigTIFF slides from real H&E tiles (the CAMELYON17 tiles of
``../shared/data``, cut in 256-pixel quarters and rotated, laid out at random, the rightmost
quarter glass) and measures

- the plain copy of a slide through the same reader and writer (``open_slide``, its tiles,
  ``write_pyramid``): the input/output limit of the machine, which the ratios refer to;
- each method end to end, in megapixels per second and as a fraction of the copy's throughput
  (pending: :func:`normalize_run`);
- the peak resident memory of every run, each in a fresh process, on the slide of ``--side``
  pixels (20,480 by default) and on those of ``--memory-sides`` (10,000 and 40,000);
- the scaling from 1 to 2 Dask workers (pending: :func:`scaling`);
- the fixed mapping of each classic method (``normalizer.fixed_mapping``): megapixels per second
  on ``--map-tiles`` tissue tiles of 256 x 256 from the slide, its colour table warm, next to
  ``transform_with_status(X, source=...)`` (every pixel computed, no table) and to the method's
  own per-tile code with the same statistics (without the screening of tiles); and the cost of
  warming the table on every tile of the slide, with the number of colours it holds.

    python benchmarks/slide_speed.py --out results
    python benchmarks/slide_speed.py --quick --out /tmp/slide-speed  # slides of 2048 pixels

The slides are written to ``--work`` (by default a temporary folder, removed at the end).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _common import (
    CLASSIC_STAIN_METHODS,
    ROOT,
    STAIN_METHODS,
    Timer,
    best_time,
    configure_logging,
    environment,
    frozen_config,
    markdown_table,
    method_roster,
    write_json,
    write_text,
)
from speed import load_tiles

logger = logging.getLogger("slide_speed")

#: Side of the real crops the slides are laid out with.
CROP = 256
#: Fraction of a slide's columns, on the right, that are glass.
GLASS = 0.25
#: Microns per pixel and objective power recorded in the slides.
MPP, MAGNIFICATION = 0.5, 20.0
#: The options a ``--quick`` run replaces.
QUICK = {"side": 2048, "memory_sides": (1024,), "map_tiles": 32, "repeats": 1}


@dataclass(frozen=True)
class Config:
    """One run, built once from the command line (see ``--help`` for each field)."""

    out: Path
    work: Path | None
    side: int
    memory_sides: tuple[int, ...]
    tile_size: int
    methods: tuple[str, ...]
    map_tiles: int
    repeats: int
    timeout: float


# ------------------------------------------------------------------------------------ slides
def slide_crops(pool: list[np.ndarray]) -> list[np.ndarray]:
    """The crops a slide is laid out with: each 256 x 256 tile of ``pool`` in 4 rotations."""
    return [np.ascontiguousarray(np.rot90(tile, k)) for k in range(4) for tile in pool]


def mosaic_rows(
    crops: list[np.ndarray], side: int, tile_size: int, seed: int = 0
) -> Iterator[np.ndarray]:
    """Rows ``(tile_size, side, 3)`` of a ``side`` x ``side`` mosaic of random crops.

    The rightmost :data:`GLASS` of the columns are white. Made one row at a time: a slide of
    40,000 pixels is never held.
    """
    rng = np.random.default_rng(seed)
    n = -(-side // CROP)
    picks = rng.integers(0, len(crops), (n, n))
    tissue_width = side - round(GLASS * side)
    for top in range(0, side, tile_size):
        first, last = top // CROP, (min(top + tile_size, side) - 1) // CROP
        band = np.concatenate(
            [np.concatenate([crops[k] for k in picks[r]], axis=1) for r in range(first, last + 1)]
        )
        row = np.ascontiguousarray(band[top - first * CROP :][: min(tile_size, side - top), :side])
        row[:, tissue_width:] = 255
        yield row


def build_slide(path: Path, crops: list[np.ndarray], side: int, tile_size: int) -> Path:
    """Write a ``side`` x ``side`` slide of real crops (:func:`mosaic_rows`) to ``path``."""
    from stainstyle.wsi import write_pyramid

    with Timer() as timer:
        write_pyramid(
            path,
            mosaic_rows(crops, side, tile_size),
            size=(side, side),
            tile_size=tile_size,
            mpp=MPP,
            magnification=MAGNIFICATION,
        )
    logger.info(
        "built %s: %dx%d, %.0f MB, %.1f s",
        path.name,
        side,
        side,
        path.stat().st_size / 1e6,
        timer.seconds,
    )
    return path


def slide_rows(slide, tile_size: int) -> Iterator[list[np.ndarray]]:
    """Level 0 of an open slide as rows of tiles, left to right, read tile by tile.

    Tiles of the last row and column are cropped to the slide, as ``write_pyramid`` takes them.
    """
    from stainstyle.wsi import tile_grid

    grid = tile_grid(slide, tile_size)
    width, height = slide.dimensions
    for row in range(grid.shape[0]):
        top = row * tile_size
        yield [
            grid.read(row, col)[: height - top, : width - col * tile_size]
            for col in range(grid.shape[1])
        ]


# ------------------------------------------------------------------------- end-to-end runs
def copy_slide(source: Path, destination: Path, tile_size: int) -> None:
    """The plain copy: every tile read and decoded, then encoded and written, unchanged."""
    from stainstyle.wsi import open_slide, write_pyramid

    with open_slide(source) as slide:
        write_pyramid(
            destination,
            slide_rows(slide, tile_size),
            size=slide.dimensions,
            tile_size=tile_size,
            mpp=slide.mpp,
            magnification=slide.objective_power,
        )


def normalize_run(method: str, source: Path, destination: Path, tile_size: int) -> None:
    """One method end to end: read, decode, normalize, encode and write ``source``.

    Pending: to be completed with ``stainstyle.wsi.normalize_slide`` once it is in the library
    (the normalizer fitted as :func:`fitted_normalizer` does, its source statistics measured
    on the slide, the output written as :func:`copy_slide` writes it). Until then the report
    lists the method as pending.

    Raises
    ------
    NotImplementedError
        Always, for now.
    """
    raise NotImplementedError(
        f"{method}: end to end needs stainstyle.wsi.normalize_slide, not in this version yet"
    )


def scaling(method: str, source: Path, work: Path) -> dict:
    """Throughput with 2 Dask workers over that with 1, on ``source``, for ``method``.

    Pending: to be completed with the slide normalizer's Dask entry point
    (``stainstyle.wsi.normalize_slides``) once it is in the library.

    Raises
    ------
    NotImplementedError
        Always, for now.
    """
    raise NotImplementedError(
        f"{method}: scaling needs stainstyle.wsi.normalize_slides, not in this version yet"
    )


def run_child(kind: str, source: Path, destination: Path, tile_size: int) -> dict:
    """One end-to-end run in this process: seconds, megapixels and the peak resident memory.

    Parameters
    ----------
    kind : str
        ``"copy"`` or a method name.
    source, destination : pathlib.Path
        The slide read and the slide written.
    tile_size : int
        Tile side of the reads and of the output.

    Returns
    -------
    dict
        ``seconds``, ``megapixels``, ``mp_per_s`` and ``peak_rss_mb``: the process's
        resident-memory high-water mark (the kernel's ``VmHWM``, from ``getrusage``), which in
        a fresh process covers this run and the interpreter; or ``pending`` with the reason.
    """
    from stainstyle.wsi import open_slide

    with open_slide(source) as slide:
        width, height = slide.dimensions
    try:
        with Timer() as timer:
            if kind == "copy":
                copy_slide(source, destination, tile_size)
            else:
                normalize_run(kind, source, destination, tile_size)
    except NotImplementedError as pending:
        return {"pending": str(pending)}
    megapixels = width * height / 1e6
    return {
        "seconds": timer.seconds,
        "megapixels": megapixels,
        "mp_per_s": megapixels / timer.seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6,
    }


def fresh_process_run(kind: str, source: Path, side: int, config: Config) -> dict:
    """:func:`run_child` in a fresh Python process; a row with ``error`` when it fails."""
    destination = source.with_name(f"{source.stem}-{kind}.tif")
    command = [
        sys.executable, str(Path(__file__).resolve()), "--child", kind, str(source),
        str(destination), "--tile-size", str(config.tile_size),
    ]  # fmt: skip
    row = {"run": kind, "side": side}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=config.timeout)
    except subprocess.TimeoutExpired:
        return {**row, "error": f"over {config.timeout:g} s"}
    finally:
        destination.unlink(missing_ok=True)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return {**row, "error": tail[0]}
    row |= json.loads(done.stdout.strip().splitlines()[-1])
    if "pending" not in row:
        logger.info(
            "%s %dx%d: %.1f MP/s, peak %.0f MB",
            kind, side, side, row["mp_per_s"], row["peak_rss_mb"],
        )  # fmt: skip
    return row


def end_to_end_rows(slides: dict[int, Path], config: Config) -> list[dict]:
    """The copy and every method on every slide, each in a fresh process; ``x_copy`` added."""
    rows = []
    for side, path in slides.items():
        runs = [fresh_process_run(kind, path, side, config) for kind in ("copy", *config.methods)]
        copy_rate = runs[0].get("mp_per_s")
        for row in runs[1:]:
            if copy_rate and "mp_per_s" in row:
                row["x_copy"] = row["mp_per_s"] / copy_rate
        rows += runs
    return rows


# --------------------------------------------------------------------------- fixed mappings
def fitted_normalizer(method: str, target: np.ndarray):
    """The method with the registry's defaults, fitted on the target tiles."""
    (make,) = method_roster({method: method}).values()
    return make().fit(target)


def mapping_rows(
    methods: list[str], target: np.ndarray, slide_path: Path, config: Config
) -> list[dict]:
    """Throughput of each method's fixed mapping, warm and per call, and its warming cost.

    The statistics are measured on ``config.map_tiles`` tissue tiles sampled from the slide, and
    the throughputs measured on those tiles. Warming: every tile of the slide mapped by a new
    mapping, then again (reading excluded): the difference is the cost of computing the
    slide's colours.
    """
    from stainstyle.wsi import open_slide, sample_tiles

    with open_slide(slide_path) as slide:
        tiles = sample_tiles(slide, config.map_tiles, size=CROP, mpp=MPP)
    rows, mappings = [], {}
    for method in methods:
        normalizer = fitted_normalizer(method, target)
        statistics = normalizer.source_statistics(tiles)
        rows.append({"method": method, **mapping_rates(normalizer, statistics, tiles, config)})
        mappings[method] = normalizer.fixed_mapping(statistics)
    for row, warming in zip(rows, slide_warming(mappings, slide_path, config), strict=True):
        row.update(warming)
        logger.info("mapping %s: %s", row["method"], row)
    return rows


def mapping_rates(normalizer, statistics, tiles: np.ndarray, config: Config) -> dict:
    """MP/s on ``tiles``: the fixed mapping warm, ``transform(source=)``, the method's own code.

    The own code is the method's ``_transform_batch`` on the tiles with the statistics, without
    the screening of background and uniform tiles: what the mapping's colours are computed by.
    """
    mapping = normalizer.fixed_mapping(statistics)
    mapping.transform(tiles)
    batch_size = normalizer.batch_size

    def own_code() -> None:
        for start in range(0, len(tiles), batch_size):
            normalizer._transform_tissue(
                tiles[start : start + batch_size], context=statistics.statistics
            )

    def rate(function) -> float:
        return tiles.size / 3e6 / best_time(function, config.repeats)

    return {
        "warm_mp_per_s": rate(lambda: mapping.transform_with_status(tiles)),
        "per_call_mp_per_s": rate(
            lambda: normalizer.transform_with_status(tiles, source=statistics)
        ),
        "own_code_mp_per_s": rate(own_code),
    }


def slide_warming(mappings: dict, slide_path: Path, config: Config) -> list[dict]:
    """Seconds of mapping every tile of the slide with new mappings (cold), then again (warm)."""
    from stainstyle.wsi import open_slide

    seconds = {method: [0.0, 0.0] for method in mappings}
    for rep in (0, 1):
        with open_slide(slide_path) as slide:
            for row in slide_rows(slide, config.tile_size):
                for method, mapping in mappings.items():
                    with Timer() as timer:
                        mapping.transform_with_status(row)
                    seconds[method][rep] += timer.seconds
    return [
        {
            "slide_colours": mapping.n_colours,
            "slide_cold_s": seconds[method][0],
            "slide_warm_s": seconds[method][1],
            "warming_s": seconds[method][0] - seconds[method][1],
        }
        for method, mapping in mappings.items()
    ]


# ---------------------------------------------------------------------------------- reports
def _rate(row: dict) -> str:
    if "error" in row or "pending" in row:
        return row.get("error") or "pending"
    ratio = f" ({row['x_copy']:.2f}x copy)" if "x_copy" in row else ""
    return f"{row['mp_per_s']:.1f}{ratio}, {row['peak_rss_mb']:.0f} MB"


def markdown(report: dict) -> str:
    """The report's tables: end to end per slide, fixed mappings, scaling."""
    sides = sorted({row["side"] for row in report["end_to_end"]})
    runs = list(dict.fromkeys(row["run"] for row in report["end_to_end"]))
    cells = [
        [run]
        + [
            _rate(next(r for r in report["end_to_end"] if r["run"] == run and r["side"] == side))
            for side in sides
        ]
        for run in runs
    ]
    lines = markdown_table(["run", *(f"{s}x{s}: MP/s, peak RSS" for s in sides)], cells)
    lines.append(
        "\nEnd to end (read, decode, normalize, encode, write), each run in a fresh process; "
        "peak RSS is the process's high-water mark."
    )
    header = ["method", "warm mapping", "transform(source=)", "own per-tile code"]
    header += ["slide colours", "warming s"]
    cells = [
        [
            row["method"],
            *(f"{row[key]:.1f}" for key in ("warm_mp_per_s", "per_call_mp_per_s")),
            f"{row['own_code_mp_per_s']:.1f}",
            f"{row['slide_colours']:,}" if row["slide_colours"] else "no table",
            f"{row['warming_s']:.1f}",
        ]
        for row in report["mapping"]
    ]
    lines += ["", *markdown_table(header, cells)]
    lines.append(
        f"\nFixed mappings, MP/s on {report['map_tiles']} tiles of 256x256 from the "
        f"{report['side']}x{report['side']} slide; warming: seconds to compute the colours of "
        "every tile of the slide."
    )
    lines.append(f"\nScaling from 1 to 2 Dask workers: {report['scaling']}.")
    return "\n".join(lines)


def slide_main(config: Config) -> dict:
    """Build the slides, run everything, write ``slide_speed.json`` and ``slide_speed.md``."""
    target, pool, origin = load_tiles()
    crops = slide_crops(pool)
    methods = [m for m in config.methods if m in CLASSIC_STAIN_METHODS]
    with tempfile.TemporaryDirectory(prefix="slide-speed-") as temporary:
        work = config.work or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        slides = {
            side: build_slide(work / f"slide-{side}.tif", crops, side, config.tile_size)
            for side in dict.fromkeys((config.side, *config.memory_sides))
        }
        end_to_end = end_to_end_rows(slides, config)
        mapping = mapping_rows(methods, target, slides[config.side], config)
        try:
            ratios = {m: scaling(m, slides[config.side], work) for m in config.methods}
        except NotImplementedError as pending:
            ratios = f"pending ({pending})"
    report = {
        "environment": environment("cpu"),
        "data": origin,
        "side": config.side,
        "tile_size": config.tile_size,
        "glass": GLASS,
        "map_tiles": config.map_tiles,
        "end_to_end": end_to_end,
        "mapping": mapping,
        "scaling": ratios,
    }
    write_json(config.out / "slide_speed.json", report)
    table = markdown(report)
    write_text(config.out / "slide_speed.md", table + "\n")
    print(f"Data: {origin}\n\n{table}")
    return report


# ------------------------------------------------------------------------------ command line
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    parser.add_argument("--work", type=Path, default=None, help="folder for the slides")
    parser.add_argument("--side", type=int, default=20480, help="slide side of the throughputs")
    parser.add_argument(
        "--memory-sides", default="10000,40000", help="more slide sides, comma-separated"
    )
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument(
        "--methods", default=",".join(CLASSIC_STAIN_METHODS), help=f"of {','.join(STAIN_METHODS)}"
    )
    parser.add_argument("--map-tiles", type=int, default=256, help="tiles of the mapping table")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    parser.add_argument("--quick", action="store_true", help="small slides, a smoke run")
    parser.add_argument(
        "--child", nargs=3, metavar=("KIND", "SOURCE", "DESTINATION"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    args.methods = tuple(m for m in args.methods.split(",") if m)
    args.memory_sides = tuple(int(s) for s in args.memory_sides.split(",") if s)
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the report."""
    args = parse_args(argv)
    warnings.simplefilter("ignore")
    if args.child:
        kind, source, destination = args.child
        result = run_child(kind, Path(source), Path(destination), args.tile_size)
        print(json.dumps(result))
        return result
    configure_logging("slide_speed")
    config = frozen_config(Config, args, QUICK)
    started = time.perf_counter()
    report = slide_main(config)
    logger.info("done in %.0f s", time.perf_counter() - started)
    return report


if __name__ == "__main__":
    main()
