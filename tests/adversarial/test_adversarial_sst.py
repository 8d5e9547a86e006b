"""Attacks on ``StainStyleTransfer.fit`` and ``TileClassifier.fit`` from concurrent threads.

Training must draw only from its own generators: fits with the same ``random_state`` give the
same networks whether they run alone or in parallel threads while other code reseeds and draws
from torch's global generator, and a fit leaves the caller's global random state untouched.
"""

import threading

import numpy as np
import pytest
import torch

from stainstyle.sst import StainStyleTransfer, TileClassifier

N_THREADS = 4


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks: one intra-op thread each, so that parallel fits do not oversubscribe."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.integers(40, 220, (8, 24, 24, 3), dtype=np.uint8), np.arange(8) % 2


def fit_sst(tiles):
    sst = StainStyleTransfer(
        width=4,
        depth=2,
        crop_size=16,
        train_batch_size=4,
        max_epochs=1,
        lambda_fp=0,
        device="cpu",
        random_state=5,
    )
    return sst.fit(tiles)


def fit_classifier(tiles, y):
    clf = TileClassifier(arch="resnet18", epochs=1, batch_size=4, device="cpu", random_state=5)
    return clf.fit(tiles, y)


def weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def run_in_threads(work, n):
    """Run ``work(k)`` in ``n`` threads while another thread reseeds torch's global generator."""
    stop = threading.Event()
    errors = []

    def disturb():
        seed = 0
        while not stop.is_set():
            torch.manual_seed(seed)
            torch.rand(16)
            seed += 1

    def guarded(k):
        try:
            work(k)
        except BaseException as error:  # reported in the main thread
            errors.append(error)

    disturber = threading.Thread(target=disturb)
    disturber.start()
    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(n)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        stop.set()
        disturber.join()
    if errors:
        raise errors[0]


def test_threaded_fits_equal_the_serial_fit(data):
    tiles, y = data
    serial = fit_sst(tiles)
    expected = {
        "generator": weights(serial.generator_),
        "discriminator": weights(serial.discriminator_),
        "classifier": weights(fit_classifier(tiles, y).model_),
    }
    results = [None] * N_THREADS

    def work(k):
        sst = fit_sst(tiles)
        results[k] = {
            "generator": weights(sst.generator_),
            "discriminator": weights(sst.discriminator_),
            "classifier": weights(fit_classifier(tiles, y).model_),
        }

    run_in_threads(work, N_THREADS)
    for result in results:
        for name, state in expected.items():
            assert_same_weights(result[name], state)


def test_fit_leaves_the_global_random_state_alone(data):
    tiles, y = data
    # The legacy global NumPy state is what a careless fit would disturb: check it is untouched.
    torch.manual_seed(1234)
    np.random.seed(1234)  # noqa: NPY002
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()  # noqa: NPY002
    sst = StainStyleTransfer(
        width=4, depth=2, crop_size=16, train_batch_size=4, max_epochs=1, device="cpu"
    )
    sst.fit(tiles, y)  # labels: a classifier is trained for the feature-preserving loss too
    assert sst.feature_loss_
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()  # noqa: NPY002
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1])
    assert after[2:] == numpy_state[2:]


def test_concurrent_transforms_of_one_model_agree(data):
    tiles, _ = data
    sst = fit_sst(tiles)
    big = np.ascontiguousarray(np.tile(tiles[0], (3, 2, 1)))  # 72x48: several windows
    expected = sst.transform(big)
    results = [None] * N_THREADS

    def work(k):
        results[k] = sst.transform(big)

    run_in_threads(work, N_THREADS)
    for result in results:
        np.testing.assert_array_equal(result, expected)
