r"""Linear algebra shared by objectives and metrics: float64 moments, PSD square roots, trace-sqrt.

The Fréchet distance between :math:`\mathcal N(\mu_1,\Sigma_1)` and :math:`\mathcal N(\mu_2,\Sigma_2)` is

.. math::  \|\mu_1-\mu_2\|^2 + \operatorname{Tr}\Sigma_1 + \operatorname{Tr}\Sigma_2
           - 2\operatorname{Tr}\big(\Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2}\big)^{1/2}.

The trace term is computed from the eigenvalues of the *symmetric* PSD matrix
:math:`\Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2}` (clamped at 0), never from ``scipy.linalg.sqrtm`` of the
non-symmetric product: eigenvalues of a symmetric matrix are real, so the result is never complex.

Any factor :math:`F` with :math:`FF^\top=\Sigma_1` works, not only the symmetric square root: the
nonzero eigenvalues of :math:`F^\top\Sigma_2F` are those of :math:`\Sigma_1\Sigma_2`. The fast path caches
the Cholesky factor of the reference covariance (one ``O(D^3/3)`` factorisation, reused for every
evaluation; :func:`psd_factor` falls back to the symmetric square root when the matrix is singular), so
one FD costs the congruence :math:`L^\top\Sigma_2L` (using the triangle of ``L``: LAPACK ``dsygst`` on one
CPU thread, block products otherwise; ~``D^3`` flops instead of ``4D^3`` for two products; plain products
with gradients) and one symmetric eigenvalue problem (``eigvalsh``, no eigenvectors).

When one side is an ``n``-sample empirical covariance :math:`\Sigma = X_c^\top X_c/(n-1)` with
``n < D``, the nonzero eigenvalues of :math:`R^{1/2}\Sigma R^{1/2}` equal those of the ``n x n`` matrix
:math:`X_c R X_c^\top/(n-1)` (the *dual form*): exact, and cheaper. When *both* sides are samples the
trace term is the nuclear norm :math:`\|X_c Y_c^\top\|_*/\sqrt{(n-1)(m-1)}` of the ``n x m`` cross
matrix, so no ``D x D`` matrix is ever formed. Every FD and Bures² of the package is assembled by one function,
:func:`frechet_sum`, from two :class:`Gaussian` sides (mean, covariance and/or centred samples), and
:func:`frechet_trace_term` is the one place that chooses among these forms.

Gradients: :math:`d\operatorname{Tr}M^{1/2} = \tfrac12\operatorname{Tr}(M^{-1/2}dM)` diverges on zero
eigenvalues, which always exist when the sample count is below the dimension (and for the centring
direction in the dual form). Along those null directions the first-order change of ``M`` is zero for
perturbations of the samples, so :class:`_TraceSqrtPSD` uses the pseudo-inverse square root (coefficient
0 for eigenvalues below a relative tolerance): finite, and exact wherever the function is differentiable.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]


class FewSamplesWarning(UserWarning):
    """An FD was computed from fewer samples than dimensions: exact for the fitted Gaussians, strongly biased."""


def as_float64_tensor(x: ArrayLike) -> torch.Tensor:
    """A detached float64 CPU-or-same-device tensor view of ``x`` (numpy arrays go to CPU)."""
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.asarray(x, dtype=np.float64))
    return torch.as_tensor(x).detach().to(torch.float64)


def mean_cov(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(D,)`` and unbiased (n-1) covariance ``(D, D)`` of ``x`` ``(N, D)``, in float64.

    Keeps the autograd graph when ``x`` requires grad.
    """
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need an (N, D) array with N >= 2 to estimate a covariance, got shape {tuple(x.shape)}")
    x = x.to(torch.float64)
    mu = x.mean(dim=0)
    centered = x - mu
    return mu, centered.T @ centered / (x.shape[0] - 1)


