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

The nuclear norm comes from the singular values of :math:`K_{fr}` itself (:func:`matchzoo.linalg.nuclear_norm`),
not from the eigenvalues of :math:`K^\top K`, whose round-off null eigenvalues would each add
:math:`\sqrt{10^{-16}\lambda_{\max}}`: the linear kernel equals ``bures`` to ~1e-12 (float64) at every
shape, batch above or below the dimension, and so do the gradients (``U_rV_r^\top`` over the numerical rank,
finite at identical inputs). The covariance form uses :func:`matchzoo.linalg.frechet_sum`.

Weighted forms (resample probe; frequency weights ``w``, :math:`p = w/\sum w`): ``bures`` with the covariance
:math:`\sum_i s_i\tilde x_i\tilde x_i^\top` of the :math:`p`-centred rows (:math:`s = p`, or :math:`w` without
``divide_by_n``); ``kernel_bures`` with the weighted kernel covariance operator, in dual form with
:math:`H_p = I - \mathbf 1 p^\top` and :math:`t = 1/M` (or 1),

.. math:: \mathcal B^2_w = \sum_i s_i (H_p K_{ff} H_p^\top)_{ii} + t\operatorname{Tr}(H_q K_{rr} H_q^\top)
          - 2\,\big\|\operatorname{diag}(\sqrt s)\,H_p K_{fr} H_q^\top\sqrt t\big\|_*

The nuclear norm of :math:`\operatorname{diag}(\sqrt s)\tilde K_{fr}` equals that of the duplicated-row matrix
(same :math:`\tilde K^\top S\tilde K`), so integer weights give the duplicated set's value and ``w = 1`` the
objective's own.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from matchzoo import linalg
from matchzoo.errors import MatchzooError
from matchzoo.kernels import (
    cosine_normalize,
    double_center,
    gaussian_kernel,
    linear_kernel,
    median_bandwidth,
    polynomial_kernel,
)
from matchzoo.linalg import nuclear_norm
from matchzoo.objectives.base import LossOutput, Objective
from matchzoo.objectives.weighting import WeightedLoss, probabilities
from matchzoo.registry import register_objective

PRESETS = {"bures_gan": dict(center=True, normalize_rows=True, divide_by_n=True)}
KERNELS = ("linear", "rbf", "polynomial")


def prepare_rows(x: torch.Tensor, center: bool, normalize_rows: bool) -> torch.Tensor:
    """float64 rows, L2-normalised then centred as asked."""
    x = x.to(torch.float64)
    if normalize_rows:
        x = x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    return x - x.mean(dim=0) if center else x


def bures_squared(
    fake: torch.Tensor, real: torch.Tensor, center: bool = True, normalize_rows: bool = False, divide_by_n: bool = True
) -> torch.Tensor:
    """Covariance-form Bures² between ``fake`` ``(m, D)`` and ``real`` ``(n, D)``; float64 scalar."""
    x, y = prepare_rows(fake, center, normalize_rows), prepare_rows(real.detach(), center, normalize_rows)
    m, n = (x.shape[0], y.shape[0]) if divide_by_n else (1, 1)
    # both sides as samples: below D the trace is ‖X Yᵀ‖_*, exact also with centring's null vector
    return linalg.frechet_sum(linalg.Gaussian(samples=x, divisor=m), linalg.Gaussian(samples=y, divisor=n))


def weighted_bures(
    x: torch.Tensor,
    weights: torch.Tensor,
    reference: torch.Tensor,
    center: bool = True,
    normalize_rows: bool = False,
    divide_by_n: bool = True,
) -> torch.Tensor:
    """Bures² of the weighted set: covariance ``Σ_i s_i x̃_i x̃_iᵀ`` (``s = p``, or ``w`` without ``divide_by_n``)."""
    p, n = probabilities(weights, x.shape[0])
    x = prepare_rows(x, False, normalize_rows)
    if center:
        x = x - p @ x
    y = prepare_rows(reference.detach(), center, normalize_rows)  # (M, D)
    scale = p if divide_by_n else p * n
    rows = x * scale.sqrt()[:, None]  # (N, D)
    real = linalg.Gaussian(samples=y, divisor=y.shape[0] if divide_by_n else 1)
    return linalg.frechet_sum(linalg.Gaussian(samples=rows), real)


