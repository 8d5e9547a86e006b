"""Argument declarations that several commands share, and the argument types they use."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stainstyle.registry import BUILTIN_AUGMENTERS, CLASSIC_METHODS

#: Values of ``--method`` for ``normalize``: the classic methods, sorted.
METHOD_CHOICES = sorted(CLASSIC_METHODS)

#: Values of ``--method`` for ``augment``: the built-in augmenters, sorted.
AUGMENTER_CHOICES = sorted(BUILTIN_AUGMENTERS)


def integer_in(low: int, high: int | None) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers from ``low`` to ``high``.

    Parameters
    ----------
    low : int
        Smallest accepted value.
    high : int or None
        Largest accepted value; None: no maximum.

    Returns
    -------
    callable
        Turns the argument's text into an int, or raises :class:`argparse.ArgumentTypeError`
        naming the accepted range and the text received.
    """
    expected = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


#: An argparse ``type`` accepting integers from 1.
positive_int = integer_in(1, None)


class _LazyChoices(Sequence[str]):
    """Choices loaded by a function when argparse first checks or shows them."""

    def __init__(self, load: Callable[[], Sequence[str]]) -> None:
        self._load = load

    @functools.cached_property
    def _names(self) -> tuple[str, ...]:
        return tuple(self._load())

    def __getitem__(self, index):
        return self._names[index]

    def __len__(self) -> int:
        return len(self._names)


def defer_choices(action: argparse.Action, load: Callable[[], Sequence[str]]) -> None:
    """Give an argument the choices ``load()`` returns, loaded only when they are needed.

    argparse formats an argument's choices as soon as the argument is added; setting them on
    the added action instead means that building the parser does not import what lists them
    (e.g. the presets of the neural method, which import torch). They are loaded when a value
    is checked or the help is shown.

    Parameters
    ----------
    action : argparse.Action
        The argument, as ``add_argument`` returned it, declared without ``choices``.
    load : callable
        Returns the accepted values, in the order the help lists them.
    """
    action.choices = _LazyChoices(load)


def add_debug_option(parser: argparse.ArgumentParser, default: Any) -> None:
    """Declare ``--debug``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The top-level parser or a command's.
    default : Any
        False on the top-level parser; ``argparse.SUPPRESS`` on a command's, so that its default
        does not overwrite a ``--debug`` given before the command.
    """
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="show debug messages, and the traceback of an unexpected error",
    )


def add_image_output_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--out`` and ``--jpeg-quality``: where and how the output images are written.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        A command that writes one image per input image.
    """
    parser.add_argument("--out", type=Path, required=True, metavar="OUT_DIR", help="output folder")
    parser.add_argument(
        "--jpeg-quality",
        type=integer_in(1, 100),
        default=95,
        metavar="1-100",
        help="quality of JPEG outputs, 1 to 100 (default: 95)",
    )


def add_run_options(parser: argparse.ArgumentParser, device: bool = True) -> None:
    """Declare the options of every command that processes images.

    ``--device``, ``--batch-size``, ``--on-error``, ``--max-pixels``, ``-q/--quiet`` and
    ``--debug``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        A command's parser.
    device : bool, default=True
        Whether to offer ``--device``; without it ``args.device`` is None (commands whose
        methods all run on numpy).
    """
    add_runtime_options(parser, device=device)
    parser.add_argument(
        "--on-error",
        choices=("skip", "stop"),
        default="skip",
        help="on an unreadable or failing file: report it and continue (skip) or stop",
    )
    parser.add_argument(
        "--max-pixels",
        type=positive_int,
        metavar="N",
        help="refuse images with more than N pixels, from their header, before decoding them "
        "(default: Pillow's decompression-bomb limit, PIL.Image.MAX_IMAGE_PIXELS)",
    )
    add_verbosity_options(parser)


def add_runtime_options(parser: argparse.ArgumentParser, device: bool = True) -> None:
    """Declare where and how a model runs: ``--device`` and ``--batch-size``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        A command's parser.
    device : bool, default=True
        Whether to offer ``--device``; without it ``args.device`` is None.
    """
    if device:
        parser.add_argument(
            "--device",
            help="torch device of a neural model (stain-style transfer): cpu, cuda, cuda:1 or "
            "auto (default: the model's); the classic methods run on the CPU with numpy",
        )
    else:
        parser.set_defaults(device=None)
    parser.add_argument(
        "--batch-size", type=positive_int, help="tiles processed at once (default: the model's)"
    )


def add_verbosity_options(parser: argparse.ArgumentParser) -> None:
    """Declare ``-q/--quiet`` and ``--debug``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        A command's parser.
    """
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    add_debug_option(parser, default=argparse.SUPPRESS)


def add_target_options(parser: argparse.ArgumentParser, required: bool, saves: bool) -> None:
    """Declare the options of the commands that fit: ``--target``, ``--param``, ``--training-data``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        A command's parser.
    required : bool
        Whether ``--target`` must be given.
    saves : bool
        Whether the command saves a model folder; only then is ``--training-data``, which goes
        into its model card, offered.
    """
    parser.add_argument(
        "--target",
        action="append",
        type=Path,
        required=required,
        metavar="PATH",
        help="target-style image or folder of images; repeat for several",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method parameter, repeatable; VALUE is JSON (1.5, true) or a string",
    )
    if saves:
        parser.add_argument(
            "--training-data",
            help="description of the target tiles for the model card (default: a short summary)",
        )
