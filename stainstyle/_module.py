"""A fitted normalizer as a ``torch.nn.Module``: normalize a batch inside a training step."""

from __future__ import annotations

from typing import Any

import torch

from stainstyle.augment._common import _rewrapped, _tensor_layout


class NormalizerModule(torch.nn.Module):
    """Calls a fitted normalizer's ``transform`` on tensor batches, without gradients.

    Made by :meth:`stainstyle.base.StainNormalizer.as_module`. The batch stays on its device:
    Reinhard, Macenko, histogram specification, gray normalization and Vahadane compute in
    torch there (WSICS through numpy, as its ``transform`` does).

    Parameters
    ----------
    normalizer : StainNormalizer
        A fitted normalizer; the module holds it, not a copy.

    Notes
    -----
    Tensors ``(N, 3, H, W)`` or ``(3, H, W)`` (torchvision's channels-first layout, read when
    dimension -3 has 3 entries) and ``(N, H, W, 3)`` or ``(H, W, 3)`` are accepted, uint8 or
    float in [0, 1]; the output has the input's layout, dtype and device. Tiles without enough
    tissue come back unchanged (with a :class:`~stainstyle.base.BackgroundTileWarning`, as
    ``transform`` warns). The module has no parameters and no gradient flows through it.
    """

    def __init__(self, normalizer: Any):
        super().__init__()
        self.normalizer = normalizer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize a batch (or one tile).

        Parameters
        ----------
        x : torch.Tensor of shape (N, 3, H, W), (3, H, W), (N, H, W, 3) or (H, W, 3)
            uint8 or float in [0, 1], on any device.

        Returns
        -------
        torch.Tensor
            Normalized, in the layout, dtype and device of ``x``.

        Raises
        ------
        ValueError
            If ``x`` is not a tensor of tiles as described.
        """
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        layout = _tensor_layout(x, "x")
        with torch.no_grad():
            channels_last = x.movedim(-3, -1) if layout == "chw" else x
            out = self.normalizer.transform(channels_last.detach())
            if layout == "chw":
                out = out.movedim(-1, -3).contiguous()
        return _rewrapped(out, x)

    def extra_repr(self) -> str:
        """The normalizer, for ``repr``."""
        return repr(self.normalizer)
