"""Training loop of stain-style transfer: one discriminator step, then one generator step.

The generator G maps a gray tile to colour; the discriminator D judges (gray, colour) pairs. Per
batch of target-style tiles (the conditional GAN of Isola et al. 2017, pix2pix, with the
feature-preserving loss of Cho et al. 2017):

- D step: ``L_D = (BCE(D(g, y), 1) + BCE(D(g, G(g)), 0)) / 2`` on the detached fake.
- G step, D frozen: ``L_G = lambda_gan * BCE(D(g, G(g)), 1) + lambda_l1 * |y - G(g)|_1
  + lambda_fp * L_fp(y, G(g))``.

Here ``y`` is a random crop of a target tile (flipped and rotated), ``g`` its gray level with
random brightness, contrast and gamma jitter, so that G also colours the gray levels of other
labs. A checkpoint is written after every epoch (:mod:`stainstyle.sst.checkpoint`), and a run
resumes from it exactly where it stopped.

Under ``torchrun`` the loop is data parallel (:mod:`stainstyle.sst.distributed`): each rank
trains on its own shard of the tiles, G and D are wrapped in ``DistributedDataParallel``, and
rank 0 alone writes the checkpoints and reports progress.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from stainstyle.data.datasets import augment_tile
from stainstyle.sst._torch import to_tensor
from stainstyle.sst.checkpoint import TrainState, save_checkpoint
from stainstyle.sst.distributed import SINGLE, Ranks, share_buffers, unwrap, wrap
from stainstyle.sst.inference import colorize
from stainstyle.sst.setup import GANModules, TrainConfig

logger = logging.getLogger(__name__)


def jitter_gray(gray: torch.Tensor, strength: float, prob: float, rng: np.random.Generator):
    """Random brightness, contrast and gamma changes of gray images in [0, 1].

    Parameters
    ----------
    gray : torch.Tensor of shape (N, 1, H, W)
        Gray levels in [0, 1].
    strength : float
        ``s``: brightness shift in ``[-s, s]``, contrast in ``[1 - 2s, 1 + 2s]`` around the image
        mean, gamma in ``[exp(-2s), exp(2s)]``.
    prob : float
        Probability per image of being jittered.
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    torch.Tensor of shape (N, 1, H, W)
        Jittered gray levels, clipped to [0, 1].
    """
    n = len(gray)
    draws = rng.uniform(-1.0, 1.0, (3, n))
    active = rng.random(n) < prob
    if strength <= 0 or not active.any():
        return gray

    def per_image(values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(values, dtype=gray.dtype, device=gray.device).view(n, 1, 1, 1)

    gamma = per_image(np.where(active, np.exp(2 * strength * draws[0]), 1.0))
    contrast = per_image(np.where(active, 1 + 2 * strength * draws[1], 1.0))
    brightness = per_image(np.where(active, strength * draws[2], 0.0))
    out = gray.clamp_min(1e-6) ** gamma
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return ((out - mean) * contrast + mean + brightness).clamp(0.0, 1.0)


def sample_batch(
    pairs: Sequence[np.ndarray], index: np.ndarray, config: TrainConfig, rng, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops, augmentations and gray jitter for one batch.

    Parameters
    ----------
    pairs : sequence of ndarray of shape (H_i, W_i, 4), dtype uint8
        Per tile: gray level, then R, G, B.
    index : ndarray of int
        Tiles of the batch.
    config : TrainConfig
        Crop size and augmentation settings.
    rng : numpy.random.Generator
        Source of randomness.
    device : torch.device
        Where the tensors go.

    Returns
    -------
    gray : torch.Tensor of shape (n, 1, S, S)
        Generator input in [-1, 1] (jittered).
    color : torch.Tensor of shape (n, 3, S, S)
        Target colour in [-1, 1].
    """
    crops = [
        augment_tile(pairs[i], rng, flips=config.augment, crop_size=config.crop_size) for i in index
    ]
    x = to_tensor(np.stack(crops)).to(device)
    gray = jitter_gray(x[:, :1], config.gray_jitter, config.jitter_prob, rng)
    return gray * 2 - 1, x[:, 1:] * 2 - 1


