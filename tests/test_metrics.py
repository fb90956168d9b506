"""Oracle tests for matchzoo.metrics: streaming float64 moments, the cached FD reference, FDr^k,
KID (closed-form Gaussian population value) and precision/recall/density/coverage on constructed cases."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from matchzoo import linalg
from matchzoo.errors import MatchzooError
from matchzoo.metrics import fdrk
from matchzoo.metrics.frechet import FrechetReference, GaussianStats, StreamingMoments
from matchzoo.metrics.kid import kernel_inception_distance, mmd2_unbiased
from matchzoo.metrics.prdc import density_coverage, knn_squared_radii, prdc, precision_recall

# ---------------------------------------------------------------- streaming statistics


def test_streaming_moments_match_numpy_with_large_offset():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 6)) * 1e-2 + 1e4  # raw sum-of-squares would cancel catastrophically
    moments = StreamingMoments()
    for start, stop in [(0, 1), (1, 300), (300, 301), (301, 1000)]:
        moments.update(torch.from_numpy(x[start:stop]))
    stats = moments.stats()
    assert stats.count == 1000
    np.testing.assert_allclose(stats.mean.numpy(), x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov.numpy(), np.cov(x, rowvar=False), rtol=1e-9, atol=1e-16)


def test_streaming_moments_merge_and_pickle():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(500, 5)) * 3 + 50
    left, right = StreamingMoments().update(x[:120]), StreamingMoments().update(x[120:] - 0.0)
    right = pickle.loads(pickle.dumps(right))  # accumulators travel between processes
    merged = StreamingMoments().merge(left).merge(right).stats()
    np.testing.assert_allclose(merged.mean.numpy(), x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(merged.cov.numpy(), np.cov(x, rowvar=False), rtol=1e-10)
    assert merged.count == 500


def test_streaming_moments_errors():
    moments = StreamingMoments().update(np.ones((3, 4)))
    with pytest.raises(ValueError, match="dimension changed"):
        moments.update(np.ones((3, 5)))
    with pytest.raises(ValueError, match="at least 2"):
        StreamingMoments().update(np.ones((1, 4))).stats()
    with pytest.raises(ValueError, match="NaN"):
        StreamingMoments().update(np.full((2, 2), np.nan))


def test_reference_fast_path_agrees_with_linalg():
    rng = np.random.default_rng(1)
    ref, gen = rng.normal(size=(500, 12)), rng.normal(0.3, 1.2, size=(400, 12))
    reference = FrechetReference.from_features(ref)
    expected = linalg.frechet_distance(gen, ref)
    assert reference.distance_to_features(gen) == pytest.approx(expected, rel=1e-10)
    assert reference.distance_to_stats(GaussianStats.from_features(gen, batch_size=33)) == pytest.approx(
        expected, rel=1e-10
    )
    small = gen[:8]  # n < D: dual form against the cached reference
    with pytest.warns(linalg.FewSamplesWarning):
        assert reference.distance_to_features(small) == pytest.approx(linalg.frechet_distance(small, ref), rel=1e-9)


# ---------------------------------------------------------------- FDr^k


def test_fdr_table_arithmetic_and_errors():
    table = fdrk.fdr_table({"a": 4.0, "b": 1.0}, {"a": 2.0, "b": 4.0, "c": 9.0})
    assert table == {"fdr/a": 2.0, "fdr/b": 0.25, "fdr_k": 1.125}
    with pytest.raises(MatchzooError, match="no held-out FD baseline for space"):
        fdrk.fdr_table({"x": 1.0}, {"a": 1.0})
    with pytest.raises(MatchzooError, match="positive baseline"):
        fdrk.fdr_table({"a": 1.0}, {"a": 0.0})


def test_heldout_real_gives_fdr_near_one_and_shift_gives_more():
    rng = np.random.default_rng(2)
    scale = np.linspace(0.5, 2.0, 8)
    draw = lambda n, shift=0.0: torch.from_numpy(rng.normal(size=(n, 8)) * scale + shift)  # noqa: E731
    train, heldout = draw(20000), draw(400)
    reference = FrechetReference.from_features(train)
    ratios = []
    for _ in range(5):
        fd_gen, fd_held, n = fdrk.matched_frechet_distances(draw(1000), heldout, reference)
        assert n == 400
        ratios.append(fd_gen / fd_held)
    assert 0.5 < np.mean(ratios) < 1.6
    fd_gen, fd_held, _ = fdrk.matched_frechet_distances(draw(400, shift=0.5), heldout, reference)
    assert fd_gen / fd_held > 5.0


def test_heldout_baseline_is_cached_per_key_and_checks_size():
    rng = np.random.default_rng(3)
    train, heldout = torch.from_numpy(rng.normal(size=(300, 4))), torch.from_numpy(rng.normal(size=(50, 4)))
    key = ("space-fp", "data-fp", object())
    reference = fdrk.FrechetReference.from_features(train)
    first = fdrk.heldout_frechet_distance(heldout, reference, 40, seed=1, cache_key=key)
    assert fdrk.heldout_frechet_distance(heldout + 100.0, reference, 40, seed=1, cache_key=key) == first  # memoised
    assert fdrk.heldout_frechet_distance(heldout + 100.0, reference, 40, seed=1) > first  # no key: recomputed
    # memoised per reference object: another reference (of the same data) never reuses the first one's value
    other = fdrk.FrechetReference.from_features(train)
    assert fdrk.heldout_frechet_distance(heldout + 100.0, other, 40, seed=1, cache_key=key) > first
    assert fdrk.heldout_frechet_distance(heldout + 100.0, train, 40, seed=1, cache_key=key) > first  # features
    with pytest.raises(MatchzooError, match="sample size 51"):
        fdrk.heldout_frechet_distance(heldout, train, 51)


# ---------------------------------------------------------------- KID


def expected_poly_kernel(m1, s1, m2, s2):
    """E[(x.y/d + 1)^3] for independent x ~ N(m1, s1), y ~ N(m2, s2) (Gaussian moment identities)."""
    d = m1.shape[0]
    a = m1 @ m2
    e1 = a
    e2 = np.trace((s1 + np.outer(m1, m1)) @ (s2 + np.outer(m2, m2)))
    e3 = a**3 + 3 * a * (m1 @ s2 @ m1 + m2 @ s1 @ m2 + np.trace(s1 @ s2)) + 6 * m1 @ s2 @ s1 @ m2
    return e3 / d**3 + 3 * e2 / d**2 + 3 * e1 / d + 1


def test_kid_matches_gaussian_closed_form():
    rng = np.random.default_rng(4)
    d = 4
    m1, m2 = np.zeros(d), np.full(d, 0.6)
    s1, s2 = np.eye(d), np.diag([0.5, 1.0, 1.5, 2.0])
    population = (
        expected_poly_kernel(m1, s1, m1, s1)
        + expected_poly_kernel(m2, s2, m2, s2)
        - 2 * expected_poly_kernel(m1, s1, m2, s2)
    )
    x = rng.multivariate_normal(m1, s1, 10000)
    y = rng.multivariate_normal(m2, s2, 10000)
    kid = kernel_inception_distance(x, y, subsets=10, subset_size=1000, seed=0)
    assert kid.subset_size == 1000 and kid.subsets == 10
    assert kid.mean == pytest.approx(population, rel=0.1)


def test_kid_identical_distributions_near_zero():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(2000, 6)), rng.normal(size=(2000, 6))
    kid = kernel_inception_distance(x, y, subsets=20, subset_size=300)
    shifted = kernel_inception_distance(x, y + 0.5, subsets=20, subset_size=300)
    assert abs(kid.mean) < 3 * kid.std / np.sqrt(20) + 1e-3
    assert shifted.mean > 20 * max(abs(kid.mean), kid.std / np.sqrt(20))


def test_mmd2_unbiased_matches_direct_formula_and_is_chunk_invariant():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(37, 5)), rng.normal(0.2, 1.0, size=(37, 5))
    kxx, kyy, kxy = ((a @ b.T / 5 + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    m = 37
    direct = (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    assert mmd2_unbiased(tx, ty, chunk=5) == pytest.approx(direct, rel=1e-12)
    assert kernel_inception_distance(x, y, subsets=1, subset_size=100).mean == pytest.approx(direct, rel=1e-12)


# ---------------------------------------------------------------- precision / recall / density / coverage


def test_prdc_constructed_one_dimensional_case():
    real = np.arange(10.0)[:, None]  # k=1 radii: every real ball has radius 1
    fake = np.array([[0.5], [20.0]])
    precision, recall = precision_recall(real, fake, k=1)
    density, coverage = density_coverage(real, fake, k=1)
    assert precision == 0.5  # 0.5 lies in the balls of 0 and 1; 20 in none
    assert recall == 1.0  # fake radius 19.5 around 0.5 covers all of 0..9
    assert density == 1.0  # (2 balls + 0 balls) / (k * M) = 2 / 2
    assert coverage == 0.2  # only 0 and 1 have a fake sample within radius 1


def test_prdc_identical_and_disjoint_sets():
    x = np.random.default_rng(7).normal(size=(200, 3))
    same = prdc(x, x)
    assert same.precision == 1.0 and same.recall == 1.0 and same.coverage == 1.0
    far = prdc(x, x + 100.0)
    assert far == type(far)(0.0, 0.0, 0.0, 0.0)


def brute_force_prdc(real, fake, k_pr, k_dc):
    rr, ff, fr = cdist(real, real), cdist(fake, fake), cdist(fake, real)
    r_pr, s_pr = np.sort(rr, 1)[:, k_pr], np.sort(ff, 1)[:, k_pr]
    r_dc = np.sort(rr, 1)[:, k_dc]
    precision = (fr <= r_pr[None]).any(1).mean()
    recall = (fr.T <= s_pr[None]).any(1).mean()
    density = (fr <= r_dc[None]).sum() / (k_dc * len(fake))
    coverage = (fr.min(0) <= r_dc).mean()
    return precision, recall, density, coverage


def test_chunked_prdc_matches_brute_force():
    rng = np.random.default_rng(8)
    real, fake = rng.normal(size=(150, 4)), rng.normal(0.3, 1.3, size=(120, 4))
    result = prdc(real, fake, chunk=32)
    expected = brute_force_prdc(real, fake, 3, 5)
    np.testing.assert_allclose([result.precision, result.recall, result.density, result.coverage], expected, rtol=1e-12)


def test_knn_radius_checks_k():
    with pytest.raises(ValueError, match="k-NN"):
        knn_squared_radii(torch.zeros(3, 2, dtype=torch.float64), k=3)
