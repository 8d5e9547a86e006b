"""What every augmenter shares: random streams, the numpy/torch dispatch, and the background rule.

An augmenter is split in two, so that the numpy and the torch versions give the same output for
the same seed:

``_draw(rng, n)``
    The random parameters of ``n`` tiles (a dict of numpy arrays with ``n`` rows), drawn from
    one :class:`numpy.random.Generator` whatever the backend, in an order that does not depend
    on the pixels.
``_apply(xp, x, params)``
    The pixel maths on a batch ``x`` of shape (n, H, W, 3), float on the 0-255 scale, written
    once against the array namespace ``xp`` (:mod:`numpy` or :mod:`torch`): only functions the
    two share (``log``, ``exp``, ``where``, ``minimum``, ``clip``, ``remainder``, ``stack``,
    the ``@`` operator). The parameters are turned into arrays of ``x``'s dtype and device by
    :func:`stainstyle._xp.constant`.

Augmenters that change only each pixel's optical density derive from :class:`ODAugmenter`
and write ``_map_od(xp, od, params)`` instead, the map between ``OD = -ln((I + 1) / io)`` and
``I' = io * exp(-OD') - 1`` (:func:`through_od`). On numpy uint8 tiles the two ends run in
OpenCV, tile by tile in float32: the optical density from a 256-entry lookup table, and the
exponential and the rounding to uint8 in three passes (:func:`quantized_intensity`). The map
is the same function for both backends; its per-tile affine steps are one OpenCV
``transform`` each on numpy tiles (:func:`affine_pixels`).

:class:`Augmenter` owns the rest: input validation (numpy input through
:func:`stainstyle._validation.as_tiles`), the layout of tensors (``(N, 3, H, W)`` as torchvision
or ``(N, H, W, 3)``), the background policy of :mod:`stainstyle.tissue`, the output dtype, and
the random stream of each process and ``DataLoader`` worker.

Random streams: not in a ``DataLoader`` worker, an augmenter draws from
``numpy.random.default_rng(random_state)`` (a Generator is used as is), created on the first
call. In a worker (:func:`torch.utils.data.get_worker_info`), it draws from a stream seeded by
the worker's seed (torch's per-epoch ``base_seed`` plus the worker id) and ``random_state``, so
each worker draws differently, and a ``DataLoader`` with a seeded ``generator`` (or after
``torch.manual_seed``) draws the same again. No global random state is read or written.

Persistence: every augmenter is saved, loaded and shared like a normalizer
(:class:`stainstyle.hub.NormalizerHubMixin`: ``save_pretrained``, ``from_pretrained``,
``push_to_hub``, :func:`stainstyle.load`). It declares its fitted attributes as normalizers do
(``_fitted_attributes``, :mod:`stainstyle._fitted`); its constructor arguments are its
parameters (``get_params``), the random stream is not saved.
"""

from __future__ import annotations

import inspect
import threading
from typing import Any

import cv2
import numpy as np
import torch
from sklearn.exceptions import NotFittedError

from stainstyle._tensors import check_tensor_values
from stainstyle._validation import as_tiles
from stainstyle._xp import channel_extremes, constant, pixels_times
from stainstyle.color.od import IO_DEFAULT, od_lut
from stainstyle.color.quantize import float_to_uint8
from stainstyle.hub import NormalizerHubMixin
from stainstyle.tissue import (
    BLACK_MAX_INTENSITY,
    max_tissue_intensity,
    min_tissue_pixels,
    screen_background,
    tissue_mask,
)

#: Guards the lazy creation of each augmenter's stream (one lock for all: creation is rare).
_STREAM_LOCK = threading.Lock()


