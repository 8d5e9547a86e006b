"""Gray normalization as an estimator: the first stage of stain-style transfer."""

from __future__ import annotations

from typing import Any

import numpy as np

from stainstyle._fitted import FittedInt
from stainstyle._validation import Tiles
from stainstyle.base import StainNormalizer
from stainstyle.color.gray import gray_normalize


class GrayNormalizer(StainNormalizer):
    """Replace colour by Pillow's gray level, replicated to three channels.

    Removes stain colour entirely; the gray image is what the stain-style transfer generator
    re-colours. Stateless: ``fit`` only validates its input.

    Parameters
    ----------
    background : {"passthrough", "raise"}, default="passthrough"
        Policy for tiles with too little tissue (see :class:`~stainstyle.base.StainNormalizer`).
    batch_size : int, default=32
        Tiles processed at once.

    Attributes
    ----------
    n_tiles_fit_ : int
        Number of target tiles with tissue seen by ``fit``.

    See Also
    --------
    stainstyle.color.gray_normalize : The function twin, returning one channel.

    Examples
    --------
    >>> import numpy as np
    >>> tile = np.full((32, 32, 3), (150, 60, 160), dtype=np.uint8)
    >>> tile[::2] = (120, 40, 140)
    >>> GrayNormalizer().fit(tile).transform(tile)[1, 0]
    array([98, 98, 98], dtype=uint8)
    """

    _fitted_attributes: dict = {"n_tiles_fit_": FittedInt(1, 2**53)}
    _fit_dependent_params = ()
    _machine_local_params = ()
    _tensor_kernels = True

    def __init__(self, *, background: str = "passthrough", batch_size: int = 32):
        self.background = background
        self.batch_size = batch_size

    def _fit(self, tiles: Tiles, y: Any) -> None:
        self.n_tiles_fit_ = len(tiles)

    def _needs_tissue_mask(self) -> bool:
        return False

    def _transform_batch(
        self, batch: np.ndarray, tissue: np.ndarray | None, *, context: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        out = np.empty_like(batch)
        out[...] = gray_normalize(batch)[..., None]
        return out, np.zeros(len(batch), dtype=bool)

    def _transform_tensors(
        self, batch: Any, tissue: Any, *, context: Any = None
    ) -> tuple[Any, np.ndarray]:
        out = gray_normalize(batch)[..., None].expand(batch.shape).contiguous()
        return out, np.zeros(len(batch), dtype=bool)
