"""Attacks on ``stainstyle.sst.checkpoint.load_checkpoint`` and ``train-sst --resume``.

A checkpoint folder is untrusted input: empty, truncated, corrupt, oversized or deeply nested
``checkpoint.json`` files, wrong types and ranges, a tensor file name that escapes the folder,
truncated or corrupt safetensors, tensors of other sizes or another architecture, and a save
running concurrently with loads. Every failure raises one exception type,
:class:`~stainstyle.sst.checkpoint.CheckpointError` (a ``ValueError``), whose message starts with
the path of the file at fault, and leaves the networks untouched.
"""

import json
import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from stainstyle._atomic import TEMPORARY_SUFFIX
from stainstyle.cli import main
from stainstyle.sst.checkpoint import (
    CHECKPOINT_JSON,
    MAX_JSON_BYTES,
    CheckpointError,
    TrainState,
    load_checkpoint,
    save_checkpoint,
)
from stainstyle.sst.discriminator import DCGANDiscriminator
from stainstyle.sst.fusionnet import FusionNet
from stainstyle.sst.setup import TrainConfig, make_modules
from stainstyle.sst.train import make_pairs, train

CPU = torch.device("cpu")
TENSORS = "state-epoch00002.safetensors"


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def modules(width=4, crop=16):
    config = TrainConfig(crop_size=crop, batch_size=4, checkpoint_dir=None)
    nets = make_modules(
        FusionNet(width=width, depth=2), DCGANDiscriminator(crop, width=8), None, config, CPU
    )
    return nets, config


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A checkpoint after two epochs (with Adam moments), as bytes per file name."""
    folder = tmp_path_factory.mktemp("checkpoint")
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (4, 20, 20, 3), dtype=np.uint8)
    nets, config = modules()
    config.checkpoint_dir = str(folder)
    train(nets, make_pairs(list(tiles), [t[..., 0] for t in tiles]), config, TrainState.start(0), 2,
          device=CPU)  # fmt: skip
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.fixture
def folder(tmp_path, saved):
    """A fresh copy of the checkpoint."""
    for name, data in saved.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


def meta_of(folder):
    return json.loads((folder / CHECKPOINT_JSON).read_text())


def write_meta(folder, meta):
    (folder / CHECKPOINT_JSON).write_text(json.dumps(meta))


def assert_refused(folder, match, *, nets=None, file=CHECKPOINT_JSON):
    """Loading raises CheckpointError naming ``folder / file`` first, and changes nothing."""
    nets = nets or modules()[0]
    before = {k: v.clone() for k, v in nets.generator.state_dict().items()}
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(folder, nets, CPU)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(f"{folder / file}: "), str(info.value)
    assert "\n" not in str(info.value)
    for key, value in nets.generator.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not nets.opt_g.state_dict()["state"]


def test_the_intact_checkpoint_loads(folder):
    nets = modules()[0]
    state = load_checkpoint(folder, nets, CPU)
    assert state.epoch == 2 and len(state.history) == 2 and nets.opt_g.state_dict()["state"]


# ------------------------------------------------------------------------ checkpoint.json bytes
@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "empty"),
        (b"  \n", "empty"),
        (b"hello", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"[1, 2, 3]", "top level: expected a JSON object"),
        (b"null", "top level: expected a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"epoch": 1' + b"0" * 5000 + b"}", "not a valid checkpoint"),
    ],
    ids=["empty", "blank", "text", "binary", "list", "null", "deep-array", "huge-int"],
)
def test_unreadable_json(folder, content, match):
    (folder / CHECKPOINT_JSON).write_bytes(content)
    assert_refused(folder, match)


def test_truncated_json(folder, saved):
    data = saved[CHECKPOINT_JSON]
    for cut in (1, len(data) // 3, len(data) // 2, len(data) - 2):
        (folder / CHECKPOINT_JSON).write_bytes(data[:cut])
        assert_refused(folder, "not valid JSON, truncated or corrupt")


def test_oversized_json(folder):
    with open(folder / CHECKPOINT_JSON, "wb") as f:
        f.write(b" " * (MAX_JSON_BYTES + 1) + b"{}")
    assert_refused(folder, "larger than")


def test_deeply_nested_json_within_the_parser_limit(folder):
    meta = meta_of(folder)
    nested = "x"
    for _ in range(200):
        nested = [nested]
    meta["config"] = {"deep": nested}
    write_meta(folder, meta)
    assert_refused(folder, "nested deeper than")


def test_json_that_is_a_folder(folder):
    (folder / CHECKPOINT_JSON).unlink()
    (folder / CHECKPOINT_JSON).mkdir()
    assert_refused(folder, "cannot be read")


# ------------------------------------------------------------------------ checkpoint.json schema
@pytest.mark.parametrize(
    "key", ["format", "tensors", "epoch", "step", "history", "rng", "opt_g_groups", "opt_d_groups"]
)
def test_missing_key(folder, key):
    meta = meta_of(folder)
    del meta[key]
    write_meta(folder, meta)
    assert_refused(folder, re.escape(f"missing keys ['{key}']"))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"format": 2}, "format: expected 1"),
        ({"format": "1"}, "format: expected 1"),
        ({"format": True}, "format: expected 1"),
        ({"epoch": -1}, "epoch: expected a non-negative integer, got -1"),
        ({"epoch": "2"}, "epoch: expected a non-negative integer"),
        ({"epoch": 2.0}, "epoch: expected a non-negative integer"),
        ({"epoch": True}, "epoch: expected a non-negative integer"),
        ({"epoch": 2**70}, "epoch: expected a non-negative integer"),
        ({"step": -5}, "step: expected a non-negative integer"),
        ({"step": None}, "step: expected a non-negative integer"),
        ({"tensors": "../../x"}, "tensors: expected a file name like"),
        ({"tensors": "/etc/passwd"}, "tensors: expected a file name like"),
        ({"tensors": "state-epoch00002.safetensors/../../x"}, "tensors: expected a file name"),
        ({"tensors": "sub/state-epoch00002.safetensors"}, "tensors: expected a file name"),
        ({"tensors": 2}, "tensors: expected a file name"),
        ({"tensors": "state-epoch00001.safetensors"}, "tensors: expected the tensor file of ep"),
        ({"history": {"d": 1}}, "history: expected a list"),
        ({"history": [{"d": "high"}]}, r"history\[0\]: expected an object of numbers"),
        ({"history": [[1, 2]]}, r"history\[0\]: expected an object of numbers"),
        ({"history": [{"d": True}]}, r"history\[0\]: expected an object of numbers"),
        ({"rng": {}}, "rng: expected"),
        ({"rng": "seed"}, "rng: expected"),
        ({"opt_g_groups": []}, "opt_g_groups: expected a non-empty list"),
        ({"opt_g_groups": {"lr": 1}}, "opt_g_groups: expected a non-empty list"),
        ({"opt_d_groups": [{"lr": 0.1}]}, r"opt_d_groups\[0\]: expected an object whose 'params'"),
        ({"opt_d_groups": [{"params": "all"}]}, r"opt_d_groups\[0\]: expected an object"),
        ({"opt_d_groups": [{"params": [-1]}]}, r"opt_d_groups\[0\]: expected an object"),
        ({"config": [1]}, "config: expected an object"),
    ],
)
def test_wrong_types_and_ranges(folder, change, match):
    meta = meta_of(folder)
    meta.update(change)
    write_meta(folder, meta)
    assert_refused(folder, match)


@pytest.mark.parametrize(
    "rng",
    [
        {"bit_generator": "MT19937", "state": {"state": 1, "inc": 1}, "has_uint32": 0,
         "uinteger": 0},
        {"bit_generator": "PCG64", "state": {"state": "1", "inc": 1}, "has_uint32": 0,
         "uinteger": 0},
        {"bit_generator": "PCG64", "state": {"state": 1, "inc": 2**128}, "has_uint32": 0,
         "uinteger": 0},
        {"bit_generator": "PCG64", "state": {"state": 1, "inc": 1}, "has_uint32": 2,
         "uinteger": 0},
        {"bit_generator": "PCG64", "state": {"state": 1}, "has_uint32": 0, "uinteger": 0},
        {"bit_generator": "PCG64", "state": {"state": 1, "inc": 1}, "has_uint32": 0},
    ],
    ids=["other-generator", "string", "too-large", "flag", "no-inc", "no-uinteger"],
)  # fmt: skip
def test_bad_rng_state(folder, rng):
    meta = meta_of(folder)
    meta["rng"] = rng
    write_meta(folder, meta)
    assert_refused(folder, "rng: expected")


@pytest.mark.parametrize(
    ("samplers", "match"),
    [
        ("all", "samplers: expected a list of 1 to"),
        ([], "samplers: expected a list of 1 to"),
        ([None] * 70_000, "samplers: expected a list of 1 to"),
        ("first-then-junk", r"samplers\[1\]: expected"),
        ("other-first", r"samplers\[0\]: expected the state of rng"),
    ],
)
def test_bad_samplers_of_a_distributed_run(folder, samplers, match):
    meta = meta_of(folder)
    other = np.random.default_rng(1).bit_generator.state
    named = {
        "first-then-junk": [meta["rng"], {"bit_generator": "PCG64"}],
        "other-first": [other, meta["rng"]],
    }
    meta["samplers"] = named.get(samplers, samplers) if isinstance(samplers, str) else samplers
    write_meta(folder, meta)
    assert_refused(folder, match)


def test_a_checkpoint_of_two_processes_resumes_only_on_two(folder):
    meta = meta_of(folder)
    meta["samplers"] = [meta["rng"], np.random.default_rng(1).bit_generator.state]
    write_meta(folder, meta)
    assert_refused(folder, r"written by a run of 2 process\(es\); resume it with as many")


def test_a_checkpoint_without_samplers_loads_in_one_process(folder):
    meta = meta_of(folder)
    assert meta.pop("samplers") == [meta["rng"]]
    write_meta(folder, meta)
    state = load_checkpoint(folder, modules()[0], CPU)
    assert state.rng.bit_generator.state == meta["rng"]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda g: [g[0], g[0]], "opt_g_groups: expected 1 parameter groups, got 2"),
        (lambda g: [{**g[0], "params": g[0]["params"][:-1]}], r"opt_g_groups\[0\]: expected \d+"),
        (lambda g: [{**g[0], "params": [0] * len(g[0]["params"])}], "parameter ids repeat"),
        (lambda g: [{**g[0], "lr": "fast"}], r"opt_g_groups\[0\]\.lr: expected a value like"),
        (lambda g: [{**g[0], "betas": [0.5, 0.9, 0.1]}], r"opt_g_groups\[0\]\.betas: expected"),
        (lambda g: [{**g[0], "amsgrad": 1}], r"opt_g_groups\[0\]\.amsgrad: expected"),
        (lambda g: [{**g[0], "lr": {"x": 1}}], r"opt_g_groups\[0\]\.lr: expected a number"),
    ],
    ids=["two-groups", "fewer-params", "repeated-ids", "lr-string", "betas-3", "bool", "object"],
)
def test_optimizer_groups_that_do_not_fit(folder, edit, match):
    meta = meta_of(folder)
    meta["opt_g_groups"] = edit(meta["opt_g_groups"])
    write_meta(folder, meta)
    assert_refused(folder, match)


# ------------------------------------------------------------------------ the tensor file
def test_missing_tensor_file(folder):
    (folder / TENSORS).unlink()
    assert_refused(folder, "missing; .*checkpoint.json names it", file=TENSORS)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda data: b"",
        lambda data: data[:7],
        lambda data: data[: len(data) // 2],
        lambda data: data[:-1],
        lambda data: (2**60).to_bytes(8, "little") + data[8:],
        lambda data: data[:8] + b"{not json" + data[17:],
        lambda data: bytes(len(data)),
    ],
    ids=["empty", "7-bytes", "half", "one-byte-short", "huge-header", "bad-header", "zeros"],
)
def test_truncated_or_corrupt_tensor_file(folder, saved, corrupt):
    (folder / TENSORS).write_bytes(corrupt(saved[TENSORS]))
    assert_refused(folder, "not a readable safetensors file", file=TENSORS)


def edit_tensors(folder, edit):
    tensors = load_file(folder / TENSORS)
    edit(tensors)
    save_file(tensors, folder / TENSORS)


def test_tensors_of_other_network_sizes(folder):
    assert_refused(
        folder, "other network sizes or another architecture", nets=modules(width=8)[0],
        file=TENSORS,
    )  # fmt: skip


def test_checkpoint_of_another_architecture(folder):
    """A discriminator for 32 px crops has one more layer than the saved one for 16 px."""
    assert_refused(folder, "discriminator.net.* missing", nets=modules(crop=32)[0], file=TENSORS)


def test_generator_tensors_from_another_network(folder):
    def swap(tensors):
        for key in [k for k in tensors if k.startswith("generator.")]:
            del tensors[key]
        other = DCGANDiscriminator(16, width=8).state_dict()
        tensors.update({f"generator.{k}": v for k, v in other.items()})

    edit_tensors(folder, swap)
    assert_refused(folder, "generator.* missing", file=TENSORS)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t.update({"evil.payload": torch.zeros(3)}), r"unexpected tensors evil\.payload"),
        (lambda t: t.pop(next(k for k in t if k.startswith("generator."))), "missing"),
        (lambda t: t.update({"generator.output.0.bias": torch.zeros(3, dtype=torch.float64)}),
         r"generator\.output\.0\.bias has shape \(3,\) \(torch\.float64\)"),
        (lambda t: t.update({"generator.output.0.bias": torch.tensor([0.0, float("nan"), 0.0])}),
         r"non-finite values in generator\.output\.0\.bias"),
        (lambda t: t.update({"opt_g.x.exp_avg": torch.zeros(1)}), "names no parameter"),
        (lambda t: t.update({"opt_g.999.exp_avg": torch.zeros(1)}), "names no parameter"),
        (lambda t: t.update({"opt_g": torch.zeros(1)}), "unexpected tensors opt_g"),
        (lambda t: t.update({"opt_g.0.exp_avg": torch.zeros(2, 2, 2)}), "expected a float scalar"),
        (lambda t: t.update({"opt_d.0.step": torch.tensor(3)}), "expected a float scalar"),
        (lambda t: t.update({"opt_d.0.step": torch.tensor(float("inf"))}), "non-finite values"),
    ],
    ids=["extra", "missing", "dtype", "nan", "bad-index", "out-of-range", "no-key", "shape",
         "int-step", "inf-step"],
)  # fmt: skip
def test_tensors_that_do_not_fit(folder, edit, match):
    edit_tensors(folder, edit)
    assert_refused(folder, match, file=TENSORS)


def test_not_a_folder(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(CheckpointError, match="expected a checkpoint folder, got a file"):
        load_checkpoint(path, modules()[0], CPU)


# ------------------------------------------------------------------------ writing
def test_saved_files_get_the_umask_mode_and_stale_temporaries_go(tmp_path):
    nets, config = modules()
    dead = next(pid for pid in range(4_000_000, 4_100_000) if not _alive(pid))
    stale = tmp_path / f".{TENSORS}.{dead}-0123abcd{TEMPORARY_SUFFIX}"
    stale.write_bytes(b"partial")
    previous = os.umask(0o027)
    try:
        save_checkpoint(tmp_path, nets, TrainState(epoch=2), config)
    finally:
        os.umask(previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_JSON, TENSORS]
    for path in tmp_path.iterdir():
        assert path.stat().st_mode & 0o777 == 0o640, path


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def test_loads_during_concurrent_saves_see_whole_checkpoints(tmp_path):
    """A save running beside loads: each load gets one epoch's metadata and tensors, or none."""
    writer_nets, config = modules()
    marker = writer_nets.generator.output[0].bias
    stop, errors = threading.Event(), []

    def write():
        try:
            for epoch in range(1, 10_000):
                with torch.no_grad():
                    marker.fill_(epoch)
                save_checkpoint(tmp_path, writer_nets, TrainState(epoch=epoch, step=epoch), config)
                if stop.is_set():
                    return
                time.sleep(0.002)
        except BaseException as error:
            errors.append(error)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        loads = 0
        while loads < 40 and writer.is_alive():
            reader = modules()[0]
            state = load_checkpoint(tmp_path, reader, CPU)
            if state is None:
                continue
            assert torch.all(reader.generator.output[0].bias == state.epoch)
            assert state.step == state.epoch
            loads += 1
    finally:
        stop.set()
        writer.join()
    assert not errors, errors
    assert loads == 40


