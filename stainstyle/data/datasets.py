"""PyTorch datasets over tiles, with the augmentations histology allows.

H&E tiles have no canonical orientation, so the eight flips and 90-degree rotations (the
dihedral group) are label-preserving; an optional random crop adds translation. Colour is left
alone: stain variation is what the rest of the library models explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


def augment_tile(
    tile: np.ndarray,
    rng: np.random.Generator,
    *,
    flips: bool = True,
    crop_size: int | None = None,
) -> np.ndarray:
    """Random crop, then a random element of the dihedral group (flips, 90-degree rotations).

    Parameters
    ----------
    tile : ndarray of shape (H, W, C)
        One tile, any dtype.
    rng : numpy.random.Generator
        Random source.
    flips : bool, default=True
        Apply one of the 8 flips/rotations, uniformly at random (rotations only on square
        tiles, or crops; non-square tiles get one of the 4 flips).
    crop_size : int, optional
        Side of a uniformly placed square crop; None keeps the whole tile.

    Returns
    -------
    ndarray of shape (crop_size or H, crop_size or W, C)
        A view of ``tile`` where possible.

    Raises
    ------
    ValueError
        If ``crop_size`` exceeds the tile.
    """
    if crop_size is not None:
        h, w = tile.shape[:2]
        if crop_size > min(h, w):
            raise ValueError(f"crop_size: {crop_size} exceeds the tile size {h}x{w}")
        y, x = rng.integers(0, h - crop_size + 1), rng.integers(0, w - crop_size + 1)
        tile = tile[y : y + crop_size, x : x + crop_size]
    if flips:
        square = tile.shape[0] == tile.shape[1]
        k = int(rng.integers(8 if square else 4))
        if square:
            tile = np.rot90(tile, k % 4)
        elif k % 2:
            tile = tile[::-1]
        if k >= 4 or (not square and k >= 2):
            tile = tile[:, ::-1]
    return tile


def center_crop(tile: np.ndarray, crop_size: int) -> np.ndarray:
    """The central ``crop_size`` x ``crop_size`` square of a tile (H, W, C)."""
    h, w = tile.shape[:2]
    if crop_size > min(h, w):
        raise ValueError(f"crop_size: {crop_size} exceeds the tile size {h}x{w}")
    y, x = (h - crop_size) // 2, (w - crop_size) // 2
    return tile[y : y + crop_size, x : x + crop_size]


class TileDataset(Dataset):
    """Tiles (and labels) as float tensors ``(3, H, W)`` in [0, 1], optionally augmented.

    Parameters
    ----------
    tiles : ndarray of shape (N, H, W, 3), dtype uint8, or a sequence of such tiles
        Anything indexable by an integer that returns an ``(H, W, 3)`` uint8 array: an array,
        a list, or a lazy loader (:class:`~stainstyle.data.loaders.LazyTiles`,
        :class:`~stainstyle.data.loaders.H5Tiles`).
    labels : array-like of shape (N,), optional
        Integer labels; items are then ``(image, label)`` pairs, else images alone.
    augment : bool, default=False
        Random flips and 90-degree rotations (see :func:`augment_tile`).
    crop_size : int, optional
        Crop to this square side: a random crop when ``augment``, else the central one.
    seed : int, default=0
        Seed of the augmentations. Item ``i`` in epoch ``e`` uses the generator
        ``numpy.random.default_rng([seed, e, i])``, so results do not depend on worker count
        or order; call :meth:`set_epoch` at the start of each epoch for fresh draws.

    Examples
    --------
    >>> from stainstyle.data import make_tiles
    >>> tiles, labels = make_tiles(4, "radboud", size=32)
    >>> image, label = TileDataset(tiles, labels, augment=True)[0]
    >>> tuple(image.shape), image.dtype, int(label)
    ((3, 32, 32), torch.float32, 1)
    """

    def __init__(
        self,
        tiles: Sequence | np.ndarray,
        labels: Any = None,
        *,
        augment: bool = False,
        crop_size: int | None = None,
        seed: int = 0,
    ):
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (len(tiles),):
                raise ValueError(
                    f"labels: expected shape ({len(tiles)},) to match the tiles, got {labels.shape}"
                )
            if labels.dtype.kind not in "iub":
                raise ValueError(
                    f"labels: expected integers, got dtype {labels.dtype}; encode them first "
                    "(e.g. with sklearn.preprocessing.LabelEncoder)"
                )
        if crop_size is not None and (
            isinstance(crop_size, bool) or not isinstance(crop_size, Integral) or crop_size < 1
        ):
            raise ValueError(f"crop_size: expected a positive integer or None, got {crop_size!r}")
        self.tiles = tiles
        self.labels = labels
        self.augment = augment
        self.crop_size = crop_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the augmentation draws of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int):
        tile = np.asarray(self.tiles[index])
        if tile.ndim != 3 or tile.shape[-1] != 3 or tile.dtype != np.uint8:
            raise ValueError(
                f"tiles[{index}]: expected a uint8 array of shape (H, W, 3), got "
                f"{tile.dtype} {tile.shape}"
            )
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, int(index)])
            tile = augment_tile(tile, rng, crop_size=self.crop_size)
        elif self.crop_size is not None:
            tile = center_crop(tile, self.crop_size)
        image = torch.from_numpy(np.ascontiguousarray(tile.transpose(2, 0, 1))).float() / 255.0
        if self.labels is None:
            return image
        return image, torch.as_tensor(self.labels[index], dtype=torch.int64)
