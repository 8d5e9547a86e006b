"""Gray normalization of Cho et al. 2017: Pillow's ITU-R 601-2 luma, bit for bit."""

from __future__ import annotations

from typing import Any

import numpy as np

from stainstyle._xp import is_tensor
from stainstyle.color.quantize import STRIP_PIXELS

#: Pillow's integer luma weights, ``L = (R*299 + G*587 + B*114) / 1000``.
LUMA_WEIGHTS = (299, 587, 114)


def gray_normalize(rgb: np.ndarray) -> np.ndarray:
    """Convert RGB to gray exactly as ``PIL.Image.convert("L")`` does.

    Pillow computes ``(R*19595 + G*38470 + B*7471 + 0x8000) >> 16`` in integers, its fixed-point
    form of ``L = R*299/1000 + G*587/1000 + B*114/1000`` rounded to nearest; this function uses the
    same integer arithmetic, so the result is identical on every uint8 input.

    Parameters
    ----------
    rgb : ndarray or torch.Tensor of shape (..., 3), dtype uint8
        RGB image or batch of images. A tensor is converted by torch on its device.

    Returns
    -------
    ndarray or torch.Tensor of shape (...), dtype uint8
        Gray levels, of the container of ``rgb``.

    Raises
    ------
    ValueError
        If the last axis is not 3 or the dtype is not uint8.

    Examples
    --------
    >>> import numpy as np
    >>> gray_normalize(np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8))
    array([ 76, 150,  29], dtype=uint8)
    """
    if is_tensor(rgb):
        import torch

        from stainstyle._torch_ops import pixel_blocks

        _check_rgb(tuple(rgb.shape), rgb.dtype == torch.uint8, rgb.dtype)
        pixels = rgb.reshape(1, -1, 3)
        gray = torch.empty(pixels.shape[:2], dtype=torch.uint8, device=rgb.device)
        # In blocks of pixels: on the CPU the int32 temporaries stay cache-sized.
        for block in pixel_blocks(1, pixels.shape[1], rgb.device):
            gray[:, block] = _luma(pixels[:, block].to(torch.int32))
        return gray.reshape(rgb.shape[:-1])
    rgb = np.asarray(rgb)
    _check_rgb(rgb.shape, rgb.dtype == np.uint8, rgb.dtype)
    pixels = rgb.reshape(-1, 3)
    gray = np.empty(len(pixels), dtype=np.uint8)
    # In strips of pixels: the uint32 temporaries stay cache-sized, whatever the image size.
    for start in range(0, len(pixels), STRIP_PIXELS):
        gray[start : start + STRIP_PIXELS] = _luma(
            pixels[start : start + STRIP_PIXELS].astype(np.uint32)
        )
    return gray.reshape(rgb.shape[:-1])


def _check_rgb(shape: tuple, is_uint8: bool, dtype: Any) -> None:
    if shape[-1:] != (3,):
        raise ValueError(f"rgb: expected shape (..., 3), got {shape}")
    if not is_uint8:
        raise ValueError(f"rgb: expected dtype uint8, got {dtype}")


def _luma(wide: Any) -> Any:
    """Pillow's fixed-point luma of integer pixels ``(..., 3)`` (uint32 or int32), per pixel."""
    return (wide[..., 0] * 19595 + wide[..., 1] * 38470 + wide[..., 2] * 7471 + 0x8000) >> 16