def mean_cov_chunked(x: torch.Tensor, chunk: int = 16_384) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`mean_cov` of a large detached ``x`` ``(N, D)`` without a float64 copy of it: two passes over
    ``chunk`` rows (the mean, then the centred outer products), each chunk cast on its own, so the extra memory is
    a few ``chunk x D`` float64 blocks and ``D x D`` instead of two ``N x D`` copies (42 GB for ImageNet's
    1.28M x 2048 Inception features; measured at 300,000 x 512 float32: 204 MB above the features instead of
    2,356 MB). Equal to :func:`mean_cov` up to summation order; N <= ``chunk`` calls it directly."""
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need an (N, D) array with N >= 2 to estimate a covariance, got shape {tuple(x.shape)}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    x = x.detach()
    n = x.shape[0]
    if n <= chunk:
        return mean_cov(x)
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    for start in range(0, n, chunk):
        total += x[start : start + chunk].to(torch.float64).sum(dim=0)
    mu = total / n
    outer = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=x.device)
    for start in range(0, n, chunk):
        centered = x[start : start + chunk].to(torch.float64) - mu
        outer += centered.T @ centered
    return mu, outer / (n - 1)


def symmetrize(m: torch.Tensor) -> torch.Tensor:
    return 0.5 * (m + m.transpose(-1, -2))


def psd_sqrt(m: torch.Tensor) -> torch.Tensor:
    """Symmetric PSD square root of a symmetric matrix (negative eigenvalues from round-off -> 0)."""
    evals, evecs = torch.linalg.eigh(symmetrize(m))
    return (evecs * evals.clamp_min(0).sqrt()) @ evecs.T


def psd_factor(m: torch.Tensor) -> torch.Tensor:
    """A factor ``F`` with ``F @ F.T == m``: lower Cholesky when ``m`` is positive definite, else the PSD root.

    Cholesky costs a third of an eigendecomposition; singular covariances (fewer samples than
    dimensions, constant features) take the symmetric square root instead, which is always defined.
    """
    m = symmetrize(m)
    factor, info = torch.linalg.cholesky_ex(m)
    if int(info) == 0 and bool(torch.isfinite(factor).all()):
        return factor
    return psd_sqrt(m)


def _null_tolerance(evals: torch.Tensor, size: int) -> torch.Tensor:
    """Eigenvalues below this count as zero: size * eps * largest |eigenvalue| (numerical-rank rule)."""
    return evals.abs().max().clamp_min(torch.finfo(evals.dtype).tiny) * size * torch.finfo(evals.dtype).eps


class _TraceSqrtPSD(torch.autograd.Function):
    """``Tr M^{1/2}`` for symmetric PSD ``M`` with a finite (pseudo-inverse) backward."""

    @staticmethod
    def forward(ctx, m: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if not ctx.needs_input_grad[0]:  # evaluation: eigenvalues only, ~2.5x cheaper than eigh
            return torch.linalg.eigvalsh(symmetrize(m)).clamp_min(0).sqrt().sum()
        evals, evecs = torch.linalg.eigh(symmetrize(m))
        ctx.save_for_backward(evals, evecs)
        return evals.clamp_min(0).sqrt().sum()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        evals, evecs = ctx.saved_tensors
        keep = evals > _null_tolerance(evals, evals.shape[0])
        coeff = torch.where(keep, 0.5 / evals.clamp_min(torch.finfo(evals.dtype).tiny).sqrt(), 0.0)
        return grad_out * ((evecs * coeff) @ evecs.T)


def trace_sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    r""":math:`\operatorname{Tr} M^{1/2}` of a symmetric PSD matrix, differentiable with a finite gradient."""
    return _TraceSqrtPSD.apply(m)


def numerical_rank_mask(singular_values: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Singular values above ``max(m, n) * eps * largest`` (the usual numerical-rank rule) are kept."""
    largest = singular_values.max().clamp_min(torch.finfo(singular_values.dtype).tiny)
    return singular_values > max(shape) * torch.finfo(singular_values.dtype).eps * largest


