import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from stainstyle.data import TileDataset, augment_tile, make_tiles


@pytest.fixture(scope="module")
def data():
    return make_tiles(8, "radboud", size=32, seed=0)


def dihedral(tile):
    out = []
    for k in range(4):
        r = np.rot90(tile, k)
        out += [r, r[:, ::-1]]
    return out


def test_items_are_chw_float_tensors(data):
    tiles, labels = data
    image, label = TileDataset(tiles, labels)[3]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert label.dtype == torch.int64 and int(label) == labels[3]
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy() * 255, tiles[3], atol=1e-4)
    only = TileDataset(tiles)[0]
    assert isinstance(only, torch.Tensor)


def test_augmentation_is_a_dihedral_transform_and_seeded(data):
    tiles, labels = data
    ds = TileDataset(tiles, labels, augment=True, seed=5)
    a = ds[2][0].permute(1, 2, 0).numpy() * 255
    assert any(np.allclose(a, t) for t in dihedral(tiles[2]))
    np.testing.assert_array_equal(ds[2][0], TileDataset(tiles, labels, augment=True, seed=5)[2][0])
    draws = set()
    for epoch in range(16):
        ds.set_epoch(epoch)
        image = ds[2][0].permute(1, 2, 0).numpy() * 255
        draws.add(next(i for i, t in enumerate(dihedral(tiles[2])) if np.allclose(image, t)))
    assert len(draws) >= 5  # the eight transforms all occur over epochs


def test_crops(data):
    tiles, labels = data
    ds = TileDataset(tiles, labels, crop_size=16)
    center = ds[0][0].permute(1, 2, 0).numpy() * 255
    np.testing.assert_allclose(center, tiles[0, 8:24, 8:24], atol=1e-4)
    ds = TileDataset(tiles, labels, augment=True, crop_size=20, seed=1)
    assert ds[1][0].shape == (3, 20, 20)
    with pytest.raises(ValueError, match="crop_size: 40 exceeds"):
        TileDataset(tiles, augment=True, crop_size=40)[0]


def test_augment_tile_non_square():
    tile = np.arange(2 * 3 * 1).reshape(2, 3, 1)
    rng = np.random.default_rng(0)
    outs = {augment_tile(tile, rng).tobytes() for _ in range(50)}
    assert len(outs) == 4
    assert all(len(o) == tile.nbytes for o in outs)


def test_dataloader_with_workers_matches_single_process(data):
    tiles, labels = data
    ds = TileDataset(tiles, labels, augment=True, seed=2)
    a = torch.cat([x for x, _ in DataLoader(ds, batch_size=4)])
    b = torch.cat([x for x, _ in DataLoader(ds, batch_size=4, num_workers=2)])
    torch.testing.assert_close(a, b)


def test_errors(data):
    tiles, labels = data
    with pytest.raises(ValueError, match=r"labels: expected shape \(8,\)"):
        TileDataset(tiles, labels[:3])
    with pytest.raises(ValueError, match="labels: expected integers"):
        TileDataset(tiles, np.array(["a"] * 8))
    with pytest.raises(ValueError, match="crop_size"):
        TileDataset(tiles, crop_size=0)
    with pytest.raises(ValueError, match=r"tiles\[0\]: expected a uint8"):
        TileDataset(tiles.astype(np.float32))[0]
