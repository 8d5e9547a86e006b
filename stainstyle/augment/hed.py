"""HED jitter (Tellez et al. 2018, 2019): random scales and shifts of the Ruifrok H, E, DAB stains.

Algorithm, per tile:

1. Optical density of every pixel, ``OD = -ln((I + 1) / io)`` (:mod:`stainstyle.color.od`).
2. Colour deconvolution with the H, E and DAB vectors of Ruifrok & Johnston
   (:data:`stainstyle.separation.RUIFROK_RGB_FROM_HED`, rows H, E, DAB): the stain amounts
   ``c = OD @ inv(M)``.
3. Each stain ``k`` scaled and shifted, ``c'_k = alpha_k * c_k + beta_k`` with
   ``alpha_k ~ U(1 - sigma, 1 + sigma)`` and ``beta_k ~ U(-sigma, sigma)``, drawn once per tile.
4. Reconvolution, ``OD' = c' @ M``, and back to intensities, ``I' = io * exp(-OD') - 1`` (the
   exact inverse of step 1), rounded for uint8 output.

Steps 2-4 are one affine map of the optical density per tile,
``OD' = OD @ (inv(M) diag(alpha) M) + beta @ M``, so the per-pixel cost is one 3x3 product, a
logarithm and an exponential. Every pixel of a tissue tile is jittered, glass included, as in
the paper; tiles without enough tissue are returned unchanged.

Settings of the paper: ``sigma = 0.05`` ("HED-light") and ``sigma = 0.2`` ("HED-strong"),
:data:`HED_LIGHT` and :data:`HED_STRONG`. The stain amounts here are the project's optical
density (natural logarithm, blank field 240); implementations on scikit-image's ``rgb2hed``
work on its scale (which divides by ``ln(1e-6)`` in recent versions), so the same sigma shifts by
a different amount there.

References
----------
Ruifrok & Johnston, "Quantification of histochemical staining by color deconvolution",
Analytical and Quantitative Cytology and Histology 23(4):291-299, 2001.

Tellez et al., "Whole-slide mitosis detection in H&E breast histology using PHH3 as a reference
to train distilled stain-invariant convolutional networks", IEEE TMI 37(9):2126-2136, 2018.

Tellez et al., "Quantifying the effects of data augmentation and stain color normalization in
convolutional neural networks for computational pathology", Medical Image Analysis 58:101544,
2019.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stainstyle.augment._common import ODAugmenter, affine_pixels, through_od
from stainstyle.color.od import IO_DEFAULT
from stainstyle.separation import RUIFROK_RGB_FROM_HED

#: sigma of Tellez et al.'s "HED-light" augmentation.
HED_LIGHT = 0.05
#: sigma of Tellez et al.'s "HED-strong" augmentation.
HED_STRONG = 0.2

_PRESETS = {"light": HED_LIGHT, "strong": HED_STRONG}


def draw_hed_jitter(rng: np.random.Generator, n: int, sigma: float) -> dict[str, np.ndarray]:
    """The random scales and shifts of ``n`` tiles.

    Parameters
    ----------
    rng : numpy.random.Generator
        The stream to draw from: one array of ``6 n`` uniforms, in tile order.
    n : int
        Number of tiles.
    sigma : float
        Strength, >= 0.

    Returns
    -------
    dict
        ``"alpha"`` and ``"beta"``, float64 arrays of shape (n, 3) (H, E, DAB):
        ``alpha ~ U(1 - sigma, 1 + sigma)``, ``beta ~ U(-sigma, sigma)``.
    """
    u = rng.random((n, 2, 3))
    return {"alpha": 1.0 + sigma * (2.0 * u[:, 0] - 1.0), "beta": sigma * (2.0 * u[:, 1] - 1.0)}


def hed_affine(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The optical-density maps of HED jitter: ``OD' = OD @ matrix + offset`` per tile.

    Parameters
    ----------
    alpha, beta : ndarray of shape (n, 3)
        Scales and shifts of the H, E and DAB amounts.

    Returns
    -------
    matrix : ndarray of shape (n, 3, 3), dtype float64
        ``inv(M) @ diag(alpha) @ M`` with ``M`` = :data:`RUIFROK_RGB_FROM_HED`.
    offset : ndarray of shape (n, 3), dtype float64
        ``beta @ M``.
    """
    mixing = RUIFROK_RGB_FROM_HED
    unmixing = np.linalg.inv(mixing)
    matrix = unmixing[None] @ (np.asarray(alpha)[:, :, None] * mixing[None])
    return matrix, np.asarray(beta) @ mixing


