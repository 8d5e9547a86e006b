"""The augmenters inside torchvision.transforms.v2.Compose and a DataLoader with workers."""

import sys
from pathlib import Path

import pytest
import torch
from _support import he_tiles
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).parent))
from _augmenters import NAMES, make  # noqa: E402

TILE = torch.from_numpy(he_tiles(1, 32, seed=4)[0]).permute(2, 0, 1).contiguous()


class SameTile(Dataset):
    """Eight copies of one tile, augmented in ``__getitem__``: differences come from streams."""

    def __init__(self, augmenter):
        self.augmenter = augmenter

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return self.augmenter(TILE), torch.utils.data.get_worker_info().id


def load(augmenter, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    loader = DataLoader(
        SameTile(augmenter),
        batch_size=2,
        num_workers=2,
        generator=torch.Generator().manual_seed(seed),
        multiprocessing_context="fork",
    )
    tiles, workers = zip(*loader, strict=True)
    return torch.cat(tiles), torch.cat(workers)


@pytest.mark.parametrize("name", ["hed", "randstainna"])
@pytest.mark.parametrize("random_state", [None, 5])
def test_dataloader_workers_draw_differently_and_a_seed_reproduces(name, random_state):
    augmenter = make(name, 0.3, random_state=random_state)
    tiles, workers = load(augmenter, seed=0)
    assert set(workers.tolist()) == {0, 1}
    first = tiles[workers == 0]
    second = tiles[workers == 1]
    assert not torch.equal(first[0], second[0])  # the workers' first draws differ
    assert len({bytes(tile.numpy()) for tile in tiles}) == len(tiles)
    again, _ = load(augmenter, seed=0)
    assert torch.equal(again, tiles)
    other, _ = load(augmenter, seed=1)
    assert not torch.equal(other, tiles)


@pytest.mark.parametrize("name", NAMES)
def test_in_torchvision_transforms_v2_compose(name):
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    pipeline = v2.Compose(
        [v2.RandomHorizontalFlip(p=0.0), make(name), v2.ToDtype(torch.float32, scale=True)]
    )
    image = tv_tensors.Image(TILE)
    out = pipeline(image)
    assert isinstance(out, tv_tensors.Image)
    assert out.shape == TILE.shape and out.dtype == torch.float32
    batch = pipeline(TILE[None].repeat(3, 1, 1, 1))
    assert batch.shape == (3, *TILE.shape)
    assert not torch.equal(batch, TILE[None].float() / 255)


@pytest.mark.parametrize("name", NAMES)
def test_module_state_and_pickling(name):
    import pickle

    augmenter = make(name, random_state=2)
    restored = pickle.loads(pickle.dumps(augmenter))
    assert torch.equal(restored(TILE), make(name, random_state=2)(TILE))
    assert "random_state=2" in repr(augmenter)
    assert restored(TILE.numpy().transpose(1, 2, 0)).shape == (32, 32, 3)
