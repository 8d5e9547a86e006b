"""Checkpoints of stain-style-transfer training: save, validate and load.

A checkpoint folder holds two files (format 1):

- ``state-epochNNNNN.safetensors``: the tensors of the generator (``generator.<name>``), the
  discriminator (``discriminator.<name>``) and the Adam moments of both optimizers
  (``opt_g.<index>.<key>``, ``opt_d.<index>.<key>``);
- ``checkpoint.json``: the progress (epoch, step, per-epoch history, the state of the NumPy
  sampler: ``rng``, and, one per process of a distributed run in rank order, ``samplers``,
  whose first entry is ``rng``), the optimizers' parameter groups, the training settings for
  reference, and the name of the tensor file. It is written last, so it always names a
  complete tensor file.

Both are written atomically (:mod:`stainstyle._atomic`); nothing is pickled. A checkpoint is
read as untrusted input: the JSON is checked against the format above (sizes, types, ranges, a
plain tensor file name), and the tensors against the networks and optimizers they are loaded
into, before anything is changed. Every problem raises :class:`CheckpointError`, whose message
starts with the path of the file at fault.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from stainstyle._atomic import atomic_path, atomic_write_text, remove_stale_temporaries
from stainstyle.sst.distributed import SINGLE, Ranks
from stainstyle.sst.setup import GANModules, TrainConfig

#: Name of the JSON file that commits a checkpoint; it names its tensor file.
CHECKPOINT_JSON = "checkpoint.json"
#: Version of the layout described in the module docstring.
CHECKPOINT_FORMAT = 1
#: Tensor file names, as :func:`save_checkpoint` writes them: the epoch, at least 5 digits.
TENSOR_FILE = re.compile(r"state-epoch(?P<epoch>[0-9]{5,})\.safetensors")
#: ``checkpoint.json`` files larger than this are refused (a long run's history is far smaller).
MAX_JSON_BYTES = 16 * 2**20
#: Deepest nesting of lists and objects in ``checkpoint.json`` (format 1 needs 4).
MAX_JSON_DEPTH = 8
#: Largest epoch or step count accepted.
MAX_COUNT = 2**63 - 1
#: Most processes a distributed run's checkpoint records samplers for.
MAX_RANKS = 65536
#: How often a load re-reads ``checkpoint.json`` when a concurrent save replaced its tensor file.
READ_ATTEMPTS = 5

_NETWORKS = ("generator", "discriminator")
_OPTIMIZERS = ("opt_g", "opt_d")
_REQUIRED = ("format", "tensors", "epoch", "step", "history", "rng", "opt_g_groups", "opt_d_groups")


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, corrupt, truncated or does not fit the networks.

    The message starts with the path of the file at fault and says what is wrong with it.
    """


@dataclass
class TrainState:
    """Progress of a run: what a checkpoint restores besides the weights.

    Attributes
    ----------
    epoch : int
        Completed epochs.
    step : int
        Completed optimization steps.
    history : list of dict
        Per epoch: mean losses, validation PSNR, steps and seconds.
    rng : numpy.random.Generator
        Source of all sampling (order, crops, augmentation, jitter).
    """

    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    rng: np.random.Generator = field(default_factory=np.random.default_rng)

    @classmethod
    def start(cls, seed: int | list[int]) -> TrainState:
        """A fresh state whose sampling is seeded with ``seed`` (an int or a list of ints)."""
        return cls(rng=np.random.default_rng(seed))


