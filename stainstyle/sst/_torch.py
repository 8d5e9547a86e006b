"""Torch helpers shared by the stain-style-transfer modules: tensors, seeding, augmentation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch


def to_tensor(batch: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """Convert uint8 channels-last images to a float tensor in [0, 1], channels first.

    Parameters
    ----------
    batch : ndarray of shape (N, H, W, C) or (N, H, W), dtype uint8
        Images; a missing channel axis is treated as one channel.
    device : torch.device or str
        Where the tensor lives.

    Returns
    -------
    torch.Tensor of shape (N, C, H, W), dtype float32
        Values in [0, 1].
    """
    array = np.asarray(batch)
    if array.ndim == 3:
        array = array[..., None]
    tensor = torch.from_numpy(np.require(array, requirements=["C", "W"])).to(device)
    return tensor.permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """Convert a float tensor in [0, 1], channels first, to uint8 channels-last images.

    Parameters
    ----------
    tensor : torch.Tensor of shape (N, C, H, W)
        Values nominally in [0, 1]; clipped, then rounded to nearest.

    Returns
    -------
    ndarray of shape (N, H, W, C), dtype uint8
    """
    scaled = tensor.detach().float().clamp(0.0, 1.0).mul(255.0).round()
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Run a block with torch's global generators seeded, restoring their state afterwards.

    Network initialization draws from torch's global generator; forking it keeps results
    reproducible without changing the caller's random state.

    Parameters
    ----------
    seed : int
        Seed for the block.
    device : torch.device, optional
        A CUDA device whose generator is forked as well.
    """
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
