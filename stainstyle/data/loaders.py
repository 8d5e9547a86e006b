"""Loaders for real H&E tile datasets: ``(tiles, labels, groups)`` from files on disk.

Every loader returns

``tiles``
    an ndarray ``(N, H, W, 3)`` uint8 when loaded eagerly (a list when sizes differ), or a
    :class:`LazyTiles` / :class:`H5Tiles` sequence that reads a tile only when indexed;
``labels``
    an ndarray ``(N,)``: int64 when the dataset's labels are integers, else str;
``groups``
    a :class:`Groups` with the ``domain`` (centre, lab or scanner) and ``slide`` of each tile, for
    splits that keep a slide together (:mod:`stainstyle.data.splits`) and cross-domain studies.

Images are read by :func:`stainstyle.data.images.read_image`, the one reader of the library:
EXIF orientation is applied, grayscale is replicated, palette images are expanded, transparent
pixels are composited onto white (glass), 16-bit images are scaled to 8 bits. A missing,
corrupt, truncated, oversized or multi-page file raises :class:`ImageReadError` naming it; with
``on_error="skip"`` such files are left out (with their labels and groups) and one warning
gives their count.

Formats: a generic folder tree ``root/<domain>/<label>/*.png`` (:func:`load_folder`), a CSV
manifest ``file,label,domain,slide`` (:func:`load_manifest`), AMi-Br (:func:`load_amibr`),
PatchCamelyon HDF5 (:func:`load_pcam`, needs the optional ``h5py``) and CAMELYON17-WILDS
(:func:`load_camelyon17_wilds`).
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stainstyle.data.images import (
    IMAGE_SUFFIXES,
    ImageReadError,
    read_image,
    read_image_header,
)

#: Image file extensions :func:`load_folder` picks up (``stainstyle.data.images.IMAGE_SUFFIXES``).
IMAGE_EXTENSIONS = tuple(sorted(IMAGE_SUFFIXES))

#: Above this many files, loaders return a lazy sequence unless told otherwise.
LAZY_THRESHOLD = 10_000

_ON_ERROR = ("raise", "skip")


@dataclass(frozen=True)
class Groups:
    """Domain and slide of each tile.

    Attributes
    ----------
    domain : ndarray of shape (N,), dtype str
        Centre, lab or scanner the tile comes from.
    slide : ndarray of shape (N,), dtype str
        Slide (or patient) the tile comes from; unique within a domain.
    """

    domain: np.ndarray
    slide: np.ndarray

    def __post_init__(self):
        domain = np.asarray(self.domain).astype(str)
        slide = np.asarray(self.slide).astype(str)
        if domain.ndim != 1 or domain.shape != slide.shape:
            raise ValueError(
                f"domain, slide: expected two 1-D arrays of one length, got shapes "
                f"{domain.shape} and {slide.shape}"
            )
        object.__setattr__(self, "domain", domain)
        object.__setattr__(self, "slide", slide)

    def __len__(self) -> int:
        return len(self.slide)

    def __getitem__(self, index) -> Groups:
        """The groups of a subset of tiles (an index array, mask or slice)."""
        return Groups(domain=self.domain[index], slide=self.slide[index])

    def slide_ids(self) -> np.ndarray:
        """One integer per distinct (domain, slide) pair, for scikit-learn group splitters.

        Returns
        -------
        ndarray of shape (N,), dtype int64
            Usable as ``groups`` in ``GroupKFold``, ``GroupShuffleSplit`` and the like.
        """
        keys = np.char.add(np.char.add(self.domain, "\x1f"), self.slide)
        return np.unique(keys, return_inverse=True)[1].astype(np.int64).ravel()


def _check_on_error(on_error: str) -> None:
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error: expected one of {list(_ON_ERROR)}, got {on_error!r}")


def _stack_or_list(images: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    if images and len({im.shape for im in images}) == 1:
        return np.stack(images)
    return images


class LazyTiles(Sequence):
    """Image files read on access: a sequence of uint8 RGB tiles.

    Parameters
    ----------
    paths : sequence of str or path-like
        One file per tile.

    Notes
    -----
    ``tiles[i]`` reads file ``i`` (:func:`read_image`) and returns an ndarray ``(H, W, 3)``
    uint8; ``tiles[index_array]`` and ``tiles[a:b]`` return a smaller :class:`LazyTiles`
    without reading anything; ``tiles.load_all()`` (or ``np.asarray(tiles)``) reads them all.
    Picklable, so it works in ``torch.utils.data.DataLoader`` workers.
    """

    def __init__(self, paths: Iterable[str | os.PathLike]):
        self.paths = np.asarray([os.fspath(p) for p in paths], dtype=str)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return read_image(self.paths[index])
        return LazyTiles(self.paths[index])

    def __repr__(self) -> str:
        return f"LazyTiles({len(self)} files)"

    def load_all(self) -> np.ndarray | list[np.ndarray]:
        """Read every tile.

        Returns
        -------
        ndarray of shape (N, H, W, 3), dtype uint8, or list of (H_i, W_i, 3) arrays
            A list only when the tiles differ in size.

        Raises
        ------
        ImageReadError
            At the first unreadable file.
        """
        return _stack_or_list([read_image(p) for p in self.paths])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = np.asarray(self.load_all())
        return array if dtype is None else array.astype(dtype)


def _read_files(paths: Sequence[str], on_error: str, lazy: bool | None) -> tuple[Any, np.ndarray]:
    """Tiles for ``paths`` and a mask of the files kept.

    Eager loading reads (and checks) every file. Lazy loading only checks that each file exists
    and that its header is an image; a file corrupt past its header raises when it is read.
    """
    _check_on_error(on_error)
    lazy = len(paths) > LAZY_THRESHOLD if lazy is None else bool(lazy)
    keep = np.ones(len(paths), dtype=bool)
    images, problems = [], []
    for i, path in enumerate(paths):
        try:
            if lazy:
                if on_error == "skip" or not os.path.isfile(path):
                    read_image_header(path)  # names a missing file, FIFO, link loop...
            else:
                images.append(read_image(path))
        except ImageReadError as error:
            if on_error == "raise":
                raise
            keep[i] = False
            problems.append(str(error))
    if problems:
        warnings.warn(
            f"skipped {len(problems)} of {len(paths)} unreadable image files; first: {problems[0]}",
            UserWarning,
            stacklevel=3,
        )
    if lazy:
        return LazyTiles(np.asarray(paths, dtype=str)[keep]), keep
    return _stack_or_list(images), keep


def _labels_array(values: Sequence[str], label_map: dict | None, where: str) -> np.ndarray:
    """Labels as int64 when they are (or map to) integers, else as str."""
    if label_map is not None:
        unknown = sorted(set(values) - set(label_map))
        if unknown:
            raise ValueError(
                f"label_map: no entry for labels {unknown[:5]} found in {where}; "
                f"it has {sorted(label_map)}"
            )
        return np.asarray([label_map[v] for v in values])
    if all(re.fullmatch(r"[+-]?\d+", v.strip()) for v in values):
        return np.asarray([int(v) for v in values], dtype=np.int64)
    return np.asarray(values, dtype=str)


def _read_csv(path: Path, required: Iterable[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [c for c in required if c not in columns]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}; found {columns}")
        return list(reader)


def _finish(
    paths: list[str],
    labels: Sequence[str],
    domains: Sequence[str],
    slides: Sequence[str],
    *,
    lazy: bool | None,
    on_error: str,
    label_map: dict | None,
    where: str,
):
    if not paths:
        raise ValueError(f"{where}: no tiles found")
    label_array = _labels_array(list(labels), label_map, where)
    tiles, keep = _read_files(paths, on_error, lazy)
    groups = Groups(domain=np.asarray(domains)[keep], slide=np.asarray(slides)[keep])
    return tiles, label_array[keep], groups


def load_manifest(
    manifest: str | os.PathLike,
    root: str | os.PathLike | None = None,
    *,
    lazy: bool | None = None,
    on_error: str = "raise",
    label_map: dict | None = None,
):
    """Tiles listed in a CSV manifest with columns ``file,label,domain,slide``.

    Parameters
    ----------
    manifest : str or path-like
        CSV file with a header. ``file`` (path relative to ``root``) and ``label`` are required;
        ``domain`` defaults to ``""`` and ``slide`` to the file name (each tile its own slide)
        when the column is absent.
    root : str or path-like, optional
        Folder the ``file`` paths are relative to; default: the manifest's folder.
    lazy : bool, optional
        Return a :class:`LazyTiles` instead of reading the images; default: lazy above
        :data:`LAZY_THRESHOLD` files.
    on_error : {"raise", "skip"}, default="raise"
        Unreadable files raise :class:`ImageReadError`, or are left out with one warning.
    label_map : dict, optional
        Maps label strings to values (e.g. ``{"normal": 0, "tumor": 1}``).

    Returns
    -------
    tiles : ndarray of shape (N, H, W, 3) uint8, list of arrays, or LazyTiles
    labels : ndarray of shape (N,), int64 or str
    groups : Groups

    Raises
    ------
    FileNotFoundError
        If the manifest does not exist.
    ValueError
        If required columns are missing or the manifest lists no file.
    ImageReadError
        If an image cannot be read and ``on_error="raise"``.
    """
    manifest = Path(manifest)
    root = manifest.parent if root is None else Path(root)
    rows = _read_csv(manifest, ("file", "label"))
    return _finish(
        [os.fspath(root / r["file"]) for r in rows],
        [r["label"] for r in rows],
        [r.get("domain", "") or "" for r in rows],
        [r.get("slide") or r["file"] for r in rows],
        lazy=lazy,
        on_error=on_error,
        label_map=label_map,
        where=str(manifest),
    )


def load_folder(
    root: str | os.PathLike,
    *,
    slide_pattern: str | Callable[[str], str] | None = None,
    lazy: bool | None = None,
    on_error: str = "raise",
    label_map: dict | None = None,
):
    """Tiles stored as ``root/<domain>/<label>/<file>`` (png, jpg, tif, bmp).

    Parameters
    ----------
    root : str or path-like
        Top folder; its sub-folders are domains, theirs are labels.
    slide_pattern : str or callable, optional
        How to get a tile's slide from its file name: a regular expression whose first group
        (searched in the name) is the slide, or a function of the name. Default: each file is
        its own slide.
    lazy : bool, optional
        Return a :class:`LazyTiles`; default: lazy above :data:`LAZY_THRESHOLD` files.
    on_error : {"raise", "skip"}, default="raise"
        Unreadable files raise :class:`ImageReadError`, or are left out with one warning.
    label_map : dict, optional
        Maps label folder names to values.

    Returns
    -------
    tiles : ndarray of shape (N, H, W, 3) uint8, list of arrays, or LazyTiles
        In sorted order of domain, label and file name.
    labels : ndarray of shape (N,), int64 or str
    groups : Groups

    Raises
    ------
    FileNotFoundError
        If ``root`` is not a folder.
    ValueError
        If no image is found, or ``slide_pattern`` does not match a file name.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"root: {root} is not a folder")
    if isinstance(slide_pattern, str):
        regex = re.compile(slide_pattern)

        def slide_of(name: str) -> str:
            match = regex.search(name)
            if match is None or not match.groups():
                raise ValueError(f"slide_pattern: {slide_pattern!r} has no group matching {name}")
            return match.group(1)

    else:
        slide_of = slide_pattern or (lambda name: name)
    paths, labels, domains, slides = [], [], [], []
    for domain in sorted(p for p in root.iterdir() if p.is_dir()):
        for label in sorted(p for p in domain.iterdir() if p.is_dir()):
            for file in sorted(label.iterdir()):
                if file.suffix.lower() in IMAGE_EXTENSIONS:
                    paths.append(os.fspath(file))
                    labels.append(label.name)
                    domains.append(domain.name)
                    slides.append(slide_of(file.name))
    return _finish(
        paths,
        labels,
        domains,
        slides,
        lazy=lazy,
        on_error=on_error,
        label_map=label_map,
        where=f"{root}/<domain>/<label>/*",
    )


