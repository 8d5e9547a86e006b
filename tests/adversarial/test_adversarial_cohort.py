"""Hostile cohorts against ``stainstyle.wsi.normalize_slides`` and ``stainstyle normalize-slides``.

Corrupt, truncated and empty slides among good ones, slide paths that are folders, FIFOs or
dangling links, two slides with one output name, output folders where the inputs are, a
damaged manifest from an earlier run, two runs at once into one folder, and names with spaces
and non-ASCII characters. The runs use an in-process cluster (tasks in threads), which starts
in a moment; the tests with worker processes are in ``tests/wsi/test_wsi_cohort.py``.
"""

from __future__ import annotations

import csv
import json
import os
import threading

import pytest
from _support import require_module
from _wsi_support import (
    file_hashes,
    fitted_normalizer,
    temporaries,
    threaded_cluster,
    write_slides,
)

from stainstyle.cli import EXIT_USAGE, main
from stainstyle.wsi import normalize_slides, open_slide

distributed = require_module("distributed", extra="wsi")


@pytest.fixture(scope="module")
def client():
    with threaded_cluster(threads=2) as cluster, distributed.Client(cluster) as connected:
        yield connected


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return write_slides(tmp_path_factory.mktemp("good") / "slides", 2, size=(768, 512))


def run(paths, out, client, **options):
    return normalize_slides(paths, fitted_normalizer("reinhard"), out, client=client, **options)


def test_broken_slides_fail_by_name_and_the_good_ones_are_written(tmp_path, client, good):
    data = good[0].read_bytes()
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    broken = {
        "empty.svs": (b"", "empty file"),
        "truncated.tif": (data[: len(data) // 2], "truncated"),
        "header only.tif": (data[:64], "corrupted IFD"),
        "garbage.svs": (os.urandom(4096), "not a slide"),
    }
    for name, (content, _) in broken.items():
        (hostile / name).write_bytes(content)
    (hostile / "folder.svs").mkdir()
    os.mkfifo(hostile / "fifo.svs")
    os.symlink(hostile / "nowhere.svs", hostile / "dangling.svs")
    reasons = {name: reason for name, (_, reason) in broken.items()}
    reasons |= {
        "folder.svs": "is a folder",
        "fifo.svs": "is a FIFO",
        "dangling.svs": "dangling symbolic link",
    }
    paths = [*good, *(hostile / name for name in reasons)]
    before = file_hashes([*good, *(hostile / name for name in broken)])
    manifest = run(paths, tmp_path / "out", client)
    assert [r.status for r in manifest.results[:2]] == ["written", "written"]
    for result in manifest.results[2:]:
        assert result.status == "failed", result.input
        assert reasons[result.input.name] in result.error, result.error
        assert not result.output.exists()
    assert file_hashes([*good, *(hostile / name for name in broken)]) == before
    assert not temporaries(tmp_path)


def test_two_slides_with_one_output_name_are_refused_before_anything_is_written(
    tmp_path, client, good
):
    other = tmp_path / "other" / f"{good[0].stem}.svs"
    other.parent.mkdir()
    other.write_bytes(good[0].read_bytes())
    with pytest.raises(ValueError, match="would both be written as"):
        run([*good, other], tmp_path / "out", client)
    assert not (tmp_path / "out").exists()


def test_output_folders_where_the_inputs_are_are_refused(tmp_path, capsys, client, good):
    with pytest.raises(ValueError, match="is the folder of the slide"):
        run(good, good[0].parent, client)
    model = tmp_path / "model"
    fitted_normalizer("reinhard").save_pretrained(model)
    for out in (good[0].parent / "normalized", good[0].parent / "a" / "b"):
        code = main(["normalize-slides", str(model), str(good[0].parent), "--out", str(out)])
        assert (
            code == EXIT_USAGE and "never written into an input folder" in capsys.readouterr().err
        )
        assert not out.exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError, match="file"):
        run(good, tmp_path / "file", client)


@pytest.mark.parametrize("damage", [b"", b"\x00" * 100, b'{"slides": "no"}', b"[" * 10000])
def test_a_damaged_manifest_from_an_earlier_run_does_not_stop_a_rerun(
    tmp_path, client, good, damage
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_bytes(damage)
    (out / "manifest.csv").write_bytes(damage)
    manifest = run(good, out, client, qc=False)
    assert [r.status for r in manifest.results] == ["written", "written"]
    rows = json.loads((out / "manifest.json").read_text())["slides"]
    assert [row["status"] for row in rows] == ["written", "written"]
    with open(out / "manifest.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 2


def test_two_runs_at_once_into_one_folder_leave_complete_files(tmp_path, good):
    out = tmp_path / "out"
    errors = []

    def one_run(client):
        try:
            run(good, out, client, overwrite=True, compression="deflate", progress=False)
        except Exception as error:  # reported below
            errors.append(error)

    # Two clusters (started one after the other: distributed imports its dashboard lazily),
    # two runs at once, each with its own scheduler and worker, into one output folder.
    with (
        threaded_cluster(threads=1) as first,
        threaded_cluster(threads=1) as second,
        distributed.Client(first) as a,
        distributed.Client(second) as b,
    ):
        runs = [threading.Thread(target=one_run, args=(c,)) for c in (a, b)]
        for thread in runs:
            thread.start()
        for thread in runs:
            thread.join(timeout=300)
    assert not errors
    for slide in good:
        with open_slide(out / f"{slide.stem}.tiff") as normalized:
            normalized.read_level(0, (0, 0, 768, 512))
    assert len(json.loads((out / "manifest.json").read_text())["slides"]) == 2
    assert not temporaries(tmp_path)


def test_names_with_spaces_and_other_scripts(tmp_path, client, good):
    folder = tmp_path / "slides with spaces é"
    folder.mkdir()
    names = ["lame 1 été.tif", "切片 二.tif", "ok 🙂.tif"]
    paths = []
    for name, source in zip(names, [*good, good[0]], strict=True):
        (folder / name).write_bytes(source.read_bytes())
        paths.append(folder / name)
    out = tmp_path / "out ü"
    manifest = run(paths, out, client)
    assert [r.status for r in manifest.results] == ["written"] * 3
    assert sorted(p.name for p in out.glob("*.tiff")) == sorted(
        name.replace(".tif", ".tiff") for name in names
    )
    with open(out / "manifest.csv", newline="", encoding="utf-8") as handle:
        assert [row["slide"] for row in csv.DictReader(handle)] == [str(p) for p in paths]
    document = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert [row["output"] for row in document["slides"]] == [
        str(r.output) for r in manifest.results
    ]
    assert (out / "qc.png").stat().st_size > 0
