"""How one lab's slides look: stain vectors, stain amounts and scanner response.

A :class:`StainStyle` is everything the synthetic renderer (:mod:`stainstyle.data.synthetic`)
needs to turn stain concentration maps into RGB: the optical density of one unit of each stain,
how much stain the lab's protocol deposits, and how its scanner maps light to 8-bit values. The
built-in styles are named after the two CAMELYON16 centres whose look they imitate; they are
synthetic, not fitted to any real scanner.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

#: Hematoxylin optical density per unit concentration (R, G, B), Ruifrok & Johnston (2001).
RUIFROK_HEMATOXYLIN = (0.650, 0.704, 0.286)
#: Eosin optical density per unit concentration (R, G, B), Ruifrok & Johnston (2001).
RUIFROK_EOSIN = (0.072, 0.990, 0.105)


def _unit(vector) -> tuple[float, float, float]:
    v = np.abs(np.asarray(vector, dtype=np.float64))
    return tuple(float(x) for x in v / np.linalg.norm(v))


def _triple(value, name: str, low: float, high: float) -> tuple[float, float, float]:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (3,) or not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: expected 3 finite numbers (R, G, B), got {value!r}")
    if np.any(array < low) or np.any(array > high):
        raise ValueError(f"{name}: expected values in [{low}, {high}], got {value!r}")
    return tuple(float(x) for x in array)


@dataclass(frozen=True)
class StainStyle:
    """The look of one lab: stains, staining protocol and scanner.

    Rendering (see :func:`stainstyle.data.synthetic.render`) follows the Beer-Lambert law: the
    optical density of a pixel is ``OD = a_H * c_H * h + a_E * c_E * e`` (``c`` the tissue's
    concentration maps, ``a`` the lab's stain amounts, ``h`` and ``e`` the unit stain vectors),
    the light reaching the sensor is ``illumination * exp(-OD)``, blurred by the optics, plus
    sensor noise, and the scanner's tone curve maps it to 8 bits per channel.

    Parameters
    ----------
    name : str
        Label of the style.
    hematoxylin, eosin : tuple of 3 float
        Optical density (R, G, B) per unit concentration of each stain; normalized to unit
        length on construction.
    amounts : tuple of 2 float, default=(1.0, 1.0)
        Stain deposited by the lab's protocol (hematoxylin, eosin), multiplying the tissue's
        concentrations; 1 is a typical protocol.
    slide_jitter : float, default=0.08
        Standard deviation of the log of a per-slide, per-stain factor on ``amounts`` (section
        thickness and staining-batch variation between slides of one lab).
    tile_jitter : float, default=0.05
        Same, per tile (uneven staining within a slide).
    illumination : tuple of 3 float, default=(0.96, 0.96, 0.96)
        Linear light through blank glass, per channel, in (0, 1]: the white balance.
    gamma : tuple of 3 float, default=(2.2, 2.2, 2.2)
        Per-channel exponent of the tone curve: output ``y = x ** (1 / gamma)`` for linear
        light ``x``; equal gammas are a neutral sRGB-like curve, unequal ones tint the midtones.
    contrast : tuple of 3 float, default=(0.0, 0.0, 0.0)
        Per-channel S-curve strength in [-1, 1] applied after the gamma:
        ``y' = y + contrast * (smoothstep(y) - y)``; negative values flatten the midtones.
    blur : float, default=0.5
        Standard deviation, in pixels, of the Gaussian optical blur (0 for none).
    noise : float, default=0.005
        Standard deviation of the sensor noise in linear light, scaled by ``sqrt(x)`` (shot
        noise) plus a floor of a fifth of it (read noise).

    Raises
    ------
    ValueError
        If a field has the wrong length or lies outside its range, naming the field.

    See Also
    --------
    get_style : The built-in styles by name.
    random_style : Styles drawn from a documented distribution.
    """

    name: str
    hematoxylin: tuple[float, float, float]
    eosin: tuple[float, float, float]
    amounts: tuple[float, float] = (1.0, 1.0)
    slide_jitter: float = 0.08
    tile_jitter: float = 0.05
    illumination: tuple[float, float, float] = (0.96, 0.96, 0.96)
    gamma: tuple[float, float, float] = (2.2, 2.2, 2.2)
    contrast: tuple[float, float, float] = (0.0, 0.0, 0.0)
    blur: float = 0.5
    noise: float = 0.005

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "hematoxylin", _unit(_triple(self.hematoxylin, "hematoxylin", 0, np.inf)))
        set_(self, "eosin", _unit(_triple(self.eosin, "eosin", 0, np.inf)))
        amounts = np.asarray(self.amounts, dtype=np.float64)
        if amounts.shape != (2,) or not np.all(amounts > 0) or not np.all(np.isfinite(amounts)):
            raise ValueError(
                f"amounts: expected 2 positive numbers (hematoxylin, eosin), got {self.amounts!r}"
            )
        set_(self, "amounts", (float(amounts[0]), float(amounts[1])))
        set_(self, "illumination", _triple(self.illumination, "illumination", 1e-3, 1.0))
        set_(self, "gamma", _triple(self.gamma, "gamma", 0.2, 5.0))
        set_(self, "contrast", _triple(self.contrast, "contrast", -1.0, 1.0))
        for name in ("slide_jitter", "tile_jitter", "blur", "noise"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
            set_(self, name, float(value))

    @property
    def stain_matrix(self) -> np.ndarray:
        """Unit stain vectors as rows (hematoxylin, eosin).

        Returns
        -------
        ndarray of shape (2, 3), dtype float64
        """
        return np.array([self.hematoxylin, self.eosin])

    def as_dict(self) -> dict:
        """The style's fields as plain Python values (JSON-friendly).

        Returns
        -------
        dict
        """
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: Built-in styles. "radboud" imitates the pinkish, eosin-rich look of Radboud UMC slides in
#: CAMELYON16 (the usual target); "utrecht" the dark purple, hematoxylin-heavy, blurrier and
#: noisier look of UMC Utrecht (the usual source), whose per-channel tone curves flatten the
#: midtones. "pale" is an under-stained, washed-out lab and "dense" an over-stained one with a
#: contrasty scanner. All values are chosen by eye, not fitted.
BUILTIN_STYLES: dict[str, StainStyle] = {
    "radboud": StainStyle(
        name="radboud",
        hematoxylin=(0.62, 0.74, 0.33),
        eosin=(0.09, 0.93, 0.36),
        amounts=(0.80, 1.15),
        slide_jitter=0.06,
        tile_jitter=0.04,
        illumination=(0.97, 0.95, 0.96),
        gamma=(2.2, 2.3, 2.2),
        contrast=(0.15, 0.2, 0.15),
        blur=0.4,
        noise=0.004,
    ),
    "utrecht": StainStyle(
        name="utrecht",
        hematoxylin=(0.50, 0.80, 0.33),
        eosin=(0.28, 0.86, 0.43),
        amounts=(1.55, 0.75),
        slide_jitter=0.15,
        tile_jitter=0.10,
        illumination=(0.90, 0.88, 0.97),
        gamma=(1.6, 2.0, 2.6),
        contrast=(-0.2, -0.05, -0.25),
        blur=1.6,
        noise=0.015,
    ),
    "pale": StainStyle(
        name="pale",
        hematoxylin=(0.65, 0.70, 0.29),
        eosin=(0.07, 0.99, 0.11),
        amounts=(0.55, 0.6),
        illumination=(0.98, 0.98, 0.98),
        gamma=(2.4, 2.4, 2.4),
        contrast=(-0.2, -0.2, -0.2),
        blur=0.7,
        noise=0.006,
    ),
    "dense": StainStyle(
        name="dense",
        hematoxylin=(0.57, 0.76, 0.31),
        eosin=(0.15, 0.95, 0.28),
        amounts=(1.4, 1.5),
        illumination=(0.94, 0.95, 0.93),
        gamma=(2.0, 2.2, 2.4),
        contrast=(0.35, 0.35, 0.35),
        blur=0.5,
        noise=0.008,
    ),
}


def get_style(style: str | StainStyle) -> StainStyle:
    """A built-in style by name, or the given style unchanged.

    Parameters
    ----------
    style : str or StainStyle
        One of ``"radboud"``, ``"utrecht"``, ``"pale"``, ``"dense"``, or a :class:`StainStyle`.

    Returns
    -------
    StainStyle

    Raises
    ------
    ValueError
        If the name is unknown.
    TypeError
        If ``style`` is neither a string nor a :class:`StainStyle`.

    Examples
    --------
    >>> get_style("radboud").amounts
    (0.8, 1.15)
    """
    if isinstance(style, StainStyle):
        return style
    if isinstance(style, str):
        if style not in BUILTIN_STYLES:
            raise ValueError(f"style: expected one of {sorted(BUILTIN_STYLES)}, got {style!r}")
        return BUILTIN_STYLES[style]
    raise TypeError(f"style: expected a style name or a StainStyle, got {type(style).__name__}")


def random_style(rng: np.random.Generator | int | None = None, name: str = "random") -> StainStyle:
    """Draw a plausible lab style at random.

    The distribution (all draws independent):

    - stain vectors: Ruifrok & Johnston's hematoxylin and eosin vectors plus ``N(0, 0.08)`` per
      component, made non-negative and renormalized;
    - amounts: ``exp(N(0, 0.25))`` for each stain;
    - ``slide_jitter ~ U(0.03, 0.15)``, ``tile_jitter ~ U(0.02, 0.10)``;
    - illumination ``U(0.88, 1.0)`` per channel; gamma ``2.2 * exp(N(0, 0.12))`` per channel;
      contrast ``U(-0.3, 0.35)`` per channel;
    - blur ``U(0.3, 1.3)`` px; noise ``U(0.002, 0.015)``.

    Parameters
    ----------
    rng : numpy.random.Generator, int or None
        Random source, or a seed for one.
    name : str, default="random"
        Name of the style.

    Returns
    -------
    StainStyle
    """
    rng = np.random.default_rng(rng)
    return StainStyle(
        name=name,
        hematoxylin=np.abs(np.add(RUIFROK_HEMATOXYLIN, rng.normal(0, 0.08, 3))) + 1e-3,
        eosin=np.abs(np.add(RUIFROK_EOSIN, rng.normal(0, 0.08, 3))) + 1e-3,
        amounts=np.exp(rng.normal(0, 0.25, 2)),
        slide_jitter=rng.uniform(0.03, 0.15),
        tile_jitter=rng.uniform(0.02, 0.10),
        illumination=rng.uniform(0.88, 1.0, 3),
        gamma=2.2 * np.exp(rng.normal(0, 0.12, 3)),
        contrast=rng.uniform(-0.3, 0.35, 3),
        blur=rng.uniform(0.3, 1.3),
        noise=rng.uniform(0.002, 0.015),
    )
