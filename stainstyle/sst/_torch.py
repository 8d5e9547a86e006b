"""Torch helpers shared by the stain-style-transfer modules: tensors and seeded network builds."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn


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
    scaled = tensor.detach().float().clamp(0.0, 1.0).mul_(255.0).round_()  # one temporary
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def own_tensors(module: nn.Module) -> list[str]:
    """Names of the parameters and buffers a module holds itself (not its submodules').

    Parameters
    ----------
    module : torch.nn.Module
        Any module.

    Returns
    -------
    list of str
    """
    return [name for name, _ in module.named_parameters(recurse=False)] + [
        name for name, _ in module.named_buffers(recurse=False)
    ]


def build_seeded(build: Callable[[], Mapping[str, nn.Module]], seed: int) -> dict[str, nn.Module]:
    """Networks initialized from their own generator, never from torch's global one.

    ``build`` runs on the ``meta`` device, so constructing the layers draws no random numbers;
    each network is then materialized on the CPU and every parameter and buffer set by its
    ``reset_parameters(generator)``, in the order ``build`` returns them, from one
    ``torch.Generator`` seeded with ``seed``. The same seed gives the same weights in any
    thread, whatever other code does with the global generator, and the caller's random state
    is left alone.

    Parameters
    ----------
    build : callable
        Returns the networks keyed by name; each has a ``reset_parameters(generator)`` method
        that sets all its parameters and buffers.
    seed : int
        Seed of the initialization.

    Returns
    -------
    dict of str to torch.nn.Module
        The networks, on the CPU, in train mode.
    """
    with torch.device("meta"):
        modules = dict(build())
    generator = torch.Generator(device="cpu").manual_seed(seed)
    for module in modules.values():
        module.to_empty(device="cpu")
        module.reset_parameters(generator)
    return modules
