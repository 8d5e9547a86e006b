"""Stain separation: the H and E concentration maps of tiles, for a given stain matrix.

Beer-Lambert: a pixel's optical density ``OD = -ln((I + 1) / io)`` (:mod:`stainstyle.color.od`)
is the stain matrix times its stain concentrations, ``OD = S @ c`` with ``S`` of shape (3, 2)
(columns H, E; rows R, G, B) and ``c >= 0``. The concentrations of a pixel are those of the
closest non-negative mixture, with an optional l1 penalty (Vahadane's sparse separation):

    c = argmin_{c >= 0} 0.5 * ||OD - S @ c||^2 + lambda1 * (c_H + c_E)

With two stains this non-negative lasso has a closed form (:func:`nonnegative_lasso`), so the
maps of a tile cost two small affine maps and a few comparisons per pixel, no iterative solver.
``lambda1 = 0`` gives non-negative least squares.

Two stains cannot explain every optical density: RGB has three channels, so a pixel's optical
density off the plane of H and E (and, for the non-negative lasso, off the cone of their
non-negative mixtures) is lost, and :func:`reconstruct` of the two maps does not give the
tile back. Colour deconvolution (Ruifrok & Johnston) completes the basis with a third vector,
the *residual* (:func:`residual_vector`, the unit vector orthogonal to H and E), and inverts
the 3x3 matrix (:func:`complete_stain_matrix`): ``separate_stains(..., residual=True)`` returns
the three maps ``(..., 3)`` of that exact inverse, H and E then being the unconstrained (signed)
least-squares amounts and the residual the optical density orthogonal to the stain plane, and
:func:`reconstruct` of the three maps gives the tissue pixels back up to rounding.

Background policy: pixels that are not tissue (the shared rule of :mod:`stainstyle.tissue`:
bright in every channel, or black padding) have no stain: their concentrations are 0, and
:func:`reconstruct` turns them into the blank field ``io``.

The stain matrix comes from a method (``MacenkoNormalizer.stain_matrix_``,
``VahadaneNormalizer.stain_matrix_``, or per tile through their ``stain_concentrations``), or is
the fixed H&E matrix of Ruifrok & Johnston (:data:`RUIFROK_HE`, :func:`ruifrok_concentrations`).

References
----------
Ruifrok & Johnston, "Quantification of histochemical staining by color deconvolution",
Analytical and Quantitative Cytology and Histology 23(4):291-299, 2001.

HistomicsTK, ``histomicstk.preprocessing.color_deconvolution.complement_stain_matrix`` (the
third stain as the normalized cross product of the first two).

Vahadane et al., "Structure-preserving color normalization and sparse stain separation for
histological images", IEEE Transactions on Medical Imaging 35(8):1962-1971, 2016.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from stainstyle._validation import as_tiles
from stainstyle.color.od import IO_DEFAULT, od_lut
from stainstyle.color.quantize import float_to_uint8, row_strips
from stainstyle.tissue import tissue_mask

#: Ruifrok & Johnston's (2001) stain vectors of hematoxylin, eosin and DAB (rows; columns R, G,
#: B optical densities), as scikit-image's ``rgb_from_hed`` (``skimage.color.colorconv``).
RUIFROK_RGB_FROM_HED = np.array(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float64
)
RUIFROK_RGB_FROM_HED.flags.writeable = False

#: The fixed H&E stain matrix of Ruifrok & Johnston: unit columns H, E; rows R, G, B.
RUIFROK_HE = RUIFROK_RGB_FROM_HED[:2].T / np.linalg.norm(RUIFROK_RGB_FROM_HED[:2], axis=1)
RUIFROK_HE.flags.writeable = False

#: Stain matrices whose Gram determinant is below this hold two (nearly) parallel stains.
MIN_GRAM_DETERMINANT = 1e-6


def check_stain_matrix(stain_matrix: Any, name: str = "stain_matrix") -> np.ndarray:
    """A stain matrix as float64 ``(3, 2)``, refused when it cannot separate two stains.

    Parameters
    ----------
    stain_matrix : array-like of shape (3, 2)
        Stain vectors as columns (H, E); rows R, G, B.
    name : str
        Argument name for error messages.

    Returns
    -------
    ndarray of shape (3, 2), dtype float64

    Raises
    ------
    ValueError
        If the shape is not (3, 2), a value is not finite, or the two stain vectors are zero
        or parallel (Gram determinant below :data:`MIN_GRAM_DETERMINANT` times their norms).
    """
    try:
        matrix = np.array(stain_matrix, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{name}: expected an array of shape (3, 2), got {type(stain_matrix).__name__}"
        ) from err
    if matrix.shape != (3, 2):
        raise ValueError(
            f"{name}: expected shape (3, 2) (columns H, E; rows R, G, B), got {matrix.shape}"
        )
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    gram = matrix.T @ matrix
    scale = gram[0, 0] * gram[1, 1]
    if scale == 0 or np.linalg.det(gram) < MIN_GRAM_DETERMINANT * scale:
        raise ValueError(
            f"{name}: its two stain vectors are zero or parallel, so they cannot separate two "
            f"stains; got columns {matrix[:, 0].round(4).tolist()} and "
            f"{matrix[:, 1].round(4).tolist()}"
        )
    return matrix


def residual_vector(stain_matrix: Any) -> np.ndarray:
    """The unit vector orthogonal to both stains: the third stain of colour deconvolution.

    The normalized cross product ``s_H x s_E``, as HistomicsTK's ``complement_stain_matrix``.
    It may have negative entries: it is no stain's colour, but the direction of optical density
    that no mixture of H and E produces.

    Parameters
    ----------
    stain_matrix : array-like of shape (3, 2)
        Stain vectors as columns (H, E); rows R, G, B. Not parallel.

    Returns
    -------
    ndarray of shape (3,), dtype float64
        Unit norm, orthogonal to both columns.

    Raises
    ------
    ValueError
        If the stain matrix is invalid (:func:`check_stain_matrix`).

    Examples
    --------
    >>> import numpy as np
    >>> bool(np.allclose(RUIFROK_HE.T @ residual_vector(RUIFROK_HE), 0))
    True
    """
    matrix = check_stain_matrix(stain_matrix)
    third = np.cross(matrix[:, 0], matrix[:, 1])
    return third / np.linalg.norm(third)


def complete_stain_matrix(stain_matrix: Any) -> np.ndarray:
    """The 3x3 colour-deconvolution matrix: columns H, E and their residual vector.

    Parameters
    ----------
    stain_matrix : array-like of shape (3, 2)
        Stain vectors as columns (H, E); rows R, G, B. Not parallel.

    Returns
    -------
    ndarray of shape (3, 3), dtype float64
        ``[s_H, s_E, r]`` with ``r`` from :func:`residual_vector`; invertible.

    Raises
    ------
    ValueError
        If the stain matrix is invalid (:func:`check_stain_matrix`).
    """
    matrix = check_stain_matrix(stain_matrix)
    return np.column_stack([matrix, residual_vector(matrix)])


@dataclass(frozen=True)
class ColourDeconvolution:
    """The exact three-stain separation of one stain matrix: ``c = [S | r]^-1 OD`` per pixel.

    Attributes
    ----------
    inverse : ndarray of shape (3, 3), dtype float64
        Inverse of :func:`complete_stain_matrix`; maps ``OD`` to ``(c_H, c_E, c_residual)``.
    """

    inverse: np.ndarray

    #: Concentration maps per pixel: H, E and residual.
    channels = 3

    @classmethod
    def of(cls, stain_matrix: np.ndarray) -> ColourDeconvolution:
        """The deconvolution of a valid stain matrix (:func:`check_stain_matrix`).

        Parameters
        ----------
        stain_matrix : ndarray of shape (3, 2)
            Stain vectors as columns, not parallel.

        Returns
        -------
        ColourDeconvolution
        """
        return cls(inverse=np.linalg.inv(complete_stain_matrix(stain_matrix)))

    def __call__(self, od: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Signed H, E and residual amounts of optical densities.

        Parameters
        ----------
        od : ndarray of shape (n, 3), dtype float32, C-contiguous
            Optical densities.
        out : ndarray of shape (n, 3), dtype float32, optional
            Array to write the amounts into.

        Returns
        -------
        ndarray of shape (n, 3), dtype float32
        """
        amounts = cv2.transform(od.reshape(-1, 1, 3), self.inverse.astype(np.float32))
        if out is None:
            return amounts.reshape(-1, 3)
        out[...] = amounts.reshape(-1, 3)
        return out


