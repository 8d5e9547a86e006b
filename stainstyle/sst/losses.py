"""Losses of stain-style transfer: conditional GAN (section 6), feature preserving (section 7)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from stainstyle.sst.classifier import TileNet


class GANLoss(nn.Module):
    """Vanilla GAN loss, binary cross-entropy on logits against fixed labels (pix2pix ``GANLoss``).

    The labels are exactly 1 and 0 (no label smoothing) and live in buffers, so they follow
    ``.to(device)``.

    Examples
    --------
    >>> import torch
    >>> round(GANLoss()(torch.zeros(4), True).item(), 4)
    0.6931
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("real_label", torch.tensor(1.0))
        self.register_buffer("fake_label", torch.tensor(0.0))
        self.criterion = nn.BCEWithLogitsLoss()

    def forward(self, logits: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        """Mean BCE of ``logits`` (any shape) against the real or the fake label."""
        label = self.real_label if target_is_real else self.fake_label
        return self.criterion(logits.float(), label.expand_as(logits.float()))


class FeaturePreservingLoss(nn.Module):
    """Distance between a frozen classifier's views of real and transferred tiles.

    ``gap_mse``: ``(1/512) * ||phi(real) - phi(fake)||^2`` averaged over the batch, with phi the
    global-average-pooled features. ``softmax_kl``: ``KL(softmax(h(real)) || softmax(h(fake)))``
    with h the logits. Gradients flow through the classifier into ``fake``; the classifier is a
    private copy, kept in eval mode (BatchNorm running statistics never change) with
    ``requires_grad=False``, and evaluated in float32 even under autocast.

    Parameters
    ----------
    classifier : TileNet
        A trained classifier network; it is copied, never modified.
    mode : {"gap_mse", "softmax_kl"}, default="gap_mse"
        The distance.
    """

    def __init__(self, classifier: TileNet, mode: str = "gap_mse"):
        super().__init__()
        if mode not in ("gap_mse", "softmax_kl"):
            raise ValueError(f"mode: expected 'gap_mse' or 'softmax_kl', got {mode!r}")
        self.mode = mode
        self.classifier = copy.deepcopy(classifier).eval().requires_grad_(False)

    def train(self, mode: bool = True) -> FeaturePreservingLoss:
        """Keep the classifier in eval mode whatever the parent module's mode."""
        super().train(mode)
        self.classifier.eval()
        return self

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Loss for RGB batches ``real`` and ``fake`` of shape (N, 3, H, W) in [0, 1]."""
        with torch.autocast(device_type=fake.device.type, enabled=False):
            with torch.no_grad():
                real_features, real_logits = self.classifier.features_and_logits(real.float())
            fake_features, fake_logits = self.classifier.features_and_logits(fake.float())
            if self.mode == "gap_mse":
                return F.mse_loss(fake_features, real_features)
            return F.kl_div(
                F.log_softmax(fake_logits, dim=1),
                F.log_softmax(real_logits, dim=1),
                reduction="batchmean",
                log_target=True,
            )