# ---------------------------------------------------------------------------- saving
def save_checkpoint(
    directory: str | os.PathLike,
    modules: GANModules,
    state: TrainState,
    config: TrainConfig,
    *,
    samplers: list[dict[str, Any]] | None = None,
) -> Path:
    """Write the networks, optimizers and progress of a run, atomically.

    Tensors go to ``state-epochNNNNN.safetensors``, everything else to ``checkpoint.json``, which
    names the tensor file and is written last: a crash at any point leaves the previous
    checkpoint intact. The tensor files of earlier epochs, and temporaries left in the folder by
    killed writers, are removed afterwards. Nothing is pickled.

    Parameters
    ----------
    directory : str or path
        Checkpoint folder (created if needed).
    modules : GANModules
        Networks and optimizers.
    state : TrainState
        Progress.
    config : TrainConfig
        Recorded for reference.
    samplers : list of dict, optional
        The sampler states (``Generator.bit_generator.state``) of all ranks of a distributed
        run, in rank order, the first being ``state.rng``'s; None for a single process.

    Returns
    -------
    pathlib.Path
        The JSON file.
    """
    rng = state.rng.bit_generator.state
    samplers = [rng] if samplers is None else list(samplers)
    if samplers[0] != rng:
        raise ValueError("samplers: expected rank 0's sampler state, state.rng's, to come first")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)
    tensors = {}
    for prefix in _NETWORKS:
        network = getattr(modules, prefix)
        tensors.update(
            {
                f"{prefix}.{k}": v.detach().cpu().contiguous()
                for k, v in network.state_dict().items()
            }
        )
    for prefix in _OPTIMIZERS:
        tensors.update(_optimizer_tensors(prefix, getattr(modules, prefix)))
    tensor_file = f"state-epoch{state.epoch:05d}.safetensors"
    with atomic_path(folder / tensor_file) as temporary:
        save_file(tensors, temporary)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "tensors": tensor_file,
        "epoch": state.epoch,
        "step": state.step,
        "history": state.history,
        "rng": rng,
        "samplers": samplers,
        "opt_g_groups": modules.opt_g.state_dict()["param_groups"],
        "opt_d_groups": modules.opt_d.state_dict()["param_groups"],
        "config": asdict(config),
    }
    atomic_write_text(folder / CHECKPOINT_JSON, json.dumps(meta, indent=1))
    for old in folder.glob("state-epoch*.safetensors"):
        if old.name != tensor_file and TENSOR_FILE.fullmatch(old.name):
            old.unlink(missing_ok=True)
    return folder / CHECKPOINT_JSON