@dataclass(frozen=True)
class ClosedFormLasso:
    """The exact two-stain non-negative lasso of one stain matrix and penalty, per pixel.

    Solves ``c = argmin_{c >= 0} 0.5 * ||OD - S c||^2 + lambda1 * (c_H + c_E)``, strictly
    convex when the stain vectors are not parallel (``G = S^T S`` positive definite), by its
    KKT conditions. Let ``u = G^-1 (S^T OD - lambda1)`` be the optimum without the bounds. With
    one stain alone, say H, the optimum is ``v_H = (s_H . OD - lambda1) / G_HH``, and it is the
    solution when ``v_H > 0`` and the gradient in E at it is not negative:
    ``s_E . OD - lambda1 - G_HE v_H <= 0``, which is the inequality ``u_E <= 0``
    (multiply by ``G_HH > 0``; both read ``G_HH (s_E . OD - lambda1) <= G_HE (s_H . OD -
    lambda1)``). Since ``S^T OD - lambda1 = G u``, ``v_H = u_H + (G_HE / G_HH) u_E``. So the
    four active sets (both stains, H alone, E alone, none) reduce to

        c_H = max(u_H + (G_HE / G_HH) * min(u_E, 0), 0)
        c_E = max(u_E + (G_HE / G_EE) * min(u_H, 0), 0)

    (when ``u_E > 0`` and ``u_H > 0`` both stains are active; when ``u_E <= 0`` H alone or
    none; ``u_H <= 0``, ``u_E <= 0``, ``v_H > 0`` and ``v_E > 0`` together would need
    ``|cos(s_H, s_E)| > 1``). Per pixel this is one affine map of the optical density and four
    elementwise operations, the optimum an iterative solver (SPAMS ``lasso(mode=2, pos=True)``)
    converges to.

    Attributes
    ----------
    affine : ndarray of shape (2, 4), dtype float64
        ``[G^-1 S^T | -lambda1 G^-1 1]``: maps ``[OD_R, OD_G, OD_B, 1]`` to ``u``.
    ratios : ndarray of shape (2,), dtype float64
        ``(G_HE / G_HH, G_HE / G_EE)``.
    """

    affine: np.ndarray
    ratios: np.ndarray

    #: Concentration maps per pixel: H and E.
    channels = 2

    @classmethod
    def of(cls, stain_matrix: np.ndarray, lambda1: float) -> ClosedFormLasso:
        """The solver of a valid stain matrix (:func:`check_stain_matrix`) and penalty >= 0.

        Parameters
        ----------
        stain_matrix : ndarray of shape (3, 2)
            Stain vectors as columns, not parallel.
        lambda1 : float
            l1 penalty, >= 0.

        Returns
        -------
        ClosedFormLasso
        """
        (g_hh, g_he), (_, g_ee) = stain_matrix.T @ stain_matrix
        det = g_hh * g_ee - g_he * g_he
        s_h, s_e = stain_matrix[:, 0], stain_matrix[:, 1]
        affine = np.empty((2, 4))
        affine[0, :3] = (g_ee * s_h - g_he * s_e) / det
        affine[1, :3] = (g_hh * s_e - g_he * s_h) / det
        affine[:, 3] = -lambda1 * np.array([g_ee - g_he, g_hh - g_he]) / det
        return cls(affine=affine, ratios=np.array([g_he / g_hh, g_he / g_ee]))

    def __call__(self, od: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Concentrations of optical densities.

        Parameters
        ----------
        od : ndarray of shape (n, 3), float32 or float64
            Optical densities; float32 goes through OpenCV (C-contiguous), float64 through
            NumPy.
        out : ndarray of shape (n, 2), dtype float32, optional
            C-contiguous array to write float32 concentrations into.

        Returns
        -------
        ndarray of shape (n, 2), same dtype as ``od``
            Non-negative H and E concentrations.
        """
        if od.dtype == np.float32:
            return self._float32(od, out)
        free = od @ self.affine[:, :3].T + self.affine[:, 3]
        bounded = np.minimum(free, 0)
        free += bounded[:, ::-1] * self.ratios
        return np.maximum(free, 0, out=free)

    def _float32(self, od: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        """The float32 path: OpenCV kernels over blocks of pixels that stay in the cache."""
        affine = self.affine.astype(np.float32)
        # min(u, 0) of the other stain times its ratio: a 2x2 map with the ratios off-diagonal
        swap = np.array([[0.0, self.ratios[0]], [self.ratios[1], 0.0]], dtype=np.float32)
        pixels = np.ascontiguousarray(od).reshape(-1, 1, 3)
        if out is None:
            out = np.empty((len(pixels), 2), dtype=np.float32)
        written = out.reshape(-1, 1, 2)
        for block in row_strips(pixels.shape):
            free = cv2.transform(pixels[block], affine, dst=written[block])
            bounded = cv2.threshold(free, 0.0, 0.0, cv2.THRESH_TRUNC)[1]  # min(u, 0)
            cv2.add(free, cv2.transform(bounded, swap), dst=free)
            cv2.threshold(free, 0.0, 0.0, cv2.THRESH_TOZERO, dst=free)  # max(., 0)
        return out


def nonnegative_lasso(od: np.ndarray, stain_matrix: Any, lambda1: float = 0.0) -> np.ndarray:
    """Stain concentrations of optical densities, by the exact two-stain non-negative lasso.

    Solves ``argmin_{c >= 0} 0.5 * ||od - S @ c||^2 + lambda1 * sum(c)`` for every pixel in
    closed form (:class:`ClosedFormLasso` derives it from the KKT conditions); the same
    optimum as an iterative solver (SPAMS ``lasso`` with ``mode=2, pos=True``), to float32
    rounding.

    Parameters
    ----------
    od : ndarray of shape (..., 3), float
        Optical densities.
    stain_matrix : array-like of shape (3, 2)
        Stain vectors as columns (H, E); rows R, G, B. Not parallel.
    lambda1 : float, default=0
        l1 penalty; 0 gives non-negative least squares.

    Returns
    -------
    ndarray of shape (..., 2), dtype float32
        Non-negative H and E concentrations.

    Raises
    ------
    ValueError
        If ``od`` is not ``(..., 3)``, ``lambda1`` is negative, or the stain matrix is invalid
        (:func:`check_stain_matrix`).

    Examples
    --------
    >>> import numpy as np
    >>> od = 0.8 * RUIFROK_HE[:, 0] + 0.3 * RUIFROK_HE[:, 1]
    >>> nonnegative_lasso(od, RUIFROK_HE).round(3)
    array([0.8, 0.3], dtype=float32)
    """
    od = np.asarray(od)
    if od.ndim < 1 or od.shape[-1] != 3:
        raise ValueError(f"od: expected shape (..., 3), got {od.shape}")
    if not lambda1 >= 0:
        raise ValueError(f"lambda1: expected a number >= 0, got {lambda1!r}")
    lasso = ClosedFormLasso.of(check_stain_matrix(stain_matrix), float(lambda1))
    flat = np.ascontiguousarray(od, dtype=np.float32).reshape(-1, 3)
    return lasso(flat).reshape(*od.shape[:-1], 2)


def tile_concentrations(
    tile: np.ndarray,
    solver: ClosedFormLasso | ColourDeconvolution,
    io: float,
    tissue: np.ndarray | None = None,
) -> np.ndarray:
    """The concentration maps ``(H, W, K)`` float32 of one uint8 tile, strip by strip.

    Parameters
    ----------
    tile : ndarray of shape (H, W, 3), dtype uint8
        RGB tile.
    solver : ClosedFormLasso or ColourDeconvolution
        The separation of the stain matrix: ``K = solver.channels`` maps (2: H and E; 3: H, E
        and residual).
    io : float
        Blank-field intensity of the optical density.
    tissue : ndarray of shape (H, W), dtype bool, optional
        Where to solve; 0 elsewhere. All pixels when None.

    Returns
    -------
    ndarray of shape (H, W, K), dtype float32
    """
    lut = od_lut(io, np.float32)
    out = np.empty((*tile.shape[:2], solver.channels), dtype=np.float32)
    for rows in row_strips(tile.shape):
        solver(cv2.LUT(tile[rows], lut).reshape(-1, 3), out=out[rows].reshape(-1, solver.channels))
    if tissue is not None:
        out[~tissue] = 0
    return out


def separate_stains(
    X: Any,
    stain_matrix: Any,
    *,
    io: float = IO_DEFAULT,
    lambda1: float = 0.0,
    residual: bool = False,
) -> np.ndarray | list[np.ndarray]:
    """The H and E concentration maps of tiles, for one stain matrix; optionally the residual.

    Two separations, by ``residual``:

    * ``False``: H and E of the closest non-negative mixture (the non-negative lasso of
      :func:`nonnegative_lasso`). The maps are >= 0, but optical density outside that
      mixture's reach is dropped, so :func:`reconstruct` does not give real tissue back.
    * ``True``: colour deconvolution, the exact inverse of the 3x3 matrix of H, E and the
      residual vector (:func:`complete_stain_matrix`). H and E are the unconstrained
      least-squares amounts (equal to the first separation's where those are >= 0 and
      ``lambda1 = 0``; negative where the pixel is outside the cone of H and E), the residual
      is the optical density orthogonal to both stains, and :func:`reconstruct` of the three
      maps gives the tissue pixels back (to rounding).

    Parameters
    ----------
    X : ndarray of shape (H, W, 3) or (N, H, W, 3), torch.Tensor, or list of such tiles
        RGB tiles, uint8 or float in [0, 1] (as the estimators take them).
    stain_matrix : array-like of shape (3, 2)
        Stain vectors as columns (H, E); rows R, G, B; in the optical density of ``io``.
    io : float, default=240
        Blank-field intensity of ``OD = -ln((I + 1) / io)``.
    lambda1 : float, default=0
        l1 penalty of the non-negative lasso (:func:`nonnegative_lasso`); 0 gives non-negative
        least squares, Vahadane's transform uses 0.01. Must be 0 with ``residual=True`` (the
        exact inverse has no penalty).
    residual : bool, default=False
        Return the residual map too, by colour deconvolution (see above).

    Returns
    -------
    ndarray of shape (H, W, K) or (N, H, W, K), dtype float32, or list of them
        ``K = 2`` without ``residual``: concentrations of H (``[..., 0]``) and E
        (``[..., 1]``), >= 0. ``K = 3`` with ``residual``: H, E (signed) and the residual
        (``[..., 2]``, signed). 0 on pixels that are not tissue
        (:func:`stainstyle.tissue.tissue_mask`), in every channel. Same layout as ``X`` (a
        list for a list).

    Raises
    ------
    ValueError
        If ``X`` is not tiles as described, or ``stain_matrix`` is invalid
        (:func:`check_stain_matrix`), or ``io`` or ``lambda1`` is out of range, or
        ``lambda1`` is not 0 with ``residual=True``.

    See Also
    --------
    ruifrok_concentrations : With the fixed Ruifrok & Johnston H&E matrix.
    reconstruct : The inverse, back to RGB.

    Examples
    --------
    >>> import numpy as np
    >>> tile = reconstruct(np.full((8, 8, 2), [0.8, 0.3]), RUIFROK_HE)
    >>> separate_stains(tile, RUIFROK_HE).mean(axis=(0, 1)).round(1)
    array([0.8, 0.3], dtype=float32)
    >>> separate_stains(tile, RUIFROK_HE, residual=True).shape
    (8, 8, 3)
    """
    if not io >= 1:
        raise ValueError(f"io: expected a blank-field intensity >= 1, got {io!r}")
    if not lambda1 >= 0:
        raise ValueError(f"lambda1: expected a number >= 0, got {lambda1!r}")
    if residual and lambda1 != 0:
        raise ValueError(
            f"lambda1: the exact three-stain separation (residual=True) has no penalty; "
            f"expected 0, got {lambda1!r}"
        )
    matrix = check_stain_matrix(stain_matrix)
    solver = ColourDeconvolution.of(matrix) if residual else ClosedFormLasso.of(matrix, lambda1)
    tiles = as_tiles(X)
    maps = [tile_concentrations(tile, solver, io, tissue_mask(tile)) for tile in tiles.images]
    if tiles.layout == "tile":
        return maps[0]
    return maps if tiles.layout == "list" else np.stack(maps)


def ruifrok_concentrations(
    X: Any, *, io: float = IO_DEFAULT, residual: bool = False
) -> np.ndarray | list[np.ndarray]:
    """H and E concentration maps with the fixed stain matrix of Ruifrok & Johnston (2001).

    :func:`separate_stains` with :data:`RUIFROK_HE`: non-negative least squares, or with
    ``residual`` the exact 3x3 colour deconvolution. Unlike scikit-image's ``rgb2hed``, which
    inverts the 3x3 H-E-DAB matrix (DAB taking the residual) and scales by ``1 / ln(1e-6)``,
    the third vector here is orthogonal to H and E (:func:`residual_vector`) and the optical
    density is the project's, so the maps are comparable with the methods'
    ``stain_concentrations``.

    Parameters
    ----------
    X : ndarray of shape (H, W, 3) or (N, H, W, 3), torch.Tensor, or list of such tiles
        RGB tiles, uint8 or float in [0, 1].
    io : float, default=240
        Blank-field intensity of the optical density.
    residual : bool, default=False
        Return the residual map too (``K = 3``), as :func:`separate_stains`.

    Returns
    -------
    ndarray of shape (H, W, K) or (N, H, W, K), dtype float32, or list of them
        As :func:`separate_stains`.

    References
    ----------
    Ruifrok & Johnston, Anal. Quant. Cytol. Histol. 23(4):291-299, 2001.
    """
    return separate_stains(X, RUIFROK_HE, io=io, residual=residual)


def reconstruct(concentrations: Any, stain_matrix: Any, *, io: float = IO_DEFAULT) -> np.ndarray:
    """RGB tiles from stain concentrations, ``I = io * exp(-S @ c)``, clipped and rounded.

    With H and E maps (``K = 2``) ``S`` is the stain matrix; with H, E and residual maps
    (``K = 3``, from ``separate_stains(..., residual=True)``) it is completed by the residual
    vector (:func:`complete_stain_matrix`), which rebuilds the separated tissue exactly up to
    rounding. The optical density's ``+ 1`` (:func:`stainstyle.color.od.rgb_to_od`) is not
    subtracted, as in :func:`stainstyle.color.od.od_to_rgb`: a rebuilt pixel is the original
    plus at most one gray level.

    Parameters
    ----------
    concentrations : array-like of shape (..., K), float
        ``K = 2``: H and E concentrations; ``K = 3``: H, E and residual; e.g. from
        :func:`separate_stains`.
    stain_matrix : array-like of shape (3, 2)
        Stain vectors as columns (H, E); rows R, G, B. Not parallel when ``K = 3``.
    io : float, default=240
        Blank-field intensity.

    Returns
    -------
    ndarray of shape (..., 3), dtype uint8
        RGB; zero concentrations give ``io``.

    Raises
    ------
    ValueError
        If ``concentrations`` is not ``(..., 2)`` or ``(..., 3)`` or not finite, or
        ``stain_matrix`` is not a finite (3, 2) array (with ``K = 3``: not a valid one,
        :func:`check_stain_matrix`).

    Examples
    --------
    >>> import numpy as np
    >>> tile = np.array([[[200, 120, 90]]], dtype=np.uint8)  # off the plane of H and E
    >>> maps = separate_stains(tile, RUIFROK_HE, residual=True)
    >>> reconstruct(maps, RUIFROK_HE)
    array([[[201, 121,  91]]], dtype=uint8)
    """
    values = np.asarray(concentrations, dtype=np.float32)
    if values.ndim < 1 or values.shape[-1] not in (2, 3):
        raise ValueError(
            f"concentrations: expected shape (..., 2) (H, E) or (..., 3) (H, E, residual), "
            f"got {values.shape}"
        )
    if not np.all(np.isfinite(values)):
        raise ValueError("concentrations: contains NaN or infinite values")
    matrix = np.array(stain_matrix, dtype=np.float64)
    if matrix.shape != (3, 2) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"stain_matrix: expected a finite array of shape (3, 2), got {matrix}")
    if values.shape[-1] == 3:
        matrix = complete_stain_matrix(matrix)
    affine = np.hstack([-matrix, np.full((3, 1), np.log(io))]).astype(np.float32)
    flat = np.ascontiguousarray(values).reshape(-1, 1, values.shape[-1])
    return float_to_uint8(cv2.exp(cv2.transform(flat, affine))).reshape(*values.shape[:-1], 3)
