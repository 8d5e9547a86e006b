"""Colour spaces shared by the methods: optical density, Lab, HSD, gray, uint8 quantization."""

from stainstyle.color.gray import gray_normalize
from stainstyle.color.hsd import hsd_channel_densities, hsd_to_rgb, rgb_to_hsd
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
    "hsd_channel_densities",
    "hsd_to_rgb",
    "lab_cie_to_rgb",
    "lab_ruderman_to_rgb",
    "od_to_rgb",
    "rgb_to_hsd",
    "rgb_to_lab_cie",
    "rgb_to_lab_ruderman",
    "rgb_to_od",
]