def train_step(
    modules: GANModules, gray: torch.Tensor, color: torch.Tensor, config: TrainConfig
) -> dict[str, float]:
    """One discriminator step, then one generator step with the discriminator frozen.

    Parameters
    ----------
    modules : GANModules
        Networks, losses and optimizers (the networks in train mode, possibly wrapped in
        ``DistributedDataParallel``; the frozen discriminator of the generator step runs
        unwrapped, so that only the generator's gradients are synchronized then).
    gray : torch.Tensor of shape (n, 1, S, S)
        Generator input (the condition) in [-1, 1].
    color : torch.Tensor of shape (n, 3, S, S)
        Real colour in [-1, 1].
    config : TrainConfig
        Loss weights and AMP setting.

    Returns
    -------
    dict of str to float
        ``d`` (discriminator loss), ``gan``, ``l1``, ``fp`` (0 when off) and ``g`` (total).
    """
    G, D, criterion = modules.generator, modules.discriminator, modules.gan_loss
    autocast = torch.autocast(
        device_type=gray.device.type,
        dtype=torch.bfloat16,
        enabled=config.amp and gray.device.type == "cuda",
    )
    with autocast:
        fake = G(gray)
        # Discriminator step on the detached fake.
        D.requires_grad_(True)
        loss_d = 0.5 * (criterion(D(gray, color), True) + criterion(D(gray, fake.detach()), False))
    modules.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    modules.opt_d.step()

    # Generator step through the frozen discriminator.
    D.requires_grad_(False)
    with autocast:
        loss_gan = criterion(unwrap(D)(gray, fake), True)
        loss_l1 = (color - fake.float()).abs().mean()
    loss_fp = torch.zeros((), device=gray.device)
    if modules.feature_loss is not None and config.lambda_fp > 0:
        loss_fp = modules.feature_loss((color + 1) / 2, (fake.float() + 1) / 2)
    loss_g = config.lambda_gan * loss_gan + config.lambda_l1 * loss_l1 + config.lambda_fp * loss_fp
    modules.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    modules.opt_g.step()
    D.requires_grad_(True)
    return {
        "d": loss_d.item(),
        "gan": loss_gan.item(),
        "l1": loss_l1.item(),
        "fp": loss_fp.item(),
        "g": loss_g.item(),
    }


