"""The estimator contract shared by every method: containers, errors, background, scikit-learn."""

from __future__ import annotations

import copy
import json
import pickle
import re
import warnings

import numpy as np
import pytest
import torch
from _support import he_tiles, read_model_file, traced_peak, write_model_file
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

import stainstyle
from stainstyle import BackgroundTileWarning, tile_status
from stainstyle.tissue import tissue_mask

CLASSIC = [
    stainstyle.ReinhardNormalizer,
    stainstyle.MacenkoNormalizer,
    stainstyle.HistogramSpecification,
    stainstyle.GrayNormalizer,
]


@pytest.fixture(params=CLASSIC, ids=lambda c: c.__name__)
def fitted(request, target_tiles):
    return request.param().fit(target_tiles)


def test_fit_returns_self_and_not_fitted_error(target_tiles):
    for cls in CLASSIC:
        estimator = cls()
        with pytest.raises(NotFittedError):
            estimator.transform(target_tiles)
        assert estimator.fit(target_tiles) is estimator


def test_one_tile_batch_and_list_agree(fitted, source_tiles):
    batch = fitted.transform(source_tiles)
    assert batch.shape == source_tiles.shape and batch.dtype == np.uint8
    single = fitted.transform(source_tiles[1])
    assert single.shape == source_tiles[1].shape
    np.testing.assert_array_equal(single, batch[1])
    listed = fitted.transform(list(source_tiles))
    assert isinstance(listed, list) and len(listed) == len(source_tiles)
    np.testing.assert_array_equal(listed[2], batch[2])


def test_list_of_different_sizes(fitted, source_tiles):
    tiles = [source_tiles[0], source_tiles[1][:40, :50], source_tiles[2][:, :33]]
    out = fitted.transform(tiles)
    assert [o.shape for o in out] == [t.shape for t in tiles]


def test_float_input_keeps_dtype_and_scale(fitted, source_tiles):
    as_float = source_tiles.astype(np.float32) / 255
    out = fitted.transform(as_float)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(out * 255, fitted.transform(source_tiles), atol=1e-3)
    assert fitted.transform(source_tiles.astype(np.float64) / 255).dtype == np.float64


def test_float_input_between_gray_levels_is_rounded_to_the_nearest(fitted, source_tiles):
    # Values off the k/255 grid: k + 0.6 rounds up to k + 1, k + 0.4 down to k (truncation
    # would give k for both).
    levels = np.minimum(source_tiles, 254).astype(np.float64)
    up, down = (levels + 0.6) / 255, (levels + 0.4) / 255
    nearest_up = (levels + 1).astype(np.uint8)
    np.testing.assert_allclose(fitted.transform(up) * 255, fitted.transform(nearest_up), atol=1e-6)
    np.testing.assert_allclose(
        fitted.transform(down) * 255, fitted.transform(levels.astype(np.uint8)), atol=1e-6
    )


def test_torch_tensor_in_tensor_out(fitted, source_tiles):
    tensor = torch.from_numpy(source_tiles)
    out = fitted.transform(tensor)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8
    assert out.device == tensor.device
    # Tensors are computed by the torch kernels: within a gray level of the numpy path (the
    # parity tests of tests/methods/test_torch_parity.py measure it on real tiles).
    difference = out.numpy().astype(int) - fitted.transform(source_tiles)
    assert np.abs(difference).max() <= 1
    out_float = fitted.transform(tensor.float() / 255)
    assert out_float.dtype == torch.float32 and out_float.shape == tensor.shape


@pytest.mark.parametrize("name", sorted(stainstyle.METHODS))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_half_precision_tensors_come_back_in_their_dtype(name, dtype, target_tiles, source_tiles):
    normalizer = stainstyle.METHODS[name]().fit(target_tiles)
    tensor = torch.from_numpy(source_tiles).to(dtype) / 255
    out = normalizer.transform(tensor)
    assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.shape == tensor.shape
    # The same values in float32 give the same result, up to the rounding to ``dtype`` and the
    # gray level by which the torch kernels may differ from the numpy path.
    expected = normalizer.transform(tensor.float().numpy())
    np.testing.assert_allclose(out.float().numpy(), expected, rtol=2**-8, atol=1 / 255)
    listed = normalizer.transform(list(tensor[:2]))
    assert [t.dtype for t in listed] == [dtype, dtype]


