"""RandStainNA (Shen et al. 2022): Reinhard transfer to a random virtual template per tile.

Algorithm:

``fit(tiles)``
    For every training tile with tissue and each colour space (``"lab"``, ``"hsv"``, ``"hed"``),
    the mean and standard deviation of each channel over the tile's tissue pixels; then, over
    the tiles, the mean (``loc_``) and the standard deviation (``scale_``) of each of these six
    numbers.
transform, per tile
    With probability ``p``: pick a colour space (uniformly among ``spaces``, the paper's random
    choice), draw a virtual template ``t = loc_ + (1 + std_hyper) * scale_ * z`` with ``z``
    standard normal (or Laplace of unit variance), and map the tile's channels Reinhard-style,
    ``y' = (y - mean_y) * std_t / std_y + mean_t`` (statistics over the tile's tissue pixels;
    every pixel mapped; a flat channel, spread below ``1e-4 (1 + |mean|)``, keeps its spread),
    then back to RGB. Hue is averaged as a plain number, as the paper's OpenCV HSV is: reds on
    both sides of 0 degrees have a wide spread.

Colour spaces (from :mod:`stainstyle.color` and :mod:`stainstyle.separation`): ``"lab"`` is
Ruderman's lαβ of Reinhard et al. (:data:`stainstyle.color.lab.RGB_TO_LMS` ...; the paper uses
OpenCV's 8-bit CIE L*a*b*), ``"hsv"`` is hue in degrees, saturation and value in [0, 1] (the
paper: OpenCV's 8-bit HSV), ``"hed"`` the Ruifrok H, E, DAB amounts in the project's optical
density. The paper's ``std_hyper`` is the factor on the spread (its default, -0.3, narrows it);
``std_hyper = -1`` maps every tile to the average template (plain Reinhard normalization).
``p = 0`` returns the tiles unchanged.

References
----------
Shen et al., "RandStainNA: Learning stain-agnostic features from histology slides by bridging
stain augmentation and normalization", MICCAI 2022, pp. 212-221 (arXiv:2206.12694).

Reinhard, Ashikhmin, Gooch & Shirley, "Color transfer between images", IEEE CG&A 21(5), 2001.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stainstyle._fitted import FittedArray, FittedInt, FittedNames
from stainstyle._validation import as_tiles
from stainstyle._xp import channel_extremes, constant, pixels_times
from stainstyle.augment._common import (
    Augmenter,
    intensity_of,
    od_of,
    tissue_pixels,
)
from stainstyle.color.lab import rgb_of_ruderman, ruderman_of
from stainstyle.color.od import IO_DEFAULT
from stainstyle.separation import RUIFROK_RGB_FROM_HED
from stainstyle.tissue import screen_tiles

#: The colour spaces RandStainNA can pick from.
SPACES = ("lab", "hsv", "hed")

#: A channel whose spread is below this fraction of ``1 + |mean|`` is flat and keeps its spread:
#: well above float32 rounding (a flat tile's float32 spread is not exactly 0).
_FLAT_STD = 1e-4


def _hsv(xp: Any, x: Any) -> Any:
    """Hue (degrees), saturation and value in [0, 1] of intensities 0-255."""
    rgb = xp.clip(x, 0.0, 255.0) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    low, high = channel_extremes(xp, rgb)
    delta = high - low
    safe = xp.where(delta > 0, delta, 1.0 + 0.0 * delta)
    hue = xp.where(
        high == r,
        xp.remainder((g - b) / safe, 6.0),
        xp.where(high == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    hue = xp.where(delta > 0, 60.0 * hue, 0.0 * hue)
    saturation = xp.where(high > 0, delta / xp.where(high > 0, high, 1.0 + 0.0 * high), 0.0 * high)
    return xp.stack([hue, saturation, high], -1)


def _rgb_of_hsv(xp: Any, hsv: Any) -> Any:
    """Intensities 0-255 of hue (degrees, any value), saturation and value (clipped to [0, 1])."""
    hue = hsv[..., 0] / 60.0
    saturation = xp.clip(hsv[..., 1], 0.0, 1.0)
    value = xp.clip(hsv[..., 2], 0.0, 1.0)
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = xp.remainder(n + hue, 6.0)
        channels.append(value - value * saturation * xp.clip(xp.minimum(k, 4.0 - k), 0.0, 1.0))
    return 255.0 * xp.stack(channels, -1)


def to_space(xp: Any, x: Any, space: str, io: float = IO_DEFAULT) -> Any:
    """Convert intensities (n, H, W, 3) on the 0-255 scale to a RandStainNA colour space.

    Parameters
    ----------
    xp : module
        :mod:`numpy` or :mod:`torch`.
    x : ndarray or torch.Tensor of shape (n, H, W, 3), float
        RGB intensities, 0-255.
    space : {"lab", "hsv", "hed"}
        Ruderman lαβ, HSV (hue in degrees), or Ruifrok H, E, DAB amounts.
    io : float, default=240
        Blank-field intensity of the optical density (``"hed"``).

    Returns
    -------
    ndarray or torch.Tensor of shape (n, H, W, 3), dtype of ``x``

    See Also
    --------
    from_space : The inverse.
    """
    if space == "lab":
        return ruderman_of(xp, x)
    if space == "hsv":
        return _hsv(xp, x)
    return pixels_times(od_of(xp, x, io), constant(xp, np.linalg.inv(RUIFROK_RGB_FROM_HED), x))


def from_space(xp: Any, y: Any, space: str, io: float = IO_DEFAULT) -> Any:
    """Convert values of a RandStainNA colour space back to intensities 0-255 (not clipped).

    Parameters
    ----------
    xp : module
        :mod:`numpy` or :mod:`torch`.
    y : ndarray or torch.Tensor of shape (n, H, W, 3), float
        Values of ``space`` (:func:`to_space`).
    space : {"lab", "hsv", "hed"}
    io : float, default=240

    Returns
    -------
    ndarray or torch.Tensor of shape (n, H, W, 3), dtype of ``y``
    """
    if space == "lab":
        return rgb_of_ruderman(xp, y)
    if space == "hsv":
        return _rgb_of_hsv(xp, y)
    return intensity_of(xp, pixels_times(y, constant(xp, RUIFROK_RGB_FROM_HED, y)), io)


def tissue_statistics(xp: Any, y: Any, tissue: Any) -> tuple[Any, Any]:
    """Per-tile channel means and standard deviations (ddof=0) over tissue pixels.

    Parameters
    ----------
    xp : module
    y : ndarray or torch.Tensor of shape (n, H, W, 3), float
        Colour values.
    tissue : bool array of shape (n, H, W)
        Pixels to use; a tile without any uses all its pixels.

    Returns
    -------
    mean, std : arrays of shape (n, 1, 1, 3), dtype of ``y``
    """
    weights = tissue[..., None] * (1.0 + 0.0 * y[..., :1])
    empty = weights.sum((1, 2, 3)) == 0
    weights = xp.where(empty[:, None, None, None], 1.0 + 0.0 * weights, weights)
    count = weights.sum((1, 2), keepdims=True)
    mean = (y * weights).sum((1, 2), keepdims=True) / count
    std = xp.sqrt((((y - mean) ** 2) * weights).sum((1, 2), keepdims=True) / count)
    return mean, std


def reinhard_to(xp: Any, x: Any, space: str, template: Any, io: float = IO_DEFAULT) -> Any:
    """Map tiles Reinhard-style to per-tile templates in a colour space.

    Parameters
    ----------
    xp : module
    x : ndarray or torch.Tensor of shape (n, H, W, 3), float
        RGB intensities, 0-255.
    space : {"lab", "hsv", "hed"}
    template : ndarray of shape (n, 2, 3)
        Target channel means (``[:, 0]``) and standard deviations (``[:, 1]``).
    io : float, default=240

    Returns
    -------
    ndarray or torch.Tensor of shape (n, H, W, 3), dtype of ``x``
        Intensities 0-255, not clipped.
    """
    y = to_space(xp, x, space, io)
    mean, std = tissue_statistics(xp, y, tissue_pixels(xp, x, io))
    target = constant(xp, template, x).reshape(x.shape[0], 2, 1, 1, 3)
    flat = std < _FLAT_STD * (1.0 + xp.abs(mean))
    scale = xp.where(flat, 1.0 + 0.0 * std, target[:, 1] / xp.where(flat, 1.0 + 0.0 * std, std))
    return from_space(xp, (y - mean) * scale + target[:, 0], space, io)


class RandStainNA(Augmenter):
    """Reinhard transfer to a random virtual stain template per tile (Shen et al. 2022).

    Parameters
    ----------
    spaces : str or tuple of str, default=("lab", "hsv", "hed")
        Colour spaces to pick from, one per tile uniformly at random (the paper's random
        choice); one name fixes it.
    std_hyper : float, default=-0.3
        The template spread is ``(1 + std_hyper)`` times the fitted spread (the paper's
        hyper-parameter and default); -1 gives plain Reinhard normalization to the average.
    distribution : {"normal", "laplace"}, default="normal"
        Distribution of the template's standardized draws (unit variance).
    p : float, default=1.0
        Probability of augmenting a tile; 0 returns the tiles unchanged.
    io : float, default=240
        Blank-field intensity of the optical density (``"hed"``).
    random_state : None, int or numpy.random.Generator, default=None
        Seed of the parameter stream; the same seed gives the same output from numpy and torch
        input (within one gray level).

    Attributes
    ----------
    spaces_ : tuple of str
        The colour spaces fitted, in order.
    loc_ : ndarray of shape (len(spaces_), 2, 3), dtype float64
        Mean over the training tiles of their channel means (``[:, 0]``) and standard
        deviations (``[:, 1]``), per space.
    scale_ : ndarray of shape (len(spaces_), 2, 3), dtype float64
        Standard deviation over the training tiles of the same numbers.
    n_tiles_ : int
        Number of training tiles with tissue (background and uniform tiles are left out).

    See Also
    --------
    reinhard_to : The mapping, as a function.
    stainstyle.ReinhardNormalizer : Reinhard normalization to one fitted template.

    References
    ----------
    Shen et al., MICCAI 2022 (arXiv:2206.12694); Reinhard et al., IEEE CG&A 21(5), 2001.

    Examples
    --------
    >>> import numpy as np
    >>> tiles = np.random.default_rng(0).integers(60, 200, (4, 32, 32, 3), dtype=np.uint8)
    >>> augmenter = RandStainNA(random_state=0).fit(tiles)
    >>> augmenter.loc_.shape, augmenter(tiles).dtype
    ((3, 2, 3), dtype('uint8'))
    """

    _fitted_attributes: dict = {
        "spaces_": FittedNames(SPACES),
        "loc_": FittedArray((None, 2, 3), maximum_abs=1e4),
        "scale_": FittedArray((None, 2, 3), minimum=0, maximum=1e4),
        "n_tiles_": FittedInt(1, 2**53),
    }
    _fit_dependent_params = ("spaces", "io")

    def __init__(
        self,
        spaces: str | tuple[str, ...] = SPACES,
        *,
        std_hyper: float = -0.3,
        distribution: str = "normal",
        p: float = 1.0,
        io: float = IO_DEFAULT,
        random_state=None,
    ):
        super().__init__(random_state)
        self.spaces = spaces
        self.std_hyper = std_hyper
        self.distribution = distribution
        self.p = p
        self.io = io

    def _spaces(self) -> tuple[str, ...]:
        spaces = (self.spaces,) if isinstance(self.spaces, str) else tuple(self.spaces)
        if not spaces or any(space not in SPACES for space in spaces):
            raise ValueError(f"spaces: expected names among {SPACES}, got {self.spaces!r}")
        return spaces

    def _validate_params(self) -> None:
        super()._validate_params()
        self._spaces()
        if not (isinstance(self.std_hyper, (int, float)) and self.std_hyper >= -1):
            raise ValueError(f"std_hyper: expected a number >= -1, got {self.std_hyper!r}")
        if self.distribution not in ("normal", "laplace"):
            raise ValueError(
                f"distribution: expected 'normal' or 'laplace', got {self.distribution!r}"
            )
        if not (isinstance(self.p, (int, float)) and 0 <= self.p <= 1):
            raise ValueError(f"p: expected a probability in [0, 1], got {self.p!r}")
        if not self.io >= 1:
            raise ValueError(f"io: expected a blank-field intensity >= 1, got {self.io!r}")

    def fit(self, X: Any, y: Any = None) -> RandStainNA:
        """Learn the distributions of per-tile channel means and spreads.

        Parameters
        ----------
        X : ndarray of shape (N, H, W, 3) or (H, W, 3), torch.Tensor, or list of tiles
            Training tiles, uint8 or float in [0, 1]. Never modified.
        y : ignored

        Returns
        -------
        self

        Raises
        ------
        ValueError
            If no tile holds tissue with colour variation, or ``X`` or the parameters are
            invalid.
        """
        self._validate_params()
        spaces = self._spaces()
        tiles = as_tiles(X)
        stats = []
        for image in tiles.images:
            background, uniform = screen_tiles(image[None])
            if background[0] or uniform[0]:
                continue
            x = image[None].astype(np.float64)
            tissue = tissue_pixels(np, x, self.io)
            per_space = []
            for space in spaces:
                mean, std = tissue_statistics(np, to_space(np, x, space, self.io), tissue)
                per_space.append(np.stack([mean.reshape(3), std.reshape(3)]))
            stats.append(per_space)
        if not stats:
            raise ValueError(
                f"X: none of the {len(tiles)} tiles holds tissue with colour variation "
                "(see stainstyle.tissue); fit on H&E tissue tiles"
            )
        stats = np.asarray(stats)  # (n_tiles, n_spaces, 2, 3)
        self.spaces_ = spaces
        self.loc_ = stats.mean(axis=0)
        self.scale_ = stats.std(axis=0)
        self.n_tiles_ = len(stats)
        return self

    def _fitted_state_problem(self) -> str | None:
        """What differs between the fitted attributes and ``spaces``; None when they agree.

        One row of ``loc_`` and ``scale_`` per fitted space, and ``spaces`` the fitted ones.
        """
        rows = {len(self.spaces_), len(self.loc_), len(self.scale_)}
        if len(rows) > 1:
            return (
                f"spaces_ names {len(self.spaces_)} colour spaces, loc_ has {len(self.loc_)} "
                f"rows and scale_ {len(self.scale_)}; expected one row per space"
            )
        if self._spaces() != self.spaces_:
            return f"spaces: {self.spaces!r} differs from the spaces fitted, {self.spaces_}; refit"
        return None

    def _check(self) -> None:
        super()._check()
        problem = self._fitted_state_problem()
        if problem is not None:
            raise ValueError(problem)

    def _is_identity(self) -> bool:
        return self.p == 0

    def _draw(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        apply = rng.random(n) < self.p
        space = rng.integers(0, len(self.spaces_), n)
        if self.distribution == "normal":
            z = rng.standard_normal((n, 2, 3))
        else:
            z = rng.laplace(0.0, np.sqrt(0.5), (n, 2, 3))
        template = self.loc_[space] + (1.0 + self.std_hyper) * self.scale_[space] * z
        template[:, 1] = np.maximum(template[:, 1], 0.0)
        return {"apply": apply, "space": space, "template": template}

    def _apply(self, xp: Any, x: Any, params: dict[str, np.ndarray]) -> Any:
        out = x.clone() if hasattr(x, "clone") else x.copy()
        for k, space in enumerate(self.spaces_):
            rows = np.flatnonzero(params["space"] == k)
            if len(rows):
                index = rows if xp is np else constant(xp, rows, x).long()
                out[index] = reinhard_to(xp, x[index], space, params["template"][rows], self.io)
        return out
