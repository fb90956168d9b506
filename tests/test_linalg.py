"""Oracle tests for matchzoo.linalg: closed-form Gaussian FDs, an independent SciPy computation,
the n < D dual and cross forms, the cached-factor fast path, and finite pseudo-inverse gradients."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from matchzoo import linalg


def scipy_frechet(mu1, s1, mu2, s2) -> float:
    """Independent oracle: the textbook formula with scipy.linalg.sqrtm of the product (fine at small D)."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean).real)


def numpy_frechet_psd(mu1, s1, mu2, s2) -> float:
    """Oracle for singular covariances: symmetric root via numpy eigh, spectrum of root @ s2 @ root."""
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root @ s2 @ root)
    inner[inner < len(inner) * np.finfo(float).eps * inner.max()] = 0.0  # numerical rank: round-off null space
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * np.sqrt(np.clip(inner, 0, None)).sum())


def random_spd(rng, d, condition=10.0):
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (q * np.geomspace(1.0, condition, d)) @ q.T


def test_closed_form_commuting_gaussians():
    rng = np.random.default_rng(0)
    d = 12
    a, b = rng.uniform(0.1, 4.0, d), rng.uniform(0.1, 4.0, d)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))  # same eigenbasis -> commuting covariances
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    value = linalg.frechet_distance_from_stats(mu1, (q * a) @ q.T, mu2, (q * b) @ q.T)
    assert value == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("d", [8, 64])
def test_matches_scipy_oracle_well_conditioned(d):
    rng = np.random.default_rng(d)
    s1, s2 = random_spd(rng, d), random_spd(rng, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = scipy_frechet(mu1, s1, mu2, s2)
    assert linalg.frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    factor = linalg.psd_factor(torch.from_numpy(s1))
    assert linalg.frechet_distance_from_stats(mu1, s1, mu2, s2, factor1=factor) == pytest.approx(expected, rel=1e-8)
    root = linalg.psd_sqrt(torch.from_numpy(s1))
    assert linalg.frechet_distance_from_stats(mu1, s1, mu2, s2, factor1=root) == pytest.approx(expected, rel=1e-8)


def test_features_match_oracle_and_are_symmetric():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(300, 10)), rng.normal(0.3, 1.5, size=(200, 10))
    expected = scipy_frechet(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert linalg.frechet_distance(x, y) == pytest.approx(expected, rel=1e-8)
    assert linalg.frechet_distance(y, x) == pytest.approx(expected, rel=1e-8)


def test_identical_sets_give_zero():
    x = np.random.default_rng(2).normal(size=(400, 16)) * 3 + 5
    assert abs(linalg.frechet_distance(x, x)) < 1e-9
    assert (
        abs(linalg.frechet_distance_from_stats(x.mean(0), np.cov(x, rowvar=False), x.mean(0), np.cov(x, rowvar=False)))
        < 1e-9
    )


def test_one_side_below_dimension_uses_exact_dual_form_and_warns():
    rng = np.random.default_rng(3)
    small, large = rng.normal(size=(20, 40)), rng.normal(0.2, 1.0, size=(500, 40))
    expected = numpy_frechet_psd(large.mean(0), np.cov(large, rowvar=False), small.mean(0), np.cov(small, rowvar=False))
    with pytest.warns(linalg.FewSamplesWarning, match="n=20 samples in D=40"):
        value = linalg.frechet_distance(small, large)
    assert value == pytest.approx(expected, rel=1e-8)


def test_both_sides_below_dimension_cross_form():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(15, 50)), rng.normal(0.5, 2.0, size=(25, 50))
    expected = numpy_frechet_psd(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    with pytest.warns(linalg.FewSamplesWarning):
        assert linalg.frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)


