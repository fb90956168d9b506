r"""Squared distances, the median bandwidth and the named kernels, shared by objectives, probes and metrics.

For rows :math:`x_i` ``(m, D)`` and :math:`y_j` ``(n, D)``:

* ``linear``      :math:`k(x, y) = x^\top y`;
* ``gaussian``    :math:`k(x, y) = \sum_s e^{-\|x-y\|^2/(2\sigma_s^2)}` over one or more bandwidths (``rbf`` is
  the one-bandwidth case);
* ``polynomial``  :math:`k(x, y) = (\gamma\,x^\top y + c_0)^d`, γ = 1/D by default (``d = 3``, ``c_0 = 1``:
  the KID kernel);
* ``energy``      :math:`k(x, y) = -\|x-y\|` (MMD² is then the energy distance), gradient 0 where points coincide.

Squared distances use :math:`\|x\|^2 + \|y\|^2 - 2x^\top y` (one matrix product) clamped at 0, since round-off
can make that expansion slightly negative for near-identical rows.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch


def squared_distances(x: torch.Tensor, y: torch.Tensor, y_sq_norms: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``(m, n)`` squared Euclidean distances, clamped at 0 against round-off; ``y_sq_norms`` ``(n,)`` may be cached."""
    y_norms = y.square().sum(1) if y_sq_norms is None else y_sq_norms
    return (x.square().sum(1)[:, None] + y_norms[None, :] - 2.0 * x @ y.T).clamp_min(0.0)


def distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(m, n)`` Euclidean distances whose gradient is 0 (not NaN) where points coincide."""
    d2 = squared_distances(x, y)
    return torch.where(d2 > 0, d2.clamp_min(torch.finfo(d2.dtype).tiny).sqrt(), torch.zeros_like(d2))


def median_bandwidth(y: torch.Tensor) -> float:
    """Median pairwise distance of the rows of ``y`` (off-diagonal), the usual Gaussian-kernel heuristic."""
    d2 = squared_distances(y, y)
    off = d2[~torch.eye(y.shape[0], dtype=torch.bool, device=y.device)]
    return float(off.median().clamp_min(torch.finfo(d2.dtype).tiny).sqrt())


def linear_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return x @ y.T


def gaussian_kernel(x: torch.Tensor, y: torch.Tensor, bandwidths: Union[float, Sequence[float]]) -> torch.Tensor:
    """Sum of ``exp(-‖x−y‖²/2σ²)`` over the bandwidths σ (one number: the RBF kernel)."""
    sigmas = (bandwidths,) if isinstance(bandwidths, (int, float)) else bandwidths
    d2 = squared_distances(x, y)
    return sum(torch.exp(-d2 / (2.0 * s**2)) for s in sigmas)


def polynomial_kernel(
    x: torch.Tensor, y: torch.Tensor, degree: int = 3, gamma: Optional[float] = None, coef0: float = 1.0
) -> torch.Tensor:
    """``(γ xᵀy + c₀)^d`` with γ = 1/D unless given."""
    gamma = gamma if gamma is not None else 1.0 / x.shape[1]
    return (gamma * (x @ y.T) + coef0) ** degree


def energy_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -distances(x, y)


def double_center(k: torch.Tensor) -> torch.Tensor:
    """``H_m K H_n``: the Gram matrix of features centred on each side."""
    return k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()


def cosine_normalize(k: torch.Tensor, diag_rows: torch.Tensor, diag_cols: torch.Tensor) -> torch.Tensor:
    """``K_ij / sqrt(K_ii K_jj)``: the Gram matrix of the L2-normalised feature maps."""
    tiny = torch.finfo(k.dtype).tiny
    return k / torch.outer(diag_rows.clamp_min(tiny).sqrt(), diag_cols.clamp_min(tiny).sqrt())
