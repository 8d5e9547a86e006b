"""FusionNet generator (Quan, Hildebrand & Jeong, arXiv:1612.05360), ALGORITHMS.md section 5.

Layout of the PyTorch port by Gunho Choi (a co-author of Cho et al. 2017): an encoder of
conv-residual-conv (CRC) blocks with 2x2 max pooling, a CRC bridge, and a decoder of transposed
convolutions whose outputs are averaged with the encoder features of the same level.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def init_weights(module: nn.Module) -> None:
    """DCGAN initialization: convolutions N(0, 0.02) with zero bias, BatchNorm gamma N(1, 0.02).

    Parameters
    ----------
    module : torch.nn.Module
        Initialized in place, recursively.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _conv_bn(in_ch: int, out_ch: int, act: Callable[[], nn.Module] | None) -> nn.Sequential:
    """3x3 convolution (stride 1, pad 1, with bias), BatchNorm, optional activation."""
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, 3, 1, 1), nn.BatchNorm2d(out_ch)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class CRCBlock(nn.Module):
    """Conv-residual-conv block: five 3x3 convolutions with a short residual skip.

    ``a = act(BN(conv(x)))``; ``r`` = two conv-BN-act and one conv-BN on ``a``;
    ``out = act(BN(conv(a + r)))``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.
    act : callable returning torch.nn.Module
        Activation factory, e.g. ``nn.ReLU``.
    """

    def __init__(self, in_channels: int, out_channels: int, act: Callable[[], nn.Module]):
        super().__init__()
        self.head = _conv_bn(in_channels, out_channels, act)
        self.residual = nn.Sequential(
            _conv_bn(out_channels, out_channels, act),
            _conv_bn(out_channels, out_channels, act),
            _conv_bn(out_channels, out_channels, None),
        )
        self.tail = _conv_bn(out_channels, out_channels, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, in_channels, H, W) to (N, out_channels, H, W)."""
        a = self.head(x)
        return self.tail(a + self.residual(a))


def _leaky() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


def _relu() -> nn.Module:
    return nn.ReLU(inplace=True)


class FusionNet(nn.Module):
    """FusionNet encoder-decoder generator with summation skips and a tanh output.

    Parameters
    ----------
    in_channels : int, default=1
        Input channels (1 for the gray image).
    out_channels : int, default=3
        Output channels (3 for RGB).
    width : int, default=64
        Channels of the first level; level k has ``width * 2**k``, the bridge
        ``width * 2**depth``.
    depth : int, default=4
        Number of pooling levels. Width 64 and depth 4 is the paper's layout, with
        78,532,803 parameters for 1 input and 3 output channels.

    Notes
    -----
    Input of any size: it is reflect-padded to a multiple of ``2**depth`` and the output cropped
    back. Output in [-1, 1] (tanh). Following the port: LeakyReLU(0.2) in the encoder and
    bridge, ReLU in the decoder, and the skip is the average ``(up + encoder) / 2`` (the paper
    writes a sum; the average keeps the scale of the features).

    Examples
    --------
    >>> import torch
    >>> net = FusionNet(width=4, depth=2)
    >>> net(torch.zeros(1, 1, 13, 7)).shape
    torch.Size([1, 3, 13, 7])
    """

    def __init__(
        self, in_channels: int = 1, out_channels: int = 3, width: int = 64, depth: int = 4
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth: expected an int >= 1, got {depth}")
        if width < 1:
            raise ValueError(f"width: expected an int >= 1, got {width}")
        self.depth = depth
        channels = [width * 2**k for k in range(depth + 1)]
        self.encoder = nn.ModuleList(
            CRCBlock(c_in, c_out, _leaky)
            for c_in, c_out in zip([in_channels, *channels[:-2]], channels[:-1], strict=True)
        )
        self.bridge = CRCBlock(channels[-2], channels[-1], _leaky)
        self.up = nn.ModuleList(
            nn.Sequential(
                nn.ConvTranspose2d(2 * c, c, 3, 2, 1, output_padding=1),
                nn.BatchNorm2d(c),
                _relu(),
            )
            for c in reversed(channels[:-1])
        )
        self.decoder = nn.ModuleList(CRCBlock(c, c, _relu) for c in reversed(channels[:-1]))
        self.output = nn.Sequential(nn.Conv2d(width, out_channels, 3, 1, 1), nn.Tanh())
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, in_channels, H, W) in [-1, 1] to (N, out_channels, H, W) in [-1, 1]."""
        height, width = x.shape[-2:]
        multiple = 2**self.depth
        pad_h, pad_w = -height % multiple, -width % multiple
        if pad_h or pad_w:
            # Reflect padding needs the pad to be smaller than the side; replicate otherwise.
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bridge(x)
        for up, block, skip in zip(self.up, self.decoder, reversed(skips), strict=True):
            x = block((up(x) + skip) / 2)
        return self.output(x)[..., :height, :width]