def test_no_warning_with_enough_samples():
    x = np.random.default_rng(5).normal(size=(64, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error", linalg.FewSamplesWarning)
        linalg.frechet_distance(x, x + 1)


def test_singular_covariances_are_finite_never_nan():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(100, 6))
    x[:, 2] = 1.0  # constant feature: singular covariance, Cholesky fails, PSD root fallback
    y = rng.normal(size=(100, 6))
    value = linalg.frechet_distance(x, y)
    expected = numpy_frechet_psd(y.mean(0), np.cov(y, rowvar=False), x.mean(0), np.cov(x, rowvar=False))
    assert np.isfinite(value) and value == pytest.approx(expected, rel=1e-8)
    s = np.cov(x, rowvar=False)
    assert linalg.frechet_distance_from_stats(x.mean(0), s, y.mean(0), np.cov(y, rowvar=False)) == pytest.approx(
        expected, rel=1e-8
    )


def test_nan_inputs_raise():
    x = np.ones((10, 3))
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        linalg.frechet_distance(x, np.ones((10, 3)))
    with pytest.raises(ValueError, match="NaN"):
        linalg.frechet_distance_from_stats(np.zeros(3), np.eye(3), np.array([np.nan, 0, 0]), np.eye(3))
    with pytest.raises(ValueError, match="same D"):
        linalg.frechet_distance(np.ones((10, 3)), np.ones((10, 4)))


def test_psd_factor_is_cholesky_when_definite_and_root_when_singular():
    rng = np.random.default_rng(7)
    spd = torch.from_numpy(random_spd(rng, 6))
    factor = linalg.psd_factor(spd)
    assert torch.allclose(factor, torch.tril(factor)) and torch.allclose(factor @ factor.T, spd, atol=1e-12)
    singular = torch.from_numpy(np.diag([1.0, 2.0, 0.0]))
    factor = linalg.psd_factor(singular)
    assert torch.allclose(factor @ factor.T, singular, atol=1e-12)


def test_trace_sqrt_psd_gradient_matches_finite_differences():
    rng = np.random.default_rng(8)
    m = torch.from_numpy(random_spd(rng, 5, condition=5.0)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: linalg.trace_sqrt_psd(linalg.symmetrize(a)), (m,))


def test_dual_form_gradient_is_finite_and_matches_finite_differences():
    """Centring puts an exact null eigenvalue in the n x n matrix (rows of X_c sum to zero); in floating point
    it is +-1e-15, and sqrt(round-off) ~ 3e-8 would swamp a central difference at eps = 1e-6. The reference
    derivative is therefore taken on the same trace written without that eigenvalue: X_c = Q Q^T X with Q an
    orthonormal basis of 1-perp, and the nonzero spectrum of X_c R X_c^T equals that of the
    (n-1) x (n-1) matrix (Q^T X) R (Q^T X)^T, whose eigenvalues are well separated from 0."""
    rng = np.random.default_rng(9)
    ref_cov = torch.from_numpy(random_spd(rng, 12))
    x = torch.from_numpy(rng.normal(size=(6, 12))).requires_grad_(True)  # n < D: singular covariance
    basis = torch.from_numpy(np.linalg.svd(np.eye(6) - 1 / 6)[0][:, :5])  # (6, 5), orthonormal basis of 1-perp

    def trace_term(x):
        return linalg.trace_sqrt_product_dual(x - x.mean(0), ref_cov)

    def reduced_trace_term(x):  # same value, no null eigenvalue
        reduced = basis.T @ x  # (5, 12)
        return linalg.trace_sqrt_psd(reduced @ ref_cov @ reduced.T / 5)

    (grad,) = torch.autograd.grad(trace_term(x), x)
    assert torch.isfinite(grad).all()
    with torch.no_grad():
        # equal up to the sqrt(round-off) that the null eigenvalue adds to the centred form (~2e-8 here)
        assert float(reduced_trace_term(x)) == pytest.approx(float(trace_term(x)), rel=1e-8)
        eigenvalues = torch.linalg.eigvalsh((basis.T @ x) @ ref_cov @ (basis.T @ x).T / 5)
    assert float(eigenvalues.min()) > 1e-2 * float(eigenvalues.max())  # well-posed central difference
    eps = 1e-6
    for _ in range(3):
        direction = torch.from_numpy(rng.normal(size=(6, 12)))
        with torch.no_grad():
            numeric = (reduced_trace_term(x + eps * direction) - reduced_trace_term(x - eps * direction)) / (2 * eps)
        assert float((grad * direction).sum()) == pytest.approx(float(numeric), rel=1e-6)


def test_eval_path_equals_grad_path():
    m = torch.from_numpy(random_spd(np.random.default_rng(10), 7))
    with torch.no_grad():
        no_grad = linalg.trace_sqrt_psd(m)
    with_grad = linalg.trace_sqrt_psd(m.clone().requires_grad_(True))
    assert float(no_grad) == pytest.approx(float(with_grad.detach()), rel=1e-13)


@pytest.mark.parametrize("threads", [1, 2])  # 1: LAPACK dsygst; 2: blocked torch products
def test_triangular_congruence_equals_products(threads):
    rng = np.random.default_rng(11)
    s1, s2 = torch.from_numpy(random_spd(rng, 600)), torch.from_numpy(random_spd(rng, 600))  # > one 256-block
    factor = linalg.psd_factor(s1)
    products = factor.T @ s2 @ factor
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        reduced = linalg._cholesky_congruence(s2, factor)
        fast = linalg.trace_sqrt_product(s2, factor)
    finally:
        torch.set_num_threads(previous)
    assert reduced is not None  # the fast path applies: lower-triangular factor
    np.testing.assert_allclose(reduced.tril().numpy(), products.tril().numpy(), rtol=1e-10, atol=1e-10)
    slow = linalg.trace_sqrt_psd(products)
    assert float(fast) == pytest.approx(float(slow), rel=1e-12)
    assert linalg._cholesky_congruence(s2, linalg.psd_sqrt(s1)) is None  # symmetric root: products
    with_grad = linalg.trace_sqrt_product(s2.clone().requires_grad_(True), factor)  # differentiable path
    assert with_grad.requires_grad and float(with_grad.detach()) == pytest.approx(float(slow), rel=1e-12)


def test_blocked_congruence_float32_and_ragged_blocks():
    rng = np.random.default_rng(14)
    s1, s2 = torch.from_numpy(random_spd(rng, 77)), torch.from_numpy(random_spd(rng, 77))
    factor = linalg.psd_factor(s1)
    expected = (factor.T @ s2 @ factor).tril()
    for block in (1, 10, 76, 77, 500):
        got = linalg._blocked_congruence(s2, factor, block=block).tril()
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-11, atol=1e-11)
    got32 = linalg._blocked_congruence(s2.float(), factor.float(), block=32).tril()
    np.testing.assert_allclose(
        got32.double().numpy(), expected.numpy(), rtol=1e-4, atol=1e-4 * float(expected.abs().max())
    )


