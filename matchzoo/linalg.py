r"""Linear algebra shared by objectives and metrics: float64 moments, PSD square roots, trace-sqrt.

The Fréchet distance between :math:`\mathcal N(\mu_1,\Sigma_1)` and :math:`\mathcal N(\mu_2,\Sigma_2)` is

.. math::  \|\mu_1-\mu_2\|^2 + \operatorname{Tr}\Sigma_1 + \operatorname{Tr}\Sigma_2
           - 2\operatorname{Tr}\big(\Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2}\big)^{1/2}.

The trace term is computed from the eigenvalues of the *symmetric* PSD matrix
:math:`\Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2}` (clamped at 0), never from ``scipy.linalg.sqrtm`` of the
non-symmetric product: eigenvalues of a symmetric matrix are real, so the result is never complex.

When one side is an ``n``-sample empirical covariance :math:`\Sigma = X_c^\top X_c/(n-1)` with
``n < D``, the nonzero eigenvalues of :math:`R^{1/2}\Sigma R^{1/2}` equal those of the ``n x n`` matrix
:math:`X_c R X_c^\top/(n-1)` (the *dual form*): exact, and cheaper.

Gradients: :math:`d\operatorname{Tr}M^{1/2} = \tfrac12\operatorname{Tr}(M^{-1/2}dM)` diverges on zero
eigenvalues, which always exist when the sample count is below the dimension (and for the centring
direction in the dual form). Along those null directions the first-order change of ``M`` is zero for
perturbations of the samples, so :class:`_TraceSqrtPSD` uses the pseudo-inverse square root (coefficient
0 for eigenvalues below a relative tolerance): finite, and exact wherever the function is differentiable.
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]


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


def symmetrize(m: torch.Tensor) -> torch.Tensor:
    return 0.5 * (m + m.transpose(-1, -2))


def psd_sqrt(m: torch.Tensor) -> torch.Tensor:
    """Symmetric PSD square root of a symmetric matrix (negative eigenvalues from round-off -> 0)."""
    evals, evecs = torch.linalg.eigh(symmetrize(m))
    return (evecs * evals.clamp_min(0).sqrt()) @ evecs.T


def _null_tolerance(evals: torch.Tensor, size: int) -> torch.Tensor:
    """Eigenvalues below this count as zero: size * eps * largest |eigenvalue| (numerical-rank rule)."""
    return evals.abs().max().clamp_min(torch.finfo(evals.dtype).tiny) * size * torch.finfo(evals.dtype).eps


class _TraceSqrtPSD(torch.autograd.Function):
    """``Tr M^{1/2}`` for symmetric PSD ``M`` with a finite (pseudo-inverse) backward."""

    @staticmethod
    def forward(ctx, m: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
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


def trace_sqrt_product(sigma: torch.Tensor, sqrt_ref: torch.Tensor) -> torch.Tensor:
    r""":math:`\operatorname{Tr}(R^{1/2}\Sigma R^{1/2})^{1/2}` given the cached ``sqrt_ref`` = :math:`R^{1/2}`."""
    return trace_sqrt_psd(sqrt_ref @ sigma @ sqrt_ref)


def trace_sqrt_product_dual(centered: torch.Tensor, ref_cov: torch.Tensor) -> torch.Tensor:
    r"""Same trace for :math:`\Sigma = X_c^\top X_c/(n-1)` via the ``n x n`` matrix :math:`X_c R X_c^\top/(n-1)`."""
    n = centered.shape[0]
    return trace_sqrt_psd(centered @ ref_cov @ centered.T / (n - 1))


def frechet_distance_from_stats(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Fréchet distance between two Gaussians given their means and covariances (float64, never complex)."""
    mu1, sigma1, mu2, sigma2 = (as_float64_tensor(a) for a in (mu1, sigma1, mu2, sigma2))
    _check_stats(mu1, sigma1, mu2, sigma2)
    trace_term = trace_sqrt_product(sigma2, psd_sqrt(sigma1))
    value = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2.0 * trace_term
    return float(value.clamp_min(0.0))


def frechet_distance(feats_a: ArrayLike, feats_b: ArrayLike) -> float:
    """Fréchet distance between the Gaussians fitted (float64, unbiased) to two ``(N, D)`` samples.

    Uses the exact ``n x n`` dual form when the smaller side has fewer samples than dimensions.
    """
    a, b = as_float64_tensor(feats_a), as_float64_tensor(feats_b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two (N, D) arrays with the same D, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] > b.shape[0]:
        a, b = b, a
    mu_a, sigma_a = mean_cov(a)
    mu_b, sigma_b = mean_cov(b)
    if a.shape[0] < a.shape[1]:
        trace_term = trace_sqrt_product_dual(a - mu_a, sigma_b)
    else:
        trace_term = trace_sqrt_product(sigma_a, psd_sqrt(sigma_b))
    value = (mu_a - mu_b).square().sum() + sigma_a.trace() + sigma_b.trace() - 2.0 * trace_term
    return float(value.clamp_min(0.0))


def _check_stats(mu1, sigma1, mu2, sigma2) -> None:
    d = mu1.shape[0]
    shapes_ok = mu1.shape == mu2.shape == (d,) and sigma1.shape == sigma2.shape == (d, d)
    if not shapes_ok:
        raise ValueError(
            f"statistics shapes disagree: mu1 {tuple(mu1.shape)}, sigma1 {tuple(sigma1.shape)}, "
            f"mu2 {tuple(mu2.shape)}, sigma2 {tuple(sigma2.shape)}; expected (D,), (D, D) on both sides"
        )
    for name, t in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} contains NaN or inf")
