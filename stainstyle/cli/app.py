"""The ``stainstyle`` command: the parser of every subcommand, and a run turned into an exit code.

Each subcommand is a module of this package with two functions, as described by
:class:`Command` (the shape of huggingface_hub's ``commands``): ``register_subcommand`` declares
its arguments and ``run`` carries it out. This module only collects them, and owns what is
common to every run: logging to stderr, SIGTERM, and turning each outcome into one line on
stderr and an exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Protocol

from stainstyle._version import __version__
from stainstyle.cli import augment, benchmark, fit, normalize, normalize_slides, train_sst
from stainstyle.cli.errors import (
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    Terminated,
    UsageError,
)
from stainstyle.cli.options import add_debug_option
from stainstyle.cli.process import log_to_stderr, sigterm_as_exception

logger = logging.getLogger(__name__)


class Command(Protocol):
    """A subcommand of ``stainstyle``: a module of :mod:`stainstyle.cli` with these functions."""

    def register_subcommand(self, commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
        """Add the command's parser to ``commands`` and declare its arguments.

        Parameters
        ----------
        commands : argparse._SubParsersAction
            The subcommands of the top-level parser.

        Returns
        -------
        argparse.ArgumentParser
            The command's parser.
        """

    def run(self, args: argparse.Namespace) -> int:
        """Carry out the command.

        Parameters
        ----------
        args : argparse.Namespace
            Its parsed arguments.

        Returns
        -------
        int
            Exit code.
        """


#: The subcommands, in the order ``--help`` lists them.
COMMANDS: tuple[Command, ...] = (
    fit,
    normalize,
    normalize_slides,
    augment,
    train_sst,
    benchmark,
)

#: Errors of files, models and methods: reported in one line without a hint to --debug.
_EXPECTED_ERRORS = (OSError, ValueError, TypeError, ImportError)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``stainstyle`` command.

    Returns
    -------
    argparse.ArgumentParser
        Each subcommand's parser has the default ``func``: the command's ``run``.
    """
    parser = argparse.ArgumentParser(
        prog="stainstyle",
        description="Stain normalization and stain-style transfer for H&E tiles.",
        epilog=f"Exit codes: {EXIT_CODES}.",
    )
    parser.add_argument("--version", action="version", version=f"stainstyle {__version__}")
    add_debug_option(parser, default=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register_subcommand(commands).set_defaults(func=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stainstyle`` console script.

    Every outcome is a short message on stderr and an exit code; a Python traceback is shown
    only with ``--debug``.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        Exit code: 0 success, 1 some files failed, 2 usage error, 130 interrupted (Ctrl-C),
        143 terminated (SIGTERM). Argument errors found by the parser exit with 2 through
        ``SystemExit``, as argparse does.
    """
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:  # before logging is set up
        sys.stderr.write("stainstyle: interrupted\n")
        return EXIT_INTERRUPTED
    debug = getattr(args, "debug", False)
    if debug:
        level = logging.DEBUG
    else:
        level = logging.WARNING if getattr(args, "quiet", False) else logging.INFO
    with log_to_stderr(level):
        return _run(args, debug)


def _run(args: argparse.Namespace, debug: bool) -> int:
    """Run the parsed command; report how it ended in one line and return the exit code."""
    try:
        with sigterm_as_exception():
            return args.func(args)
    except UsageError as err:
        logger.error("%s: usage error: %s", args.command, err)
        return EXIT_USAGE
    except Terminated:
        logger.error("%s: terminated; outputs written so far are kept", args.command)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        logger.error("%s: interrupted; outputs written so far are kept", args.command)
        return EXIT_INTERRUPTED
    except Exception as err:
        hint = "" if debug or isinstance(err, _EXPECTED_ERRORS) else " (--debug shows where)"
        logger.error(
            "%s: error: %s: %s%s",
            args.command,
            type(err).__name__,
            err,
            hint,
            exc_info=debug,
        )
        return EXIT_FAILED