def hed_jitter(xp: Any, x: Any, alpha: Any, beta: Any, io: float = IO_DEFAULT) -> Any:
    """HED jitter of a batch, in numpy or torch.

    Parameters
    ----------
    xp : module
        :mod:`numpy` or :mod:`torch`, the namespace of ``x``.
    x : ndarray or torch.Tensor of shape (n, H, W, 3), float32 or float64
        RGB intensities on the 0-255 scale.
    alpha, beta : ndarray of shape (n, 3)
        Per-tile scales and shifts of the H, E and DAB amounts (:func:`draw_hed_jitter`).
    io : float, default=240
        Blank-field intensity of the optical density.

    Returns
    -------
    ndarray or torch.Tensor of shape (n, H, W, 3), dtype of ``x``
        Jittered intensities on the 0-255 scale, not clipped.
    """
    matrix, offset = hed_affine(alpha, beta)
    return through_od(xp, x, lambda od: affine_pixels(xp, od, matrix, offset), io)


class HEDJitter(ODAugmenter):
    """Random H, E and DAB stain scales and shifts (Tellez et al.), numpy or torch.

    Parameters
    ----------
    sigma : float or {"light", "strong"}, default="light"
        Strength: ``alpha ~ U(1 - sigma, 1 + sigma)``, ``beta ~ U(-sigma, sigma)`` per stain and
        tile. ``"light"`` is 0.05 and ``"strong"`` 0.2, the paper's HED-light and HED-strong.
        0 returns the tiles unchanged.
    io : float, default=240
        Blank-field intensity of the optical density.
    random_state : None, int or numpy.random.Generator, default=None
        Seed of the stream the parameters are drawn from; the same seed gives the same output
        from numpy and torch input (within one gray level: float rounding differs).

    See Also
    --------
    hed_jitter : The function behind it.
    StainAugmenter : The same perturbation around a fitted Macenko or Vahadane stain matrix.

    Notes
    -----
    Inputs and outputs as :class:`~stainstyle.augment._common.Augmenter` describes: numpy
    ``(H, W, 3)``, ``(N, H, W, 3)`` or lists; tensors ``(N, 3, H, W)`` or ``(N, H, W, 3)`` on
    any device; uint8 or float in [0, 1]; type, shape, dtype and device kept. It is a
    ``torch.nn.Module``, so it goes into ``torchvision.transforms.v2.Compose``; in a
    ``DataLoader`` each worker draws from its own stream.

    References
    ----------
    Tellez et al., IEEE TMI 37(9):2126-2136, 2018; Tellez et al., Medical Image Analysis
    58:101544, 2019; Ruifrok & Johnston, Anal. Quant. Cytol. Histol. 23(4):291-299, 2001.

    Examples
    --------
    >>> import numpy as np
    >>> tiles = np.random.default_rng(0).integers(60, 200, (2, 32, 32, 3), dtype=np.uint8)
    >>> out = HEDJitter(sigma="strong", random_state=0)(tiles)
    >>> out.shape, out.dtype
    ((2, 32, 32, 3), dtype('uint8'))
    >>> bool(np.array_equal(HEDJitter(sigma=0)(tiles), tiles))
    True
    """

    def __init__(self, sigma: float | str = "light", *, io: float = IO_DEFAULT, random_state=None):
        super().__init__(random_state)
        self.sigma = sigma
        self.io = io

    def _sigma(self) -> float:
        if isinstance(self.sigma, str):
            if self.sigma not in _PRESETS:
                raise ValueError(
                    f"sigma: expected a number >= 0, 'light' or 'strong', got {self.sigma!r}"
                )
            return _PRESETS[self.sigma]
        return float(self.sigma)

    def _validate_params(self) -> None:
        super()._validate_params()
        sigma = self._sigma()
        if not 0 <= sigma < 1:
            raise ValueError(f"sigma: expected a number in [0, 1), got {self.sigma!r}")
        if not self.io >= 1:
            raise ValueError(f"io: expected a blank-field intensity >= 1, got {self.io!r}")

    def _is_identity(self) -> bool:
        return self._sigma() == 0

    def _draw(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        return draw_hed_jitter(rng, n, self._sigma())

    def _io(self) -> float:
        return self.io

    def _map_od(self, xp: Any, od: Any, params: dict[str, np.ndarray]) -> Any:
        return affine_pixels(xp, od, *hed_affine(params["alpha"], params["beta"]))
