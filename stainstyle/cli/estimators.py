"""Estimators from command-line parameters: built, placed on a device, fitted and saved.

What the commands that fit (``fit``, ``normalize --method``, ``augment --method``,
``train-sst``) share: building a method's estimator or an augmenter from ``--method`` and
``--param`` through the registry (:func:`stainstyle.registry.make_normalizer`,
:func:`stainstyle.registry.make_augmenter`), applying ``--device`` and ``--batch-size``,
reading the ``--target`` images, saving the model folder with its model card, and loading one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stainstyle.cli.errors import UsageError
from stainstyle.cli.inputs import ImageFile, find_inputs, read_images
from stainstyle.cli.report import Report
from stainstyle.registry import BUILTIN_AUGMENTERS, make_augmenter, make_normalizer

logger = logging.getLogger(__name__)


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``--param key=value`` items; values are JSON (``1.5``, ``true``) or plain strings.

    Parameters
    ----------
    items : sequence of str

    Returns
    -------
    dict

    Raises
    ------
    UsageError
        If an item has no ``=``.
    """
    params = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {item!r}: expected KEY=VALUE, e.g. --param alpha=1.0")
        try:
            params[key] = json.loads(text)
        except json.JSONDecodeError:
            params[key] = text
    return params


def make_estimator(method: str, params: dict[str, Any]):
    """A built-in method's estimator, or a built-in augmenter, with the given parameters.

    Parameters
    ----------
    method : str
        Key of :data:`stainstyle.registry.BUILTIN_METHODS` or
        :data:`stainstyle.registry.BUILTIN_AUGMENTERS`.
    params : dict
        Constructor parameters.

    Returns
    -------
    StainNormalizer or Augmenter

    Raises
    ------
    UsageError
        If the method is unavailable or a parameter is unknown; the registry's message, with
        the parameters named as the ``--param`` option.
    """
    make = make_augmenter if method in BUILTIN_AUGMENTERS else make_normalizer
    try:
        return make(method, **params)
    except (ValueError, ImportError) as err:
        message = str(err)
        if message.startswith("params: "):
            message = "--param: " + message.removeprefix("params: ")
        raise UsageError(message) from err


def configure_runtime(estimator, device: str | None, batch_size: int | None) -> None:
    """Apply ``--device`` and ``--batch-size`` to an estimator that has those parameters.

    Parameters
    ----------
    estimator : StainNormalizer or Augmenter
    device : str or None
        Torch device string; ignored with a warning by methods that run on numpy.
    batch_size : int or None
        Tiles per batch; ignored with a warning by estimators without batches (augmenters).

    Raises
    ------
    UsageError
        If ``device`` is not available on this machine.
    """
    from stainstyle.base import resolve_device

    params = estimator.get_params(deep=False)
    if device is not None:
        if "device" in params:
            try:
                resolve_device(device)  # fail once here, not once per file
            except (ValueError, RuntimeError) as err:
                raise UsageError(f"--device {device}: {err}") from err
            estimator.set_params(device=device)
        else:
            logger.warning(
                "%s runs on the CPU with numpy; --device %s is ignored",
                type(estimator).__name__,
                device,
            )
    if batch_size is not None:
        if "batch_size" in params:
            estimator.set_params(batch_size=batch_size)
        else:
            logger.warning(
                "%s has no batches; --batch-size %d is ignored",
                type(estimator).__name__,
                batch_size,
            )


def load_model(args: argparse.Namespace, option: str = "--model", expected: type | None = None):
    """The model folder or Hub repository ``args.model``, on ``--device`` with ``--batch-size``.

    Parameters
    ----------
    args : argparse.Namespace
        The command's arguments (``model``, ``revision``, ``device``, ``batch_size``).
    option : str, default="--model"
        How the command names the model, for messages.
    expected : type, optional
        The kind of model the command takes (``StainNormalizer`` or ``Augmenter``); any
        saved model when None.

    Returns
    -------
    StainNormalizer or Augmenter
        The fitted model.

    Raises
    ------
    UsageError
        If the model is neither a folder nor a Hub repository that can be found, or is not
        of the ``expected`` kind.
    """
    from stainstyle.hub import NormalizerHubMixin

    try:
        normalizer = (expected or NormalizerHubMixin).from_pretrained(
            args.model, revision=args.revision
        )
    except FileNotFoundError as err:
        if os.path.exists(args.model):
            raise  # a damaged model folder: a failure (exit 1), not a usage error
        raise UsageError(f"{option}: {err}") from err
    except TypeError as err:  # a model of the other kind
        raise UsageError(f"{option}: {err}") from err
    configure_runtime(normalizer, args.device, args.batch_size)
    return normalizer


def read_targets(
    images: Sequence[ImageFile], args: argparse.Namespace, report: Report
) -> list[tuple[ImageFile, np.ndarray]] | None:
    """Read the target images, reporting each unreadable one.

    Parameters
    ----------
    images : sequence of ImageFile
        The target images found.
    args : argparse.Namespace
        The command's arguments (``on_error``, ``max_pixels``).
    report : Report
        Collects failures and conversion notes.

    Returns
    -------
    list of (ImageFile, ndarray of shape (H, W, 3), dtype uint8) or None
        The readable images and their pixels; None when ``--on-error stop`` ended the run.

    Raises
    ------
    UsageError
        If none of the images could be read.
    """
    stop = args.on_error == "stop"
    loaded = [
        (image, data.rgb)
        for image, data in read_images(images, report, stop=stop, max_pixels=args.max_pixels)
    ]
    if report.failed and stop:
        return None
    if not loaded:
        raise UsageError("--target: none of the target images could be read")
    return loaded


def fit_from_targets(args: argparse.Namespace, report: Report):
    """Build the ``--method`` estimator with its ``--param`` values and fit it on ``--target``.

    Parameters
    ----------
    args : argparse.Namespace
        The arguments of ``fit`` or ``normalize --method``.
    report : Report
        Collects skipped entries, failures and conversion notes.

    Returns
    -------
    estimator : StainNormalizer or None
        The fitted estimator; None when ``--on-error stop`` ended the run.
    n_tiles : int
        Number of target tiles it was fitted on (0 with None).
    """
    images = find_inputs(args.target, report)
    estimator = make_estimator(args.method, parse_params(args.param))
    configure_runtime(estimator, args.device, args.batch_size)
    loaded = read_targets(images, args, report)
    if loaded is None:
        return None, 0
    logger.info("fitting %s on %d target tiles", type(estimator).__name__, len(loaded))
    return estimator.fit([tile for _, tile in loaded]), len(loaded)


def save_model(estimator, args: argparse.Namespace, n_tiles: int) -> None:
    """Save a fitted estimator as the model folder ``--out``, with its model card.

    The card's training data is ``--training-data``, or a summary of the ``--target`` paths.

    Parameters
    ----------
    estimator : StainNormalizer
        The fitted estimator.
    args : argparse.Namespace
        The command's arguments (``out``, ``training_data``, ``target``, ``command``).
    n_tiles : int
        Number of target tiles it was fitted on.
    """
    description = args.training_data
    if not description:
        names = ", ".join(f"`{Path(p).name}`" for p in args.target)
        description = f"{n_tiles} tiles from {names}, fitted with `stainstyle {args.command}`."
    estimator.save_pretrained(args.out, model_card_kwargs={"training_data": description})
