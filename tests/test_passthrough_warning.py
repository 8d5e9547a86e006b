"""The warning for tiles passed through unchanged names each reason with its own count."""

from __future__ import annotations

import numpy as np
import pytest

from stainstyle import BackgroundTileWarning, MacenkoNormalizer, tile_status

WHITE = np.full((64, 64, 3), 250, np.uint8)


def _single_stain_tile() -> np.ndarray:
    """Tissue holding one stain only (haematoxylin optical density): Macenko cannot model it."""
    tile = np.empty((64, 64, 3), np.uint8)
    tile[:] = np.rint(240 * np.exp(-np.linspace(0.3, 1.5, 64)[:, None, None] * [0.65, 0.70, 0.29]))
    return tile


def _warning(tiles) -> str:
    normalizer = MacenkoNormalizer.from_reference()
    with pytest.warns(BackgroundTileWarning) as caught:
        normalizer.transform(tiles)
    assert len(caught) == 1
    return str(caught[0].message)


def test_background_tiles_are_not_called_degenerate():
    message = _warning(np.stack([WHITE, WHITE]))
    assert message.startswith("MacenkoNormalizer: 2 of 2 tiles passed through unchanged, ")
    assert "2 as background ('passthrough_background'): too little tissue" in message
    assert "degenerate" not in message


def test_degenerate_tiles_are_not_called_background():
    tile = _single_stain_tile()
    assert tile_status(MacenkoNormalizer.from_reference(), tile).tolist() == [
        "passthrough_degenerate"
    ]
    message = _warning(np.stack([tile, tile, tile]))
    assert "3 of 3 tiles passed through unchanged" in message
    assert "3 as degenerate ('passthrough_degenerate'): tissue without colour" in message
    assert "background" not in message and "too little tissue" not in message


def test_both_reasons_are_counted_apart():
    message = _warning(np.stack([WHITE, _single_stain_tile(), _single_stain_tile()]))
    assert "3 of 3 tiles passed through unchanged, 1 as background" in message
    assert "; 2 as degenerate" in message
