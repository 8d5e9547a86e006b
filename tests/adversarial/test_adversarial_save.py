"""Killed and concurrent saves against ``NormalizerHubMixin.save_pretrained`` and ``load``.

A process re-saving a model folder is killed with SIGKILL at random moments of its saves; two
processes re-save the same folder while this one loads it in a loop. The folder must always
load, to the old model or the new one, and a later save removes what killed saves left.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _support import he_tiles, skip_or_fail

from stainstyle._atomic import TEMPORARY_SUFFIX
from stainstyle.hub import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, load
from stainstyle.methods.reinhard import ReinhardNormalizer

if not hasattr(os, "fork") or sys.platform == "darwin":
    skip_or_fail("needs os.fork (Linux)")


@pytest.fixture(scope="module")
def models() -> tuple[ReinhardNormalizer, ReinhardNormalizer]:
    """Two different fitted models: the folder holds one or the other."""
    first = ReinhardNormalizer().fit(he_tiles(2, 64, seed=1))
    second = ReinhardNormalizer(tissue_only=False).fit(he_tiles(2, 64, seed=2) // 2 + 100)
    assert not np.allclose(first.target_means_, second.target_means_)
    return first, second


def _which(loaded, models) -> int:
    """Index of the model ``loaded`` equals, after checking it equals exactly one."""
    matches = [
        i
        for i, model in enumerate(models)
        if loaded.get_params() == model.get_params()
        and np.array_equal(loaded.target_means_, model.target_means_)
        and np.array_equal(loaded.target_stds_, model.target_stds_)
    ]
    assert len(matches) == 1, "the loaded model is a mixture of two saves"
    return matches[0]


def _saver(folder: Path, sequence) -> int:
    """Fork a child that saves the models of ``sequence`` into ``folder`` forever."""
    pid = os.fork()
    if pid == 0:  # child: never returns into the test runner
        try:
            while True:
                for model in sequence:
                    model.save_pretrained(folder)
        finally:
            os._exit(0)
    return pid


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def test_a_save_killed_at_any_moment_leaves_a_loadable_model(models, tmp_path):
    folder = tmp_path / "model"
    models[0].save_pretrained(folder)
    started = time.perf_counter()
    for model in models * 3:
        model.save_pretrained(folder)
    one_save = (time.perf_counter() - started) / 6
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(20):
        pid = _saver(folder, [models[1], models[0]])
        time.sleep(rng.uniform(0, 4 * one_save))  # a random moment within the first saves
        _kill(pid)
        seen.add(_which(load(folder), models))
    assert seen <= {0, 1}

    models[0].save_pretrained(folder)  # removes the temporaries of the killed savers
    names = {p.name for p in folder.iterdir()}
    assert names == {CONFIG_NAME, WEIGHTS_NAME, CARD_NAME}
    assert _which(load(folder), models) == 0


def test_loads_during_concurrent_saves_never_fail(models, tmp_path):
    folder = tmp_path / "model"
    models[0].save_pretrained(folder)
    savers = [_saver(folder, [models[0]]), _saver(folder, [models[1]])]
    failures, loads, seen = [], 0, set()
    try:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            try:
                seen.add(_which(load(folder), models))
            except Exception as err:  # noqa: BLE001 - every failure is counted and shown
                failures.append(f"{type(err).__name__}: {err}")
            loads += 1
    finally:
        for pid in savers:
            _kill(pid)
    assert not failures, f"{len(failures)} of {loads} loads failed, e.g. {failures[:3]}"
    assert loads > 10


def test_other_files_in_the_folder_are_kept_and_stale_temporaries_removed(models, tmp_path):
    folder = tmp_path / "model"
    (folder / ".git").mkdir(parents=True)
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (folder / "LICENSE").write_text("CC-BY-4.0\n")
    stale = folder / f".{WEIGHTS_NAME}.999999999-0123abcd{TEMPORARY_SUFFIX}"
    stale.write_bytes(b"left by a killed save")
    models[0].save_pretrained(folder)
    models[1].save_pretrained(folder)
    assert not stale.exists()
    assert (folder / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert (folder / "LICENSE").read_text() == "CC-BY-4.0\n"
    assert _which(load(folder), models) == 1
