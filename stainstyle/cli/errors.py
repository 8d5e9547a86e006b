"""Exit codes of the ``stainstyle`` command, and the exceptions that end a run with one."""

from __future__ import annotations

import signal

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: Exit codes of a run stopped by a signal: 128 + the signal number, as shells report it.
EXIT_INTERRUPTED, EXIT_TERMINATED = 128 + signal.SIGINT, 128 + signal.SIGTERM

#: The exit codes, as ``--help`` states them.
EXIT_CODES = (
    f"{EXIT_OK} success, {EXIT_FAILED} some files failed, {EXIT_USAGE} usage error, "
    f"{EXIT_INTERRUPTED} interrupted (Ctrl-C), {EXIT_TERMINATED} terminated (SIGTERM)"
)


class UsageError(Exception):
    """A command-line argument that cannot be acted on (exit code 2)."""


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM; raised in the main thread like a Ctrl-C (exit code 143)."""