class _NuclearNorm(torch.autograd.Function):
    """``‖K‖_*`` from the singular values of ``K`` itself, gradient ``U_r V_rᵀ`` over the same numerical rank.

    Not from the eigenvalues of ``K Kᵀ``: squaring doubles the condition number, so each round-off null
    eigenvalue (~1e-16·λmax) adds √(1e-16·λmax) to the sum, 4e-6 relative for a rank-64 1024 x 1024 ``K``.
    The singular values that round-off leaves in the null space are ~1e-16·σmax, and the forward and the
    backward drop the same ones, so the value and its gradient describe the same function.
    """

    @staticmethod
    def forward(ctx, k: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if not ctx.needs_input_grad[0]:
            singular_values = torch.linalg.svdvals(k)
            return singular_values[numerical_rank_mask(singular_values, k.shape)].sum()
        left, singular_values, right = torch.linalg.svd(k, full_matrices=False)
        keep = numerical_rank_mask(singular_values, k.shape)
        ctx.save_for_backward(left[:, keep], right[keep])
        return singular_values[keep].sum()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        left, right = ctx.saved_tensors  # (m, r), (r, n)
        return grad_out * (left @ right)


def nuclear_norm(k: torch.Tensor) -> torch.Tensor:
    """Sum of the singular values of ``k`` ``(m, n)``; finite gradient also at repeated or zero singular values."""
    return _NuclearNorm.apply(k)


def trace_sqrt_product(sigma: torch.Tensor, sqrt_ref: torch.Tensor, lower: bool | None = None) -> torch.Tensor:
    r""":math:`\operatorname{Tr}(R^{1/2}\Sigma R^{1/2})^{1/2}` given a cached factor of :math:`R`.

    ``sqrt_ref`` may be :math:`R^{1/2}` (:func:`psd_sqrt`) or any ``F`` with :math:`FF^\top = R`
    (:func:`psd_factor`): the matrix used is :math:`F^\top\Sigma F`, which has the same spectrum.
    ``lower`` says whether ``sqrt_ref`` is lower-triangular (a Cholesky factor); ``None`` checks it.
    """
    if not (sigma.requires_grad or sqrt_ref.requires_grad):
        reduced = _cholesky_congruence(sigma, sqrt_ref, lower)
        if reduced is not None:  # lower triangle of L^T Σ L, evaluation only
            return torch.linalg.eigvalsh(reduced, UPLO="L").clamp_min(0).sqrt().sum()
    return trace_sqrt_psd(sqrt_ref.T @ sigma @ sqrt_ref)


def is_lower_triangular(m: torch.Tensor) -> bool:
    """Whether every entry above the diagonal is exactly zero."""
    return m.ndim == 2 and not bool(torch.triu(m, diagonal=1).any())


def _cholesky_congruence(sigma: torch.Tensor, factor: torch.Tensor, lower: bool | None = None) -> torch.Tensor | None:
    """The lower triangle of ``L^T Σ L`` for a lower-triangular ``factor`` ``L`` (the rest of the result is not
    meaningful); ``None`` when the factor is not triangular or the matrix is tiny, and the caller uses the
    products. ``lower=None`` checks the triangle.

    Both routes use the triangle of ``L`` (~``4D^3/3`` flops instead of the ``4D^3`` of two products) and
    are exact; which is faster depends on the thread pools (measured, ``benchmarks/frechet.py``):

    * one CPU thread, float64: LAPACK ``dsygst`` (SciPy's OpenBLAS), which also uses the symmetry of Σ
      (~``D^3`` flops; 290 ms against 420 ms for the products at D = 2048);
    * otherwise (several threads, GPU, float32): :func:`_blocked_congruence` in torch. With several threads
      an OpenBLAS call leaves its worker threads spinning, and they slow torch's next parallel
      ``eigvalsh`` down (D = 768: 100 ms against 63 ms for products + ``eigvalsh``).
    """
    if factor.shape[0] < 64 or not (is_lower_triangular(factor) if lower is None else lower):
        return None
    on_one_cpu_thread = sigma.device.type == "cpu" and torch.get_num_threads() == 1
    if on_one_cpu_thread and sigma.dtype == torch.float64 and factor.dtype == torch.float64:
        reduced = _dsygst_congruence(sigma, factor)
        if reduced is not None:
            return reduced
    return _blocked_congruence(sigma, factor)


def _dsygst_congruence(sigma: torch.Tensor, factor: torch.Tensor) -> torch.Tensor | None:
    """LAPACK ``dsygst`` (itype 2): ``L^T Σ L`` with only one triangle of Σ read and written."""
    from scipy.linalg import lapack

    # Σ's upper triangle, read as a Fortran (column-major) array, is its lower triangle as LAPACK sees
    # it; for a symmetric Σ the two agree. The factor is used as L (lower, column-major).
    sigma_f = sigma.numpy().T if sigma.is_contiguous() else np.asfortranarray(sigma.numpy())
    factor_f = factor.numpy() if factor.T.is_contiguous() else np.asfortranarray(factor.numpy())
    with _blas_threads().limit(limits=1, user_api="blas"):
        reduced, info = lapack.dsygst(sigma_f, factor_f, itype=2, lower=1)
    return torch.from_numpy(reduced) if info == 0 else None


def _blocked_congruence(sigma: torch.Tensor, factor: torch.Tensor, block: int = 256) -> torch.Tensor:
    """``L^T Σ L`` (lower triangle) by block products that skip the zeros of ``L``: ``B = Σ L`` block column
    by block column (``L[j:, j:e]`` is zero above row ``j``: ``D^3`` flops), then the block rows of the lower
    triangle of ``L^T B`` (``L[:, i:e]`` is zero above row ``i``: ``D^3/3`` flops)."""
    n = sigma.shape[0]
    product = torch.empty_like(sigma)  # Σ L
    for j in range(0, n, block):
        end = min(j + block, n)
        torch.matmul(sigma[:, j:], factor[j:, j:end], out=product[:, j:end])
    reduced = torch.zeros_like(sigma)  # upper triangle beyond the diagonal blocks stays 0
    for i in range(0, n, block):
        end = min(i + block, n)
        torch.matmul(factor[i:, i:end].T, product[i:, :end], out=reduced[i:end, :end])
    return reduced


@functools.lru_cache(maxsize=1)
def _blas_threads():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def trace_sqrt_product_dual(centered: torch.Tensor, ref_cov: torch.Tensor) -> torch.Tensor:
    r"""Same trace for :math:`\Sigma = X_c^\top X_c/(n-1)` via the ``n x n`` matrix :math:`X_c R X_c^\top/(n-1)`."""
    n = centered.shape[0]
    return trace_sqrt_psd(centered @ ref_cov @ centered.T / (n - 1))


@dataclass(frozen=True)
class Gaussian:
    r"""One side of a Fréchet/Bures sum: a mean (``None``: Bures, no mean term) and a covariance, given as a
    ``(D, D)`` matrix ``cov``, as rows ``samples`` ``(n, D)`` with :math:`\Sigma = X^\top X/\text{divisor}`
    (centred, possibly weighted), or both. A reference side may carry a cached ``factor``
    (:math:`FF^\top = \Sigma`; ``factor_lower`` says whether it is triangular, ``None``: check).
    """

    mean: Optional[torch.Tensor] = None
    cov: Optional[torch.Tensor] = None
    samples: Optional[torch.Tensor] = None
    divisor: float = 1.0
    factor: Optional[torch.Tensor] = None
    factor_lower: Optional[bool] = None

    def covariance(self) -> torch.Tensor:
        return self.cov if self.cov is not None else self.samples.T @ self.samples / self.divisor

    def trace(self) -> torch.Tensor:
        return self.cov.trace() if self.cov is not None else self.samples.square().sum() / self.divisor

    def root(self) -> torch.Tensor:
        return self.factor if self.factor is not None else psd_factor(self.covariance())

    def has_few_samples(self) -> bool:
        """Fewer rows than dimensions: the ``n x n`` forms are exact and cheaper than any ``D x D`` one."""
        return self.samples is not None and self.samples.shape[0] < self.samples.shape[1]


def frechet_trace_term(side: Gaussian, reference: Gaussian) -> torch.Tensor:
    r""":math:`\operatorname{Tr}(\Sigma_r^{1/2}\Sigma\Sigma_r^{1/2})^{1/2}` in the cheapest exact form: the ``n x m``
    cross matrix's nuclear norm when both sides are few samples (the reference given without ``cov``), the
    ``n x n`` dual :math:`X\Sigma_rX^\top` when only ``side`` is, else the ``D x D`` congruence with the reference
    factor."""
    if side.has_few_samples():
        if reference.cov is None:
            cross = side.samples @ reference.samples.T  # (n, m)
            return nuclear_norm(cross) / math.sqrt(side.divisor * reference.divisor)
        return trace_sqrt_psd(side.samples @ reference.cov @ side.samples.T / side.divisor)
    return trace_sqrt_product(side.covariance(), reference.root(), lower=reference.factor_lower)


def frechet_sum(side: Gaussian, reference: Gaussian) -> torch.Tensor:
    r"""FD (with means) or Bures² (without), differentiable where the inputs are:

    .. math:: \|\mu-\mu_r\|^2 + \operatorname{Tr}\Sigma + \operatorname{Tr}\Sigma_r
              - 2\operatorname{Tr}(\Sigma_r^{1/2}\Sigma\Sigma_r^{1/2})^{1/2}
    """
    value = side.trace() + reference.trace() - 2.0 * frechet_trace_term(side, reference)
    if side.mean is not None and reference.mean is not None:
        value = (side.mean - reference.mean).square().sum() + value
    return value


def frechet_distance_from_stats(
    mu1: ArrayLike,
    sigma1: ArrayLike,
    mu2: ArrayLike,
    sigma2: ArrayLike,
    factor1: ArrayLike | None = None,
) -> float:
    """Fréchet distance between two Gaussians given their means and covariances (float64, never complex).

    ``factor1`` (optional) is a cached :func:`psd_factor` of ``sigma1`` (``F F^T = sigma1``); pass it
    when the same reference is compared many times (:class:`matchzoo.metrics.frechet.FrechetReference`
    also caches the checks of the reference side).
    """
    mu1, sigma1, mu2, sigma2 = (as_float64_tensor(a) for a in (mu1, sigma1, mu2, sigma2))
    check_stats_shapes(mu1, sigma1, mu2, sigma2)
    check_finite(mu1=mu1, sigma1=sigma1, mu2=mu2, sigma2=sigma2)
    factor = psd_factor(sigma1) if factor1 is None else as_float64_tensor(factor1)
    if factor.shape != sigma1.shape:
        raise ValueError(f"factor1 must have the shape of sigma1 {tuple(sigma1.shape)}, got {tuple(factor.shape)}")
    return frechet_distance_checked(mu1, sigma1, mu2, sigma2, factor)


def frechet_distance_checked(
    mu1: torch.Tensor,
    sigma1: torch.Tensor,
    mu2: torch.Tensor,
    sigma2: torch.Tensor,
    factor1: torch.Tensor,
    factor1_lower: bool | None = None,
) -> float:
    """The Fréchet distance from float64 statistics whose shapes and finiteness the caller has checked."""
    reference = Gaussian(mu1, sigma1, factor=factor1, factor_lower=factor1_lower)
    return float(frechet_sum(Gaussian(mu2, sigma2), reference).clamp_min(0.0))


def frechet_distance(feats_a: ArrayLike, feats_b: ArrayLike) -> float:
    """Fréchet distance between the Gaussians fitted (float64, unbiased) to two ``(N, D)`` samples.

    Uses the exact ``n x n`` dual form when the smaller side has fewer samples than dimensions (and the
    ``n x m`` cross form when both do), and warns (:class:`FewSamplesWarning`) in that case.
    """
    a, b = as_float64_tensor(feats_a), as_float64_tensor(feats_b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two (N, D) arrays with the same D, got {tuple(a.shape)} and {tuple(b.shape)}")
    check_finite(feats_a=a, feats_b=b)
    if min(a.shape[0], b.shape[0]) < 2:
        raise ValueError(f"need at least 2 samples on each side, got {a.shape[0]} and {b.shape[0]}")
    if a.shape[0] > b.shape[0]:
        a, b = b, a
    warn_if_few_samples(a.shape[0], a.shape[1])
    mu_a, mu_b = a.mean(dim=0), b.mean(dim=0)
    side = Gaussian(mu_a, samples=a - mu_a, divisor=a.shape[0] - 1)  # the smaller side
    centered_b = b - mu_b  # (m, D)
    if b.shape[0] < b.shape[1]:  # few samples on both sides: no D x D matrix at all
        reference = Gaussian(mu_b, samples=centered_b, divisor=b.shape[0] - 1)
    else:
        reference = Gaussian(mu_b, cov=centered_b.T @ centered_b / (b.shape[0] - 1))
    return float(frechet_sum(side, reference).clamp_min(0.0))


def warn_if_few_samples(n: int, dim: int) -> None:
    """Warn (once per call site) that an FD from ``n < dim`` samples is exact but heavily biased."""
    if n < dim:
        warnings.warn(
            f"Fréchet distance from n={n} samples in D={dim} dimensions: the covariance has rank <= {n - 1}, so the "
            f"value (exact for the fitted Gaussians, via the n x n dual form) is strongly biased upwards; "
            f"compare only FDs at the same n, or use n >= D samples",
            FewSamplesWarning,
            stacklevel=3,
        )


def check_stats_shapes(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> None:
    d = mu1.shape[0] if mu1.ndim == 1 else -1
    shapes_ok = mu1.shape == mu2.shape == (d,) and sigma1.shape == sigma2.shape == (d, d)
    if not shapes_ok:
        raise ValueError(
            f"statistics shapes disagree: mu1 {tuple(mu1.shape)}, sigma1 {tuple(sigma1.shape)}, "
            f"mu2 {tuple(mu2.shape)}, sigma2 {tuple(sigma2.shape)}; expected (D,), (D, D) on both sides"
        )


def check_finite(**tensors: torch.Tensor) -> None:
    """Raise naming the first tensor that holds a NaN or inf.

    A finite sum proves every entry finite (NaN and inf propagate through addition), which costs one
    reduction instead of a boolean mask of a D x D matrix; only a non-finite sum (which a finite matrix
    reaches only by overflowing near 1e308) falls back to the entrywise test.
    """
    for name, t in tensors.items():
        if not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or inf")
