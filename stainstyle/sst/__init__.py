"""Stain-style transfer (Cho et al. 2017).

Gray normalization, a FusionNet generator trained as a conditional GAN with a feature-preserving
loss, and the tile classifier that loss uses.
"""

from stainstyle.sst.classifier import TileClassifier, TileNet

__all__ = ["TileClassifier", "TileNet"]
