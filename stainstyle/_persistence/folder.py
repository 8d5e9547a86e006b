"""The model folder: its files, folder formats 1 and 2, and how each is written and read.

Folder format 2 (written) holds ``model.safetensors``, whose header metadata holds the complete
configuration under :data:`CONFIG_METADATA_KEY`, ``config.json`` (the same configuration, for
people and the Hub) and ``README.md`` (the model card, written by :mod:`stainstyle.hub`).
``model.safetensors`` is the single commit point of a save: it is written to a temporary file
and renamed over the old one, then ``config.json`` is replaced the same way. Loading reads the
configuration and the tensors from one open of ``model.safetensors``, so a reader sees the
previous complete model or the new one. Folder format 1 (read only) has the configuration in
``config.json`` alone, with the SHA-256 of ``model.safetensors`` under ``weights_sha256``.

Imports :mod:`stainstyle._atomic` and the modules of this package below it: it is the top of the
package, below :mod:`stainstyle.hub`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import constants

from stainstyle._atomic import atomic_write_text
from stainstyle._persistence.capture import check_saveable, content_digest, fitted_state
from stainstyle._persistence.config_schema import FORMAT_VERSION, check_config
from stainstyle._persistence.json_values import (
    MAX_CONFIG_CHARS,
    MAX_JSON_DEPTH,
    json_depth,
    parse_json,
)
from stainstyle._persistence.restore import SavedModel, restore_estimator
from stainstyle._persistence.safetensors_file import SafetensorsFile, write_safetensors

# Warnings go to the logger of the public module, the one users configure.
logger = logging.getLogger("stainstyle.hub")

#: Names of the files of a saved model.
CONFIG_NAME = constants.CONFIG_NAME
WEIGHTS_NAME = constants.SAFETENSORS_SINGLE_FILE
CARD_NAME = "README.md"

#: Key of the configuration in the header metadata of ``model.safetensors``.
CONFIG_METADATA_KEY = "stainstyle_config"

#: Suffixes of pickle-based checkpoints, which are never loaded.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def write_model_files(estimator: Any, folder: Path) -> None:
    """Write ``model.safetensors`` then ``config.json`` of a fitted estimator, atomically.

    Parameters
    ----------
    estimator : StainNormalizer
        A fitted normalizer.
    folder : Path
        An existing folder.

    Raises
    ------
    ValueError
        If the fitted state would not load (see :func:`~.capture.check_saveable`), or its
        configuration is too large.
    """
    config, tensors = fitted_state(estimator)
    check_saveable(estimator, config, tensors)
    config["content_sha256"] = content_digest(config, tensors)
    text = json.dumps(config, indent=2, sort_keys=True)
    if len(text) > MAX_CONFIG_CHARS or json_depth(text) > MAX_JSON_DEPTH:
        raise ValueError(
            f"{type(estimator).__name__}: its configuration is too large to save ({len(text)} "
            f"characters, at most {MAX_CONFIG_CHARS}; nesting at most {MAX_JSON_DEPTH} deep)"
        )
    # model.safetensors is the commit point: once renamed into place, the new model loads.
    # One metadata key only: safetensors writes metadata in hash order, and a second key would
    # make two saves of one model differ byte for byte.
    write_safetensors(folder / WEIGHTS_NAME, tensors, {CONFIG_METADATA_KEY: text})
    atomic_write_text(folder / CONFIG_NAME, text + "\n")


def read_model_folder(folder: Path, cls: type | None, overrides: Mapping[str, Any]) -> Any:
    """Load the fitted normalizer of a model folder, of format 1 or 2.

    Parameters
    ----------
    folder : Path
        The model folder.
    cls : type or None
        Expected class (or base class); any registered class if None.
    overrides : mapping of str to object
        Constructor parameters replacing the saved ones.

    Returns
    -------
    StainNormalizer

    Raises
    ------
    FileNotFoundError, ValueError, TypeError
        See :func:`stainstyle.hub.load_folder`.
    """
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not weights_path.is_file():
        raise _missing_weights(folder)
    with SafetensorsFile(weights_path) as weights:
        text = weights.metadata().get(CONFIG_METADATA_KEY)
        if text is not None:
            saved = _embedded_config(weights, text, config_path)
        else:
            saved = _format1_config(weights, config_path)
        return restore_estimator(saved, cls, overrides)


def _missing_weights(folder: Path) -> OSError | ValueError:
    """The error for a folder without ``model.safetensors``, naming what it holds instead."""
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not config_path.is_file():
        return _missing_config(config_path)
    pickles = _pickle_files(folder)
    if pickles:
        return ValueError(
            f"{weights_path}: not found, and the folder holds pickle files {pickles}; "
            "stainstyle loads weights only from safetensors and never unpickles"
        )
    return FileNotFoundError(f"{weights_path}: not found")


def _embedded_config(weights: SafetensorsFile, text: str, config_path: Path) -> SavedModel:
    """Folder format 2: the configuration in the header of ``model.safetensors``."""
    where = f"{weights.path} (embedded configuration)"
    config = check_config(parse_json(text, where), where)
    if config["stainstyle_format"] != FORMAT_VERSION:
        raise ValueError(
            f"{where}: says folder format {config['stainstyle_format']}; an embedded "
            f"configuration is format {FORMAT_VERSION}"
        )
    _warn_if_config_json_differs(config_path, text, config)
    return SavedModel(config, where, weights, embedded=True)


def _format1_config(weights: SafetensorsFile, config_path: Path) -> SavedModel:
    """Folder format 1: the configuration in ``config.json``, with the file's SHA-256."""
    config = _read_config_file(config_path)
    if config["stainstyle_format"] != 1:
        raise ValueError(
            f"{config_path}: says folder format {config['stainstyle_format']}, but "
            f"{weights.path} holds no embedded configuration (it was replaced, or written "
            "by another program)"
        )
    if weights.sha256() != config["weights_sha256"]:
        raise ValueError(
            f"{weights.path}: its SHA-256 does not match the one recorded in "
            f"{CONFIG_NAME}; the file is corrupt or was modified"
        )
    return SavedModel(config, str(config_path), weights, embedded=False)