def reconstruction_psnr(
    generator: nn.Module,
    pairs: Sequence[np.ndarray],
    *,
    window: int,
    device: torch.device,
    batch_size: int = 32,
) -> float:
    """PSNR of colour reconstructed from gray against the real colour, all tiles pooled.

    Parameters
    ----------
    generator : torch.nn.Module
        Run in eval mode; its previous mode is restored.
    pairs : sequence of ndarray of shape (H_i, W_i, 4), dtype uint8
        Gray level then RGB per tile.
    window : int
        Inference window (see :func:`stainstyle.sst.inference.colorize`).
    device : torch.device
        Where the generator lives.
    batch_size : int, default=32
        Windows per forward pass.

    Returns
    -------
    float
        PSNR in dB over all pixels of all tiles.
    """
    was_training = generator.training
    generator.eval()
    squared, count = 0.0, 0
    for shape in sorted({p.shape for p in pairs}):
        group = np.stack([p for p in pairs if p.shape == shape])
        out = colorize(
            generator,
            group[..., 0],
            window=window,
            overlap=window // 4,
            device=device,
            batch_size=batch_size,
        )
        squared += float(np.sum((out.astype(np.float64) - group[..., 1:]) ** 2))
        count += out.size
    generator.train(was_training)
    mse = squared / max(count, 1)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def train(
    modules: GANModules,
    pairs: Sequence[np.ndarray],
    config: TrainConfig,
    state: TrainState,
    end_epoch: int,
    *,
    device: torch.device,
    validation: Sequence[np.ndarray] = (),
    on_epoch_end: Callable[[TrainState], None] | None = None,
    ranks: Ranks = SINGLE,
) -> TrainState:
    """Train until ``state.epoch == end_epoch`` or the time budget runs out.

    After every epoch: its record goes to ``state.history`` (and the log), the checkpoint is
    written when ``config.checkpoint_dir`` is set, then ``on_epoch_end`` is called.

    With several ranks (:mod:`stainstyle.sst.distributed`) every rank calls this with the same
    arguments, except ``state``, whose sampler is the rank's own: each rank trains on its shard
    of ``pairs`` (an epoch is then ``len(pairs) // (world_size * batch_size)`` steps), the
    networks are trained in ``DistributedDataParallel``, the losses recorded are the means over
    the ranks, and rank 0 alone writes the checkpoint (with every rank's sampler state) and
    reports progress. All ranks end with the same networks.

    Parameters
    ----------
    modules : GANModules
        Networks, losses and optimizers.
    pairs : sequence of ndarray of shape (H_i, W_i, 4), dtype uint8
        Training tiles: gray level, then R, G, B (see :func:`make_pairs`).
    config : TrainConfig
        Settings.
    state : TrainState
        Progress so far (updated in place and returned).
    end_epoch : int
        Total number of epochs to have completed when returning.
    device : torch.device
        Training device.
    validation : sequence of ndarray of shape (H_i, W_i, 4), dtype uint8
        Held-out tiles; their reconstruction PSNR is logged after every epoch.
    on_epoch_end : callable, optional
        Called with the state after each epoch (after the checkpoint is written).
    ranks : Ranks, default=SINGLE
        This process's place among the processes of the run; a single process by default.

    Returns
    -------
    TrainState
    """
    if len(pairs) == 0:
        raise ValueError("pairs: expected at least one training tile, got none")
    shard = [pairs[i] for i in ranks.shard(len(pairs))]
    if not ranks.is_main:
        config = dataclasses.replace(config, verbose=False)
    started = time.monotonic()
    modules.generator.train()
    modules.discriminator.train()
    replica = dataclasses.replace(
        modules,
        generator=wrap(modules.generator, ranks),
        discriminator=wrap(modules.discriminator, ranks),
    )
    while state.epoch < end_epoch:
        epoch_start = time.monotonic()
        means, steps, out_of_time = _train_epoch(
            replica, shard, config, state, end_epoch, device=device, started=started, ranks=ranks
        )
        state.epoch += 1
        for network in (modules.generator, modules.discriminator):
            share_buffers(network, ranks)
        record: dict[str, Any] = {"epoch": state.epoch, "steps": steps, **ranks.mean(means)}
        if len(validation):
            record["val_psnr"] = reconstruction_psnr(
                modules.generator, validation, window=config.crop_size, device=device
            )
        record["seconds"] = time.monotonic() - epoch_start
        state.history.append(record)
        if ranks.is_main:
            _report_epoch(record, end_epoch, config.verbose)
        samplers = ranks.gather(state.rng.bit_generator.state)
        if config.checkpoint_dir is not None and ranks.is_main:
            save_checkpoint(config.checkpoint_dir, modules, state, config, samplers=samplers)
        if on_epoch_end is not None:
            on_epoch_end(state)
        if out_of_time:
            logger.info(
                "time budget of %.0f s reached after %d epochs", config.time_budget, state.epoch
            )
            break
    modules.generator.eval()
    modules.discriminator.eval()
    return state