def test_tensor_results_go_back_to_the_callers_device(source_tiles):
    # A CPU-only machine has no second device holding data; on the meta device (shapes only)
    # a result that stayed on the CPU shows.
    from stainstyle._validation import as_tiles

    for tensor in (torch.from_numpy(source_tiles), torch.from_numpy(source_tiles).half() / 255):
        tiles = as_tiles(tensor)
        assert [source.device for source in tiles.sources] == [tensor.device] * len(tensor)
        assert as_tiles(list(tensor)).sources[1].device == tensor.device
        for source in tiles.sources:
            source.device = torch.device("meta")
        out = tiles.restore([None, tiles.images[1].copy(), None])
        assert out.device.type == "meta" and out.dtype == tensor.dtype
        assert out.shape == tensor.shape


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_stay_on_their_device(fitted, source_tiles):
    tensor = torch.from_numpy(source_tiles).cuda()
    for x in (tensor, tensor.to(torch.bfloat16) / 255):
        out = fitted.transform(x)
        assert out.device == x.device and out.dtype == x.dtype
        expected = fitted.transform(x.cpu())
        assert torch.equal(out.cpu(), expected)


def test_opaque_rgba_accepted_transparent_rejected(fitted, source_tiles):
    rgba = np.concatenate(
        [source_tiles, np.full(source_tiles.shape[:-1] + (1,), 255, np.uint8)], -1
    )
    np.testing.assert_array_equal(fitted.transform(rgba), fitted.transform(source_tiles))
    rgba[0, 0, 0, 3] = 10
    with pytest.raises(ValueError, match="alpha"):
        fitted.transform(rgba)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((8, 8), np.uint8), "expected one tile"),
        (np.zeros((2, 2, 8, 8, 3), np.uint8), "got shape"),
        (np.zeros((8, 8, 2), np.uint8), "channels"),
        (np.zeros((0, 8, 8, 3), np.uint8), "empty"),
        ([], "empty"),
        (np.zeros((8, 8, 3), np.int64), "dtype"),
        (np.zeros((8, 8, 3), bool), "dtype"),
        (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
        (np.full((8, 8, 3), np.inf, np.float64), "infinite"),
        (np.full((8, 8, 3), 2.0, np.float32), r"\[0, 1\]"),
        (np.full((8, 8, 3), -0.5, np.float32), r"\[0, 1\]"),
        ("tile.png", "expected a numpy array"),
        ([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)], r"X\[1\]"),
    ],
)
def test_bad_input_gives_clear_value_error(fitted, bad, message):
    with pytest.raises(ValueError, match=message):
        fitted.transform(bad)
    with pytest.raises(ValueError, match=message):
        clone(fitted).fit(bad)


def test_background_tiles_pass_through_with_one_warning(fitted, source_tiles):
    tiles = source_tiles.copy()
    tiles[0] = 255
    tiles[2] = (230, 230, 240)
    with pytest.warns(BackgroundTileWarning, match="2 of 3 tiles") as record:
        out = fitted.transform(tiles)
    assert len([w for w in record if issubclass(w.category, BackgroundTileWarning)]) == 1
    np.testing.assert_array_equal(out[0], tiles[0])
    np.testing.assert_array_equal(out[2], tiles[2])
    status = tile_status(fitted, tiles)
    assert status.tolist() == ["passthrough_background", "ok", "passthrough_background"]


def test_background_raise_policy(fitted):
    fitted.set_params(background="raise")
    with pytest.raises(ValueError, match="background='raise'"):
        fitted.transform(np.full((16, 16, 3), 255, np.uint8))


def test_tile_status_does_not_change_estimator_or_warn(fitted, source_tiles):
    before = copy.deepcopy(vars(fitted))
    batch = np.concatenate([np.full((2, 64, 64, 3), 255, np.uint8), source_tiles])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        status = tile_status(fitted, batch)
    assert status.tolist() == ["passthrough_background"] * 2 + ["ok"] * len(source_tiles)
    assert vars(fitted).keys() == before.keys()
    for name, value in before.items():
        np.testing.assert_equal(vars(fitted)[name], value, err_msg=name)


