"""Atomic file writes: the one way stainstyle puts a file where a user will find it.

Every file the library writes (a normalized image, a saved model, a training checkpoint) is
first written to a temporary file beside the destination and then renamed over it, so a reader
sees either the previous complete file or the new complete file, and a process killed at any
moment leaves the previous file intact.

The temporary file lives in a private temporary folder in the destination's folder, so that a
writer that makes temporaries of its own next to the file it is given (``safetensors`` does)
leaves them there too. The file gets the mode any new file gets, ``0o666`` minus the umask (a
file being replaced keeps its mode), even when the writer replaced it with a file of its own.
The folder's name, ``.<name>.<pid>-<token>.stainstyle-tmp``, records the writing process, so
that a later run can remove what a killed process left (:func:`remove_stale_temporaries`)
without touching the temporaries of a run still in progress.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

#: Suffix of every temporary file stainstyle creates.
TEMPORARY_SUFFIX = ".stainstyle-tmp"

#: A temporary whose writer cannot be checked is stale after this many seconds.
STALE_AFTER_SECONDS = 24 * 3600

_TEMPORARY = re.compile(r"^\..+\.(?P<pid>\d+)-[0-9a-f]{8}" + re.escape(TEMPORARY_SUFFIX) + "$")


def _workspace_name(path: Path) -> Path:
    """A fresh name for a private temporary folder beside ``path``, naming this process."""
    return path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMPORARY_SUFFIX}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Context manager yielding a temporary path that is renamed to ``path`` on success.

    For writers that want a file name (``safetensors.torch.save_file``, ``PIL.Image.save``).
    The folder of ``path`` must exist. If the block raises (or the process is interrupted), the
    temporary file and anything the writer put beside it are removed and ``path`` is untouched.

    Parameters
    ----------
    path : str or path-like
        Destination file.

    Yields
    ------
    pathlib.Path
        An existing, empty temporary file with the destination's name, in a private folder
        beside it; write it, do not rename it.
    """
    path = Path(path)
    mode = 0o666
    with contextlib.suppress(FileNotFoundError):
        mode = stat.S_IMODE(path.stat().st_mode)  # a replaced file keeps its mode
    # The name is chosen before the folder exists, so that the cleanup below also covers an
    # interruption (Ctrl-C) arriving right after it was created; it holds this process's id, so
    # it is never another process's folder.
    workspace = _workspace_name(path)
    try:
        workspace.mkdir()
        temporary = workspace / path.name
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
        mode = stat.S_IMODE(temporary.stat().st_mode)  # what the umask left of it
        yield temporary
        with open(temporary, "rb+") as f:
            # A writer may replace the file by one of its own with mode 0o600 (safetensors'
            # save_file does): give it the mode of the file it replaced.
            if stat.S_IMODE(os.fstat(f.fileno()).st_mode) != mode:
                os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Write a file atomically through a binary file object.

    Parameters
    ----------
    path : str or path-like
        Destination file; its folder must exist.
    write : callable
        Called with the temporary file opened for binary writing.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "hello.txt"
    >>> atomic_write(target, lambda f: f.write(b"hello"))
    >>> target.read_bytes()
    b'hello'
    """
    with atomic_path(path) as temporary, open(temporary, "wb") as f:
        write(f)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text to a file atomically.

    Parameters
    ----------
    path : str or path-like
        Destination file; its folder must exist.
    text : str
        Content.
    """
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def remove_stale_temporaries(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Remove temporaries left by stainstyle writers that were killed.

    A temporary (the private temporary folder of :func:`atomic_path`, or a file named like one)
    is stale when the process that created it no longer runs, or when it is
    older than :data:`STALE_AFTER_SECONDS`. Entries not named like stainstyle temporaries are
    never touched, and neither are the temporaries of a live process.

    Parameters
    ----------
    folder : str or path-like
        Folder to clean; a missing folder is fine.
    recursive : bool, default=False
        Also clean its subfolders (symbolic links to folders are not followed).

    Returns
    -------
    list of pathlib.Path
        The temporaries removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    now = time.time()
    walk = os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]
    for directory, subfolders, files in walk:
        for name in [*subfolders, *files]:
            match = _TEMPORARY.match(name)
            if match is None:
                continue
            candidate = Path(directory) / name
            try:
                info = candidate.lstat()
            except FileNotFoundError:
                continue
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                continue
            old = now - info.st_mtime > STALE_AFTER_SECONDS
            if old or not _process_alive(int(match["pid"])):
                if stat.S_ISDIR(info.st_mode):
                    shutil.rmtree(candidate, ignore_errors=True)
                    if name in subfolders:  # listed as a file when not recursive
                        subfolders.remove(name)  # not walked into
                else:
                    with contextlib.suppress(FileNotFoundError):
                        candidate.unlink()
                removed.append(candidate)
    return removed