def load_amibr(root: str | os.PathLike, *, lazy: bool | None = None, on_error: str = "raise"):
    """The AMi-Br atypical-mitosis crops: 128x128 tiles from four scanner groups.

    Parameters
    ----------
    root : str or path-like
        The ``amibr`` folder, holding ``labels.csv`` (columns ``file,label,label_name,scanner,
        dataset,slide,...``) and the ``normal/`` and ``atypical/`` image folders.
    lazy : bool, optional
        Return a :class:`LazyTiles`; default: read all (3720 crops, about 180 MB).
    on_error : {"raise", "skip"}, default="raise"
        Unreadable files raise :class:`ImageReadError`, or are left out with one warning.

    Returns
    -------
    tiles : ndarray of shape (N, 128, 128, 3), dtype uint8, or LazyTiles
    labels : ndarray of shape (N,), dtype int64
        0 normal, 1 atypical mitosis.
    groups : Groups
        ``domain`` is the scanner (``AperioCS2``, ``HamamatsuS360``, ``HamamatsuXR``,
        ``TUPAC16``); ``slide`` is ``"<dataset>/<slide>"``.
    """
    root = Path(root)
    manifest = root / "labels.csv"
    rows = _read_csv(manifest, ("file", "label", "scanner", "dataset", "slide"))
    return _finish(
        [os.fspath(root / r["file"]) for r in rows],
        [r["label"] for r in rows],
        [r["scanner"] for r in rows],
        [f"{r['dataset']}/{r['slide']}" for r in rows],
        lazy=lazy,
        on_error=on_error,
        label_map=None,
        where=str(manifest),
    )


