"""Conditional DCGAN discriminator on (gray, colour) pairs, as in Cho et al. 2017.

The DCGAN layout is that of Radford et al. (arXiv:1511.06434).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from stainstyle.sst.fusionnet import init_weights


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator sized to a square crop, giving one logit per image.

    For a crop of side ``2**m`` it has ``m - 2`` stride-2 4x4 convolutions of widths
    ``width * min(2**i, 8)`` (BatchNorm on all but the first, LeakyReLU(0.2)), reaching a 4x4 map,
    then a 4x4 convolution to one logit. Width 64 has 2,766,592 parameters at 64x64 and
    11,157,248 at 256x256 with 4 input channels.

    Parameters
    ----------
    crop_size : int
        Side of the square training crop; a power of two, at least 8.
    in_channels : int, default=4
        Condition and image channels together (gray 1 + colour 3).
    width : int, default=64
        Channels of the first layer.

    Examples
    --------
    >>> import torch
    >>> DCGANDiscriminator(16, width=8)(torch.zeros(2, 1, 16, 16), torch.zeros(2, 3, 16, 16)).shape
    torch.Size([2])
    """

    def __init__(self, crop_size: int, in_channels: int = 4, width: int = 64):
        super().__init__()
        m = round(math.log2(crop_size)) if crop_size > 0 else 0
        if crop_size < 8 or 2**m != crop_size:
            raise ValueError(f"crop_size: expected a power of two >= 8, got {crop_size}")
        layers: list[nn.Module] = []
        c_in = in_channels
        for i in range(m - 2):
            c_out = width * min(2**i, 8)
            layers.append(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False))
            if i > 0:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 1, 4, 1, 0, bias=False))
        self.crop_size = crop_size
        self.net = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Set every parameter and buffer (DCGAN initialization), drawing from ``generator``.

        Parameters
        ----------
        generator : torch.Generator, optional
            Source of the random draws; None uses torch's global generator.
        """
        init_weights(self, generator)

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N,) for (N, c, S, S) conditions and (N, C - c, S, S) images."""
        if tuple(condition.shape[-2:]) != (self.crop_size, self.crop_size):
            raise ValueError(
                f"condition: expected spatial size {self.crop_size}x{self.crop_size}, "
                f"got {tuple(condition.shape[-2:])}"
            )
        return self.net(torch.cat([condition, image], dim=1)).flatten()