def as_generator(random_state: Any) -> np.random.Generator:
    """A numpy Generator from ``None``, an int, a SeedSequence or a Generator.

    Parameters
    ----------
    random_state : None, int, numpy.random.SeedSequence or numpy.random.Generator
        A Generator is returned as is (its stream is shared with the caller).

    Returns
    -------
    numpy.random.Generator

    Raises
    ------
    ValueError
        If ``random_state`` is of another type, or a negative int.
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, np.random.SeedSequence):
        return np.random.default_rng(random_state)
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state: expected an int >= 0, got {random_state}")
        return np.random.default_rng(int(random_state))
    raise ValueError(
        "random_state: expected None, an int >= 0 or a numpy.random.Generator, "
        f"got {type(random_state).__name__}"
    )


def worker_seed() -> int | None:
    """The seed torch gave the current ``DataLoader`` worker, or None outside workers.

    Returns
    -------
    int or None
        ``get_worker_info().seed``: the loader's ``base_seed`` (drawn from its ``generator``, or
        from torch's default generator, once per epoch) plus the worker id.
    """
    info = torch.utils.data.get_worker_info()
    return None if info is None else int(info.seed)


def stream_for(random_state: Any, seed: int | None) -> np.random.Generator:
    """The random stream of an augmenter in a process, from its ``random_state``.

    Parameters
    ----------
    random_state : None, int or numpy.random.Generator
        The augmenter's parameter.
    seed : int or None
        :func:`worker_seed`: None in the main process.

    Returns
    -------
    numpy.random.Generator
        ``as_generator(random_state)`` in the main process. In a worker, a fresh stream from a
        :class:`numpy.random.SeedSequence` of the worker seed and ``random_state`` (for a
        Generator, two words drawn from the worker's copy of it), so that workers differ.
    """
    if seed is None:
        return as_generator(random_state)
    words = [seed & 0xFFFFFFFF, seed >> 32]
    if isinstance(random_state, np.random.Generator):
        words += random_state.integers(0, 2**32, size=2).tolist()
    elif random_state is not None:
        as_generator(random_state)  # validates
        words += [1, int(random_state)]
    return np.random.default_rng(np.random.SeedSequence(words))


def tissue_pixels(xp: Any, x: Any, io: float = IO_DEFAULT) -> Any:
    """Tissue mask of a float batch (..., 3) on the 0-255 scale, by :func:`tissue_mask`'s rule.

    Parameters
    ----------
    xp : module
        :mod:`numpy` or :mod:`torch`.
    x : ndarray or torch.Tensor of shape (..., 3), float
        Intensities 0-255 (rounded as uint8 quantization rounds them).
    io : float
        Blank-field intensity.

    Returns
    -------
    bool array of shape (...)
        Some channel at most :func:`~stainstyle.tissue.max_tissue_intensity` and some channel
        above :data:`~stainstyle.tissue.BLACK_MAX_INTENSITY`, as
        :func:`stainstyle.tissue.tissue_mask` decides on uint8 tiles.
    """
    low, high = channel_extremes(xp, xp.round(x))
    return (low <= max_tissue_intensity(io)) & (high > BLACK_MAX_INTENSITY)


def od_of(xp: Any, x: Any, io: float = IO_DEFAULT) -> Any:
    """The project's optical density ``-ln((I + 1) / io)`` of intensities on the 0-255 scale."""
    return -xp.log((x + 1.0) / io)


def intensity_of(xp: Any, od: Any, io: float = IO_DEFAULT) -> Any:
    """The exact inverse of :func:`od_of`: ``io * exp(-OD) - 1``, not clipped."""
    return io * xp.exp(-od) - 1.0


def affine_pixels(xp: Any, x: Any, matrix: np.ndarray, offset: np.ndarray) -> Any:
    """Per-tile affine colour map ``x @ matrix + offset``, in numpy or torch.

    Parameters
    ----------
    xp : module
        :mod:`numpy` or :mod:`torch`, the namespace of ``x``.
    x : ndarray or torch.Tensor of shape (n, H, W, c), float
        Pixels, ``c`` at most 4.
    matrix : ndarray of shape (n, c, k) or (c, k)
        Per-tile (or shared) matrices, ``k`` at most 4.
    offset : ndarray of shape (n, k) or (k,)
        Per-tile (or shared) offsets.

    Returns
    -------
    ndarray or torch.Tensor of shape (n, H, W, k), dtype of ``x``

    Notes
    -----
    One numpy float32 tile (``n = 1``) goes through ``cv2.transform`` with the matrix and the
    offset as one ``k x (c + 1)`` float32 matrix: a single pass over the pixels, in float32.
    """
    n, height, width, channels = x.shape
    matrix = np.broadcast_to(matrix, (n, channels, np.shape(matrix)[-1]))
    offset = np.broadcast_to(offset, (n, matrix.shape[-1]))
    if xp is np and n == 1 and x.dtype == np.float32:
        transform = np.concatenate([matrix[0].T, offset[0][:, None]], axis=1)
        out = cv2.transform(np.ascontiguousarray(x[0]), transform.astype(np.float32))
        return out.reshape(1, height, width, -1)
    shift = constant(xp, offset, x).reshape(n, 1, 1, -1)
    return pixels_times(x, constant(xp, matrix, x)) + shift


def through_od(
    xp: Any, x: Any, map_od: Any, io: float = IO_DEFAULT, tissue_only: bool = False
) -> Any:
    """Intensities ``io * exp(-map_od(OD)) - 1`` of intensities ``x``, in numpy or torch.

    Parameters
    ----------
    xp : module
        :mod:`numpy` or :mod:`torch`, the namespace of ``x``.
    x : ndarray or torch.Tensor of shape (n, H, W, 3), float
        RGB intensities on the 0-255 scale.
    map_od : callable
        New optical densities ``(n, H, W, 3)`` of the optical densities
        ``OD = -ln((x + 1) / io)`` of the same shape.
    io : float, default=240
        Blank-field intensity.
    tissue_only : bool, default=False
        Keep the pixels that are not tissue (:func:`tissue_pixels`) as they are.

    Returns
    -------
    ndarray or torch.Tensor of shape (n, H, W, 3), dtype of ``x``
        Not clipped.
    """
    out = intensity_of(xp, map_od(od_of(xp, x, io)), io)
    return xp.where(tissue_pixels(xp, x, io)[..., None], out, x) if tissue_only else out


def quantized_intensity(od: np.ndarray, io: float = IO_DEFAULT) -> np.ndarray:
    """``float_to_uint8(intensity_of(np, od, io))`` of one float32 tile, in three OpenCV passes.

    ``ln(I' + 1) = ln(io) - OD`` is clipped to ``[0, ln 256]`` (so ``I'`` lies in [0, 255]),
    exponentiated, and ``I' = exp(...) - 1`` is rounded half to even by OpenCV's saturating
    conversion, as :func:`~stainstyle.color.quantize.float_to_uint8` rounds.

    Parameters
    ----------
    od : ndarray of shape (H, W, 3), dtype float32, C-contiguous
        Optical densities (no NaN). Overwritten.
    io : float, default=240
        Blank-field intensity.

    Returns
    -------
    ndarray of shape (H, W, 3), dtype uint8
    """
    np.subtract(np.float32(np.log(io)), od, out=od)
    np.clip(od, np.float32(0.0), np.float32(np.log(256.0)), out=od)
    cv2.exp(od, dst=od)
    return cv2.convertScaleAbs(od, alpha=1.0, beta=-1.0)


def _tensor_layout(x: torch.Tensor, name: str) -> str:
    """``"chw"`` for (..., 3, H, W) (torchvision's convention, preferred) or ``"hwc"``."""
    if x.ndim not in (3, 4):
        raise ValueError(
            f"{name}: expected a tensor (3, H, W), (N, 3, H, W), (H, W, 3) or (N, H, W, 3), "
            f"got shape {tuple(x.shape)}"
        )
    if x.shape[-3] == 3:
        return "chw"
    if x.shape[-1] == 3:
        return "hwc"
    raise ValueError(
        f"{name}: expected 3 channels in dimension -3 (torchvision's (..., 3, H, W)) or in the "
        f"last dimension, got shape {tuple(x.shape)}"
    )


class Augmenter(torch.nn.Module, NormalizerHubMixin):
    """Base class of the stain augmenters: one random stream, numpy and torch inputs, saving.

    Subclasses store their constructor arguments (keyword names equal to the attribute names),
    call ``super().__init__(random_state)``, implement ``_draw(rng, n)``,
    ``_apply(xp, x, params)``, ``_is_identity()`` and ``_validate_params()`` (see the module
    docstring), and declare their fitted attributes in ``_fitted_attributes``; those with a
    fitted state override :meth:`fit`.

    Parameters
    ----------
    random_state : None, int or numpy.random.Generator
        Seed of the augmenter's stream (see the module docstring for ``DataLoader`` workers).

    Notes
    -----
    A call takes numpy arrays (one tile ``(H, W, 3)``, a batch ``(N, H, W, 3)`` or a list of
    tiles, uint8 or float in [0, 1], channels last) or torch tensors (``(3, H, W)``,
    ``(N, 3, H, W)``, ``(H, W, 3)`` or ``(N, H, W, 3)``; a tensor with 3 in dimension -3 is read
    as channels first, as torchvision reads it). The output has the input's type, shape, dtype
    and device: uint8 in, uint8 out (rounded); float in, float out in [0, 1] (not quantized).
    Tensors are computed by torch on their device, in float32 (float64 for float64 input).
    Tiles with too little tissue (:mod:`stainstyle.tissue`) are returned unchanged.
    """

    #: Fitted attributes (:mod:`stainstyle._fitted`); none for an augmenter without ``fit``.
    _fitted_attributes: dict = {}
    #: Parameters the fitted state was computed with: a loaded model keeps them.
    _fit_dependent_params: tuple[str, ...] = ()
    #: Parameters of the machine, not the model: none.
    _machine_local_params: tuple[str, ...] = ()
    #: Renamed parameters (:mod:`stainstyle._renamed`): none.
    _renamed_params: dict = {}
    #: What the model card describes (:mod:`stainstyle._modelcard`).
    _card_kind = "augmenter"

    def __init__(self, random_state: Any = None):
        super().__init__()
        self.random_state = random_state
        self._stream: np.random.Generator | None = None
        self._stream_key: Any = None

    # ------------------------------------------------------------------ parameters, fitting
    @classmethod
    def _get_param_names(cls) -> list[str]:
        """The constructor's parameter names, sorted (as scikit-learn's estimators)."""
        parameters = inspect.signature(cls.__init__).parameters
        return sorted(name for name in parameters if name != "self")

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """The constructor arguments, by name.

        Parameters
        ----------
        deep : bool, default=False
            Ignored (kept for scikit-learn's signature); nested estimators are returned as
            they are.

        Returns
        -------
        dict of str to object
        """
        return {name: getattr(self, name) for name in self._get_param_names()}

    def _validate_params(self) -> None:
        """Check the constructor arguments; raise ValueError naming the first wrong one.

        Checks ``random_state``; subclasses check their own parameters after calling it.
        """
        as_generator(self.random_state)  # raises on a wrong type or a negative seed

    def fit(self, X: Any = None, y: Any = None) -> Augmenter:
        """Nothing to learn: an augmenter without fitted state is ready as built.

        Parameters
        ----------
        X, y : ignored

        Returns
        -------
        self
        """
        self._validate_params()
        return self

    def __sklearn_is_fitted__(self) -> bool:
        """Whether every declared fitted attribute is set (always, when none is declared)."""
        return all(hasattr(self, name) for name in self._fitted_attributes)

    # ------------------------------------------------------------------ hooks for subclasses
    def _draw(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        raise NotImplementedError  # pragma: no cover - abstract

    def _apply(self, xp: Any, x: Any, params: dict[str, np.ndarray]) -> Any:
        raise NotImplementedError  # pragma: no cover - abstract

    def _apply_uint8(self, tile: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        """``_apply`` on one uint8 tile ``(H, W, 3)``, in float32, rounded to uint8."""
        return float_to_uint8(self._apply(np, tile[None].astype(np.float32), params)[0])

    def _is_identity(self) -> bool:
        raise NotImplementedError  # pragma: no cover - abstract

    def _check(self) -> None:
        """Check the parameters and the fitted state; called per call.

        Raises
        ------
        ValueError
            If a parameter is invalid.
        sklearn.exceptions.NotFittedError
            If a declared fitted attribute is missing.
        """
        self._validate_params()
        self._require_fitted()

    def _require_fitted(self) -> None:
        """Raise NotFittedError unless every declared fitted attribute is set."""
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet: call fit(tiles) first"
            )

    # ------------------------------------------------------------------ public interface
    def forward(self, x: Any, random_state: Any = None) -> Any:
        """Augment one tile or a batch.

        Parameters
        ----------
        x : ndarray, torch.Tensor or list of ndarray
            numpy: ``(H, W, 3)``, ``(N, H, W, 3)`` or a list of ``(H_i, W_i, 3)``; torch:
            ``(3, H, W)``, ``(N, 3, H, W)``, ``(H, W, 3)`` or ``(N, H, W, 3)``. uint8 (0-255) or
            float in [0, 1]. Never modified.
        random_state : None, int or numpy.random.Generator, optional
            Draw this call's parameters from this stream instead of the augmenter's own.

        Returns
        -------
        Same type, shape, dtype (and device) as ``x``
            Augmented tiles; tiles without enough tissue unchanged.

        Raises
        ------
        ValueError
            If ``x`` is not tiles as described (shape, channels, dtype, NaN or infinite values,
            float values outside [0, 1]), naming what arrived, or the parameters are invalid.
        """
        self._check()
        if isinstance(x, torch.Tensor):
            return self._forward_tensor(x, random_state)
        return self._forward_numpy(x, random_state)

    def extra_repr(self) -> str:
        """The constructor arguments, for ``repr``."""
        names = inspect.signature(type(self).__init__).parameters
        return ", ".join(f"{name}={getattr(self, name)!r}" for name in names if name != "self")

    def stream(self) -> np.random.Generator:
        """The augmenter's random stream in this process (or ``DataLoader`` worker).

        Returns
        -------
        numpy.random.Generator
            Created on first use from ``random_state`` (see the module docstring); a new one
            when the call comes from another worker than the last.
        """
        key = worker_seed()
        with _STREAM_LOCK:
            if self._stream is None or self._stream_key != key:
                self._stream = stream_for(self.random_state, key)
                self._stream_key = key
            return self._stream

    def _params(self, n: int, random_state: Any) -> dict[str, np.ndarray]:
        rng = self.stream() if random_state is None else as_generator(random_state)
        return self._draw(rng, n)

    def _kept(self, params: dict, background: Any) -> np.ndarray:
        """The boolean ``(n,)`` array of the tiles to augment: tissue, selected, not identity."""
        keep = ~np.asarray(background, dtype=bool)
        if "apply" in params:
            keep &= params["apply"]
        if self._is_identity():
            keep[:] = False
        return keep

    def _augmented(self, xp: Any, x: Any, params: dict, background: Any) -> tuple[Any, Any]:
        """``_apply`` on the tiles that hold tissue (and that ``params["apply"]`` selects).

        Returns the batch (the input's values where a tile is not augmented) and the boolean
        ``(n,)`` numpy array of the tiles augmented.
        """
        keep = self._kept(params, background)
        out = x.clone() if xp is torch else x.copy()
        if keep.any():
            rows = np.flatnonzero(keep)
            chosen = {key: value[rows] for key, value in params.items()}
            index = torch.as_tensor(rows, device=x.device) if xp is torch else rows
            out[index] = self._apply(xp, x[index], chosen)
        return out, keep

    def _forward_numpy(self, x: Any, random_state: Any) -> Any:
        tiles = as_tiles(x)
        params = self._params(len(tiles), random_state)
        results = []
        for i, (image, source) in enumerate(zip(tiles.images, tiles.sources, strict=True)):
            one = {key: value[i : i + 1] for key, value in params.items()}
            floats = source.original
            if not self._kept(one, screen_background(image[None]))[0]:
                results.append((image if floats is None else floats).copy())
            elif floats is None:
                results.append(self._apply_uint8(np.ascontiguousarray(image), one))
            else:
                out = self._apply(np, (floats.astype(np.float32) * np.float32(255))[None], one)
                results.append(np.clip(out[0] / 255.0, 0.0, 1.0).astype(floats.dtype))
        if tiles.layout == "tile":
            return results[0]
        return results if tiles.layout == "list" else np.stack(results)

    def _forward_tensor(self, x: torch.Tensor, random_state: Any) -> torch.Tensor:
        name = "x"
        layout = _tensor_layout(x, name)
        check_tensor_values(x, name)
        batch = x if x.ndim == 4 else x[None]
        if layout == "chw":
            batch = batch.permute(0, 2, 3, 1)
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        scaled = batch.to(work) * (1.0 if x.dtype == torch.uint8 else 255.0)
        params = self._params(scaled.shape[0], random_state)
        tissue = tissue_pixels(torch, scaled)
        counts = tissue.reshape(tissue.shape[0], -1).sum(1).cpu().numpy()
        background = counts < min_tissue_pixels(*scaled.shape[1:3])
        out, kept = self._augmented(torch, scaled, params, background)
        if x.dtype == torch.uint8:
            out = out.clamp(0, 255).round().to(torch.uint8)
        else:
            out = (out / 255.0).clamp(0, 1).to(x.dtype)
        kept = torch.as_tensor(kept, device=x.device)[:, None, None, None]
        out = torch.where(kept, out, batch)
        if layout == "chw":
            out = out.permute(0, 3, 1, 2)
        out = out.contiguous() if x.ndim == 4 else out[0].contiguous()
        return _rewrapped(out, x)


class ODAugmenter(Augmenter):
    """Base class of the augmenters that map each pixel's optical density, tile by tile.

    Subclasses implement ``_map_od(xp, od, params)``, the new optical densities
    ``(n, H, W, 3)`` of the optical densities ``od`` of the same shape, and ``_io()``, the
    blank-field intensity; the rest as for :class:`Augmenter`. ``_apply`` is
    :func:`through_od` of the map; numpy uint8 tiles take the OpenCV route of the module
    docstring, through the same ``_map_od``.
    """

    #: Whether the pixels that are not tissue (:func:`tissue_pixels`) pass through unchanged.
    tissue_only = False

    def _map_od(self, xp: Any, od: Any, params: dict[str, np.ndarray]) -> Any:
        raise NotImplementedError  # pragma: no cover - abstract

    def _io(self) -> float:
        raise NotImplementedError  # pragma: no cover - abstract

    def _apply(self, xp: Any, x: Any, params: dict[str, np.ndarray]) -> Any:
        map_od = lambda od: self._map_od(xp, od, params)  # noqa: E731
        return through_od(xp, x, map_od, self._io(), self.tissue_only)

    def _apply_uint8(self, tile: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        io = self._io()
        od = self._map_od(np, cv2.LUT(tile, od_lut(io, np.float32))[None], params)
        out = quantized_intensity(np.ascontiguousarray(od[0]), io)
        if self.tissue_only:
            background = ~tissue_mask(tile, io)
            cv2.copyTo(tile, background.view(np.uint8), dst=out)
        return out


def _rewrapped(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``out`` as the torchvision ``tv_tensors`` type of ``like``, when it has one."""
    if type(like) is torch.Tensor:
        return out
    try:
        from torchvision import tv_tensors
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return out
    return tv_tensors.wrap(out, like=like) if isinstance(like, tv_tensors.TVTensor) else out
