"""What a stain-style transfer training run is made of: its settings, networks and optimizers.

:class:`TrainConfig` holds the settings of a run, :class:`GANModules` its networks, losses and
optimizers, and :func:`make_modules` puts the networks on a device with fresh optimizers. The
training loop (:mod:`stainstyle.sst.train`) and the checkpoints
(:mod:`stainstyle.sst.checkpoint`) both work on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from stainstyle.sst.discriminator import DCGANDiscriminator
from stainstyle.sst.losses import FeaturePreservingLoss, GANLoss


@dataclass
class TrainConfig:
    """Settings of one training run.

    Parameters
    ----------
    crop_size : int
        Side of the random square training crops (a power of two, for the discriminator).
    batch_size : int
        Crops per step.
    lr : float
        Adam learning rate of both networks.
    betas : tuple of 2 float
        Adam betas.
    lambda_gan, lambda_l1, lambda_fp : float
        Weights of the adversarial, L1 reconstruction and feature-preserving losses.
    augment : bool
        Random flips and 90-degree rotations of the crops.
    gray_jitter : float
        Strength ``s`` of the generator-input jitter: brightness shift in ``[-s, s]``, contrast
        factor in ``[1 - 2s, 1 + 2s]``, gamma in ``[exp(-2s), exp(2s)]``; 0 disables it.
    jitter_prob : float
        Probability that a crop's gray input is jittered.
    time_budget : float or None
        Stop after this many seconds (checked after every step); None for no limit.
    seed : int
        Seed of the batch order, crops and augmentations.
    verbose : bool
        Show a tqdm progress bar with the running losses.
    checkpoint_dir : str or None
        Folder for checkpoints, written after every epoch; None for none.
    amp : bool
        Use bfloat16 autocast when training on CUDA (ignored on the CPU).
    """

    crop_size: int = 64
    batch_size: int = 16
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    lambda_gan: float = 1.0
    lambda_l1: float = 100.0
    lambda_fp: float = 1.0
    augment: bool = True
    gray_jitter: float = 0.1
    jitter_prob: float = 0.5
    time_budget: float | None = None
    seed: int = 0
    verbose: bool = False
    checkpoint_dir: str | None = None
    amp: bool = True


@dataclass
class GANModules:
    """The networks, losses and optimizers of a run.

    Parameters
    ----------
    generator : torch.nn.Module
        Gray (n, 1, h, w) in [-1, 1] to colour (n, 3, h, w) in [-1, 1].
    discriminator : DCGANDiscriminator
        Logits for (gray, colour) pairs.
    gan_loss : GANLoss
        Adversarial criterion.
    feature_loss : FeaturePreservingLoss or None
        Frozen-classifier loss; None switches it off.
    opt_g, opt_d : torch.optim.Optimizer
        Optimizers of the generator and the discriminator.
    """

    generator: nn.Module
    discriminator: DCGANDiscriminator
    gan_loss: GANLoss
    feature_loss: FeaturePreservingLoss | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer


def make_modules(
    generator: nn.Module,
    discriminator: DCGANDiscriminator,
    feature_loss: FeaturePreservingLoss | None,
    config: TrainConfig,
    device: torch.device,
) -> GANModules:
    """Move networks to ``device`` and create the loss and Adam optimizers.

    Parameters
    ----------
    generator, discriminator : torch.nn.Module
        The networks.
    feature_loss : FeaturePreservingLoss or None
        The feature-preserving loss, or None.
    config : TrainConfig
        Supplies ``lr`` and ``betas``.
    device : torch.device
        Training device.

    Returns
    -------
    GANModules
    """
    generator.to(device)
    discriminator.to(device)
    if feature_loss is not None:
        feature_loss.to(device)
    betas = tuple(config.betas)
    return GANModules(
        generator=generator,
        discriminator=discriminator,
        gan_loss=GANLoss().to(device),
        feature_loss=feature_loss,
        opt_g=torch.optim.Adam(generator.parameters(), lr=config.lr, betas=betas),
        opt_d=torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=betas),
    )