@pytest.mark.parametrize("name", sorted(stainstyle.METHODS))
def test_uniform_tiles_pass_through_as_degenerate(name, target_tiles):
    # Tissue of one flat colour, or with a variation far below a gray level: nothing to map.
    flat = np.full((64, 64, 3), (150, 60, 160), np.uint8)
    dithered = flat.copy()
    dithered[::9, ::7, 1] += 1
    white = np.full((64, 64, 3), 255, np.uint8)
    batch = np.stack([target_tiles[0], flat, dithered, white])
    normalizer = stainstyle.METHODS[name]().fit(target_tiles)
    expected = ["ok", "passthrough_degenerate", "passthrough_degenerate", "passthrough_background"]
    assert tile_status(normalizer, batch).tolist() == expected
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outputs, status = normalizer.transform_with_status(batch)
    assert status.tolist() == expected
    np.testing.assert_array_equal(outputs[1:], batch[1:])
    assert not np.array_equal(outputs[0], batch[0])


def test_fit_raises_on_blank_targets():
    for cls in (stainstyle.ReinhardNormalizer, stainstyle.MacenkoNormalizer):
        with pytest.raises(ValueError, match="tissue pixels"):
            cls().fit(np.full((2, 32, 32, 3), 250, np.uint8))


def test_invalid_parameter_is_reported_at_fit(target_tiles):
    with pytest.raises(ValueError, match="batch_size"):
        stainstyle.ReinhardNormalizer(batch_size=0).fit(target_tiles)
    with pytest.raises(ValueError, match="background"):
        stainstyle.MacenkoNormalizer(background="ignore").fit(target_tiles)


def test_fit_never_mutates_input_and_is_deterministic(fitted, target_tiles, source_tiles):
    copy = target_tiles.copy()
    again = clone(fitted).fit(target_tiles)
    np.testing.assert_array_equal(target_tiles, copy)
    np.testing.assert_array_equal(again.transform(source_tiles), fitted.transform(source_tiles))


def test_batch_size_does_not_change_results(fitted, source_tiles):
    reference = fitted.transform(source_tiles)
    np.testing.assert_array_equal(
        clone(fitted).set_params(batch_size=1).fit(he_tiles(4, 64, seed=1)).transform(source_tiles),
        reference,
    )


def test_clone_get_set_params_and_pickle(fitted, source_tiles):
    params = fitted.get_params()
    assert clone(fitted).get_params() == params
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.transform(source_tiles), fitted.transform(source_tiles))


def _flatten(tiles):
    return np.asarray(tiles, dtype=np.float32).reshape(len(tiles), -1).mean(axis=1, keepdims=True)


def test_pipeline_and_grid_search():
    tiles = he_tiles(12, 32, seed=3)
    labels = np.arange(12) % 2
    tiles[labels == 1] = (tiles[labels == 1] * 0.9).astype(np.uint8)
    pipeline = Pipeline(
        [
            ("normalize", stainstyle.ReinhardNormalizer()),
            ("features", FunctionTransformer(_flatten)),
            ("classify", LogisticRegression()),
        ]
    )
    pipeline.fit(tiles, labels)
    assert pipeline.predict(tiles).shape == (12,)
    search = GridSearchCV(
        pipeline, {"normalize__space": ["lab_ruderman", "lab_cie"]}, cv=2, error_score="raise"
    )
    search.fit(tiles, labels)
    assert search.best_params_["normalize__space"] in {"lab_ruderman", "lab_cie"}


# ---------------------------------------------------------------------- fit screens its targets
BLANK_TARGETS = {
    "white": np.full((2, 32, 32, 3), 255, np.uint8),
    "black": np.zeros((2, 32, 32, 3), np.uint8),
    "1x1": np.full((1, 1, 3), 120, np.uint8),
    "single-colour": np.full((32, 32, 3), (150, 60, 160), np.uint8),
    "mixed-blanks": [
        np.full((32, 32, 3), 255, np.uint8),
        np.full((1, 1, 3), 90, np.uint8),
        np.full((16, 16, 3), (150, 60, 160), np.uint8),
    ],
}


@pytest.mark.parametrize("name", sorted(stainstyle.METHODS))
@pytest.mark.parametrize("blank", sorted(BLANK_TARGETS))
def test_fit_rejects_targets_without_tissue_in_every_method(name, blank):
    with pytest.raises(ValueError, match="cannot learn a stain style") as error:
        stainstyle.METHODS[name]().fit(BLANK_TARGETS[blank])
    message = str(error.value)
    assert message.startswith(f"X: {stainstyle.METHODS[name].__name__}")
    assert "too little tissue" in message and "uniform" in message


