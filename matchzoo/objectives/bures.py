r"""``bures`` and ``kernel_bures``: the Bures distance between (kernel) covariance operators.

Covariance form (``bures``), with :math:`A` the real and :math:`B` the generated covariance,

.. math:: \mathcal B^2(A, B) = \operatorname{Tr}A + \operatorname{Tr}B - 2\operatorname{Tr}(A^{1/2}BA^{1/2})^{1/2}.

The feature rows are optionally L2-normalised (``normalize_rows``) and centred (``center``); the
covariance is :math:`X^\top X/n` (``divide_by_n=True``) or the unnormalised :math:`X^\top X`. The Bures GAN
paper (De Meulemeester et al., 2020) normalises the rows, centres them and divides by n:
``bures(preset="bures_gan")``.

Dual form (``kernel_bures``), for any PSD kernel :math:`k` with Gram blocks over the (centred) samples,

.. math:: \mathcal B^2 = \tfrac1m\operatorname{Tr}K_{ff} + \tfrac1n\operatorname{Tr}K_{rr}
          - \tfrac2{\sqrt{mn}}\|K_{fr}\|_*

(:math:`\|\cdot\|_*` the nuclear norm; drop the ``1/m, 1/n`` factors when ``divide_by_n=False``). For the
linear kernel :math:`K_{fr} = XY^\top` and the singular values of :math:`XY^\top` are those of
:math:`A^{1/2}B^{1/2}`, so it equals ``bures`` exactly while only needing ``m x n`` matrices. Kernels:
``linear``, ``rbf`` (:math:`e^{-\|x-y\|^2/(2\sigma^2)}`, σ = ``bandwidth`` or the median distance of the
real side) and ``polynomial`` (:math:`(\gamma x^\top y + c_0)^d`, γ = 1/D by default). Centring in
feature space is the double centring :math:`HKH`. Row normalisation is the cosine normalisation
:math:`K_{ij}/\sqrt{K_{ii}K_{jj}}`.

The nuclear norm comes from the singular values of :math:`K_{fr}` itself (:func:`nuclear_norm`), not from
the eigenvalues of :math:`K^\top K`, whose round-off null eigenvalues would each add
:math:`\sqrt{10^{-16}\lambda_{\max}}`: the linear kernel equals ``bures`` to ~1e-12 (float64) at every
shape, batch above or below the dimension, and so do the gradients (``U_rV_r^\top`` over the numerical rank,
finite at identical inputs). The covariance form uses :func:`matchzoo.linalg.trace_sqrt_psd`.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from matchzoo import linalg
from matchzoo.errors import MatchzooError
from matchzoo.objectives.base import LossOutput, Objective
from matchzoo.registry import register_objective

PRESETS = {"bures_gan": dict(center=True, normalize_rows=True, divide_by_n=True)}
KERNELS = ("linear", "rbf", "polynomial")


def prepare_rows(x: torch.Tensor, center: bool, normalize_rows: bool) -> torch.Tensor:
    """float64 rows, L2-normalised then centred as asked."""
    x = x.to(torch.float64)
    if normalize_rows:
        x = x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    return x - x.mean(dim=0) if center else x


def bures_squared(fake: torch.Tensor, real: torch.Tensor, center: bool = True, normalize_rows: bool = False,
                  divide_by_n: bool = True) -> torch.Tensor:
    """Covariance-form Bures² between ``fake`` ``(m, D)`` and ``real`` ``(n, D)``; float64 scalar."""
    x, y = prepare_rows(fake, center, normalize_rows), prepare_rows(real.detach(), center, normalize_rows)
    m, n = (x.shape[0], y.shape[0]) if divide_by_n else (1, 1)
    cov_fake, cov_real = x.T @ x / m, y.T @ y / n  # (D, D)
    if x.shape[0] < x.shape[1]:  # ‖X Yᵀ‖_*: the (m, n) dual of A^1/2 B A^1/2, exact also with centring's null vector
        trace_term = nuclear_norm(x @ y.T) / math.sqrt(m * n)
    else:
        trace_term = linalg.trace_sqrt_product(cov_fake, linalg.psd_sqrt(cov_real))
    return cov_fake.trace() + cov_real.trace() - 2.0 * trace_term


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


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(m, n)`` squared Euclidean distances, clamped at 0 against round-off."""
    return (x.square().sum(1)[:, None] + y.square().sum(1)[None, :] - 2.0 * x @ y.T).clamp_min(0.0)


