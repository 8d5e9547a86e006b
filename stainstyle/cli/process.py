"""The process a command runs in: its messages on stderr, and SIGTERM handled like Ctrl-C."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator

from stainstyle.cli.errors import Terminated


@contextlib.contextmanager
def log_to_stderr(level: int) -> Iterator[None]:
    """Log the package's messages to stderr as ``stainstyle: MESSAGE`` for the block.

    Parameters
    ----------
    level : int
        Lowest level shown, e.g. ``logging.INFO``.

    Yields
    ------
    None
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("stainstyle: %(message)s"))
    package_logger = logging.getLogger("stainstyle")
    saved_level = package_logger.level
    package_logger.addHandler(handler)
    package_logger.setLevel(level)
    try:
        yield
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(saved_level)


def _raise_terminated(signum, frame):
    raise Terminated(signum)


@contextlib.contextmanager
def sigterm_as_exception() -> Iterator[None]:
    """Turn SIGTERM into :class:`~stainstyle.cli.errors.Terminated` for the block.

    Cleanups then run as on Ctrl-C. Outside the main thread, where signal handlers cannot be
    set, the block runs unchanged.

    Yields
    ------
    None
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
