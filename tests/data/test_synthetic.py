import dataclasses

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

from stainstyle.data import (
    BUILTIN_STYLES,
    StainStyle,
    get_style,
    make_tiles,
    make_tissue,
    random_style,
    render,
    render_pair,
)
from stainstyle.data.synthetic import tone_curve


def mean_od(tiles):
    return -np.log((tiles.astype(np.float64) + 1.0) / 256.0).mean(axis=(1, 2))


@pytest.mark.parametrize("style", sorted(BUILTIN_STYLES))
def test_shapes_and_dtypes(style):
    tiles, labels = make_tiles(6, style, size=64, seed=0)
    assert tiles.shape == (6, 64, 64, 3) and tiles.dtype == np.uint8
    assert labels.shape == (6,) and labels.dtype == np.int64
    assert set(np.unique(labels)) <= {0, 1}


def test_return_slides():
    tiles, labels, slides = make_tiles(70, "radboud", size=32, seed=0, return_slides=True)
    assert slides.dtype == np.int64 and slides.shape == (70,)
    assert slides.min() == 0 and slides.max() == 2  # ceil(70 / 32) slides
    assert np.all(np.diff(slides) >= 0)
    *_, slides = make_tiles(10, "radboud", size=32, seed=0, n_slides=4, return_slides=True)
    assert len(np.unique(slides)) == 4


def test_deterministic_for_a_seed():
    a = make_tiles(5, "utrecht", size=48, seed=7)
    b = make_tiles(5, "utrecht", size=48, seed=7)
    c = make_tiles(5, "utrecht", size=48, seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.5, 1.0])
def test_label_balance_is_exact(fraction):
    _, labels = make_tiles(40, "radboud", size=32, tumor_fraction=fraction, seed=1)
    assert labels.sum() == round(40 * fraction)


def test_same_seed_same_tissue_in_two_styles():
    a, b, labels = render_pair(8, "radboud", "utrecht", size=64, seed=3)
    ta, la = make_tiles(8, "radboud", size=64, seed=3)
    tb, lb = make_tiles(8, "utrecht", size=64, seed=3)
    np.testing.assert_array_equal(a, ta)
    np.testing.assert_array_equal(b, tb)
    np.testing.assert_array_equal(labels, la)
    np.testing.assert_array_equal(labels, lb)
    # Same tissue: the tiles' structure agrees (pixel-wise correlation of the gray levels).
    gray_a, gray_b = a.mean(-1).ravel(), b.mean(-1).ravel()
    assert np.corrcoef(gray_a, gray_b)[0, 1] > 0.8


def test_styles_differ_in_mean_optical_density():
    a, b, _ = render_pair(16, "radboud", "utrecht", size=64, seed=0)
    od_a, od_b = mean_od(a).mean(0), mean_od(b).mean(0)
    # Utrecht is hematoxylin-heavy: darker overall, much darker in red and green.
    assert od_b.sum() > od_a.sum() + 0.3
    assert np.all(od_b[:2] > od_a[:2] + 0.1)


def test_background_is_white_and_tissue_is_pink_or_purple():
    tiles, _ = make_tiles(32, "radboud", size=64, seed=2)
    flat = tiles.reshape(-1, 3).astype(int)
    # Stained pixels absorb green most (eosin) or red and green (hematoxylin): G is lowest.
    tissue = flat[flat.sum(1) < 600]
    assert np.median(tissue[:, 1] - tissue[:, 0]) < 0
    assert flat.max() > 225  # glass and lumina are near white


def test_class_signal_is_not_mean_colour():
    """Within the target lab, a tile's mean optical density barely predicts its class."""
    tiles, labels = make_tiles(600, "radboud", size=64, seed=0)
    features = mean_od(tiles)
    features = (features - features.mean(0)) / features.std(0)
    proba = cross_val_predict(LogisticRegression(), features, labels, cv=5, method="predict_proba")[
        :, 1
    ]
    assert roc_auc_score(labels, proba) < 0.75


def test_tumor_nuclei_are_larger():
    tissue = make_tissue(60, size=96, seed=4)
    # Nuclear pixels per connected blob: tumour nuclei are much larger than normal ones.
    import cv2

    sizes = {0: [], 1: []}
    for hema, label in zip(tissue.hematoxylin, tissue.labels, strict=True):
        count, _, stats, _ = cv2.connectedComponentsWithStats((hema > 0.5).astype(np.uint8))
        sizes[int(label)].extend(stats[1:, cv2.CC_STAT_AREA])
    assert np.median(sizes[1]) > 2 * np.median(sizes[0])


def test_get_style_and_errors():
    assert get_style("radboud") is BUILTIN_STYLES["radboud"]
    style = random_style(0)
    assert get_style(style) is style
    with pytest.raises(ValueError, match="style: expected one of"):
        get_style("nowhere")
    with pytest.raises(TypeError, match="got int"):
        get_style(3)


def test_random_style_is_seeded_and_valid():
    assert random_style(1) == random_style(1)
    assert random_style(1) != random_style(2)
    tiles, _ = make_tiles(4, random_style(5), size=32, seed=0)
    assert tiles.dtype == np.uint8


def test_stain_style_validation():
    style = StainStyle(name="x", hematoxylin=(2, 2, 1), eosin=(0, 1, 0))
    np.testing.assert_allclose(np.linalg.norm(style.stain_matrix, axis=1), 1.0)
    with pytest.raises(ValueError, match="hematoxylin: expected 3"):
        StainStyle(name="x", hematoxylin=(1, 1), eosin=(0, 1, 0))
    with pytest.raises(ValueError, match="amounts"):
        StainStyle(name="x", hematoxylin=(1, 1, 1), eosin=(0, 1, 0), amounts=(1.0, -1.0))
    with pytest.raises(ValueError, match="gamma"):
        StainStyle(name="x", hematoxylin=(1, 1, 1), eosin=(0, 1, 0), gamma=(0, 1, 1))
    with pytest.raises(ValueError, match="blur"):
        StainStyle(name="x", hematoxylin=(1, 1, 1), eosin=(0, 1, 0), blur=-1)
    assert set(style.as_dict()) == {f.name for f in dataclasses.fields(StainStyle)}


@pytest.mark.parametrize("name", sorted(BUILTIN_STYLES))
def test_tone_curve_is_monotone_and_not_linear_in_od(name):
    style = get_style(name)
    light = np.linspace(0, 1, 101)[:, None].repeat(3, 1)
    y = tone_curve(style, light)
    assert np.all(np.diff(y, axis=0) >= 0)
    np.testing.assert_allclose(y[[0, -1]], [[0, 0, 0], [1, 1, 1]])
    # A pure gamma is linear in optical density (-ln y = OD / gamma); the S-curve is not.
    mid = slice(5, 96)
    ratio = np.log(y[mid]) / np.log(light[mid])
    assert np.all(np.ptp(ratio, axis=0) / ratio.mean(axis=0) > 0.05)


def test_argument_errors():
    with pytest.raises(ValueError, match="n: expected an integer >= 1, got 0"):
        make_tiles(0, "radboud")
    with pytest.raises(ValueError, match="size: expected an integer >= 32"):
        make_tiles(1, "radboud", size=8)
    with pytest.raises(ValueError, match="tumor_fraction"):
        make_tiles(1, "radboud", tumor_fraction=1.5)


def test_render_is_seeded_noise_only():
    tissue = make_tissue(3, size=32, seed=0)
    a, b = render(tissue, "utrecht", seed=0), render(tissue, "utrecht", seed=1)
    assert not np.array_equal(a, b)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 20
