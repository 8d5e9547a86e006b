"""Train a stain-style transfer model on target-lab tiles, save it, reload it, and use it.

Target lab: labeled synthetic "radboud" tiles (stand-ins for your lab's tiles); the labels train
the tumour classifier of the feature-preserving loss. The model is trained with the CPU preset
within a time budget, saved as a shareable folder (``config.json``, ``model.safetensors``,
``README.md`` model card), loaded back with :func:`stainstyle.load`, and checked to give
bit-identical output. Then it normalizes tiles of another lab ("utrecht").

Writes ``OUT/sst-radboud/`` (the model folder) and ``OUT/train_and_share_sst.png`` (rows:
source tiles, after the reloaded model, the same tissue in the target lab). To share the
folder: ``stainstyle.load(OUT / "sst-radboud").push_to_hub("your-org/name")`` (docs/hub.md).

    python examples/train_and_share_sst.py --out results [--budget 300]
    python examples/train_and_share_sst.py --out results --quick   # tiny network, seconds
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

import stainstyle
from stainstyle.data import make_tiles, render_pair


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds")
    parser.add_argument("--device", default="auto", help='"auto", "cpu", "cuda", ...')
    parser.add_argument(
        "--quick", action="store_true", help="tiny network, one epoch, no feature loss"
    )
    args = parser.parse_args(argv)

    n_tiles = 32 if args.quick else 512
    target, labels = make_tiles(n_tiles, "radboud", size=64, seed=0)
    if args.quick:
        sst = stainstyle.StainStyleTransfer(
            width=4, depth=2, crop_size=16, max_epochs=1, lambda_fp=0, device=args.device
        )
        sst.fit(target)
    else:
        sst = stainstyle.StainStyleTransfer(
            preset="cpu", time_budget=args.budget, device=args.device, verbose=True
        )
        sst.fit(target, labels)  # labels: classifier of the feature-preserving loss
    last = sst.history_[-1]
    print(f"trained {sst.epoch_} epochs; held-out reconstruction PSNR {last['val_psnr']:.2f} dB")

    folder = args.out / "sst-radboud"
    sst.save_pretrained(
        folder,
        model_card_kwargs={
            "training_data": f"{n_tiles} synthetic 64x64 tiles in the 'radboud' style "
            "(stainstyle.data.make_tiles, seed 0)",
            "benchmark": {"val_psnr_db": round(float(last["val_psnr"]), 2)},
        },
    )
    reloaded = stainstyle.load(folder)

    truth, source, _ = render_pair(4, "radboud", "utrecht", size=64, seed=1)
    normalized = reloaded.transform(source)
    if not np.array_equal(normalized, sst.transform(source)):
        raise RuntimeError("the reloaded model does not reproduce the trained model's output")
    rows = [np.concatenate(list(images), axis=1) for images in (source, normalized, truth)]
    picture = args.out / "train_and_share_sst.png"
    Image.fromarray(np.concatenate(rows, axis=0)).save(picture)
    config = json.loads((folder / "config.json").read_text())
    print(f"reloaded {config['class']} reproduces the trained model's output")
    print(f"wrote {folder}/ ({', '.join(sorted(p.name for p in folder.iterdir()))}) and {picture}")
    return folder


if __name__ == "__main__":
    main()
