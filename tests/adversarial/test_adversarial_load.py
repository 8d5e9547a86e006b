"""Hostile model folders against ``stainstyle.load`` (``stainstyle.hub.load_folder``).

Attacks the loader with configurations that claim huge networks, fitted states that are NaN,
negative or of the wrong names, malformed and deeply nested ``config.json`` and embedded
configurations, truncated and rewritten ``model.safetensors`` files (checksums recomputed, as a
deliberate forger would), in folder formats 1 and 2; and the command line with such folders.
Every load runs under a memory cap (current address space + 1 GiB).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from _support import as_format1, he_tiles, memory_cap, read_model_file, write_model_file
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import save_file

from stainstyle.base import StainNormalizer
from stainstyle.cli import main
from stainstyle.hub import CONFIG_NAME, WEIGHTS_NAME, load, method_class, register_normalizer

METHODS = ("gray", "reinhard", "macenko", "vahadane", "histogram", "wsics", "sst")


def _fit(method: str):
    cls = method_class(method)
    if method == "sst":
        estimator = cls(width=4, depth=2, crop_size=16, max_epochs=1, lambda_fp=0, device="cpu")
    else:
        estimator = cls()
    return estimator.fit(he_tiles(3, 64, seed=1))


@pytest.fixture(scope="module")
def tile() -> np.ndarray:
    return he_tiles(1, 64, seed=5)[0]


@pytest.fixture(scope="module")
def originals(tmp_path_factory, tile) -> dict[tuple[str, int], tuple[Path, np.ndarray]]:
    """(method, folder format) -> (saved folder, transform output of the fixed tile)."""
    root = tmp_path_factory.mktemp("originals")
    saved = {}
    for method in METHODS:
        estimator = _fit(method)
        expected = estimator.transform(tile)
        assert method == "gray" or not np.array_equal(expected, tile)
        estimator.save_pretrained(root / method)
        shutil.copytree(root / method, root / f"{method}-1")
        as_format1(root / f"{method}-1")
        saved[method, 2] = (root / method, expected)
        saved[method, 1] = (root / f"{method}-1", expected)
    return saved


def _copy(folder: Path) -> Path:
    target = Path(tempfile.mkdtemp(dir=folder.parent)) / "model"
    shutil.copytree(folder, target)
    return target


# --------------------------------------------------------------------------- mutating helpers
def _write_config_json(folder: Path, config) -> None:
    text = config if isinstance(config, str) else json.dumps(config, indent=2)
    (folder / CONFIG_NAME).write_text(text)


def _edit_authoritative(folder: Path, fmt: int, edit) -> None:
    """Edit the configuration that loading trusts: embedded (format 2) or config.json (1)."""
    if fmt == 2:
        config, tensors = read_model_file(folder)
        edit(config)
        write_model_file(folder, config, tensors)
    else:
        config = json.loads((folder / CONFIG_NAME).read_text())
        edit(config)
        _write_config_json(folder, config)


def _write_raw_authoritative(folder: Path, fmt: int, text: str) -> None:
    if fmt == 2:
        _, tensors = read_model_file(folder)
        write_model_file(folder, text, tensors)
    else:
        _write_config_json(folder, text)


def _tensors(folder: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(folder / WEIGHTS_NAME), framework="pt") as f:
        return {key: f.get_tensor(key) for key in f.keys()}


def _rewrite_tensors(folder: Path, fmt: int, tensors: dict) -> None:
    """Replace the tensors, recomputing the checksum the format keeps (a forger's rewrite)."""
    if fmt == 2:
        config, _ = read_model_file(folder)
        write_model_file(folder, config, tensors)
    else:
        save_file(tensors, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
        _recompute_weights_sha256(folder)


def _recompute_weights_sha256(folder: Path) -> None:
    import hashlib

    config = json.loads((folder / CONFIG_NAME).read_text())
    config["weights_sha256"] = hashlib.sha256((folder / WEIGHTS_NAME).read_bytes()).hexdigest()
    _write_config_json(folder, config)


def _refused(folder: Path, **overrides) -> ValueError:
    """Load under the memory cap; the ValueError, which must name a file of the folder."""
    with memory_cap(), pytest.raises(ValueError) as info:
        load(folder, **overrides)
    message = str(info.value)
    assert str(folder / WEIGHTS_NAME) in message or str(folder / CONFIG_NAME) in message, message
    return info.value


# ------------------------------------------------------------ defect 2: unbounded allocation
@pytest.mark.parametrize("fmt", [2, 1])
@pytest.mark.parametrize(
    "sizes",
    [
        {"depth_": 40},
        {"width_": 100_000},
        {"disc_width_": 10**6},
        {"crop_size_": 1 << 20},
        {"crop_size_": 24},  # not a power of two
        {"width_": 8},  # in range, but not the size of the saved tensors
        {"depth_": 3},
        {"crop_size_": 32},
    ],
    ids=lambda sizes: ",".join(f"{k}{v}" for k, v in sizes.items()),
)
def test_network_sizes_are_checked_before_anything_is_allocated(originals, fmt, sizes):
    folder = _copy(originals["sst", fmt][0])
    _edit_authoritative(folder, fmt, lambda config: config["fitted"].update(sizes))
    error = _refused(folder)
    name = next(iter(sizes))
    assert name in str(error) or "do not fit module" in str(error)


# ------------------------------------------------------------ defect 7: fitted state checked
@pytest.mark.parametrize("fmt", [2, 1])
@pytest.mark.parametrize(
    ("method", "name", "value"),
    [
        ("reinhard", "target_means_", math.nan),
        ("reinhard", "target_stds_", math.inf),
        ("reinhard", "target_stds_", -1.0),
        ("macenko", "max_concentrations_", -1.0),
        ("macenko", "stain_matrix_", 0.0),
        ("histogram", "target_counts_", -5),
        ("wsics", "density_std_", math.nan),
        ("wsics", "class_counts_", -1),
        ("sst", "gray_histogram_", -1),
        ("sst", "generator_.output.0.weight", math.nan),
    ],
)
def test_invalid_fitted_values_are_refused(originals, fmt, method, name, value):
    folder = _copy(originals[method, fmt][0])
    tensors = _tensors(folder)
    tensors[name] = torch.full_like(tensors[name], value)
    _rewrite_tensors(folder, fmt, tensors)
    error = _refused(folder)
    assert name.split(".")[0] in str(error)


@pytest.mark.parametrize("fmt", [2, 1])
@pytest.mark.parametrize(
    "edit",
    [
        {"extra_": 1},  # not declared by ReinhardNormalizer
        {"__class__": "os.system"},  # a dunder
        {"__dict__": {}},
        {"transform": 1},  # a method name
        {"fit": None},
    ],
    ids=lambda edit: next(iter(edit)),
)
def test_unknown_fitted_names_are_refused(originals, fmt, edit):
    folder = _copy(originals["reinhard", fmt][0])
    _edit_authoritative(folder, fmt, lambda config: config["fitted"].update(edit))
    error = _refused(folder)
    assert next(iter(edit)) in str(error)


@pytest.mark.parametrize("fmt", [2, 1])
def test_missing_fitted_attribute_is_refused(originals, fmt):
    folder = _copy(originals["wsics", fmt][0])
    _edit_authoritative(folder, fmt, lambda config: config["fitted"].pop("n_nuclei_"))
    assert "n_nuclei_" in str(_refused(folder))


@register_normalizer
class UndeclaredNormalizer(StainNormalizer):
    """A custom class that declares no fitted attributes: names are still checked."""

    def __init__(self, *, background="passthrough", batch_size=32):
        self.background = background
        self.batch_size = batch_size

    def _fit(self, tiles, y):
        self.level_ = 3
        self.table_ = np.arange(3, dtype=np.float64)

    def _transform_batch(self, batch, tissue):
        return batch, np.zeros(len(batch), dtype=bool)


@pytest.mark.parametrize(
    "name", ["__class__", "__dict__", "transform", "fit", "_fit", "set_params"]
)
def test_dunders_and_method_names_are_refused_for_any_class(tmp_path, tile, name):
    UndeclaredNormalizer().fit(tile).save_pretrained(tmp_path)
    _edit_authoritative(tmp_path, 2, lambda config: config["fitted"].update({name: 1}))
    assert name in str(_refused(tmp_path))


def test_non_finite_arrays_of_an_undeclared_class_are_refused(tmp_path, tile):
    UndeclaredNormalizer().fit(tile).save_pretrained(tmp_path)
    tensors = _tensors(tmp_path)
    tensors["table_"][1] = math.nan
    _rewrite_tensors(tmp_path, 2, tensors)
    assert "table_" in str(_refused(tmp_path))


# --------------------------------------------------------------- defect 12: malformed config
def _first_array(config: dict) -> dict:
    return next(iter(config["arrays"].values()))


MALFORMED = {
    "class_is_a_list": lambda c: c.update({"class": ["X"]}),
    "class_is_a_number": lambda c: c.update({"class": 7}),
    "params_is_null": lambda c: c.update({"params": None}),
    "params_is_a_list": lambda c: c.update({"params": [1, 2]}),
    "fitted_is_a_list": lambda c: c.update({"fitted": []}),
    "arrays_is_a_string": lambda c: c.update({"arrays": "x"}),
    "array_spec_without_kind": lambda c: _first_array(c).pop("kind"),
    "array_spec_is_null": lambda c: c["arrays"].update({"target_means_": None}),
    "array_kind_unknown": lambda c: _first_array(c).update({"kind": "pickle"}),
    "array_dtype_object": lambda c: _first_array(c).update({"dtype": "object"}),
    "array_shape_of_strings": lambda c: _first_array(c).update({"shape": ["3"]}),
    "array_shape_negative": lambda c: _first_array(c).update({"shape": [-3]}),
    "array_shape_huge": lambda c: _first_array(c).update({"shape": [1 << 40] * 8}),
    "module_spec_is_a_number": lambda c: c["modules"].update({"net_": 5}),
    "format_is_a_string": lambda c: c.update({"stainstyle_format": "1"}),
    "format_is_a_bool": lambda c: c.update({"stainstyle_format": True}),
    "unknown_top_level_key": lambda c: c.update({"extra": 1}),
    "params_not_finite": lambda c: c["params"].update({"batch_size": math.inf}),
    "unsaved_is_a_list": lambda c: c.update({"unsaved": []}),
}

DEEP = 100_000
MALFORMED_TEXT = {
    "deep_list_in_params": lambda text: text.replace('"passthrough"', "[" * DEEP + "]" * DEEP),
    "whole_file_a_deep_list": lambda text: "[" * DEEP + "]" * DEEP,
    "deep_object": lambda text: '{"a":' * DEEP + "1" + "}" * DEEP,
    "brackets_in_strings_do_not_count": lambda text: text.replace(
        '"lab_ruderman"', json.dumps("[" * DEEP)
    ),
    "not_utf8": lambda text: text.encode("utf-16").decode("latin-1"),
    "huge_integer": lambda text: text.replace('"batch_size": 32', '"batch_size": 1' + "0" * 5000),
    "truncated": lambda text: text[: len(text) // 2],
}


@pytest.mark.parametrize("fmt", [2, 1])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_configuration_is_a_value_error_naming_the_file(originals, fmt, case):
    folder = _copy(originals["reinhard", fmt][0])
    _edit_authoritative(folder, fmt, MALFORMED[case])
    _refused(folder)


@pytest.mark.parametrize(
    ("case", "fmt"),
    # Format 2 keeps the text in safetensors metadata, UTF-8 by construction: no "not_utf8".
    [
        (case, fmt)
        for case in sorted(MALFORMED_TEXT)
        for fmt in (2, 1)
        if (case, fmt) != ("not_utf8", 2)
    ],
)
def test_malformed_configuration_text_is_a_value_error_naming_the_file(originals, fmt, case):
    folder = _copy(originals["reinhard", fmt][0])
    if fmt == 2:
        text = read_model_file(folder)[0]
        text = json.dumps(text, indent=2, sort_keys=True)
    else:
        text = (folder / CONFIG_NAME).read_text()
    if case == "not_utf8":
        (folder / CONFIG_NAME).write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    else:
        mutated = MALFORMED_TEXT[case](text)
        assert mutated != text
        _write_raw_authoritative(folder, fmt, mutated)
    _refused(folder)


def _png(tmp_path: Path, tile: np.ndarray) -> Path:
    path = tmp_path / "tile.png"
    Image.fromarray(tile).save(path)
    return path


@pytest.mark.parametrize("fmt", [2, 1])
@pytest.mark.parametrize(
    "case", ["class_is_a_list", "params_is_null", "array_spec_without_kind", "deep"]
)
def test_command_line_reports_a_malformed_model_in_one_line(
    originals, tile, tmp_path, capsys, fmt, case
):
    folder = _copy(originals["reinhard", fmt][0])
    if case == "deep":
        _write_raw_authoritative(folder, fmt, "[" * DEEP + "]" * DEEP)
    else:
        _edit_authoritative(folder, fmt, MALFORMED[case])
    source = _png(tmp_path, tile)
    code = main(["normalize", "--model", str(folder), str(source), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(folder) in lines[0] and "ValueError" in lines[0], err


# ------------------------------------------------- the property: mutate, then load or refuse
def _paths(value, prefix=()) -> list[tuple]:
    """Every location in JSON data (not the root), in a deterministic order."""
    paths = []
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        paths.append((*prefix, key))
        paths.extend(_paths(item, (*prefix, key)))
    return paths


def _hostile_values(value) -> list:
    """Replacements that no saved model holds at a location of this type.

    Values of the right type that form another valid model (another valid ``alpha``) are not
    drawn: no loader can tell them from a real model (format 2 detects them with its checksum,
    see the unforged mutations).
    """
    if isinstance(value, bool):
        return ["x", -1, [], {}]
    if isinstance(value, (int, float)):
        return ["x", [], {}, -1, math.nan, math.inf, -math.inf]
    if isinstance(value, str):
        return [-1, [], {}, "x"]
    if value is None:
        return [-1, "x", [], {}]
    return ["x", -1, [] if isinstance(value, dict) else {}]


_DEEP_TOKEN = "__deep__"


def _mutate_json(config: dict, data) -> str:
    """One random edit of a configuration: replace, delete, add a key or nest deeply."""
    paths = _paths(config)
    path = paths[data.draw(st.integers(0, len(paths) - 1), label="path")]
    parent = config
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    operation = data.draw(st.sampled_from(["replace", "delete", "add", "deep"]), label="op")
    if operation == "replace":
        parent[key] = data.draw(st.sampled_from(_hostile_values(parent[key])), label="value")
    elif operation == "delete":
        del parent[key]
    elif operation == "add":
        target = parent[key]
        if isinstance(target, dict):
            target["zz_added_"] = -1
        else:
            parent[key] = {"zz_added_": target} if not isinstance(parent, list) else [target]
    else:
        parent[key] = _DEEP_TOKEN
    text = json.dumps(config, indent=2, sort_keys=True)
    return text.replace(json.dumps(_DEEP_TOKEN), "[" * DEEP + "]" * DEEP)


def _mutate_tensors(tensors: dict, data) -> dict:
    names = sorted(tensors)
    if not names:  # a model without tensors (GrayNormalizer): add one
        return {"extra_": torch.zeros(2)}
    name = names[data.draw(st.integers(0, len(names) - 1), label="tensor")]
    tensor = tensors[name]
    operation = data.draw(
        st.sampled_from(["drop", "add", "rename", "dtype", "shape", "values"]), label="op"
    )
    if operation == "drop":
        del tensors[name]
    elif operation == "add":
        tensors[f"{name.split('.')[0]}.extra" if "." in name else "extra_"] = torch.zeros(2)
    elif operation == "rename":
        tensors[name + "x"] = tensors.pop(name)
    elif operation == "dtype":
        other = torch.float32 if tensor.dtype == torch.float64 else torch.float64
        tensors[name] = tensor.to(other if tensor.is_floating_point() else torch.int32)
    elif operation == "shape":
        flat = tensor.reshape(-1)
        tensors[name] = flat if tensor.dim() != 1 else torch.cat([flat, flat[:1]])
    else:
        if tensor.is_floating_point():
            value = data.draw(st.sampled_from([math.nan, math.inf, -math.inf, 1e30, -1e30]))
        else:
            value = data.draw(st.sampled_from([-1, 2**62]))
        mutated = tensor.clone()
        if data.draw(st.booleans(), label="all"):
            mutated.fill_(value)
        else:
            mutated.reshape(-1)[0] = value
        tensors[name] = mutated
    return tensors


KINDS = {
    2: ["config_json", "embedded", "embedded_forged", "truncate", "tensors"],
    1: ["config_json", "truncate", "tensors"],
}


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(method=st.sampled_from(METHODS), fmt=st.sampled_from([2, 1]), data=st.data())
def test_mutated_folders_load_unchanged_or_are_refused_naming_the_file(
    originals, tile, method, fmt, data
):
    original, expected = originals[method, fmt]
    folder = _copy(original)
    kind = data.draw(st.sampled_from(KINDS[fmt]), label="kind")
    if kind == "config_json":  # format 2: not trusted; format 1: what loading trusts
        config = json.loads((folder / CONFIG_NAME).read_text())
        _write_config_json(folder, _mutate_json(config, data))
    elif kind in ("embedded", "embedded_forged"):
        config, tensors = read_model_file(folder)
        text = _mutate_json(config, data)
        if kind == "embedded_forged" and len(text) < 10_000:
            try:
                write_model_file(folder, json.loads(text), tensors)
            except (TypeError, AttributeError):  # not an object any more: nothing to forge
                write_model_file(folder, text, tensors)
        else:
            write_model_file(folder, text, tensors)
    elif kind == "truncate":
        content = (folder / WEIGHTS_NAME).read_bytes()
        cut = data.draw(st.integers(0, len(content) - 1), label="cut")
        (folder / WEIGHTS_NAME).write_bytes(content[:cut])
        if fmt == 1:
            _recompute_weights_sha256(folder)
    else:
        _rewrite_tensors(folder, fmt, _mutate_tensors(_tensors(folder), data))

    try:
        with memory_cap():
            try:
                model = load(folder)
            except (ValueError, FileNotFoundError) as err:
                message = str(err)
                assert str(folder / WEIGHTS_NAME) in message or str(folder / CONFIG_NAME) in message
                event(f"format {fmt}, {kind}: refused")
                return
            out = model.transform(tile)
        assert np.array_equal(out, expected), f"{kind} mutation loaded a different model"
        event(f"format {fmt}, {kind}: loaded unchanged")
    finally:
        shutil.rmtree(folder.parent)


def test_peak_memory_stays_bounded_for_a_claimed_huge_network(originals):
    """The cap is real: a load that tried to allocate the claimed network would fail here."""
    folder = _copy(originals["sst", 2][0])
    _edit_authoritative(folder, 2, lambda config: config["fitted"].update(width_=256, depth_=8))
    error = _refused(folder)
    assert re.search(r"do not fit module|width_|depth_", str(error))


# ------------------------------------------------------- hostile safetensors headers and data
def _raw_safetensors(header, data: bytes = b"", length: int | None = None) -> bytes:
    text = header if isinstance(header, str) else json.dumps(header)
    encoded = text.encode("utf-8")
    return (len(encoded) if length is None else length).to_bytes(8, "little") + encoded + data


def _entry(dtype="F64", shape=(3,), offsets=(0, 24)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


HOSTILE_FILES = {
    "empty": b"",
    "seven_bytes": b"\x01" * 7,
    "header_longer_than_file": _raw_safetensors({}, length=1000),
    "header_of_a_terabyte": _raw_safetensors({}, length=1 << 40),
    "header_not_json": _raw_safetensors("{not json"),
    "header_not_utf8": b"\x04\x00\x00\x00\x00\x00\x00\x00\xff\xfe\xfd\xfc",
    "header_a_list": _raw_safetensors([1, 2]),
    "header_deeply_nested": _raw_safetensors("[" * DEEP + "]" * DEEP),
    "metadata_not_strings": _raw_safetensors({"__metadata__": {"stainstyle_config": 5}}),
    "entry_without_offsets": _raw_safetensors({"a_": {"dtype": "F64", "shape": [3]}}, b"\0" * 24),
    "unknown_dtype": _raw_safetensors({"a_": _entry(dtype="F8_E4M3", offsets=(0, 3))}, b"\0" * 3),
    "object_dtype": _raw_safetensors({"a_": _entry(dtype="O")}, b"\0" * 24),
    "shape_claims_more_than_data": _raw_safetensors(
        {"a_": _entry(shape=(1 << 40,), offsets=(0, 24))}, b"\0" * 24
    ),
    "offsets_beyond_the_file": _raw_safetensors(
        {"a_": _entry(shape=(1 << 37,), offsets=(0, 1 << 40))}, b"\0" * 24
    ),
    "negative_shape": _raw_safetensors({"a_": _entry(shape=(-3,))}, b"\0" * 24),
    "overlapping_tensors": _raw_safetensors(
        {"a_": _entry(), "b_": _entry(offsets=(8, 32))}, b"\0" * 32
    ),
    "gap_between_tensors": _raw_safetensors(
        {"a_": _entry(), "b_": _entry(offsets=(32, 56))}, b"\0" * 56
    ),
    "trailing_bytes": _raw_safetensors({"a_": _entry()}, b"\0" * 30),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_FILES))
def test_hostile_safetensors_files_are_refused_naming_the_file(originals, case):
    folder = _copy(originals["reinhard", 2][0])
    (folder / WEIGHTS_NAME).write_bytes(HOSTILE_FILES[case])
    error = _refused(folder)
    assert f"{folder / WEIGHTS_NAME}: not a readable safetensors file" in str(error)