class H5Tiles(Sequence):
    """Tiles in an HDF5 dataset ``(N, H, W, 3)``, read on access.

    The file is opened on first access in each process (so the object can be sent to
    ``DataLoader`` workers) and kept open.

    Parameters
    ----------
    path : str or path-like
        HDF5 file.
    key : str, default="x"
        Dataset name.
    index : ndarray of int, optional
        Rows of the dataset, in order; default: all of them.
    """

    def __init__(self, path: str | os.PathLike, key: str = "x", index: np.ndarray | None = None):
        self.path = os.fspath(path)
        self.key = key
        with _open_h5(self.path) as handle:
            if key not in handle:
                raise KeyError(f"{self.path}: no dataset {key!r}; found {list(handle)}")
            shape = handle[key].shape
        if len(shape) != 4 or shape[-1] != 3:
            raise ValueError(f"{self.path}[{key!r}]: expected shape (N, H, W, 3), got {shape}")
        self.index = np.arange(shape[0]) if index is None else np.asarray(index)
        self._handle = None

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self):
        return {**self.__dict__, "_handle": None}

    def _dataset(self):
        if self._handle is None:
            self._handle = _open_h5(self.path)
        return self._handle[self.key]

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return np.asarray(self._dataset()[int(self.index[index])], dtype=np.uint8)
        return self._subset(self.index[index])

    def _subset(self, index: np.ndarray) -> H5Tiles:
        new = object.__new__(H5Tiles)
        new.__dict__.update(self.__getstate__(), index=np.asarray(index))
        return new

    def __repr__(self) -> str:
        return f"H5Tiles({self.path!r}, {len(self)} tiles)"

    def load_all(self) -> np.ndarray:
        """Read every tile.

        Returns
        -------
        ndarray of shape (N, H, W, 3), dtype uint8
        """
        data = self._dataset()
        if len(self.index) and np.all(np.diff(self.index) == 1):
            return np.asarray(data[int(self.index[0]) : int(self.index[-1]) + 1], dtype=np.uint8)
        order = np.argsort(self.index)
        out = np.empty((len(self.index), *data.shape[1:]), dtype=np.uint8)
        out[order] = data[np.sort(self.index)]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = self.load_all()
        return array if dtype is None else array.astype(dtype)