def median_bandwidth(y: torch.Tensor) -> float:
    """Median pairwise distance of the rows of ``y`` (off-diagonal), the usual RBF heuristic."""
    d2 = squared_distances(y, y)
    off = d2[~torch.eye(y.shape[0], dtype=torch.bool, device=y.device)]
    return float(off.median().clamp_min(torch.finfo(d2.dtype).tiny).sqrt())


def kernel_matrix(x: torch.Tensor, y: torch.Tensor, kernel: str, bandwidth: float, degree: int, gamma: float,
                  coef0: float) -> torch.Tensor:
    if kernel == "linear":
        return x @ y.T
    if kernel == "rbf":
        return torch.exp(-squared_distances(x, y) / (2.0 * bandwidth**2))
    return (gamma * (x @ y.T) + coef0) ** degree


def double_center(k: torch.Tensor) -> torch.Tensor:
    """H_m K H_n: the Gram matrix of features centred on each side."""
    return k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()


@register_objective("bures")
class Bures(Objective):
    """Bures² between feature covariances (centring / row normalisation / 1/n options, bures_gan preset)."""

    def __init__(self, center: bool = True, normalize_rows: bool = False, divide_by_n: bool = True,
                 preset: Optional[str] = None):
        super().__init__()
        if preset is not None:
            if preset not in PRESETS:
                raise MatchzooError(f"unknown bures preset {preset!r}; known: {', '.join(PRESETS)}")
            center, normalize_rows, divide_by_n = (PRESETS[preset][k] for k in ("center", "normalize_rows", "divide_by_n"))
        self.center, self.normalize_rows, self.divide_by_n = bool(center), bool(normalize_rows), bool(divide_by_n)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> LossOutput:
        self.check_features(fake, real)
        value = bures_squared(fake, real, self.center, self.normalize_rows, self.divide_by_n)
        return LossOutput(value.to(fake.dtype), {"bures2": float(value.detach())})


@register_objective("kernel_bures")
class KernelBures(Objective):
    """Kernel Bures² in dual form: Tr K_ff + Tr K_rr − 2‖K_fr‖_* (linear, RBF, polynomial)."""

    def __init__(self, kernel: str = "rbf", bandwidth: Optional[float] = None, degree: int = 3,
                 gamma: Optional[float] = None, coef0: float = 1.0, center: bool = True,
                 normalize_rows: bool = False, divide_by_n: bool = True):
        super().__init__()
        if kernel not in KERNELS:
            raise MatchzooError(f"kernel_bures kernel must be one of {', '.join(KERNELS)}; got {kernel!r}")
        if bandwidth is not None and not (isinstance(bandwidth, (int, float)) and bandwidth > 0):
            raise MatchzooError(f"kernel_bures bandwidth must be a number > 0 (or None: the median distance); got {bandwidth!r}")
        self.kernel, self.bandwidth, self.degree, self.gamma, self.coef0 = kernel, bandwidth, int(degree), gamma, float(coef0)
        self.center, self.normalize_rows, self.divide_by_n = bool(center), bool(normalize_rows), bool(divide_by_n)

    def gram(self, x: torch.Tensor, y: torch.Tensor, bandwidth: float) -> torch.Tensor:
        gamma = self.gamma if self.gamma is not None else 1.0 / x.shape[1]
        return kernel_matrix(x, y, self.kernel, bandwidth, self.degree, gamma, self.coef0)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> LossOutput:
        self.check_features(fake, real)
        x, y = fake.to(torch.float64), real.detach().to(torch.float64)
        bandwidth = self.bandwidth if self.bandwidth is not None else median_bandwidth(y)
        k_ff, k_rr, k_fr = self.gram(x, x, bandwidth), self.gram(y, y, bandwidth), self.gram(x, y, bandwidth)
        if self.normalize_rows:
            d_f = k_ff.diagonal().clamp_min(torch.finfo(torch.float64).tiny).sqrt()
            d_r = k_rr.diagonal().clamp_min(torch.finfo(torch.float64).tiny).sqrt()
            k_ff, k_rr, k_fr = k_ff / torch.outer(d_f, d_f), k_rr / torch.outer(d_r, d_r), k_fr / torch.outer(d_f, d_r)
        if self.center:
            k_ff, k_rr, k_fr = double_center(k_ff), double_center(k_rr), double_center(k_fr)
        m, n = (x.shape[0], y.shape[0]) if self.divide_by_n else (1, 1)
        value = k_ff.trace() / m + k_rr.trace() / n - 2.0 * nuclear_norm(k_fr) / math.sqrt(m * n)
        return LossOutput(value.to(fake.dtype), {"kernel_bures2": float(value.detach())})
