"""benchmarks/slide_speed.py: slides built from real tiles, the plain copy, the mapping table."""

from __future__ import annotations

import pytest
from _support import ROOT, load_script, require_data, require_module

require_module("tifffile", extra="wsi")


@pytest.fixture(scope="module")
def bench():
    require_data("camelyon17_tiles")
    return load_script(ROOT / "benchmarks" / "slide_speed.py")


@pytest.fixture(scope="module")
def slide(bench, tmp_path_factory):
    _, pool, _ = bench.load_tiles()
    folder = tmp_path_factory.mktemp("slides")
    bench.build_slide(folder / "twin.tif", bench.slide_crops(pool), 700, 256)
    return bench.build_slide(folder / "slide.tif", bench.slide_crops(pool), 700, 256)


def config(bench, tmp_path, **changes):
    options = dict(
        out=tmp_path, work=None, side=700, memory_sides=(), sst_side=512, scaling_side=512,
        scaling_slides=2, scaling_methods=("reinhard",), tile_size=256, methods=("reinhard",),
        map_tiles=4, repeats=1, timeout=300.0,
    )  # fmt: skip
    return bench.Config(**(options | changes))


def test_mosaic_rows_make_the_slide_with_its_glass(bench):
    _, pool, _ = bench.load_tiles()
    rows = list(bench.mosaic_rows(bench.slide_crops(pool), 700, 256))
    assert [row.shape for row in rows] == [(256, 700, 3), (256, 700, 3), (188, 700, 3)]
    glass = 700 - round(bench.GLASS * 700)
    assert all((row[:, glass:] == 255).all() and (row[:, :glass] < 250).any() for row in rows)


def test_the_copy_reads_and_writes_every_pixel_of_the_slide(bench, slide, tmp_path):
    from stainstyle.wsi import open_slide

    bench.copy_slide(slide, tmp_path / "copy.tif", 256)
    with open_slide(slide) as source, open_slide(tmp_path / "copy.tif") as copy:
        assert copy.dimensions == source.dimensions == (700, 700)
        assert copy.mpp == source.mpp == (bench.MPP, bench.MPP)
        rows = list(bench.slide_rows(source, 256))
        assert [sum(t.shape[1] for t in row) for row in rows] == [700] * 3
        assert [row[0].shape[0] for row in rows] == [256, 256, 188]


@pytest.fixture(scope="module")
def models(bench, tmp_path_factory):
    target, _, _ = bench.load_tiles()
    return bench.save_models(["reinhard"], target[:4], tmp_path_factory.mktemp("models"))


def test_each_run_reports_its_throughput_and_peak_memory(bench, slide, models, tmp_path):
    rows = bench.end_to_end_rows({700: slide}, models, config(bench, tmp_path))
    copy, reinhard = rows
    assert copy["run"] == "copy" and copy["megapixels"] == pytest.approx(0.49)
    assert copy["mp_per_s"] > 0 and copy["peak_rss_mb"] > 50
    assert reinhard["run"] == "reinhard" and "error" not in reinhard, reinhard
    assert reinhard["megapixels"] == pytest.approx(0.49) and reinhard["peak_rss_mb"] > 50
    assert reinhard["x_copy"] == pytest.approx(reinhard["mp_per_s"] / copy["mp_per_s"])
    assert not list(slide.parent.glob("*-reinhard.tif"))  # outputs removed


def test_a_failing_run_is_a_row_with_its_error(bench, models, tmp_path):
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not a slide")
    row = bench.fresh_process_run(
        "reinhard", broken, 1, config(bench, tmp_path), models["reinhard"]
    )
    assert row["run"] == "reinhard" and "broken.tif" in row["error"]


def test_scaling_runs_the_cohort_on_one_and_two_workers(bench, slide, models):
    (row,) = bench.scaling_rows(["reinhard"], models, [slide, slide.with_name("twin.tif")])
    assert row["slides"] == 2 and row["megapixels"] == pytest.approx(0.98)
    assert row["ratio"] == pytest.approx(row["two_workers_mp_per_s"] / row["one_worker_mp_per_s"])


def test_the_mapping_rows_measure_warm_per_call_and_warming(bench, slide, tmp_path):
    target, _, _ = bench.load_tiles()
    (row,) = bench.mapping_rows(["wsics"], target, slide, config(bench, tmp_path))
    assert row["method"] == "wsics" and row["slide_colours"] > 1000
    for key in ("warm_mp_per_s", "per_call_mp_per_s", "own_code_mp_per_s"):
        assert row[key] > 0
    assert row["slide_cold_s"] > row["slide_warm_s"] > 0