def _pickle_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)


def _missing_config(path: Path) -> FileNotFoundError:
    """The error for a missing ``config.json``, naming pickle files the folder holds."""
    folder = path.parent
    pickles = _pickle_files(folder)
    hint = f" (it holds pickle files {pickles}, which stainstyle never loads)" if pickles else ""
    return FileNotFoundError(f"{path}: not found; {folder} is not a saved model{hint}")


def _read_text(path: Path) -> str:
    """A UTF-8 configuration file of at most :data:`MAX_CONFIG_CHARS` bytes."""
    with open(path, "rb") as f:
        data = f.read(MAX_CONFIG_CHARS + 1)
    if len(data) > MAX_CONFIG_CHARS:
        raise ValueError(f"{path}: larger than {MAX_CONFIG_CHARS} bytes; not a saved configuration")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not valid JSON (not UTF-8 text: {err})") from None


def _read_config_file(path: Path) -> dict:
    """The configuration in ``config.json`` of a format-1 folder, schema-checked."""
    if not path.is_file():
        raise _missing_config(path)
    return check_config(parse_json(_read_text(path), str(path)), str(path))


def _warn_if_config_json_differs(path: Path, text: str, config: Mapping[str, Any]) -> None:
    """Log a warning when ``config.json`` is missing or says something else than ``text``."""
    if not path.is_file():
        logger.warning(
            "%s: not found; loading the configuration embedded in %s", path, WEIGHTS_NAME
        )
        return
    try:
        content = _read_text(path)
        same = content.strip() == text.strip() or parse_json(content, str(path)) == config
    except (OSError, ValueError):
        same = False
    if not same:
        logger.warning(
            "%s: differs from the configuration embedded in %s (edited by hand, or a save in "
            "progress); loading the embedded one",
            path,
            WEIGHTS_NAME,
        )
