import os
import subprocess
import sys

import pytest

from stainstyle._atomic import (
    TEMPORARY_SUFFIX,
    atomic_path,
    atomic_write,
    atomic_write_text,
    remove_stale_temporaries,
)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_new_file_gets_the_umask_mode(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write(target, lambda f: f.write(b"abc"))
    assert target.read_bytes() == b"abc"
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert os.listdir(tmp_path) == ["out.bin"]


def test_replaced_file_keeps_its_mode(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    target.chmod(0o640)
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o640


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")

    def fail(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_atomic_path_yields_a_file_in_the_same_folder(tmp_path):
    target = tmp_path / "model.bin"
    with atomic_path(target) as temporary:
        assert temporary.parent.parent == tmp_path and temporary.name == "model.bin"
        assert temporary.parent.name.endswith(TEMPORARY_SUFFIX)
        temporary.write_bytes(b"x")
        assert not target.exists()
    assert target.read_bytes() == b"x"


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    stale = tmp_path / f".out.png.{pid}-0123abcd{TEMPORARY_SUFFIX}"
    live = tmp_path / f".out.png.{os.getpid()}-0123abcd{TEMPORARY_SUFFIX}"
    other = tmp_path / f".out.png.{pid}-0123abcd.tmp"  # not ours: never touched
    nested = tmp_path / "sub" / stale.name
    nested.parent.mkdir()
    for path in (stale, live, other, nested):
        path.write_bytes(b"")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert live.exists() and other.exists() and nested.exists()
    assert remove_stale_temporaries(tmp_path, recursive=True) == [nested]
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_a_writer_that_makes_its_own_temporaries_leaves_nothing_behind(tmp_path):
    """safetensors' save_file writes a temporary of its own beside the path it gets."""
    import torch
    from safetensors.torch import save_file

    target = tmp_path / "model.safetensors"
    with atomic_path(target) as temporary:
        save_file({"x": torch.zeros(3)}, str(temporary))
    assert os.listdir(tmp_path) == ["model.safetensors"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()

    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        (temporary.parent / ".tmpXYZ").write_bytes(b"a writer's own temporary")
        raise RuntimeError("killed")
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_stale_workspace_folders_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = tmp_path / "a" / f".model.safetensors.{int(dead.stdout)}-89abcdef{TEMPORARY_SUFFIX}"
    stale.mkdir(parents=True)
    (stale / ".tmpQWERTY").write_bytes(b"left by a killed writer")
    (stale / "model.safetensors").write_bytes(b"partial")
    assert remove_stale_temporaries(tmp_path, recursive=True) == [stale]
    assert os.listdir(tmp_path / "a") == []