class WeightedKernelBures:
    """``(x (N, D), w (N,)) -> scalar``: kernel Bures² of the weighted candidates to a fixed reference ``(M, D)``."""

    def __init__(self, objective: "KernelBures", reference: torch.Tensor):
        self.objective = objective
        self.reference = reference.detach().to(torch.float64)  # (M, D)
        y = self.reference
        self.bandwidth = objective.bandwidth if objective.bandwidth is not None else median_bandwidth(y)
        k_rr = objective.gram(y, y, self.bandwidth)  # (M, M), used once: only its centred trace survives
        self.diag_rr = k_rr.diagonal().clone()  # (M,)
        if objective.normalize_rows:
            k_rr = cosine_normalize(k_rr, self.diag_rr, self.diag_rr)
        trace_rr = (double_center(k_rr) if objective.center else k_rr).trace()
        self.real_scale = 1.0 / y.shape[0] if objective.divide_by_n else 1.0
        self.real_term = trace_rr * self.real_scale

    def __call__(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        objective, y = self.objective, self.reference
        p, _ = probabilities(weights, x.shape[0])
        w = weights.to(torch.float64)
        x = x.to(torch.float64)
        k_ff, k_fr = objective.gram(x, x, self.bandwidth), objective.gram(x, y, self.bandwidth)  # (N, N), (N, M)
        if objective.normalize_rows:
            diag_ff = k_ff.diagonal()
            k_ff, k_fr = cosine_normalize(k_ff, diag_ff, diag_ff), cosine_normalize(k_fr, diag_ff, self.diag_rr)
        if objective.center:
            k_ff_p = k_ff @ p  # (N,)
            self_diag = k_ff.diagonal() - 2.0 * k_ff_p + p @ k_ff_p  # (H_p K H_pᵀ)_ii
            row_mean = p @ k_fr  # (M,) weighted mean over candidates
            k_fr = k_fr - row_mean[None, :] - k_fr.mean(1, keepdim=True) + row_mean.mean()
        else:
            self_diag = k_ff.diagonal()
        sample_scale = p if objective.divide_by_n else w  # (N,)
        cross = sample_scale.sqrt()[:, None] * k_fr * self.real_scale**0.5  # (N, M)
        return sample_scale @ self_diag + self.real_term - 2.0 * nuclear_norm(cross)


@register_objective("bures")
class Bures(Objective):
    """Bures² between feature covariances (centring / row normalisation / 1/n options, bures_gan preset)."""

    def __init__(
        self, center: bool = True, normalize_rows: bool = False, divide_by_n: bool = True, preset: Optional[str] = None
    ):
        super().__init__()
        if preset is not None:
            if preset not in PRESETS:
                raise MatchzooError(f"unknown bures preset {preset!r}; known: {', '.join(PRESETS)}")
            flags = PRESETS[preset]
            center, normalize_rows, divide_by_n = flags["center"], flags["normalize_rows"], flags["divide_by_n"]
        self.center, self.normalize_rows, self.divide_by_n = bool(center), bool(normalize_rows), bool(divide_by_n)

    def weighted_form(self, reference: torch.Tensor) -> WeightedLoss:
        return lambda x, w: weighted_bures(x, w, reference, self.center, self.normalize_rows, self.divide_by_n)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> LossOutput:
        self.check_features(fake, real)
        value = bures_squared(fake, real, self.center, self.normalize_rows, self.divide_by_n)
        return LossOutput(value.to(fake.dtype), {"bures2": float(value.detach())})


@register_objective("kernel_bures")
class KernelBures(Objective):
    """Kernel Bures² in dual form: Tr K_ff + Tr K_rr − 2‖K_fr‖_* (linear, RBF, polynomial)."""

    def __init__(
        self,
        kernel: str = "rbf",
        bandwidth: Optional[float] = None,
        degree: int = 3,
        gamma: Optional[float] = None,
        coef0: float = 1.0,
        center: bool = True,
        normalize_rows: bool = False,
        divide_by_n: bool = True,
    ):
        super().__init__()
        if kernel not in KERNELS:
            raise MatchzooError(f"kernel_bures kernel must be one of {', '.join(KERNELS)}; got {kernel!r}")
        if bandwidth is not None and not (isinstance(bandwidth, (int, float)) and bandwidth > 0):
            raise MatchzooError(
                f"kernel_bures bandwidth must be a number > 0 (or None: the median distance); got {bandwidth!r}"
            )
        self.kernel, self.bandwidth, self.degree = kernel, bandwidth, int(degree)
        self.gamma, self.coef0 = gamma, float(coef0)
        self.center, self.normalize_rows, self.divide_by_n = bool(center), bool(normalize_rows), bool(divide_by_n)

    def gram(self, x: torch.Tensor, y: torch.Tensor, bandwidth: float) -> torch.Tensor:
        if self.kernel == "linear":
            return linear_kernel(x, y)
        if self.kernel == "rbf":
            return gaussian_kernel(x, y, bandwidth)
        return polynomial_kernel(x, y, self.degree, self.gamma, self.coef0)

    def weighted_form(self, reference: torch.Tensor) -> WeightedLoss:
        return WeightedKernelBures(self, reference)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> LossOutput:
        self.check_features(fake, real)
        x, y = fake.to(torch.float64), real.detach().to(torch.float64)
        bandwidth = self.bandwidth if self.bandwidth is not None else median_bandwidth(y)
        k_ff, k_rr, k_fr = self.gram(x, x, bandwidth), self.gram(y, y, bandwidth), self.gram(x, y, bandwidth)
        if self.normalize_rows:
            d_f, d_r = k_ff.diagonal(), k_rr.diagonal()
            k_ff, k_rr = cosine_normalize(k_ff, d_f, d_f), cosine_normalize(k_rr, d_r, d_r)
            k_fr = cosine_normalize(k_fr, d_f, d_r)
        if self.center:
            k_ff, k_rr, k_fr = double_center(k_ff), double_center(k_rr), double_center(k_fr)
        m, n = (x.shape[0], y.shape[0]) if self.divide_by_n else (1, 1)
        value = k_ff.trace() / m + k_rr.trace() / n - 2.0 * nuclear_norm(k_fr) / math.sqrt(m * n)
        return LossOutput(value.to(fake.dtype), {"kernel_bures2": float(value.detach())})
