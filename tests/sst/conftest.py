import numpy as np
import pytest
from scipy.ndimage import gaussian_filter


def smooth_tiles(n, size=32, seed=0):
    """Stand-in H&E-like tiles: smooth random stain amounts rendered with two colours."""
    rng = np.random.default_rng(seed)
    fields = gaussian_filter(rng.random((n, 2, size, size)), sigma=(0, 0, 2, 2))
    fields = (fields - fields.min()) / (np.ptp(fields) + 1e-9)
    hematoxylin = np.array([0.65, 0.70, 0.29])
    eosin = np.array([0.07, 0.99, 0.11])
    od = 1.5 * (fields[:, 0, ..., None] * hematoxylin + fields[:, 1, ..., None] * eosin) + 0.2
    return np.clip(np.rint(240 * np.exp(-od)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def tiles():
    return smooth_tiles(12)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run these tests' tiny networks on one thread.

    At these sizes OpenMP synchronization costs more than a second thread gains, and much more
    when other processes share the cores.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
