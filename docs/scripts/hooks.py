"""MkDocs hook: fill the command-line reference from the ``stainstyle`` argument parser.

A line ``<!-- cli-help COMMAND -->`` in a page is replaced by the ``--help`` text of that
command (``<!-- cli-help -->`` for the top level), so the reference cannot drift from the code.
"""

from __future__ import annotations

import argparse
import functools
import re

from stainstyle.cli import build_parser

_MARKER = re.compile(r"^<!-- cli-help ?([\w-]*) -->$", re.MULTILINE)


def _help(command: str) -> str:
    """``--help`` text of ``stainstyle [command]`` at a fixed width."""
    parser = build_parser()
    if command:
        subparsers = next(a for a in parser._actions if a.dest == "command")
        parser = subparsers.choices[command]
    parser.formatter_class = functools.partial(argparse.HelpFormatter, width=100)
    return parser.format_help()


def on_page_markdown(markdown: str, **kwargs) -> str:
    """Replace each ``cli-help`` marker by a code block with the help text.

    Parameters
    ----------
    markdown : str
        The page's Markdown source.
    **kwargs
        The other arguments MkDocs passes (page, config, files); unused.

    Returns
    -------
    str
        The page with the help texts inserted.
    """
    return _MARKER.sub(lambda m: f"```text\n{_help(m.group(1))}```", markdown)
