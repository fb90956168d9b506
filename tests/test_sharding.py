"""Sharded extraction under torchrun: contiguous shards at batch boundaries, features gathered in order equal to one
process (two gloo processes), float64 moments merged across ranks equal to the moments of all rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from matchzoo.data.sharding import Moments, shard_bounds

WORLD = 2
N, BATCH = 37, 8  # shards of unequal size, a short last batch


@pytest.mark.parametrize("n, world, unit", [(37, 2, 8), (5, 4, 8), (100, 3, 1), (0, 2, 4), (64, 2, 32)])
def test_shards_cover_every_row_once_at_batch_boundaries(n, world, unit):
    bounds = shard_bounds(n, world, unit)
    assert bounds[0] == 0 and bounds[-1] == n and bounds == sorted(bounds) and len(bounds) == world + 1
    assert all(b % unit == 0 for b in bounds[:-1])
    sizes = np.diff(bounds)
    assert sizes.max() - sizes.min() <= unit


def relative_error(value: torch.Tensor, expected: torch.Tensor) -> float:
    """Frobenius-norm relative error (entries near 0, such as independent covariances, have no useful
    entry-wise relative error)."""
    return float(torch.linalg.norm(value - expected) / torch.linalg.norm(expected))


def test_moments_equal_numpy_and_merge_exactly():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(500, 6)) * [1, 2, 3, 4, 5, 6] + 1e4  # a mean far from 0: raw sums would cancel
    whole = Moments.of(torch.from_numpy(rows))
    np.testing.assert_allclose(whole.mean.numpy(), rows.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(whole.covariance().numpy(), np.cov(rows, rowvar=False), rtol=1e-11)
    merged = Moments.empty(6)
    for low, high in ((0, 1), (1, 133), (133, 133), (133, 500)):
        merged = merged.merge(Moments.of(torch.from_numpy(rows[low:high])))
    assert merged.n == 500
    assert relative_error(merged.mean, whole.mean) < 1e-14
    assert relative_error(merged.covariance(), whole.covariance()) < 1e-12
    raw = (rows.T @ rows - 500 * np.outer(rows.mean(0), rows.mean(0))) / 499  # what raw sums would give
    assert np.linalg.norm(raw - np.cov(rows, rowvar=False)) / np.linalg.norm(np.cov(rows, rowvar=False)) > 1e-10


def _problem():
    from matchzoo.data.datasets import TensorImages

    class Recording(TensorImages):  # which rows this process read
        def __getitem__(self, index):
            self.read.append(index)
            return super().__getitem__(index)

    generator = torch.Generator().manual_seed(0)
    images = Recording(torch.rand(N, 1, 8, 8, generator=generator) * 2 - 1)
    images.read = []
    return images


def _features(images, **kwargs):
    import matchzoo
    from matchzoo.data.features import extract_features

    return extract_features(matchzoo.make_feature_space("random_conv"), images, BATCH, progress=False, **kwargs)


def _checkpoint_images():
    import matchzoo
    from matchzoo.samples import CheckpointSamples

    torch.manual_seed(0)
    generator = matchzoo.make_generator("mlp", image_shape=(1, 8, 8), noise_dim=8, width=32, num_classes=3).eval()
    return CheckpointSamples(generator, 300, seed=2)


def _worker(rank, store, out_dir):
    import torch.distributed as dist

    from matchzoo.data import sharding

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        outside = _features(_problem())  # not inside all_ranks: each rank extracts everything itself
        with sharding.all_ranks():
            problem = _problem()
            inside = _features(problem)
            generated = _features(_checkpoint_images())
        explicit = _features(_problem(), shard=True)
        bounds = shard_bounds(N, WORLD, BATCH)
        local = Moments.of(inside[bounds[rank] : bounds[rank + 1]].double() * 1e3 + 5e4).all_reduce()
        torch.save(
            {
                "outside": outside,
                "inside": inside,
                "generated": generated,
                "explicit": explicit,
                "moments": local,
                "read": problem.read,
            },
            Path(out_dir) / f"rank{rank}.pt",
        )
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_extract_what_one_process_extracts(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks: a convolution's float sums depend on the thread count
    try:
        expected = _features(_problem())
        expected_generated = _features(_checkpoint_images())
    finally:
        torch.set_num_threads(threads)
    shifted = expected.double() * 1e3 + 5e4
    from matchzoo.linalg import mean_cov

    mean, cov = mean_cov(shifted)
    for rank in range(WORLD):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        for key in ("outside", "inside", "explicit"):
            assert torch.equal(result[key], expected), (rank, key)
        assert torch.equal(result["generated"], expected_generated), rank
        bounds = shard_bounds(N, WORLD, BATCH)
        assert result["read"] == list(range(bounds[rank], bounds[rank + 1]))  # each rank read its shard only
        moments = result["moments"]
        assert moments.n == N
        assert relative_error(moments.mean, mean) < 1e-12 and relative_error(moments.covariance(), cov) < 1e-12