def test_check_finite_uses_sum_but_never_misses_or_invents():
    huge = torch.full((4, 4), 1e308, dtype=torch.float64)  # finite entries whose sum overflows
    linalg.check_finite(huge=huge)
    for bad in (float("nan"), float("inf"), -float("inf")):
        m = torch.eye(4, dtype=torch.float64)
        m[2, 1] = bad
        with pytest.raises(ValueError, match="sigma2 contains NaN or inf"):
            linalg.check_finite(mu2=torch.zeros(4), sigma2=m)


def test_congruence_with_known_triangle_and_noncontiguous_sigma():
    rng = np.random.default_rng(12)
    s1, s2 = torch.from_numpy(random_spd(rng, 70)), torch.from_numpy(random_spd(rng, 70))
    factor = linalg.psd_factor(s1)
    assert linalg.is_lower_triangular(factor) and not linalg.is_lower_triangular(linalg.psd_sqrt(s1))
    expected = float(linalg.trace_sqrt_psd(factor.T @ s2 @ factor))
    for sigma in (s2, s2.T, s2.T.contiguous()):  # C-ordered, F-ordered (a transposed view), copied
        for lower in (None, True):
            assert float(linalg.trace_sqrt_product(sigma, factor, lower=lower)) == pytest.approx(expected, rel=1e-12)
    assert linalg._cholesky_congruence(s2, factor, lower=False) is None  # caller says not triangular: products


def test_frechet_reference_checks_reference_once_and_samples_every_time():
    from matchzoo.metrics.frechet import FrechetReference, GaussianStats

    rng = np.random.default_rng(13)
    cov = torch.from_numpy(random_spd(rng, 5))
    bad = cov.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="reference_cov contains NaN"):
        FrechetReference(GaussianStats(torch.zeros(5, dtype=torch.float64), bad, 10)).distance_to_stats(
            GaussianStats(torch.zeros(5, dtype=torch.float64), cov, 10)
        )
    reference = FrechetReference(GaussianStats(torch.zeros(5, dtype=torch.float64), cov, 10))
    assert reference.distance_to_stats(GaussianStats(torch.zeros(5, dtype=torch.float64), cov, 10)) == pytest.approx(
        0.0, abs=1e-10
    )
    with pytest.raises(ValueError, match="cov contains NaN"):
        reference.distance_to_stats(GaussianStats(torch.zeros(5, dtype=torch.float64), bad, 10))
    with pytest.raises(ValueError, match="shapes disagree"):
        reference.distance_to_stats(GaussianStats(torch.zeros(4, dtype=torch.float64), cov[:4, :4], 10))


def test_mean_cov_chunked_equals_numpy_and_casts_one_chunk_at_a_time():
    """Two passes over chunks of rows: NumPy's float64 mean/cov to 1e-12 (chunk sizes that do and do not divide N),
    N <= chunk is mean_cov itself (bit-identical), and bad shapes fail like mean_cov."""
    x = torch.randn(1001, 7, generator=torch.Generator().manual_seed(0)) * 3 + 5  # float32, offset mean
    expected_mu = np.mean(x.double().numpy(), axis=0)
    expected_cov = np.cov(x.double().numpy(), rowvar=False)
    for chunk in (1, 100, 1000, 1001):
        mu, cov = linalg.mean_cov_chunked(x, chunk=chunk)
        assert mu.dtype == cov.dtype == torch.float64
        assert np.allclose(mu.numpy(), expected_mu, rtol=1e-12, atol=1e-12)
        assert np.allclose(cov.numpy(), expected_cov, rtol=1e-12, atol=1e-12)
    small_mu, small_cov = linalg.mean_cov_chunked(x, chunk=5000)
    mu, cov = linalg.mean_cov(x)
    assert torch.equal(small_mu, mu) and torch.equal(small_cov, cov)
    with pytest.raises(ValueError, match="N >= 2"):
        linalg.mean_cov_chunked(x[:1])
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        linalg.mean_cov_chunked(x, chunk=0)