def _optimizer_tensors(prefix: str, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    tensors = {}
    for index, values in optimizer.state_dict()["state"].items():
        for key, value in values.items():
            tensors[f"{prefix}.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    return tensors


# ---------------------------------------------------------------------------- loading
def load_checkpoint(
    directory: str | os.PathLike, modules: GANModules, device: torch.device, ranks: Ranks = SINGLE
) -> TrainState | None:
    """Restore a run written by :func:`save_checkpoint`.

    Everything is checked before anything is loaded, so a checkpoint that fails the checks
    leaves the networks and optimizers unchanged.

    Parameters
    ----------
    directory : str or path
        Checkpoint folder.
    modules : GANModules
        Networks and optimizers of the same architecture; loaded in place (strictly).
    device : torch.device
        Where the tensors go.
    ranks : Ranks, default=SINGLE
        This process's place in a distributed run: every rank loads the same networks and
        optimizers and its own sampler.

    Returns
    -------
    TrainState or None
        The saved progress, or None when the folder holds no ``checkpoint.json``.

    Raises
    ------
    CheckpointError
        If a file of the checkpoint cannot be read, is truncated or corrupt, breaks the format,
        does not fit the networks and optimizers (other sizes, another architecture), or was
        written by a run of another number of processes.
    """
    folder = Path(directory)
    meta_path = folder / CHECKPOINT_JSON
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder}: expected a checkpoint folder, got a file")
    if not meta_path.exists() and not meta_path.is_symlink():
        return None
    meta, tensors, tensor_path = _read_consistent(meta_path, device)
    networks = {
        prefix: _network_state(tensors, prefix, getattr(modules, prefix), tensor_path)
        for prefix in _NETWORKS
    }
    optimizers = {
        prefix: _optimizer_state(
            tensors,
            prefix,
            getattr(modules, prefix),
            meta[f"{prefix}_groups"],
            meta_path,
            tensor_path,
        )
        for prefix in _OPTIMIZERS
    }
    known = tuple(f"{prefix}." for prefix in (*_NETWORKS, *_OPTIMIZERS))
    unexpected = sorted(name for name in tensors if not name.startswith(known))
    if unexpected:
        raise CheckpointError(f"{tensor_path}: unexpected tensors {_shorten(unexpected)}")
    samplers = meta.get("samplers", [meta["rng"]])  # checked by read_checkpoint_metadata
    if len(samplers) != ranks.world_size:
        raise CheckpointError(
            f"{meta_path}: written by a run of {len(samplers)} process(es); resume it with as "
            f"many (torchrun --nproc-per-node {len(samplers)}), not {ranks.world_size}"
        )
    rng = np.random.default_rng()
    rng.bit_generator.state = samplers[ranks.rank]
    try:
        for prefix, state_dict in networks.items():
            getattr(modules, prefix).load_state_dict(state_dict, strict=True)
        for prefix, state_dict in optimizers.items():
            getattr(modules, prefix).load_state_dict(state_dict)
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{tensor_path}: does not fit the networks: {error}") from error
    return TrainState(epoch=meta["epoch"], step=meta["step"], history=meta["history"], rng=rng)


def _read_consistent(
    meta_path: Path, device: torch.device
) -> tuple[dict[str, Any], dict[str, torch.Tensor], Path]:
    """The metadata and the tensor file it names, re-reading if a concurrent save replaced it."""
    previous = None
    for _ in range(READ_ATTEMPTS):
        meta = read_checkpoint_metadata(meta_path)
        tensor_path = meta_path.parent / meta["tensors"]
        try:
            return meta, _read_tensors(tensor_path, device), tensor_path
        except FileNotFoundError:
            if meta["tensors"] == previous:
                break
            previous = meta["tensors"]
    raise CheckpointError(
        f"{tensor_path}: missing; {meta_path} names it as the checkpoint's tensor file"
    )


def _read_tensors(path: Path, device: torch.device) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file; FileNotFoundError passes, other failures are named."""
    try:
        return load_file(path, device=str(device))
    except FileNotFoundError:
        raise
    except (OSError, SafetensorError, ValueError, RuntimeError, TypeError) as error:
        raise CheckpointError(
            f"{path}: not a readable safetensors file, truncated or corrupt ({error})"
        ) from error


def _network_state(
    tensors: dict[str, torch.Tensor], prefix: str, network: torch.nn.Module, path: Path
) -> dict[str, torch.Tensor]:
    """The tensors of one network, checked name by name against its ``state_dict``."""
    saved = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    expected = network.state_dict()
    problems = [f"{prefix}.{k} missing" for k in expected if k not in saved]
    problems += [f"{prefix}.{k} unexpected" for k in saved if k not in expected]
    for key in expected.keys() & saved.keys():
        want, got = expected[key], saved[key]
        if want.shape != got.shape or want.dtype != got.dtype:
            problems.append(
                f"{prefix}.{key} has shape {tuple(got.shape)} ({got.dtype}) in the file, "
                f"{tuple(want.shape)} ({want.dtype}) in the network"
            )
    if problems:
        raise CheckpointError(
            f"{path}: written for other network sizes or another architecture than the current "
            f"ones: {_shorten(sorted(problems))}"
        )
    bad = sorted(
        f"{prefix}.{k}"
        for k, v in saved.items()
        if v.is_floating_point() and not v.isfinite().all()
    )
    if bad:
        raise CheckpointError(f"{path}: non-finite values in {_shorten(bad)}")
    return saved


def _optimizer_state(
    tensors: dict[str, torch.Tensor],
    prefix: str,
    optimizer: torch.optim.Optimizer,
    groups: list[dict[str, Any]],
    meta_path: Path,
    tensor_path: Path,
) -> dict[str, Any]:
    """An optimizer ``state_dict`` from the file, checked against the optimizer's parameters."""
    current = optimizer.param_groups
    if len(groups) != len(current):
        raise CheckpointError(
            f"{meta_path}: {prefix}_groups: expected {len(current)} parameter groups, "
            f"got {len(groups)}"
        )
    for i, (group, live) in enumerate(zip(groups, current, strict=True)):
        if len(group["params"]) != len(live["params"]):
            raise CheckpointError(
                f"{meta_path}: {prefix}_groups[{i}]: expected {len(live['params'])} parameters, "
                f"got {len(group['params'])}"
            )
        for key, value in group.items():
            if key != "params" and key in live and not _same_kind(value, live[key]):
                raise CheckpointError(
                    f"{meta_path}: {prefix}_groups[{i}].{key}: expected a value like "
                    f"{live[key]!r}, got {_short_repr(value)}"
                )
    ids = list(itertools.chain.from_iterable(group["params"] for group in groups))
    if len(set(ids)) != len(ids):
        raise CheckpointError(
            f"{meta_path}: {prefix}_groups: parameter ids repeat: {_short_repr(ids)}"
        )
    params = dict(
        zip(ids, itertools.chain.from_iterable(g["params"] for g in current), strict=True)
    )
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name in sorted(k for k in tensors if k.startswith(prefix + ".")):
        _, index, key = (name.split(".", 2) + ["", ""])[:3]
        if not index.isdecimal() or int(index) not in params or not key.isidentifier():
            raise CheckpointError(
                f"{tensor_path}: tensor {name!r} names no parameter of the optimizer "
                f"(expected {prefix}.<id>.<key> with id in {sorted(params)})"
            )
        value, param = tensors[name], params[int(index)]
        if not value.is_floating_point() or value.ndim and value.shape != param.shape:
            raise CheckpointError(
                f"{tensor_path}: {name} has shape {tuple(value.shape)} ({value.dtype}); expected "
                f"a float scalar or the parameter's shape {tuple(param.shape)}"
            )
        if not value.isfinite().all():
            raise CheckpointError(f"{tensor_path}: non-finite values in {name}")
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": groups}


def _same_kind(saved: Any, live: Any) -> bool:
    """Whether a saved parameter-group value can stand for the live one (None stands for any)."""
    if saved is None or live is None:
        return True
    if isinstance(live, bool) or isinstance(saved, bool):
        return isinstance(live, bool) and isinstance(saved, bool)
    if _is_number(live):
        return _is_number(saved)
    if isinstance(live, (list, tuple)):
        return isinstance(saved, (list, tuple)) and len(saved) == len(live)
    return type(saved) is type(live)


# ---------------------------------------------------------------------------- the JSON file
def read_checkpoint_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Read ``checkpoint.json`` and check it against format 1.

    Parameters
    ----------
    path : str or path
        The JSON file.

    Returns
    -------
    dict
        The metadata: ``format``, ``tensors`` (a plain file name in the same folder),
        ``epoch`` and ``step`` (non-negative ints), ``history`` (list of dicts of numbers),
        ``rng`` (a NumPy PCG64 state), optionally ``samplers`` (a non-empty list of PCG64
        states starting with ``rng``), ``opt_g_groups`` and ``opt_d_groups`` (lists of
        parameter-group dicts) and, for reference, ``config``.

    Raises
    ------
    CheckpointError
        If the file cannot be read, is too large, empty, not JSON (truncated or corrupt), nested
        too deeply, or breaks the format; the message starts with ``path``.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_JSON_BYTES + 1)
    except OSError as error:
        raise CheckpointError(f"{path}: cannot be read: {error.strerror or error}") from error
    if len(raw) > MAX_JSON_BYTES:
        raise CheckpointError(f"{path}: larger than {MAX_JSON_BYTES} bytes, not a checkpoint")
    if not raw.strip():
        raise CheckpointError(f"{path}: empty; the checkpoint was not written completely")
    try:
        meta = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{path}: not UTF-8 text ({error.reason})") from error
    except json.JSONDecodeError as error:
        raise CheckpointError(
            f"{path}: not valid JSON, truncated or corrupt ({error.msg}: line {error.lineno} "
            f"column {error.colno})"
        ) from error
    except RecursionError as error:
        raise CheckpointError(f"{path}: JSON nested too deeply") from error
    except ValueError as error:  # e.g. an integer with too many digits
        raise CheckpointError(f"{path}: not a valid checkpoint ({error})") from error
    _check_depth(meta, path)
    _check_schema(meta, path)
    return meta


