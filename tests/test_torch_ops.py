"""The shared torch reductions against their numpy definitions, on CPU tensors.

Percentiles are exact order statistics however the sample that brackets them falls; moments
match float64 numpy within float32 rounding, exactly for small integer spreads; a product with
one shared matrix equals the batched product.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stainstyle._torch_ops import (
    SAMPLE_STRIDE,
    masked_covariance,
    masked_percentiles,
    per_tile_product,
)
from stainstyle.methods.histogram import _tile_histograms

QS = [0.0, 1.0, 37.5, 50.0, 99.0, 100.0]


def numpy_percentiles(values: np.ndarray, mask: np.ndarray | None, q: list[float]) -> np.ndarray:
    rows = values if mask is None else [row[keep] for row, keep in zip(values, mask, strict=True)]
    return np.array([np.percentile(row, q) if len(row) else [np.nan] * len(q) for row in rows])


@pytest.mark.parametrize("shape", [(1, 1), (3, 10), (4, 5000), (2, 200_000)])
@pytest.mark.parametrize("masked", [False, True])
def test_percentiles_are_numpys(shape, masked):
    rng = np.random.default_rng(shape[1])
    values = rng.normal(size=shape).astype(np.float32)
    values[:, ::7] = np.round(values[:, ::7], 1)  # ties
    mask = rng.random(shape) < 0.6 if masked else None
    if masked:
        mask[0] = False  # a row without values gives NaN
    got = masked_percentiles(
        torch.from_numpy(values), None if mask is None else torch.from_numpy(mask), QS
    )
    assert got.dtype == torch.float64 and got.shape == (shape[0], len(QS))
    np.testing.assert_allclose(got.numpy(), numpy_percentiles(values, mask, QS), rtol=0, atol=1e-6)


@pytest.mark.parametrize("outlier", [-50.0, 50.0])
def test_percentiles_exact_when_the_sample_misleads(outlier):
    """Every sampled value is an outlier: each bracket misses, widens, then sorts the row."""
    rng = np.random.default_rng(1)
    values = rng.normal(size=(3, SAMPLE_STRIDE * 500)).astype(np.float32)
    values[:, ::SAMPLE_STRIDE] = outlier
    mask = np.ones(values.shape, dtype=bool)
    mask[1, 1::3] = False
    got = masked_percentiles(torch.from_numpy(values), torch.from_numpy(mask), QS)
    np.testing.assert_array_equal(got.numpy(), numpy_percentiles(values, mask, QS))


def test_percentiles_exact_when_a_narrow_bracket_misses(monkeypatch):
    """A sample biased by a little: the sixteen-fold bracket finds the ranks without a sort."""
    from stainstyle import _torch_ops

    n = SAMPLE_STRIDE * 4000
    values = np.linspace(0.0, 1.0, n, dtype=np.float32)
    # The sampled values sit 3 % above their ranks' values: beyond the first bracket (0.7 %).
    values[::SAMPLE_STRIDE] = np.minimum(values[::SAMPLE_STRIDE] + 0.03, 1.0)
    hits = []

    def inside_bracket(*args):
        found, hit = inside(*args)
        hits.append(hit.tolist())
        return found, hit

    inside = _torch_ops._inside_bracket
    monkeypatch.setattr(_torch_ops, "_inside_bracket", inside_bracket)
    monkeypatch.setattr(torch.Tensor, "sort", no_whole_sort(torch.Tensor.sort, n))
    got = masked_percentiles(torch.from_numpy(values[None]), None, [1.0, 99.0])
    np.testing.assert_array_equal(got.numpy()[0], np.percentile(values, [1.0, 99.0]))
    assert [False] in hits and hits[-1] == [True]  # missed, then found when widened


def no_whole_sort(sort, n):
    def checked(tensor, *args, **kwargs):
        assert tensor.shape[-1] < n, "a row was sorted whole"
        return sort(tensor, *args, **kwargs)

    return checked


def test_percentiles_apply_the_monotone_map_to_order_statistics():
    values = np.arange(11, dtype=np.float32)[None]
    got = masked_percentiles(torch.from_numpy(values), None, [25.0], torch.exp)
    # Between the 2nd and 3rd values: exp applied to them, then interpolated.
    np.testing.assert_allclose(got.numpy(), [[np.exp(2.0) + 0.5 * (np.exp(3.0) - np.exp(2.0))]])


def test_percentiles_leave_the_values_and_mask_unchanged():
    values = torch.randn(2, 3000)
    mask = torch.rand(2, 3000) < 0.5
    before = values.clone(), mask.clone()
    masked_percentiles(values, mask, QS)
    assert torch.equal(values, before[0]) and torch.equal(mask, before[1])


@pytest.mark.parametrize("masked", [False, True])
def test_covariance_is_numpys(masked):
    rng = np.random.default_rng(3)
    values = (rng.random((3, 10_000, 3)) * 5 + np.array([0.0, 2.0, 4.0])).astype(np.float32)
    mask = rng.random((3, 10_000)) < 0.3 if masked else np.ones((3, 10_000), dtype=bool)
    count, mean, covariance = masked_covariance(
        torch.from_numpy(values), torch.from_numpy(mask) if masked else None
    )
    for i in range(3):
        used = values[i][mask[i]].astype(np.float64)
        assert count[i] == len(used)
        np.testing.assert_allclose(mean[i].numpy(), used.mean(0), rtol=1e-6)
        np.testing.assert_allclose(
            covariance[i].numpy(), np.cov(used.T, ddof=0), rtol=1e-5, atol=1e-6
        )


def test_covariance_of_converted_pixels_never_holds_them_whole():
    rng = np.random.default_rng(4)
    pixels = torch.from_numpy(rng.integers(1, 256, (2, 100_000, 3), dtype=np.uint8))
    mask = torch.from_numpy(rng.random((2, 100_000)) < 0.5)
    shapes = []

    def log(block):
        shapes.append(tuple(block.shape))
        return block.to(torch.float32).log()

    by_blocks = masked_covariance(pixels, mask, log)
    whole = masked_covariance(pixels.to(torch.float32).log(), mask)
    for got, expected in zip(by_blocks, whole, strict=True):
        torch.testing.assert_close(got, expected)
    assert all(shape[1] < pixels.shape[1] for shape in shapes)


def test_covariance_exact_for_a_spread_at_the_uniform_limit():
    """Half the pixels one gray level up: a variance of exactly 0.25 (std 0.5)."""
    pixels = torch.full((1, 4096, 3), 117.0)
    pixels[0, ::2] += 1
    _, mean, covariance = masked_covariance(pixels, None)
    assert torch.equal(
        covariance.diagonal(dim1=1, dim2=2), torch.full((1, 3), 0.25, dtype=torch.float64)
    )
    assert torch.equal(mean, torch.full((1, 3), 117.5, dtype=torch.float64))


def test_covariance_of_a_tile_without_pixels_is_nan():
    count, mean, covariance = masked_covariance(
        torch.rand(2, 100, 3), torch.zeros(2, 100, dtype=torch.bool)
    )
    assert (count == 0).all() and mean.isnan().all() and covariance.isnan().all()


def test_per_tile_product_with_one_shared_matrix_equals_the_batched_product():
    pixels = torch.randn(4, 300, 3)
    matrices = torch.randn(4, 3, 2)
    torch.testing.assert_close(per_tile_product(pixels, matrices), pixels @ matrices)
    shared = matrices[:1].expand(4, 3, 2)
    torch.testing.assert_close(per_tile_product(pixels, shared), pixels @ shared)
    torch.testing.assert_close(per_tile_product(pixels, matrices[:1]), pixels @ matrices[:1])


@pytest.mark.parametrize("masked", [False, True])
def test_tile_histograms_are_equal_by_tile_and_by_batch(masked):
    """Both ways of counting give numpy's counts, in int64; the batch's over several blocks."""
    rng = np.random.default_rng(5)
    n, width = 5, 30_000  # blocks of 13107 pixels per tile on the CPU: three of them
    pixels = rng.integers(0, 256, (n, width, 3), dtype=np.uint8)
    mask = rng.random((n, width)) < 0.4 if masked else np.ones((n, width), dtype=bool)
    by_mask = torch.from_numpy(mask) if masked else None
    for per_tile in (True, False):
        counts = _tile_histograms(torch.from_numpy(pixels), by_mask, per_tile=per_tile)
        assert counts.dtype == torch.int64 and counts.shape == (n, 3, 256)
        for i in range(n):
            for c in range(3):
                np.testing.assert_array_equal(
                    counts[i, c].numpy(), np.bincount(pixels[i][mask[i]][:, c], minlength=256)
                )
