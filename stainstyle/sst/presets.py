"""Named settings of :class:`~stainstyle.sst.StainStyleTransfer` for GPU and CPU training."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """Default network sizes and training lengths; each can be overridden by a parameter.

    Attributes
    ----------
    width, depth : int
        FusionNet width and number of pooling levels.
    crop_size : int
        Side of the training crops (a power of two) and of the inference windows.
    train_batch_size : int
        Crops per training step.
    max_epochs : int
        Epochs per ``fit``.
    disc_width : int
        Channels of the discriminator's first layer.
    classifier_arch : str
        Architecture of the classifier trained when ``fit`` receives labels.
    classifier_epochs : int
        Its training epochs.
    needs_gpu : bool
        Whether training is only practical on a GPU.
    """

    width: int
    depth: int
    crop_size: int
    train_batch_size: int
    max_epochs: int
    disc_width: int
    classifier_arch: str
    classifier_epochs: int
    needs_gpu: bool


PRESETS = {
    # Cho et al. 2017: FusionNet at its published width, 256 px crops, ResNet-34 classifier.
    "paper": Preset(
        width=64,
        depth=4,
        crop_size=256,
        train_batch_size=8,
        max_epochs=50,
        disc_width=64,
        classifier_arch="resnet34",
        classifier_epochs=20,
        needs_gpu=True,
    ),
    # Small enough to train on 2 CPU cores in minutes (see benchmarks/sst_synthetic.py).
    # 32 px crops: four times the optimizer steps of 64 px crops in the same time, which is what
    # the reconstruction needs most in a 10 minute budget.
    "cpu": Preset(
        width=16,
        depth=4,
        crop_size=32,
        train_batch_size=16,
        max_epochs=20,
        disc_width=32,
        classifier_arch="resnet18",
        classifier_epochs=5,
        needs_gpu=False,
    ),
}
