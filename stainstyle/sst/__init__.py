"""Stain-style transfer (Cho et al. 2017).

Gray normalization, a FusionNet generator trained as a conditional GAN with a feature-preserving
loss, and the tile classifier that loss uses.
"""

from stainstyle.sst.checkpoint import CheckpointError
from stainstyle.sst.classifier import TileClassifier, TileNet
from stainstyle.sst.discriminator import DCGANDiscriminator
from stainstyle.sst.estimator import FeatureLossDisabledWarning, StainStyleTransfer
from stainstyle.sst.fusionnet import FusionNet
from stainstyle.sst.losses import FeaturePreservingLoss, GANLoss
from stainstyle.sst.presets import PRESETS
from stainstyle.sst.setup import TrainConfig

__all__ = [
    "PRESETS",
    "CheckpointError",
    "DCGANDiscriminator",
    "FeatureLossDisabledWarning",
    "FeaturePreservingLoss",
    "FusionNet",
    "GANLoss",
    "StainStyleTransfer",
    "TileClassifier",
    "TileNet",
    "TrainConfig",
]
