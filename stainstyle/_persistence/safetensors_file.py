"""``model.safetensors``: a reader that checks the header first, and an atomic writer.

The reader works through one open file, so that a concurrent save renaming a new file over the
path cannot mix two files (``safetensors.safe_open`` opens the path more than once). It parses
the header within bounds and checks it as safetensors does (known dtypes, sizes that match the
shapes, data that covers the file exactly), so that a tensor is only ever allocated with the
size of the bytes the file holds.

Imports :mod:`stainstyle._atomic` and :mod:`.json_values`; torch and safetensors are imported
when a tensor is read or written.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stainstyle._atomic import atomic_path
from stainstyle._persistence.json_values import is_int, parse_json

#: Largest header (bytes) that is read.
MAX_HEADER_BYTES = 16 << 20
#: Most dimensions of a tensor, most elements of one tensor (and of one dimension).
MAX_NDIM = 8
MAX_ELEMENTS = 1 << 40

#: safetensors dtype codes and the numpy dtype names of the arrays they hold.
DTYPES = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "I16": "int16",
    "U16": "uint16",
    "I32": "int32",
    "U32": "uint32",
    "I64": "int64",
    "U64": "uint64",
    "F16": "float16",
    "BF16": "bfloat16",
    "F32": "float32",
    "F64": "float64",
}

#: Bytes per element of each safetensors dtype code.
_ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


def is_shape(shape: Any) -> bool:
    """Whether a JSON value is a tensor shape within bounds.

    Parameters
    ----------
    shape : object

    Returns
    -------
    bool
        True for a list of at most :data:`MAX_NDIM` ints in ``[0, MAX_ELEMENTS]``.
    """
    return (
        isinstance(shape, list)
        and len(shape) <= MAX_NDIM
        and all(is_int(d) and 0 <= d <= MAX_ELEMENTS for d in shape)
    )


def write_safetensors(path: Path, tensors: Mapping[str, Any], metadata: dict[str, str]) -> None:
    """Write a safetensors file atomically (to a temporary file renamed over ``path``).

    Parameters
    ----------
    path : Path
        The file to write.
    tensors : mapping of str to torch.Tensor
        Contiguous CPU tensors.
    metadata : dict of str to str
        Header metadata (``__metadata__``).
    """
    from safetensors.torch import save_file

    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)


class SafetensorsFile:
    """A safetensors file read through one open file: the header first, tensors on demand.

    Parameters
    ----------
    path : Path
        The file; it is opened and its header checked at once.

    Raises
    ------
    ValueError
        Naming the file, if it cannot be read or is not a well-formed safetensors file.
    """

    def __init__(self, path: Path):
        self.path = path
        try:
            self._file = open(path, "rb")  # noqa: SIM115 - closed by close() / __exit__
        except OSError as err:
            raise ValueError(f"{path}: cannot be read ({err})") from err
        try:
            self._read_header()
        except BaseException:
            self._file.close()
            raise

    def __enter__(self) -> SafetensorsFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._file.close()

    def _fail(self, reason: str) -> ValueError:
        return ValueError(f"{self.path}: not a readable safetensors file ({reason})")

    def _read_header(self) -> None:
        size = os.fstat(self._file.fileno()).st_size
        head = self._file.read(8)
        if len(head) < 8:
            raise self._fail(f"{len(head)} bytes long")
        length = int.from_bytes(head, "little")
        if length > MAX_HEADER_BYTES or 8 + length > size:
            raise self._fail(f"a header of {length} bytes in a file of {size} bytes")
        header = self._parse_header(self._file.read(length))
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise self._fail("its metadata is not an object of strings")
        self._metadata = metadata
        self._entries = {name: self._entry(name, entry) for name, entry in header.items()}
        self._data_start = 8 + length
        self._check_coverage(size - self._data_start)

    def _parse_header(self, data: bytes) -> dict:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise self._fail(f"header not UTF-8: {err}") from None
        try:
            header = parse_json(text, "header", limit=MAX_HEADER_BYTES)
        except ValueError as err:
            raise self._fail(str(err)) from None
        if not isinstance(header, dict):
            raise self._fail("its header is not a JSON object")
        return header

    def _entry(self, name: str, entry: Any) -> tuple[str, list[int], int, int]:
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise self._fail(f"tensor {name!r} is not described by dtype, shape, data_offsets")
        code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if code not in _ITEMSIZE:
            raise self._fail(f"tensor {name!r} has unsupported dtype {code!r}")
        if not (
            is_shape(shape)
            and isinstance(offsets, list)
            and len(offsets) == 2
            and all(is_int(o) for o in offsets)
            and 0 <= offsets[0] <= offsets[1]
        ):
            raise self._fail(f"tensor {name!r} has an invalid shape or data offsets")
        if math.prod(shape) * _ITEMSIZE[code] != offsets[1] - offsets[0]:
            raise self._fail(f"tensor {name!r}: its shape {shape} does not match its byte size")
        return DTYPES[code], shape, offsets[0], offsets[1]

    def _check_coverage(self, data_size: int) -> None:
        """The tensors' byte ranges cover the data without gaps or overlaps."""
        covered = 0
        for _, _, begin, end in sorted(self._entries.values(), key=lambda e: e[2:]):
            if begin != covered:
                raise self._fail("its tensors do not cover the data without gaps or overlaps")
            covered = end
        if covered != data_size:
            raise self._fail(f"its tensors hold {covered} bytes, the file {data_size}")

    def metadata(self) -> dict[str, str]:
        """Header metadata (``__metadata__``).

        Returns
        -------
        dict of str to str
        """
        return self._metadata

    def layout(self) -> dict[str, tuple[str, list[int]]]:
        """Name -> (dtype name, shape) of every tensor, from the header only.

        Returns
        -------
        dict of str to (str, list of int)
        """
        return {name: (dtype, shape) for name, (dtype, shape, _, _) in self._entries.items()}

    def get_tensor(self, name: str) -> Any:
        """Read one tensor.

        Parameters
        ----------
        name : str
            A key of :meth:`layout`.

        Returns
        -------
        torch.Tensor
            A new CPU tensor, of exactly the bytes the file holds for it.

        Raises
        ------
        ValueError
            If the file ends before the tensor does.
        """
        import torch

        dtype, shape, begin, end = self._entries[name]
        tensor = torch.empty(shape, dtype=getattr(torch, dtype))
        if end > begin:
            buffer = memoryview(tensor.reshape(-1).view(torch.uint8).numpy())
            self._file.seek(self._data_start + begin)
            filled = 0
            while filled < end - begin:
                count = self._file.readinto(buffer[filled:])
                if not count:
                    raise self._fail(f"tensor {name!r} ends early")
                filled += count
        return tensor

    def sha256(self) -> str:
        """SHA-256 of the whole file (folder format 1).

        Returns
        -------
        str
            64 lowercase hexadecimal digits.
        """
        digest = hashlib.sha256()
        self._file.seek(0)
        for block in iter(lambda: self._file.read(1 << 20), b""):
            digest.update(block)
        return digest.hexdigest()
