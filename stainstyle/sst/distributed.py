"""Training on several processes with ``torch.distributed``, as ``torchrun`` launches them.

``torchrun --nproc-per-node N`` starts N copies of a program and tells each its place in the
environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). A
training run that finds ``WORLD_SIZE > 1`` joins the process group for its duration
(:func:`session`: NCCL on CUDA, gloo on the CPU) and is data parallel:

- each process (rank) trains on its own shard of the tiles (:meth:`Ranks.shard`) with its own
  random generator (:meth:`Ranks.seed`), so the ranks draw distinct crops, deterministically for
  a given seed;
- the networks being trained are wrapped in ``DistributedDataParallel`` (:func:`wrap`), which
  starts every rank from rank 0's weights and averages the gradients of every step, so the
  weights stay identical on all ranks;
- rank 0 alone writes files and reports progress (:attr:`Ranks.is_main`).

Everything here is a no-op in a single process (``WORLD_SIZE`` unset or 1), where training
behaves exactly as without this module. A process group the caller initialized already is used
as it is and left open.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the processes of a run.

    Attributes
    ----------
    rank : int
        Index of this process, ``0 <= rank < world_size``.
    world_size : int
        Number of processes; 1 when not distributed.
    local_rank : int
        Index of this process on its machine (selects its GPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and reports progress (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1

    def seed(self, *parts: int) -> list[int]:
        """Seed of this rank's random generator, from the run's seed ``parts``.

        Parameters
        ----------
        *parts : int
            The run's seed (and e.g. an epoch).

        Returns
        -------
        list of int
            ``parts`` in a single process (so ``numpy.random.default_rng`` draws what it draws
            from ``parts`` alone), ``parts`` followed by the rank otherwise.
        """
        return [*parts, self.rank] if self.distributed else list(parts)

    def shard(self, n: int) -> np.ndarray:
        """Indices of this rank's share of ``n`` items: every ``world_size``-th, from ``rank``.

        All ranks get the same number of items, ``n // world_size`` (the few left over are
        dropped), so they run the same number of steps.

        Parameters
        ----------
        n : int
            Number of items.

        Returns
        -------
        ndarray of shape (n // world_size,), dtype int64

        Raises
        ------
        ValueError
            If there are fewer items than ranks.
        """
        if n < self.world_size:
            raise ValueError(
                f"X: {n} training tiles cannot be shared among {self.world_size} processes; "
                "give at least one tile per process"
            )
        return np.arange(self.rank, n, self.world_size, dtype=np.int64)[: n // self.world_size]

    def device(self, device: torch.device) -> torch.device:
        """The device this rank trains on: its own GPU (``LOCAL_RANK``) when ``device`` is CUDA.

        Parameters
        ----------
        device : torch.device
            The device asked for.

        Returns
        -------
        torch.device
        """
        if self.distributed and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average numbers over the ranks (every rank passes the same keys).

        Parameters
        ----------
        values : dict of str to float
            This rank's numbers.

        Returns
        -------
        dict of str to float
            The means over all ranks, the same on every rank.
        """
        if not self.distributed or not values:
            return dict(values)
        keys = sorted(values)
        total = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=_comm_device())
        dist.all_reduce(total)
        return {k: float(v) / self.world_size for k, v in zip(keys, total.tolist(), strict=True)}

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (so that all ranks take the same branch)."""
        if not self.distributed:
            return flag
        value = torch.tensor([int(flag)], device=_comm_device())
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (a picklable object), in rank order, on every rank."""
        if not self.distributed:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        """Wait until all ranks reach this point."""
        if self.distributed:
            dist.barrier()


#: The place of the only process of a run that is not distributed.
SINGLE = Ranks()


def current() -> Ranks:
    """Where this process stands, from the process group or else ``torchrun``'s environment.

    Without either, this is :data:`SINGLE`.

    Returns
    -------
    Ranks
    """
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size(), local_rank)
    return Ranks(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), local_rank)


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[Ranks]:
    """Join the process group that ``torchrun`` describes, for the duration of the block.

    In a single process this does nothing. With ``WORLD_SIZE > 1`` and no process group yet,
    one is initialized from the environment (NCCL when ``device`` is CUDA, with this rank's GPU
    made current; gloo otherwise) and destroyed at the end of the block. A process group that
    exists already is used and left open.

    Parameters
    ----------
    device : torch.device
        The training device; selects the backend.

    Yields
    ------
    Ranks
        This process's place.
    """
    ranks = current()
    owned = ranks.distributed and not dist.is_initialized()
    if owned:
        if device.type == "cuda":
            torch.cuda.set_device(ranks.local_rank)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        ranks = current()
    try:
        yield ranks
    finally:
        if owned:
            dist.destroy_process_group()


def wrap(module: nn.Module, ranks: Ranks) -> nn.Module:
    """The module as the ranks train it: in ``DistributedDataParallel`` when distributed.

    Wrapping copies rank 0's parameters and buffers to every rank; afterwards each backward
    pass averages the gradients over the ranks and each forward pass first copies rank 0's
    buffers (BatchNorm statistics).

    Parameters
    ----------
    module : torch.nn.Module
        A network on its training device.
    ranks : Ranks
        This process's place.

    Returns
    -------
    torch.nn.Module
        ``module`` itself in a single process.
    """
    if not ranks.distributed:
        return module
    device = next(module.parameters()).device
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids, gradient_as_bucket_view=True)


def unwrap(module: nn.Module) -> nn.Module:
    """The network inside a ``DistributedDataParallel`` wrapper (a plain module as it is).

    Calling the plain network runs it without synchronizing anything: for a network that is
    frozen for the step (the discriminator during the generator's step).
    """
    return module.module if isinstance(module, DistributedDataParallel) else module


def share_buffers(module: nn.Module, ranks: Ranks) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    The forward passes of a training step update the statistics from each rank's own crops;
    this makes the networks identical on all ranks when training stops.

    Parameters
    ----------
    module : torch.nn.Module
        The plain network.
    ranks : Ranks
        This process's place.
    """
    if ranks.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)


def _comm_device() -> torch.device:
    """Where tensors for collectives live: the current GPU with NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