def _train_epoch(
    modules: GANModules,
    pairs: Sequence[np.ndarray],
    config: TrainConfig,
    state: TrainState,
    end_epoch: int,
    *,
    device: torch.device,
    started: float,
    ranks: Ranks,
) -> tuple[dict[str, float], int, bool]:
    """One pass over ``pairs`` in a random order, stopped early when the time budget runs out.

    Parameters
    ----------
    modules : GANModules
        Networks, losses and optimizers (the networks in train mode).
    pairs : sequence of ndarray of shape (H_i, W_i, 4), dtype uint8
        Training tiles: gray level, then R, G, B.
    config : TrainConfig
        Settings.
    state : TrainState
        Progress: ``state.rng`` draws the order and the batches, ``state.step`` counts the steps
        (``state.epoch`` is left to the caller).
    end_epoch : int
        Last epoch of the run, for the progress bar.
    device : torch.device
        Training device.
    started : float
        ``time.monotonic()`` at the start of the run, from which ``config.time_budget`` counts.
    ranks : Ranks
        This process's place; the time budget runs out for all ranks when it does for one.

    Returns
    -------
    means : dict of str to float
        Mean losses of the epoch's steps, keyed as by :func:`train_step`.
    steps : int
        Steps done (at least one).
    out_of_time : bool
        Whether the time budget ran out during the epoch.
    """
    batch_size = min(config.batch_size, len(pairs))
    order = state.rng.permutation(len(pairs))
    sums: dict[str, float] = {}
    bar = tqdm(
        range(max(1, len(pairs) // batch_size)),
        desc=f"StainStyleTransfer epoch {state.epoch + 1}/{end_epoch}",
        disable=not config.verbose,
        leave=False,
    )
    steps, out_of_time = 0, False
    for i in bar:
        index = order[i * batch_size : (i + 1) * batch_size]
        gray, color = sample_batch(pairs, index, config, state.rng, device)
        losses = train_step(modules, gray, color, config)
        steps += 1
        state.step += 1
        for key, value in losses.items():
            sums[key] = sums.get(key, 0.0) + value
        bar.set_postfix({k: f"{v / steps:.3g}" for k, v in sums.items()})
        if config.time_budget is not None and ranks.any(
            time.monotonic() - started > config.time_budget
        ):
            out_of_time = True
            break
    bar.close()
    return {k: v / steps for k, v in sums.items()}, steps, out_of_time


def _report_epoch(record: dict[str, Any], end_epoch: int, verbose: bool) -> None:
    """Report an epoch's record once: under the progress bar with ``verbose``, else in the log."""
    summary = ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch")
    line = f"epoch {record['epoch']}/{end_epoch}: {summary}"
    if verbose:
        tqdm.write(line)
    else:
        logger.info(line)


def make_pairs(tiles: Sequence[np.ndarray], gray: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Stack each tile's gray level in front of its RGB channels.

    Parameters
    ----------
    tiles : sequence of ndarray of shape (H_i, W_i, 3), dtype uint8
        RGB tiles.
    gray : sequence of ndarray of shape (H_i, W_i), dtype uint8
        Their gray levels.

    Returns
    -------
    list of ndarray of shape (H_i, W_i, 4), dtype uint8
    """
    return [np.concatenate([g[..., None], t], axis=-1) for t, g in zip(tiles, gray, strict=True)]


def split_pairs(
    pairs: Sequence[np.ndarray], fraction: float, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Hold out a random share of the tiles for validation, keeping at least one for training.

    Parameters
    ----------
    pairs : sequence of ndarray of shape (H_i, W_i, 4), dtype uint8
        Tiles as :func:`make_pairs` gives them.
    fraction : float
        Share held out, in [0, 1), rounded to whole tiles; a single tile is never held out.
    seed : int
        Seed of the random split.

    Returns
    -------
    training : list of ndarray of shape (H_i, W_i, 4), dtype uint8
        At least one tile when ``pairs`` has one.
    validation : list of ndarray of shape (H_i, W_i, 4), dtype uint8
        The held-out tiles, possibly none.
    """
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_val = int(round(fraction * len(pairs))) if len(pairs) > 1 else 0
    n_val = min(n_val, len(pairs) - 1)
    return [pairs[i] for i in order[n_val:]], [pairs[i] for i in order[:n_val]]
