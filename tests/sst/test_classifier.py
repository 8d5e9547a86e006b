import numpy as np
import pytest
import torch
from sklearn.base import clone

from stainstyle.sst import TileClassifier


def _two_class_tiles(n=16, size=32, seed=0):
    """Class 0 reddish, class 1 bluish, with noise: separable in a few steps."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    base = np.where(y[:, None] == 0, [200, 80, 120], [90, 80, 200])
    X = base[:, None, None, :] + rng.normal(0, 20, (n, size, size, 3))
    return np.clip(X, 0, 255).astype(np.uint8), y


@pytest.fixture(scope="module")
def fitted():
    X, y = _two_class_tiles()
    clf = TileClassifier(arch="resnet18", epochs=3, batch_size=8, device="cpu")
    return clf.fit(X, np.array(["normal", "tumor"])[y]), X, y


def test_fit_predict_shapes(fitted):
    clf, X, y = fitted
    assert list(clf.classes_) == ["normal", "tumor"]
    proba = clf.predict_proba(X)
    assert proba.shape == (16, 2) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-5)
    assert clf.decision_function(X).shape == (16,)
    assert set(clf.predict(X)) <= {"normal", "tumor"}
    features = clf.features(X)
    assert features.shape == (16, 512) and features.dtype == np.float32
    # Binary decision function: positive favours classes_[1], consistent with predict_proba.
    np.testing.assert_array_equal(clf.decision_function(X) > 0, proba[:, 1] > 0.5)


def test_learns_separable_classes():
    X, y = _two_class_tiles(n=32)
    clf = TileClassifier(arch="resnet18", epochs=6, batch_size=8, lr=1e-3, device="cpu")
    clf.fit(X, y)
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.score(X, y) >= 0.9


def test_any_input_size_and_float(fitted):
    clf, X, _ = fitted
    assert clf.features(X[0, :20, :28]).shape == (1, 512)
    np.testing.assert_array_equal(clf.predict(X / 255.0), clf.predict(X))


def test_same_seed_same_model():
    X, y = _two_class_tiles(n=8)
    a = TileClassifier(arch="resnet18", epochs=1, batch_size=4, device="cpu").fit(X, y)
    b = TileClassifier(arch="resnet18", epochs=1, batch_size=4, device="cpu").fit(X, y)
    np.testing.assert_array_equal(a.features(X), b.features(X))


def test_torch_features_are_differentiable(fitted):
    clf, X, _ = fitted
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    features, logits = clf.model_.features_and_logits(x)
    assert features.shape == (2, 512) and logits.shape == (2, 2)
    features.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_rebuild_modules(fitted):
    clf, X, _ = fitted
    modules = clf._build_modules()
    modules["model_"].load_state_dict(clf.model_.state_dict(), strict=True)
    with torch.no_grad():
        x = torch.rand(1, 3, 32, 32)
        torch.testing.assert_close(modules["model_"].eval()(x), clf.model_(x))


def test_clone_and_params():
    clf = TileClassifier(arch="resnet18", epochs=2)
    assert clone(clf).get_params() == clf.get_params()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"arch": "vgg"}, "arch"),
        ({"epochs": 0}, "epochs"),
        ({"lr": -1.0}, "lr"),
        ({"batch_transform": "hed"}, "batch_transform"),
    ],
)
def test_bad_params(kwargs, match):
    X, y = _two_class_tiles(n=4)
    with pytest.raises(ValueError, match=match):
        TileClassifier(**kwargs).fit(X, y)


def test_batch_transform_sees_every_training_batch_on_the_fly():
    X, y = _two_class_tiles(n=8)
    seen = []

    def record(x):
        assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
        assert 0.0 <= float(x.min()) <= float(x.max()) <= 1.0
        seen.append(x.clone())
        return x

    options = {"arch": "resnet18", "epochs": 2, "batch_size": 4, "device": "cpu"}
    plain = TileClassifier(**options).fit(X, y)
    recorded = TileClassifier(**options, batch_transform=record).fit(X, y)
    assert len(seen) == 4  # 2 epochs x 2 batches
    # The identity transform leaves training as it is: same model as without one.
    np.testing.assert_array_equal(plain.features(X), recorded.features(X))
    # A transform changes what the network is trained on (and only training: not inference).
    darker = TileClassifier(**options, batch_transform=lambda x: x * 0.5).fit(X, y)
    assert not np.array_equal(plain.features(X), darker.features(X))
    assert len(seen) == 4
    recorded.predict(X)
    assert len(seen) == 4


def test_batch_transform_takes_a_stain_augmenter():
    from stainstyle.augment import HEDJitter

    X, y = _two_class_tiles(n=8)

    def fit():
        augmenter = HEDJitter("strong", random_state=0)
        return TileClassifier(
            arch="resnet18", epochs=1, batch_size=4, device="cpu", batch_transform=augmenter
        ).fit(X, y)

    np.testing.assert_array_equal(fit().features(X), fit().features(X))


def test_bad_labels():
    X, y = _two_class_tiles(n=4)
    with pytest.raises(ValueError, match="y: expected at least 2 classes"):
        TileClassifier(arch="resnet18", epochs=1, device="cpu").fit(X, np.zeros(4))
    with pytest.raises(ValueError, match=r"y: expected shape \(4,\)"):
        TileClassifier(arch="resnet18", epochs=1, device="cpu").fit(X, [0, 1])


def test_not_fitted():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        TileClassifier().predict(np.zeros((1, 8, 8, 3), np.uint8))
