"""A stain normalizer inside a PyTorch data pipeline: train a small CNN on normalized batches.

The normalizer is fitted once on target-lab tiles, then applied in the DataLoader's
``collate_fn``: each batch of uint8 ``(N, H, W, 3)`` tiles is normalized in one call (faster
than tile by tile), then turned into a float tensor ``(N, 3, H, W)`` in [0, 1]. The fitted
normalizer is an ordinary picklable object, so it works with ``num_workers > 0``: each worker
gets a copy. A small CNN is trained on target-lab tiles for a few epochs and evaluated on
another lab's tiles, which pass through the same normalizing loader.

Writes ``OUT/torch_dataloader.json`` (losses per epoch, accuracy on the other lab with and
without the normalizer) and ``OUT/torch_dataloader_batch.png`` (the first normalized batch of
the other lab).

    python examples/torch_dataloader.py --out results [--quick] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

import stainstyle
from stainstyle.data import make_tiles


class Tiles(Dataset):
    """uint8 tiles ``(H, W, 3)`` and integer labels, as stored on disk or in memory."""

    def __init__(self, tiles: np.ndarray, labels: np.ndarray):
        self.tiles, self.labels = tiles, labels

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.tiles[index], int(self.labels[index])


def normalize_collate(items, normalizer=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack a batch, normalize it, and convert it to ``float32 (N, 3, H, W)`` in [0, 1]."""
    tiles = np.stack([tile for tile, _ in items])
    if normalizer is not None:
        tiles = normalizer.transform(tiles)
    images = torch.from_numpy(tiles).permute(0, 3, 1, 2).float().div_(255)
    return images, torch.tensor([label for _, label in items])


def small_cnn() -> nn.Module:
    """Three convolution blocks and a linear classifier for two classes."""
    blocks = []
    for c_in, c_out in ((3, 16), (16, 32), (32, 64)):
        blocks += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
        blocks.append(nn.MaxPool2d(2))
    return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 2))


def accuracy(model: nn.Module, loader: DataLoader) -> float:
    """Fraction of correctly classified tiles."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            correct += int((model(images).argmax(dim=1) == labels).sum())
            total += len(labels)
    return correct / total


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--quick", action="store_true", help="fewer tiles, one epoch")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    n_train, n_test, epochs = (64, 32, 1) if args.quick else (512, 256, 6)
    train_tiles, train_labels = make_tiles(n_train, "radboud", size=64, seed=0)
    test_tiles, test_labels = make_tiles(n_test, "utrecht", size=64, seed=1)
    normalizer = stainstyle.ReinhardNormalizer().fit(train_tiles)

    def loader(tiles, labels, normalizer, shuffle=False):
        return DataLoader(
            Tiles(tiles, labels),
            batch_size=32,
            shuffle=shuffle,
            num_workers=args.workers,
            collate_fn=partial(normalize_collate, normalizer=normalizer),
        )

    model = small_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(epochs):
        model.train()
        epoch_loss = []
        for images, labels in loader(train_tiles, train_labels, normalizer, shuffle=True):
            loss = nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            epoch_loss.append(loss.item())
        losses.append(round(float(np.mean(epoch_loss)), 4))

    normalized_loader = loader(test_tiles, test_labels, normalizer)
    result = {
        "train_loss_per_epoch": losses,
        "accuracy_other_lab_normalized": round(accuracy(model, normalized_loader), 4),
        "accuracy_other_lab_unnormalized": round(
            accuracy(model, loader(test_tiles, test_labels, None)), 4
        ),
        "n_train_tiles": n_train,
        "n_test_tiles": n_test,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "torch_dataloader.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    first_batch, _ = next(iter(normalized_loader))
    grid = (first_batch[:8].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    picture = args.out / "torch_dataloader_batch.png"
    Image.fromarray(np.concatenate(list(grid), axis=1)).save(picture)
    print(json.dumps(result, indent=1))
    print(f"wrote {path} and {picture}")
    return result


if __name__ == "__main__":
    main()