def _check_depth(value: Any, path: Path) -> None:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise CheckpointError(
                f"{path}: JSON nested deeper than {MAX_JSON_DEPTH} levels, not a checkpoint"
            )
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def _check_schema(meta: Any, path: Path) -> None:
    def fail(where: str, expected: str, value: Any) -> CheckpointError:
        return CheckpointError(f"{path}: {where}: expected {expected}, got {_short_repr(value)}")

    if not isinstance(meta, dict):
        raise fail("top level", "a JSON object", meta)
    missing = [key for key in _REQUIRED if key not in meta]
    if missing:
        raise CheckpointError(f"{path}: missing keys {missing}; not a complete checkpoint")
    if not _is_int(meta["format"]) or meta["format"] != CHECKPOINT_FORMAT:
        raise fail("format", f"{CHECKPOINT_FORMAT} (the format this version reads)", meta["format"])
    for key in ("epoch", "step"):
        if not _is_int(meta[key]) or not 0 <= meta[key] <= MAX_COUNT:
            raise fail(key, "a non-negative integer", meta[key])
    name = meta["tensors"]
    match = TENSOR_FILE.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise fail(
            "tensors",
            "a file name like 'state-epoch00002.safetensors' in the checkpoint folder",
            name,
        )
    if int(match["epoch"]) != meta["epoch"]:
        raise fail("tensors", f"the tensor file of epoch {meta['epoch']}", name)
    history = meta["history"]
    if not isinstance(history, list):
        raise fail("history", "a list of per-epoch records", history)
    for i, record in enumerate(history):
        if not isinstance(record, dict) or not all(_is_number(v) for v in record.values()):
            raise fail(f"history[{i}]", "an object of numbers", record)
    _check_rng(meta["rng"], path)
    if "samplers" in meta:
        samplers = meta["samplers"]
        if not isinstance(samplers, list) or not samplers or len(samplers) > MAX_RANKS:
            raise fail("samplers", f"a list of 1 to {MAX_RANKS} sampler states", samplers)
        for i, state in enumerate(samplers):
            _check_rng(state, path, f"samplers[{i}]")
        if samplers[0] != meta["rng"]:
            raise fail("samplers[0]", "the state of rng", samplers[0])
    for key in ("opt_g_groups", "opt_d_groups"):
        groups = meta[key]
        if not isinstance(groups, list) or not groups:
            raise fail(key, "a non-empty list of parameter groups", groups)
        for i, group in enumerate(groups):
            params = group.get("params") if isinstance(group, dict) else None
            if not isinstance(params, list) or not all(_is_int(p) and p >= 0 for p in params):
                raise fail(f"{key}[{i}]", "an object whose 'params' lists parameter ids", group)
            for name_, value in group.items():
                if name_ != "params" and not _is_group_value(value):
                    raise fail(f"{key}[{i}].{name_}", "a number, string, bool or null", value)
    if "config" in meta and not isinstance(meta["config"], dict):
        raise fail("config", "an object", meta["config"])