# ------------------------------------------------------------------------ the command line
def test_train_sst_resume_over_a_truncated_state_file(tmp_path, capsys):
    target = tmp_path / "target"
    target.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        tile = rng.integers(40, 220, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(tile).save(target / f"tile{i}.png")
    checkpoints = tmp_path / "ckpt"
    argv = ["train-sst", "--target", str(target), "--out", str(tmp_path / "model"),
            "--resume", "--checkpoint-dir", str(checkpoints),
            "--param", "width=4", "--param", "depth=2", "--param", "crop_size=16",
            "--param", "lambda_fp=0", "--device", "cpu", "-q"]  # fmt: skip
    assert main([*argv, "--max-epochs", "1"]) == 0
    state_file = checkpoints / "state-epoch00001.safetensors"
    data = state_file.read_bytes()
    state_file.write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    assert main([*argv, "--max-epochs", "2"]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert "CheckpointError" in lines[0] and str(state_file) in lines[0], lines[0]
    assert "not a readable safetensors file" in lines[0]


def test_train_sst_resume_over_a_corrupt_json(tmp_path, capsys):
    target = tmp_path / "target"
    target.mkdir()
    tile = np.random.default_rng(0).integers(40, 220, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(tile).save(target / "a.png")
    checkpoints = tmp_path / "ckpt"
    checkpoints.mkdir()
    (checkpoints / CHECKPOINT_JSON).write_text('{"format": 1, "epoch": -3')
    argv = ["train-sst", "--target", str(target), "--out", str(tmp_path / "model"),
            "--resume", "--checkpoint-dir", str(checkpoints), "--max-epochs", "1",
            "--param", "width=4", "--param", "depth=2", "--param", "crop_size=16",
            "--param", "lambda_fp=0", "--device", "cpu", "-q"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{checkpoints / CHECKPOINT_JSON}: not valid JSON" in err
    assert not Path(tmp_path / "model").exists()
