"""Normalizing a cohort on Dask: ``stainstyle.wsi.normalize_slides``, its manifest and QC sheet.

Two runs start a real ``LocalCluster`` of 2 worker processes (``client=None``): a cohort with a
corrupt slide, run twice, and a run whose worker is killed while it writes. The rest checks the
planning, the manifest and the sheet without a cluster.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import threading
import time

import numpy as np
import pytest
from _support import require_module
from _wsi_support import file_hashes, fitted_normalizer, temporaries, threaded_cluster, write_slides
from PIL import Image

from stainstyle.wsi import (
    Manifest,
    SlideQC,
    SlideResult,
    normalize_slides,
    open_slide,
    plan_outputs,
    qc_sheet,
    read_manifest,
    thumbnail_side,
    write_manifest,
)

require_module("distributed", extra="wsi")


def read_csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------------------- on a real cluster
def test_cohort_on_a_local_cluster_reports_the_corrupt_slide_and_resumes(tmp_path):
    slides = write_slides(tmp_path / "slides", 3)
    corrupt = tmp_path / "slides" / "corrupt.svs"
    corrupt.write_bytes(slides[0].read_bytes()[:5000])  # a truncated TIFF
    paths = [*slides, corrupt]
    before = file_hashes(paths)
    out = tmp_path / "out"

    manifest = normalize_slides(paths, fitted_normalizer("macenko"), out, workers=2)

    assert [r.status for r in manifest.results] == ["written"] * 3 + ["failed"]
    assert [r.output.name for r in manifest.results] == [f"slide-{i}.tiff" for i in range(3)] + [
        "corrupt.tiff"
    ]
    failure = manifest.failed[0]
    assert failure.input == corrupt and "truncated" in failure.error
    assert not (out / "corrupt.tiff").exists()
    for result in manifest.written:
        assert result.tiles == 8 * 6 and 0 < result.passthrough_tiles < result.tiles
        with open_slide(result.output) as slide:
            assert slide.dimensions == (2048, 1536) and slide.mpp == pytest.approx((0.5, 0.5))
    rows = read_csv(out / "manifest.csv")
    assert list(rows[0]) == [
        "slide", "status", "seconds", "tiles", "passthrough_tiles", "output", "error"
    ]  # fmt: skip
    assert [(row["slide"], row["status"]) for row in rows] == [
        (str(r.input), r.status) for r in manifest.results
    ]
    document = json.loads((out / "manifest.json").read_text())
    assert document["run"]["normalizer"] == "MacenkoNormalizer"
    first = document["slides"][0]
    assert np.array(first["stains_before"]).shape == (3, 2)
    assert max(first["stain_angles_after"]) < 15.0  # the output has the target's stains
    with Image.open(out / "qc.png") as sheet:
        assert sheet.format == "PNG" and sheet.width >= 800 and sheet.height >= 800
    assert file_hashes(paths) == before

    again = normalize_slides(paths, fitted_normalizer("macenko"), out, workers=2, qc=False)

    assert [r.status for r in again.results] == ["skipped"] * 3 + ["failed"]
    assert [r.tiles for r in again.skipped] == [48] * 3  # carried over from the first manifest
    assert again.qc_sheet is None
    assert file_hashes(paths) == before
    assert not temporaries(tmp_path)


def test_worker_killed_while_writing_then_rerun_completes(tmp_path):
    slides = write_slides(tmp_path / "slides", 4)
    before = file_hashes(slides)
    out = tmp_path / "out"
    killed = []

    def kill_a_writer():
        # The atomic writer's private folder names the process writing: kill that worker.
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            for entry in temporaries(out) if out.is_dir() else []:
                match = re.search(r"\.(\d+)-[0-9a-f]{8}\.stainstyle-tmp$", entry.name)
                if match and int(match[1]) != os.getpid():
                    os.kill(int(match[1]), signal.SIGKILL)
                    killed.append(int(match[1]))
                    return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_a_writer, daemon=True)
    killer.start()
    first = normalize_slides(slides, fitted_normalizer("reinhard"), out, workers=2, qc=False)
    killer.join()
    assert killed, "no worker was caught writing"
    assert all(r.status in ("written", "failed") for r in first.results)

    rerun = normalize_slides(slides, fitted_normalizer("reinhard"), out, workers=2, qc=False)

    assert {r.status for r in rerun.results} <= {"written", "skipped"}
    assert not temporaries(tmp_path)
    for slide in slides:
        with open_slide(out / f"{slide.stem}.tiff") as normalized:
            assert normalized.dimensions == (2048, 1536)
            normalized.read_level(0, (0, 0, 2048, 1536))  # every tile decodes
    assert file_hashes(slides) == before


# ---------------------------------------------------------------------------- planning
def test_outputs_are_named_after_the_slides(tmp_path):
    plan = plan_outputs([tmp_path / "a" / "x.svs", tmp_path / "b" / "y.ome.tif"], tmp_path / "o")
    assert plan == [
        (tmp_path / "a" / "x.svs", tmp_path / "o" / "x.tiff"),
        (tmp_path / "b" / "y.ome.tif", tmp_path / "o" / "y.ome.tiff"),
    ]


def test_plan_refuses_colliding_names_and_the_slides_folder(tmp_path):
    with pytest.raises(ValueError, match=r"a/x\.svs and .*b/x\.ndpi would both be written as"):
        plan_outputs([tmp_path / "a" / "x.svs", tmp_path / "b" / "x.ndpi"], tmp_path / "o")
    with pytest.raises(ValueError, match="is the folder of the slide"):
        plan_outputs([tmp_path / "x.tiff"], tmp_path)
    with pytest.raises(ValueError, match="at least one slide"):
        plan_outputs([], tmp_path / "o")


def test_options_are_checked_before_a_cluster_starts(tmp_path):
    normalizer = fitted_normalizer("gray")
    with pytest.raises(ValueError, match="sample: expected a positive integer"):
        normalize_slides([tmp_path / "a.svs"], normalizer, tmp_path / "o", sample=0)
    with pytest.raises(ValueError, match="workers: expected a positive integer, got 0"):
        normalize_slides([tmp_path / "a.svs"], normalizer, tmp_path / "o", workers=0)
    with pytest.raises(ValueError, match="workers: give workers or client, not both"):
        normalize_slides([tmp_path / "a.svs"], normalizer, tmp_path / "o", workers=2, client=1)
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------- manifest and sheet
def result(tmp_path, name, status, **fields):
    return SlideResult(tmp_path / name, tmp_path / "o" / f"{name}.tiff", status, **fields)


def test_manifest_round_trip(tmp_path):
    (tmp_path / "o").mkdir()
    results = [
        result(tmp_path, "a.svs", "written", seconds=1.234, tiles=12, passthrough_tiles=3),
        result(tmp_path, "b c é.svs", "failed", error="file not found"),
    ]
    write_manifest(tmp_path / "o", results, details=[{"note": "x"}, {}], run={"mpp": None})
    rows = read_csv(tmp_path / "o" / "manifest.csv")
    assert rows[0]["seconds"] == "1.23" and rows[1]["slide"] == str(tmp_path / "b c é.svs")
    earlier = read_manifest(tmp_path / "o")
    assert earlier[str(tmp_path / "a.svs")]["tiles"] == 12
    assert earlier[str(tmp_path / "a.svs")]["note"] == "x"
    manifest = Manifest(tuple(results), tmp_path / "o")
    assert manifest.csv_path.is_file() and manifest.json_path.is_file()
    assert [r.status for r in manifest.failed] == ["failed"] and manifest.skipped == []


@pytest.mark.parametrize("damage", [b"", b"{not json", b"[1, 2]", b'{"slides": [3]}', b"\xff\xfe"])
def test_a_damaged_manifest_reads_as_empty(tmp_path, damage, caplog):
    (tmp_path / "manifest.json").write_bytes(damage)
    assert read_manifest(tmp_path) == {}
    assert "cannot be read" in caplog.text
    assert read_manifest(tmp_path / "nowhere") == {}


def test_qc_sheet_flags_failed_slides_and_stains_far_from_the_target():
    target = np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]])
    thumb = np.full((90, 120, 3), (200, 120, 180), np.uint8)
    entries = [
        SlideQC("good.svs", "written", thumb, thumb, target * 1.1, target),
        SlideQC("bad.svs", "failed", None, None, error="file not found"),
        SlideQC("swapped.svs", "written", thumb, thumb, target, target[:, ::-1]),
    ]
    assert entries[0].stain_angles(target) == pytest.approx((0.0, 0.0), abs=1e-5)
    assert min(entries[2].stain_angles(target)) > 30
    sheet = qc_sheet(entries, target, "title")
    assert sheet.dtype == np.uint8 and sheet.ndim == 3 and sheet.shape[2] == 3
    red = (sheet[..., 0] > 180) & (sheet[..., 1] < 60) & (sheet[..., 2] < 60)
    assert red.any()  # the failed and the swapped slides are labelled in red
    plain = qc_sheet([SlideQC("x.svs", "skipped", thumb, thumb)])
    assert plain.shape[0] < sheet.shape[0]  # no stain plot without stain vectors


def test_qc_sheet_of_a_large_cohort_stays_readable_in_size():
    assert [thumbnail_side(n) for n in (1, 64, 256, 1000, 10**5)] == [192, 192, 96, 48, 48]
    thumb = np.full((36, 48, 3), 200, np.uint8)
    sheet = qc_sheet([SlideQC(f"{i}.svs", "written", thumb, thumb) for i in range(300)])
    height, width = sheet.shape[:2]
    assert 0.5 < height / width < 1.5 and height * width < 20e6


def test_a_failing_qc_entry_leaves_the_slide_written(tmp_path, monkeypatch):
    import distributed

    import stainstyle.wsi.cohort as cohort

    def broken(*args, **kwargs):
        raise RuntimeError("no thumbnails today")

    monkeypatch.setattr(cohort, "slide_qc", broken)
    slides = write_slides(tmp_path / "slides", 1, size=(512, 512))
    with threaded_cluster() as cluster, distributed.Client(cluster) as client:
        manifest = normalize_slides(
            slides, fitted_normalizer("gray"), tmp_path / "o", client=client
        )
    assert [r.status for r in manifest.results] == ["written"]
    assert manifest.qc_sheet.is_file()
