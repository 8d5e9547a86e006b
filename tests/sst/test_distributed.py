"""Data-parallel training under torchrun: two CPU processes with the gloo backend.

Each test launches ``python -m torch.distributed.run --nproc-per-node 2`` on
``tests/sst/ddp_worker.py``, which trains tiny networks and reports what each rank ended with
and every file it tried to write.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from _support import skip_or_fail
from PIL import Image
from safetensors.torch import load_file

from stainstyle.hub import load_folder
from stainstyle.sst import StainStyleTransfer
from stainstyle.sst.checkpoint import CHECKPOINT_JSON, read_checkpoint_metadata
from stainstyle.sst.distributed import SINGLE, Ranks

if not (dist.is_available() and dist.is_gloo_available()):
    skip_or_fail("torch.distributed with the gloo backend is not available")

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ddp_worker.py")
#: Tiny networks and crops: 16 tiles, 2 crops per rank and step, so 4 steps per epoch on 2 ranks.
PARAMS = {
    "width": 4,
    "depth": 2,
    "crop_size": 16,
    "train_batch_size": 2,
    "lambda_fp": 0,
    "validation_fraction": 0,
    "device": "cpu",
}
#: Longest a launch may take before the test gives up on it (a guard against hangs, not a speed
#: requirement: a launch takes some 20 s on a busy 2-core machine).
LAUNCH_TIMEOUT = 600


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(report: Path, watched: Path, *args: str) -> subprocess.Popen:
    """Start two ranks of the worker; the repository's own stainstyle comes first on the path."""
    report.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        str(WORKER),
        str(report),
        str(watched),
        *args,
    ]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=LAUNCH_TIMEOUT)
    assert process.returncode == 0, output[-4000:]
    return output


def _reports(report: Path) -> list[dict]:
    return [json.loads((report / f"rank{r}.json").read_text()) for r in range(2)]


def test_shards_are_disjoint_equal_and_cover_all_but_the_remainder():
    shards = [Ranks(rank, 3).shard(11) for rank in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    assert len(set(np.concatenate(shards).tolist())) == 9
    assert SINGLE.shard(5).tolist() == [0, 1, 2, 3, 4]
    assert Ranks(1, 2).seed(7) == [7, 1] and SINGLE.seed(7) == [7]
    with pytest.raises(ValueError, match="at least one tile per process"):
        Ranks(0, 4).shard(3)


def test_ranks_end_identical_rank0_writes_alone_and_loss_matches_one_process(tmp_path, tiles):
    data = np.concatenate([tiles, tiles[:4, ::-1]])  # 16 tiles
    np.save(tmp_path / "tiles.npy", data)
    out = tmp_path / "out"
    params = {**PARAMS, "max_epochs": 3, "checkpoint_dir": str(out / "checkpoints")}
    _finish(
        _torchrun(tmp_path / "report", out, "fit", str(tmp_path / "tiles.npy"), json.dumps(params))
    )
    ranks = _reports(tmp_path / "report")
    assert ranks[1]["writes"] == [], "only rank 0 may write in the output folder"
    weights = [load_file(tmp_path / "report" / f"rank{r}.safetensors") for r in range(2)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    losses = [[{k: v for k, v in e.items() if k != "seconds"} for e in r["history"]] for r in ranks]
    assert losses[0] == losses[1], "the recorded losses are the means over the ranks"
    meta = read_checkpoint_metadata(out / "checkpoints" / CHECKPOINT_JSON)
    assert meta["epoch"] == 3 and meta["step"] == 12
    assert len(meta["samplers"]) == 2 and meta["samplers"][0] != meta["samplers"][1]

    # One process at the same global batch (2 ranks x 2 crops) and the same number of steps.
    single = StainStyleTransfer(**{**PARAMS, "max_epochs": 3, "train_batch_size": 4}).fit(data)
    ddp_l1, single_l1 = ranks[0]["history"][-1]["l1"], single.history_[-1]["l1"]
    print(f"L1 after 12 steps at global batch 4: 2 ranks {ddp_l1:.4f}, 1 process {single_l1:.4f}")
    assert single.history_[-1]["steps"] == ranks[0]["history"][-1]["steps"] == 4
    # Both runs make the same 12 Adam steps from the same initial weights on the same tiles; they
    # differ only in the crops drawn and in BatchNorm statistics over 2 rather than 4 crops, so
    # their reconstruction losses must be close: at 12 steps they are within 10% here, and the
    # bound of a factor 1.5 only catches a run whose gradients were not averaged or not applied.
    assert 1 / 1.5 < ddp_l1 / single_l1 < 1.5


def test_run_killed_after_a_checkpoint_resumes_under_ddp(tmp_path, tiles):
    target = tmp_path / "target"
    target.mkdir()
    for i, tile in enumerate(np.concatenate([tiles, tiles[:4, ::-1]])):
        Image.fromarray(tile).save(target / f"tile{i:02d}.png")
    out = tmp_path / "out"
    model, checkpoints = out / "model", out / "checkpoints"
    params = [f"--param={k}={json.dumps(v)}" for k, v in PARAMS.items() if k != "device"]
    command = [
        "cli",
        "train-sst",
        "--target",
        str(target),
        "--out",
        str(model),
        "--checkpoint-dir",
        str(checkpoints),
        "--device",
        "cpu",
        "--quiet",
        *params,
    ]
    first = _torchrun(tmp_path / "report1", out, *command, "--max-epochs", "100000")
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    while not (checkpoints / CHECKPOINT_JSON).exists():
        assert first.poll() is None, first.communicate()[0][-4000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.2)
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=LAUNCH_TIMEOUT)
    assert first.returncode != 0
    assert not model.exists(), "the killed run must not have saved a model"
    saved = read_checkpoint_metadata(checkpoints / CHECKPOINT_JSON)
    epoch = saved["epoch"]
    assert epoch >= 1 and saved["step"] == 4 * epoch and len(saved["samplers"]) == 2

    resumed = _torchrun(
        tmp_path / "report2", out, *command, "--resume", "--max-epochs", str(epoch + 2)
    )
    _finish(resumed)
    for report in ("report1", "report2"):
        assert _reports(tmp_path / report)[1]["writes"] == []
    assert [r["exit_code"] for r in _reports(tmp_path / "report2")] == [0, 0]
    final = read_checkpoint_metadata(checkpoints / CHECKPOINT_JSON)
    assert final["epoch"] == epoch + 2 and final["step"] == 4 * (epoch + 2)
    assert final["history"][:epoch] == saved["history"]
    fitted = load_folder(model)
    assert fitted.epoch_ == epoch + 2 and fitted.history_ == final["history"]
