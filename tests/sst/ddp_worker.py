"""One rank of a distributed training run, as tests/sst/test_distributed.py launches it.

Usage (each rank)::

    ddp_worker.py REPORT_DIR WATCHED_DIR fit TILES.npy PARAMS_JSON
    ddp_worker.py REPORT_DIR WATCHED_DIR cli ARG...

``fit`` trains a StainStyleTransfer on the tiles with the given parameters and saves this rank's
networks to ``REPORT_DIR/rank<R>.safetensors``; ``cli`` runs ``stainstyle ARG...``. Either way,
every rank but 0 records each attempt to create, change or remove anything below
``WATCHED_DIR`` (through Python's audit hooks), and every rank writes what it saw to
``REPORT_DIR/rank<R>.json``.
"""

import json
import os
import sys
from pathlib import Path


def _watch_writes(root: Path, seen: list) -> None:
    """Record every Python-level write, rename or removal below ``root``."""
    root = os.path.realpath(root)
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def below(path) -> bool:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, (str, os.PathLike)):
            return False
        resolved = os.path.realpath(os.path.join(os.getcwd(), os.fspath(path)))
        return resolved == root or resolved.startswith(root + os.sep)

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writes = any(c in mode for c in "wax+") if isinstance(mode, str) else flags & writing
            if writes and below(path):
                seen.append([event, os.fspath(path)])
        elif event in ("os.rename", "os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree"):
            paths = args[:2] if event == "os.rename" else args[:1]
            if any(below(p) for p in paths):
                seen.append([event, *map(str, paths)])

    sys.addaudithook(hook)


def main() -> int:
    report, watched, mode, *rest = sys.argv[1:]
    rank = int(os.environ.get("RANK", 0))
    writes: list = []
    if rank != 0:
        _watch_writes(Path(watched), writes)
    result: dict = {"rank": rank, "writes": writes}
    if mode == "fit":
        import numpy as np
        import torch
        from safetensors.torch import save_file

        from stainstyle.sst import StainStyleTransfer

        torch.set_num_threads(1)
        tiles = np.load(rest[0])
        model = StainStyleTransfer(**json.loads(rest[1])).fit(tiles)
        tensors = {
            f"{name}.{key}": value.detach().cpu().contiguous()
            for name in ("generator_", "discriminator_")
            for key, value in getattr(model, name).state_dict().items()
        }
        save_file(tensors, Path(report) / f"rank{rank}.safetensors")
        result.update(epoch=model.epoch_, history=model.history_)
        code = 0
    else:
        from stainstyle.cli.app import main as stainstyle

        code = stainstyle(rest)
    result["exit_code"] = code
    (Path(report) / f"rank{rank}.json").write_text(json.dumps(result))
    return code


if __name__ == "__main__":
    sys.exit(main())