def test_histogram_specification_rejects_a_blank_target():
    # Issue #12, defect 5: mask="none" used to learn a constant image from blank targets.
    for blank in (np.full((32, 32, 3), 255, np.uint8), np.zeros((32, 32, 3), np.uint8)):
        with pytest.raises(ValueError, match="none of the 1 holds tissue"):
            stainstyle.HistogramSpecification().fit(blank)


@pytest.mark.parametrize("name", sorted(stainstyle.METHODS))
def test_fit_learns_from_the_tissue_tiles_only(name, target_tiles, source_tiles):
    good = list(target_tiles[:2])
    mixed = [good[0], np.full((64, 64, 3), 255, np.uint8), good[1], target_tiles[2][:1, :1]]
    mixed.append(np.full((20, 30, 3), (150, 60, 160), np.uint8))
    cls = stainstyle.METHODS[name]
    expected = cls().fit(good).transform(source_tiles)
    np.testing.assert_array_equal(cls().fit(mixed).transform(source_tiles), expected)


class _Recorder(stainstyle.GrayNormalizer):
    """Records what reaches ``_fit``."""

    def _fit(self, tiles, y):
        self.seen_ = ([tile.shape for tile in tiles.images], y)


def test_fit_passes_the_labels_of_the_tissue_tiles(target_tiles):
    white = np.full((64, 64, 3), 255, np.uint8)
    X = [white, target_tiles[0], white, target_tiles[1]]
    shapes, y = _Recorder().fit(X, np.array([10, 11, 12, 13])).seen_
    assert shapes == [(64, 64, 3)] * 2
    np.testing.assert_array_equal(y, [11, 13])
    assert _Recorder().fit(X, ["a", "b", "c", "d"]).seen_[1] == ["b", "d"]
    assert _Recorder().fit(X).seen_[1] is None
    with pytest.raises(ValueError, match=r"y: expected one label per tile \(4\), got 3"):
        _Recorder().fit(X, [0, 1, 2])


def test_reinhard_fits_a_list_with_a_one_pixel_tile(target_tiles):
    # Issue #12, defect 11: a 1x1 tile used to reach cv2.max and crash with an OpenCV assertion.
    tile = target_tiles[0]
    assert tissue_mask(tile[40:41, 40:41]).all()  # a pixel of tissue
    fitted = stainstyle.ReinhardNormalizer().fit([tile, tile[40:41, 40:41]])
    reference = stainstyle.ReinhardNormalizer().fit(tile)
    np.testing.assert_array_equal(fitted.target_means_, reference.target_means_)
    np.testing.assert_array_equal(fitted.target_stds_, reference.target_stds_)


def test_tiles_subset_keeps_layout_and_views():
    from stainstyle._validation import as_tiles

    batch = np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3)
    tiles = as_tiles(batch)
    run = tiles.subset(np.array([1, 2]))
    assert run.layout == "batch" and len(run) == 2
    assert np.shares_memory(run.stacked, batch)
    assert np.shares_memory(run.stack(np.array([0, 1])), batch)
    np.testing.assert_array_equal(run.stack(np.array([0, 1])), batch[1:3])
    one = as_tiles(batch[2])  # one tile is stacked as a view too: no copy of a large image
    assert np.shares_memory(one.stack(np.array([0])), batch)
    picked = tiles.subset(np.array([3, 0]))
    assert picked.stacked is None
    np.testing.assert_array_equal(picked.restore([None, None]), batch[[3, 0]])


# ---------------------------------------------------------------------- group ids
def test_group_ids_need_no_order(target_tiles):
    # Issue #12, defect 14: None next to a string used to raise TypeError from np.unique.
    from stainstyle.sources import group_members

    members = group_members([None, "a", None, ("s", 1), 1, 1.0, np.nan, float("nan")], 8)
    assert [m.tolist() for m in members] == [[0, 2], [1], [3], [4, 5], [6, 7]]
    array_ids = group_members(np.array([3, 1, 3]), 3)
    assert [m.tolist() for m in array_ids] == [[0, 2], [1]]
    for name in ("reinhard", "macenko", "histogram", "gray"):
        fitted = stainstyle.METHODS[name]().fit(target_tiles)
        grouped = fitted.transform(target_tiles[:2], groups=[None, "a"])
        np.testing.assert_array_equal(grouped, fitted.transform(target_tiles[:2], groups=[0, 1]))


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ([["a"], "b"], "ids must be hashable.*list.*index 0"),
        (["a", {"slide": 1}], "ids must be hashable.*dict.*index 1"),
        (np.array([np.zeros(2), "b"], dtype=object), "ids must be hashable.*ndarray"),
        ("ab", "expected one group id per tile"),
        (7, "expected one group id per tile"),
        (["a"], r"shape \(2,\), got shape \(1,\)"),
        (np.zeros((2, 2)), r"got shape \(2, 2\)"),
    ],
)
def test_bad_group_ids_give_a_value_error(groups, message):
    from stainstyle.sources import group_members

    with pytest.raises(ValueError, match=f"groups: .*{message}"):
        group_members(groups, 2)