def _open_h5(path: str):
    try:
        import h5py
    except ImportError:
        raise ImportError(
            "reading PatchCamelyon needs h5py: pip install h5py (or stainstyle[h5])"
        ) from None
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: file not found")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise ImageReadError(path, f"cannot open HDF5 file ({error})") from error


#: Split names of the PatchCamelyon files.
PCAM_SPLITS = ("train", "valid", "test")


def load_pcam(root: str | os.PathLike, split: str = "train"):
    """PatchCamelyon (PCam) 96x96 tiles from its HDF5 files, lazily.

    Parameters
    ----------
    root : str or path-like
        Folder with ``camelyonpatch_level_2_split_<split>_x.h5`` (dataset ``x``,
        ``(N, 96, 96, 3)`` uint8), ``..._y.h5`` (dataset ``y``, ``(N, 1, 1, 1)``) and,
        optionally, ``..._meta.csv`` (columns ``coord_y,coord_x,tumor_patch,
        center_tumor_patch,wsi`` after an index column).
    split : {"train", "valid", "test"}, default="train"

    Returns
    -------
    tiles : H5Tiles
        Reads tiles on access.
    labels : ndarray of shape (N,), dtype int64
        1 when the central 32x32 region holds tumour.
    groups : Groups
        ``domain`` is ``"camelyon16"``; ``slide`` is the ``wsi`` column of the meta file, or
        ``"pcam_<split>_<i>"`` (each tile its own slide, with a warning) when it is absent.

    Raises
    ------
    ImportError
        If h5py is not installed.
    FileNotFoundError
        If the x or y file is missing.
    ImageReadError
        If an HDF5 file cannot be opened.
    ValueError
        If ``split`` is unknown or the files disagree in length.
    """
    if split not in PCAM_SPLITS:
        raise ValueError(f"split: expected one of {list(PCAM_SPLITS)}, got {split!r}")
    root = Path(root)
    stem = f"camelyonpatch_level_2_split_{split}"
    tiles = H5Tiles(root / f"{stem}_x.h5", "x")
    with _open_h5(os.fspath(root / f"{stem}_y.h5")) as handle:
        labels = np.asarray(handle["y"]).reshape(-1).astype(np.int64)
    if len(labels) != len(tiles):
        raise ValueError(f"{stem}: {len(tiles)} tiles in _x.h5 but {len(labels)} labels in _y.h5")
    meta = root / f"{stem}_meta.csv"
    if meta.is_file():
        rows = _read_csv(meta, ("wsi",))
        if len(rows) != len(labels):
            raise ValueError(f"{meta}: {len(rows)} rows for {len(labels)} tiles")
        slides = [r["wsi"] for r in rows]
    else:
        warnings.warn(
            f"{meta} not found: slide ids unknown, every tile is its own slide",
            UserWarning,
            stacklevel=2,
        )
        slides = [f"pcam_{split}_{i}" for i in range(len(labels))]
    return tiles, labels, Groups(domain=np.full(len(labels), "camelyon16"), slide=slides)


