"""Colour spaces shared by the methods: optical density, Lab, gray, and uint8 quantization."""

from stainstyle.color.gray import gray_normalize
from stainstyle.color.lab import (
    lab_cie_to_rgb,
    lab_ruderman_to_rgb,
    rgb_to_lab_cie,
    rgb_to_lab_ruderman,
)
from stainstyle.color.od import od_to_rgb, rgb_to_od
from stainstyle.color.quantize import float_to_uint8

__all__ = [
    "float_to_uint8",
    "gray_normalize",
    "lab_cie_to_rgb",
    "lab_ruderman_to_rgb",
    "od_to_rgb",
    "rgb_to_lab_cie",
    "rgb_to_lab_ruderman",
    "rgb_to_od",
]