def test_float_input_is_checked_and_quantized_strip_by_strip():
    from stainstyle._validation import as_tiles

    rng = np.random.default_rng(4)
    image = rng.random((300, 700, 4), dtype=np.float32)  # 210,000 pixels: several strips
    image[..., 3] = 1.0
    tiles = as_tiles(image)
    expected = np.rint(image[..., :3].astype(np.float64) * 255.0).astype(np.uint8)
    np.testing.assert_array_equal(tiles.images[0], expected)
    assert not np.shares_memory(tiles.images[0], image)
    half = np.stack([image[..., :3], image[::-1, :, :3]]).astype(np.float16)
    np.testing.assert_array_equal(
        as_tiles(half).images[1],
        np.rint(half[1].astype(np.float64) * 255.0).astype(np.uint8),
    )
    image[5, 600, 0], image[290, 3, 2] = np.nan, np.inf  # in different strips
    with pytest.raises(ValueError, match="contains 2 NaN or infinite values"):
        as_tiles(image)
    image[5, 600, 0], image[290, 3, 2] = 0.5, 1.5
    with pytest.raises(ValueError, match=r"got values in \[1.49012e-06, 1.5\]"):
        as_tiles(image)


@pytest.mark.parametrize("method", sorted(stainstyle.METHODS))
def test_transform_with_status_is_transform_and_tile_status_in_one_pass(method, target_tiles):
    normalizer = stainstyle.METHODS[method]()
    if method == "wsics":
        normalizer.set_params(microns_per_pixel=0.5, min_class_pixels=50)
    normalizer.fit(target_tiles)
    batch = np.concatenate([target_tiles[:2], np.full((1, 64, 64, 3), 250, np.uint8)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outputs, status = normalizer.transform_with_status(batch)
    with pytest.warns(BackgroundTileWarning):
        expected = normalizer.transform(batch)
    np.testing.assert_array_equal(outputs, expected)
    np.testing.assert_array_equal(status, tile_status(normalizer, batch))
    assert status[-1] == "passthrough_background"


# ---------------------------------------------------------------------- renamed parameters
#: Each renamed parameter: its class, a setting in the deprecated spelling, the same today.
RENAMED = [
    (stainstyle.ReinhardNormalizer, {"tissue_mask": False}, {"tissue_only": False}),
    (stainstyle.HistogramSpecification, {"mask": "tissue"}, {"tissue_only": True}),
    (stainstyle.MacenkoNormalizer, {"maxc_on_tissue": True}, {"tissue_only": True}),
]
renamed = pytest.mark.parametrize("cls, old, new", RENAMED, ids=[c.__name__ for c, *_ in RENAMED])


def _only(params):
    ((name, value),) = params.items()
    return name, value


@renamed
def test_a_deprecated_spelling_warns_and_means_the_new_one(cls, old, new, target_tiles):
    (name, value), (new_name, new_value) = _only(old), _only(new)
    expected = cls(**new).fit(target_tiles).transform(target_tiles)
    assert cls().get_params()[name] == "deprecated"
    estimator = cls(**old)
    assert estimator.get_params()[name] == value  # stored unchanged
    warning = rf"'{name}' is deprecated .*renamed '{new_name}': pass {new_name}={new_value!r}"
    with pytest.warns(FutureWarning, match=warning):
        estimator.fit(target_tiles)
    with pytest.warns(FutureWarning, match=warning):
        np.testing.assert_array_equal(estimator.transform(target_tiles), expected)
    with pytest.warns(FutureWarning, match=warning):  # both spellings, the same setting
        cls(**old, **new).fit(target_tiles)


@pytest.mark.parametrize(
    "cls, old, new",
    [
        (stainstyle.ReinhardNormalizer, {"tissue_mask": True}, {"tissue_only": False}),
        (stainstyle.HistogramSpecification, {"mask": "none"}, {"tissue_only": True}),
        (stainstyle.MacenkoNormalizer, {"maxc_on_tissue": False}, {"tissue_only": True}),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_a_deprecated_spelling_contradicting_the_new_one_is_refused(cls, old, new, target_tiles):
    (name, _), (new_name, _) = _only(old), _only(new)
    with pytest.raises(ValueError, match=rf"^{name}, {new_name}: .*set {new_name} only"):
        cls(**old, **new).fit(target_tiles)


def _mean_output(estimator, X, y=None):
    return float(np.mean(estimator.transform(X)))


@renamed
def test_both_spellings_survive_clone_and_grid_search(cls, old, new, target_tiles):
    (name, value), (new_name, new_value) = _only(old), _only(new)
    for params in (old, new):
        estimator = cls(**params)
        assert clone(estimator).get_params() == estimator.get_params()
    search = GridSearchCV(
        cls(), [{name: [value]}, {new_name: [new_value]}], cv=2, scoring=_mean_output
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        search.set_params(error_score="raise").fit(target_tiles)
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == 2 and scores[0] == scores[1]


@renamed
def test_models_saved_in_either_spelling_or_before_the_rename_load_alike(
    cls, old, new, target_tiles, source_tiles, tmp_path
):
    (name, _), (new_name, new_value) = _only(old), _only(new)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        estimator = cls(**old).fit(target_tiles)
        expected = estimator.transform(source_tiles)
    estimator.save_pretrained(tmp_path)
    with pytest.warns(FutureWarning):  # the saved parameters use the deprecated spelling
        loaded = stainstyle.load(tmp_path)
    assert loaded.get_params() == estimator.get_params()
    with pytest.warns(FutureWarning):
        np.testing.assert_array_equal(loaded.transform(source_tiles), expected)

    # A model saved before the rename holds the deprecated name only.
    config, tensors = read_model_file(tmp_path)
    del config["params"][new_name]
    write_model_file(tmp_path, config, tensors)
    (tmp_path / "config.json").write_text(json.dumps(read_model_file(tmp_path)[0]))
    loaded = stainstyle.load(tmp_path)
    assert loaded.get_params()[new_name] == new_value
    assert loaded.get_params()[name] == "deprecated"
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        np.testing.assert_array_equal(loaded.transform(source_tiles), expected)


def test_float_zeros_are_quantized_and_strips_cover_every_row():
    from stainstyle._validation import as_tiles

    image = np.linspace(0.0, 1.0, 300 * 700 * 3).reshape(300, 700, 3)  # several strips
    expected = np.rint(image * 255.0).astype(np.uint8)
    np.testing.assert_array_equal(as_tiles(image).images[0], expected)
    np.testing.assert_array_equal(as_tiles(image[None]).images[0], expected)


@pytest.mark.parametrize(
    ("low", "high", "hint"),
    [
        (-0.5, 1.0, ""),
        (0.0, 1.5, " (looks like 0-255 data: divide by 255 or cast to uint8)"),
        (0.0, 255.0, " (looks like 0-255 data: divide by 255 or cast to uint8)"),
    ],
)
def test_out_of_range_floats_name_the_range_and_hint_only_above_one(low, high, hint):
    from stainstyle._validation import as_tiles

    image = np.full((4, 4, 3), 0.5)
    image[0, 0, 0], image[3, 3, 2] = low, high
    message = rf"^X: float input must lie in \[0, 1\], got values in \[{low:g}, {high:g}\]"
    with pytest.raises(ValueError, match=message + re.escape(hint) + "$"):
        as_tiles(image)


def test_list_errors_name_the_container_and_the_element():
    from stainstyle._validation import as_tiles

    tile = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="^X: empty input, got an empty list$"):
        as_tiles([])
    with pytest.raises(ValueError, match="^X: empty input, got an empty tuple$"):
        as_tiles(())
    with pytest.raises(ValueError, match=r"^X\[1\]: expected a numpy array, .* got str$"):
        as_tiles([tile, "tile"])
    with pytest.raises(ValueError, match=r"^X\[1\]: expected 3 \(RGB\) or 4 \(RGBA\) channels"):
        as_tiles([tile, np.zeros((4, 4, 2), np.uint8)])


def test_errors_name_the_argument_the_count_and_the_fix():
    from stainstyle._validation import as_tiles

    dtype = (
        r"^target: expected dtype uint8 \(0-255\) or float in \[0, 1\], got int16; "
        r"convert with \.astype\(np\.uint8\) if the values are 0-255 intensities$"
    )
    with pytest.raises(ValueError, match=dtype):
        as_tiles(np.zeros((4, 4, 3), np.int16), name="target")
    with pytest.raises(ValueError, match="^target: expected a numpy array, .* got str$"):
        as_tiles("tile.png", name="target")
    rgba = np.full((4, 4, 4), 255, np.uint8)
    rgba[0, :3, 3] = 0
    with pytest.raises(ValueError, match="fully opaque; 3 pixels are transparent$"):
        as_tiles(rgba)


class _Detachable:
    """Not a tensor, though it has the ``detach`` of one."""

    def detach(self):
        return self


@pytest.mark.parametrize("impostor", [torch.device("cpu"), _Detachable()])
def test_only_tensors_are_read_as_tensors(impostor):
    # A torch object that is not a tensor, or any object with ``detach``, is rejected by name.
    from stainstyle._validation import as_tiles

    name = type(impostor).__name__
    with pytest.raises(ValueError, match=f"^X: expected a numpy array, .* got {name}$"):
        as_tiles(impostor)


def test_float_rgba_comes_back_as_float_rgb():
    from stainstyle._validation import as_tiles

    rgba = np.ones((2, 4, 4, 4), np.float32)
    rgba[..., :3] = 0.25
    for x in (rgba, rgba[0]):
        tiles = as_tiles(x)
        unchanged = tiles.restore([None] * len(tiles))
        assert unchanged.shape == x.shape[:-1] + (3,) and unchanged.dtype == np.float32
        np.testing.assert_array_equal(unchanged, x[..., :3])


def test_float_batch_temporaries_stay_strip_sized():
    # A batch is quantized image by image, each in strips: a whole-batch float64 copy
    # (here 50 MB) never exists.
    from stainstyle._validation import as_tiles

    batch = np.full((2, 1024, 1024, 3), 0.5, np.float32)
    tiles, peak = traced_peak(lambda: as_tiles(batch))
    assert peak - tiles.stacked.nbytes < 16 * 2**20
    assert np.all(tiles.stacked == 128)


def test_float_tiles_in_a_list_come_back_as_float_rgb():
    from stainstyle._validation import as_tiles

    rgba = np.ones((4, 4, 4), np.float32)
    rgba[..., :3] = 0.25
    tiles = as_tiles([rgba, np.full((2, 3, 3), 0.5)])
    unchanged = tiles.restore([None, None])
    assert unchanged[0].dtype == np.float32
    np.testing.assert_array_equal(unchanged[0], rgba[..., :3])
    np.testing.assert_array_equal(unchanged[1], np.full((2, 3, 3), 0.5))
    mapped = tiles.restore([np.full((4, 4, 3), 51, np.uint8), np.full((2, 3, 3), 255, np.uint8)])
    assert mapped[0].dtype == np.float32 and mapped[1].dtype == np.float64
    np.testing.assert_allclose(mapped[0], 0.2)
    np.testing.assert_array_equal(mapped[1], 1.0)


def test_a_contiguous_subset_keeps_exactly_its_tiles_stacked():
    from stainstyle._validation import as_tiles

    batch = np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3)
    run = as_tiles(batch).subset(np.array([1, 2]))
    np.testing.assert_array_equal(run.stacked, batch[1:3])


def test_a_bfloat16_tensor_comes_back_as_bfloat16():
    from stainstyle._validation import as_tiles

    tile = torch.full((4, 4, 3), 0.5, dtype=torch.bfloat16)
    tiles = as_tiles(tile)
    assert tiles.restore([None]).dtype == torch.bfloat16
    assert torch.equal(tiles.restore([None]), tile)
    mapped = tiles.restore([np.full((4, 4, 3), 255, np.uint8)])
    assert mapped.dtype == torch.bfloat16 and torch.equal(mapped, torch.ones_like(tile))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_tensor_comes_back_on_its_device():
    from stainstyle._validation import as_tiles

    tile = torch.full((4, 4, 3), 0.5, device="cuda")
    tiles = as_tiles(tile)
    assert tiles.restore([None]).device == tile.device
    assert tiles.restore([np.zeros((4, 4, 3), np.uint8)]).device == tile.device
