"""Colour spaces shared by the methods: optical density, Lab, gray."""

from stainstyle.color.gray import gray_normalize

__all__ = ["gray_normalize"]