def _check_rng(state: Any, path: Path, where: str = "rng") -> None:
    """A NumPy PCG64 bit-generator state, as ``Generator.bit_generator.state`` gives it."""
    expected = (
        "{'bit_generator': 'PCG64', 'state': {'state': int, 'inc': int}, 'has_uint32': 0 or 1, "
        "'uinteger': int}"
    )
    inner = state.get("state") if isinstance(state, dict) else None
    valid = (
        isinstance(state, dict)
        and state.get("bit_generator") == "PCG64"
        and isinstance(inner, dict)
        and all(_is_int(inner.get(k)) and 0 <= inner[k] < 2**128 for k in ("state", "inc"))
        and state.get("has_uint32") in (0, 1)
        and not isinstance(state.get("has_uint32"), bool)
        and _is_int(state.get("uinteger"))
        and 0 <= state["uinteger"] < 2**32
    )
    if not valid:
        raise CheckpointError(f"{path}: {where}: expected {expected}, got {_short_repr(state)}")
    try:
        np.random.PCG64().state = state
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{path}: {where}: not a valid PCG64 state ({error})") from error


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_group_value(value: Any) -> bool:
    if value is None or isinstance(value, (bool, str)):
        return True
    if _is_number(value):
        return not isinstance(value, float) or math.isfinite(value)
    return isinstance(value, list) and len(value) <= 8 and all(_is_number(v) for v in value)


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shorten(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"
