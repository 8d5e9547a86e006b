"""Whole-slide speed and memory: read, decode, normalize, encode and write a slide end to end.

Builds tiled JPEG BigTIFF slides from real H&E tiles (the CAMELYON17 tiles of
``../shared/data``, cut in 256-pixel quarters and rotated, laid out at random, the rightmost
quarter glass) and measures

- the plain copy of a slide through the same reader and writer (``open_slide``, its tiles,
  ``write_pyramid``): the input/output limit of the machine, which the ratios refer to;
- each method end to end (``stainstyle.wsi.normalize_slide``: the slide's statistics on its
  tissue sample, then every tile through its fixed mapping), in megapixels per second and as a
  fraction of the copy's throughput; stain-style transfer (CPU preset) on a slide of
  ``--sst-side`` pixels (4,096), the others on every other slide;
- the peak resident memory of every run, each in a fresh process, on the slide of ``--side``
  pixels (20,480 by default) and on those of ``--memory-sides`` (10,000 and 40,000);
- the scaling of a cohort (``stainstyle.wsi.normalize_slides``, ``--scaling-slides`` slides of
  ``--scaling-side`` pixels) from a ``LocalCluster`` of 1 worker process to one of 2;
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
    ROOT,
    STAIN_METHODS,
    Timer,
    best_time,
    configure_logging,
    environment,
    frozen_config,
    markdown_table,
    method_roster,
    peak_memory_bytes,
    write_json,
    write_text,
)
from speed import load_tiles

from stainstyle.registry import NEURAL_METHODS

logger = logging.getLogger("slide_speed")

#: Side of the real crops the slides are laid out with.
CROP = 256
#: Fraction of a slide's columns, on the right, that are glass.
GLASS = 0.25
#: Microns per pixel and objective power recorded in the slides.
MPP, MAGNIFICATION = 0.5, 20.0
#: Parameters of the methods: stain-style transfer at the CPU preset, trained one epoch (its
#: throughput does not depend on how well it is trained).
MODEL_PARAMS = {"sst": {"preset": "cpu", "max_epochs": 1, "lambda_fp": 0.0}}
#: The options a ``--quick`` run replaces.
QUICK = {
    "side": 2048,
    "memory_sides": (1024,),
    "sst_side": 512,
    "scaling_side": 1024,
    "scaling_slides": 2,
    "map_tiles": 32,
    "repeats": 1,
}


@dataclass(frozen=True)
class Config:
    """One run, built once from the command line (see ``--help`` for each field)."""

    out: Path
    work: Path | None
    side: int
    memory_sides: tuple[int, ...]
    sst_side: int
    scaling_side: int
    scaling_slides: int
    scaling_methods: tuple[str, ...]
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


def normalize_run(model: Path, source: Path, destination: Path, tile_size: int) -> None:
    """One method end to end: read, decode, normalize, encode and write ``source``.

    The normalizer saved in ``model`` (fitted on the target tiles by :func:`save_models`) is
    loaded before the clock starts; :func:`stainstyle.wsi.normalize_slide` then measures the
    slide's source statistics on its tissue sample and writes every tile through the slide's
    fixed mapping, as :func:`copy_slide` writes the copy (JPEG, quality 90).
    """
    from stainstyle import load
    from stainstyle.wsi import normalize_slide

    normalizer = load(model)
    with Timer() as timer:
        result = normalize_slide(
            source, normalizer, destination, tile_size=tile_size, overwrite=True, progress=False
        )
    if result.status != "written":
        raise RuntimeError(f"{source.name}: {result.status}: {result.error}")
    return timer.seconds


def save_models(methods: list[str], target: np.ndarray, folder: Path) -> dict[str, Path]:
    """Each method fitted on the target tiles (:data:`MODEL_PARAMS`), saved under ``folder``."""
    roster = method_roster({m: m for m in methods}, MODEL_PARAMS)
    folders = {}
    for method, make in roster.items():
        with Timer() as timer:
            make().fit(target).save_pretrained(folder / method)
        logger.info("fitted and saved %s in %.1f s", method, timer.seconds)
        folders[method] = folder / method
    return folders


def scaling_rows(methods: list[str], models: dict[str, Path], slides: list[Path]) -> list[dict]:
    """Throughput of a cohort on a ``LocalCluster`` of 1 and of 2 worker processes.

    The cohort is ``slides``, one slide per task; each cluster is started before the clock
    and runs every method once (first run warms the workers' imports, then the timed one).
    Returns one row per method: seconds and MP/s with 1 and 2 workers, and their ratio.
    """
    import distributed

    from stainstyle import load
    from stainstyle.wsi import normalize_slides

    megapixels = sum(_megapixels(path) for path in slides)
    seconds = {method: {} for method in methods}
    for workers in (1, 2):
        with (
            distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            distributed.Client(cluster) as client,
            tempfile.TemporaryDirectory(prefix="scaling-") as out,
        ):
            for method in methods:
                normalizer = load(models[method])
                for _ in range(2):  # the first warms the workers
                    with Timer() as timer:
                        manifest = normalize_slides(
                            slides, normalizer, out, client=client, overwrite=True,
                            progress=False, qc=False,
                        )  # fmt: skip
                failed = [r for r in manifest.results if r.status != "written"]
                if failed:
                    raise RuntimeError(f"{method}: {failed[0].source}: {failed[0].error}")
                seconds[method][workers] = timer.seconds
                logger.info("scaling %s, %d workers: %.1f s", method, workers, timer.seconds)
    return [
        {
            "method": method,
            "slides": len(slides),
            "megapixels": megapixels,
            "one_worker_mp_per_s": megapixels / seconds[method][1],
            "two_workers_mp_per_s": megapixels / seconds[method][2],
            "ratio": seconds[method][1] / seconds[method][2],
        }
        for method in methods
    ]


def _megapixels(path: Path) -> float:
    from stainstyle.wsi import open_slide

    with open_slide(path) as slide:
        width, height = slide.dimensions
    return width * height / 1e6


def run_child(kind: str, source: Path, destination: Path, tile_size: int) -> dict:
    """One end-to-end run in this process: seconds, megapixels and the peak resident memory.

    Parameters
    ----------
    kind : str
        ``"copy"``, or the folder of a saved normalizer (:func:`save_models`).
    source, destination : pathlib.Path
        The slide read and the slide written.
    tile_size : int
        Tile side of the reads and of the output.

    Returns
    -------
    dict
        ``seconds``, ``megapixels``, ``mp_per_s`` and ``peak_rss_mb``: the process's
        resident-memory high-water mark (:func:`peak_memory_bytes`), which in a fresh process
        covers this run, the interpreter and a loaded model.
    """
    if kind == "copy":
        with Timer() as timer:
            copy_slide(source, destination, tile_size)
        seconds = timer.seconds
    else:
        seconds = normalize_run(Path(kind), source, destination, tile_size)
    megapixels = _megapixels(source)
    return {
        "seconds": seconds,
        "megapixels": megapixels,
        "mp_per_s": megapixels / seconds,
        "peak_rss_mb": peak_memory_bytes() / 1e6,
    }


def fresh_process_run(
    kind: str, source: Path, side: int, config: Config, model: Path | None = None
) -> dict:
    """:func:`run_child` in a fresh Python process; a row with ``error`` when it fails.

    ``kind`` is ``"copy"`` or a method, whose saved normalizer is ``model``.
    """
    destination = source.with_name(f"{source.stem}-{kind}.tif")
    command = [
        sys.executable, str(Path(__file__).resolve()), "--child", str(model or kind), str(source),
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
    logger.info(
        "%s %dx%d: %.1f MP/s, peak %.0f MB",
        kind, side, side, row["mp_per_s"], row["peak_rss_mb"],
    )  # fmt: skip
    return row


def end_to_end_rows(slides: dict[int, Path], models: dict[str, Path], config: Config) -> list[dict]:
    """The copy and the methods on every slide, each in a fresh process; ``x_copy`` added.

    Stain-style transfer runs on the slide of ``config.sst_side`` only, every other method on
    every other slide.
    """
    rows = []
    for side, path in slides.items():
        methods = [m for m in models if (m in NEURAL_METHODS) == (side == config.sst_side)]
        runs = [fresh_process_run("copy", path, side, config)]
        runs += [fresh_process_run(m, path, side, config, models[m]) for m in methods]
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
def _rate(row: dict | None) -> str:
    if row is None:
        return ""
    if "error" in row:
        return row["error"]
    ratio = f" ({row['x_copy']:.2f}x copy)" if "x_copy" in row else ""
    return f"{row['mp_per_s']:.1f}{ratio}, {row['peak_rss_mb']:.0f} MB"


def markdown(report: dict) -> str:
    """The report's tables: end to end per slide, fixed mappings, scaling."""
    rows = report["end_to_end"]
    sides = sorted({row["side"] for row in rows})
    runs = list(dict.fromkeys(row["run"] for row in rows))
    found = {(row["run"], row["side"]): row for row in rows}
    cells = [[run, *(_rate(found.get((run, side))) for side in sides)] for run in runs]
    lines = markdown_table(["run", *(f"{s}x{s}: MP/s, peak RSS" for s in sides)], cells)
    lines.append(
        "\nEnd to end (read, decode, normalize, encode, write; JPEG quality 90, tiles of "
        f"{report['tile_size']}), each run in a fresh process; peak RSS is the process's "
        "high-water mark. The copy reads and writes the same slide through the same reader "
        "and writer, unchanged."
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
    header = ["method", "1 worker MP/s", "2 workers MP/s", "2 / 1"]
    cells = [
        [
            row["method"],
            f"{row['one_worker_mp_per_s']:.1f}",
            f"{row['two_workers_mp_per_s']:.1f}",
            f"{row['ratio']:.2f}",
        ]
        for row in report["scaling"]
    ]
    if cells:
        lines += ["", *markdown_table(header, cells)]
        first = report["scaling"][0]
        lines.append(
            f"\nA cohort of {first['slides']} slides ({first['megapixels']:.0f} MP in all) on "
            "a LocalCluster of 1, then 2 worker processes with one thread each."
        )
    return "\n".join(lines)


def slide_main(config: Config) -> dict:
    """Build the slides, run everything, write ``slide_speed.json`` and ``slide_speed.md``."""
    target, pool, origin = load_tiles()
    crops = slide_crops(pool)
    classic = [m for m in config.methods if m not in NEURAL_METHODS]
    with tempfile.TemporaryDirectory(prefix="slide-speed-") as temporary:
        work = config.work or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        models = save_models(list(config.methods), target, work / "models")
        sides = (config.side, *config.memory_sides)
        if len(classic) < len(config.methods):
            sides += (config.sst_side,)
        slides = {
            side: build_slide(work / f"slide-{side}.tif", crops, side, config.tile_size)
            for side in dict.fromkeys(sides)
        }
        end_to_end = end_to_end_rows(slides, models, config)
        mapping = mapping_rows(classic, target, slides[config.side], config)
        cohort = [
            build_slide(work / f"cohort-{i}.tif", crops, config.scaling_side, config.tile_size)
            for i in range(config.scaling_slides)
        ]
        scaling = scaling_rows([m for m in config.scaling_methods if m in models], models, cohort)
    report = {
        "environment": environment("cpu"),
        "data": origin,
        "side": config.side,
        "tile_size": config.tile_size,
        "glass": GLASS,
        "map_tiles": config.map_tiles,
        "end_to_end": end_to_end,
        "mapping": mapping,
        "scaling": scaling,
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
    parser.add_argument("--sst-side", type=int, default=4096, help="slide side of sst")
    parser.add_argument("--scaling-side", type=int, default=8192, help="cohort slide side")
    parser.add_argument("--scaling-slides", type=int, default=4, help="cohort size")
    parser.add_argument(
        "--scaling-methods", default="reinhard,macenko", help="methods of the scaling runs"
    )
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument(
        "--methods", default=",".join(STAIN_METHODS), help=f"of {','.join(STAIN_METHODS)}"
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
    args.scaling_methods = tuple(m for m in args.scaling_methods.split(",") if m)
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