def load_camelyon17_wilds(
    root: str | os.PathLike,
    *,
    centers: Iterable[int] | None = None,
    lazy: bool | None = None,
    on_error: str = "raise",
):
    """CAMELYON17-WILDS 96x96 patches with their centre, slide and tumour label.

    Parameters
    ----------
    root : str or path-like
        The ``camelyon17_v1.0`` folder: ``metadata.csv`` (an index column, then
        ``patient,node,x_coord,y_coord,tumor,slide,center,split``) and
        ``patches/patient_<ppp>_node_<n>/patch_patient_<ppp>_node_<n>_x_<x>_y_<y>.png``.
    centers : iterable of int, optional
        Keep only these hospitals (0-4). Default: all.
    lazy : bool, optional
        Return a :class:`LazyTiles`; default: lazy above :data:`LAZY_THRESHOLD` patches (the
        full set has 455,954).
    on_error : {"raise", "skip"}, default="raise"
        Unreadable files raise :class:`ImageReadError`, or are left out with one warning.

    Returns
    -------
    tiles : ndarray of shape (N, 96, 96, 3) uint8, or LazyTiles
    labels : ndarray of shape (N,), dtype int64
        1 when the central 32x32 region holds tumour.
    groups : Groups
        ``domain`` is ``"center_<c>"``; ``slide`` the WILDS slide number (0-49).
    """
    root = Path(root)
    manifest = root / "metadata.csv"
    rows = _read_csv(
        manifest, ("patient", "node", "x_coord", "y_coord", "tumor", "slide", "center")
    )
    if centers is not None:
        wanted = {int(c) for c in centers}
        rows = [r for r in rows if int(r["center"]) in wanted]

    def patch(r: dict[str, str]) -> str:
        patient = r["patient"].strip()
        patient = f"{int(patient):03d}" if patient.isdigit() else patient
        folder = f"patient_{patient}_node_{r['node']}"
        name = f"patch_{folder}_x_{r['x_coord']}_y_{r['y_coord']}.png"
        return os.fspath(root / "patches" / folder / name)

    return _finish(
        [patch(r) for r in rows],
        [r["tumor"] for r in rows],
        [f"center_{r['center']}" for r in rows],
        [r["slide"] for r in rows],
        lazy=lazy,
        on_error=on_error,
        label_map=None,
        where=str(manifest),
    )
