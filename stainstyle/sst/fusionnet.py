"""FusionNet generator (Quan, Hildebrand & Jeong, arXiv:1612.05360), as used by Cho et al. 2017.

Layout of the PyTorch port by Gunho Choi (a co-author of Cho et al. 2017): an encoder of
conv-residual-conv (CRC) blocks with 2x2 max pooling, a CRC bridge, and a decoder of transposed
convolutions whose outputs are averaged with the encoder features of the same level.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from stainstyle.sst._torch import own_tensors


def init_weights(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """DCGAN initialization: convolutions N(0, 0.02) with zero bias, BatchNorm gamma N(1, 0.02).

    Every parameter and buffer is set, BatchNorm running statistics included, so a network
    built on the ``meta`` device and materialized with ``to_empty`` keeps nothing undefined.

    Parameters
    ----------
    module : torch.nn.Module
        Initialized in place, recursively; made of convolutions, transposed convolutions,
        BatchNorm and parameter-free layers.
    generator : torch.Generator, optional
        Source of the random draws (on the module's device); None uses torch's global generator.

    Raises
    ------
    TypeError
        If a submodule of another kind holds parameters or buffers (it would stay uninitialized).
    """
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.normal_(0.0, 0.02, generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.normal_(1.0, 0.02, generator=generator)
                m.bias.zero_()
                m.reset_running_stats()
            elif own_tensors(m):
                raise TypeError(
                    f"init_weights: no initialization for {type(m).__name__}, which holds "
                    f"{own_tensors(m)}"
                )


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
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Set every parameter and buffer (:func:`init_weights`), drawing from ``generator``.

        Parameters
        ----------
        generator : torch.Generator, optional
            Source of the random draws; None uses torch's global generator.
        """
        init_weights(self, generator)

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
