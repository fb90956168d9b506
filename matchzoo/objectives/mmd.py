r"""``mmd``: unbiased squared maximum mean discrepancy (the U-statistic).

.. math:: \widehat{\mathrm{MMD}}^2_u = \frac{1}{m(m-1)}\sum_{i\ne j}k(x_i,x_j)
          + \frac{1}{n(n-1)}\sum_{i\ne j}k(y_i,y_j) - \frac{2}{mn}\sum_{i,j}k(x_i,y_j)

Kernels (``kernel=``):

* ``gaussian`` -- :math:`\sum_s e^{-\|x-y\|^2/(2\sigma_s^2)}` over ``bandwidths``; each σ is a multiple
  of the median real-side pairwise distance unless ``absolute_bandwidths=True``;
* ``energy`` -- :math:`k(x,y) = -\|x-y\|` (MMD² is then the energy distance
  :math:`2E\|X-Y\|-E\|X-X'\|-E\|Y-Y'\|`); the norm's gradient is taken as 0 at coincident points;
* ``polynomial`` -- :math:`(\gamma\,x^\top y + c_0)^d`, by default γ = 1/D, c₀ = 1, d = 3 (the KID kernel).

The estimator is unbiased, so it can be slightly negative and is ≈ 0 (not exactly 0) on identical inputs.
"""
from __future__ import annotations

from typing import Sequence

import torch

from matchzoo.errors import MatchzooError
from matchzoo.objectives.base import LossOutput, Objective
from matchzoo.objectives.bures import median_bandwidth, squared_distances
from matchzoo.registry import register_objective

KERNELS = ("gaussian", "energy", "polynomial")


def safe_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(m, n)`` Euclidean distances whose gradient is 0 (not NaN) where points coincide."""
    d2 = squared_distances(x, y)
    positive = d2 > 0
    return torch.where(positive, d2.clamp_min(torch.finfo(d2.dtype).tiny).sqrt(), torch.zeros_like(d2))


def unbiased_mmd2(k_xx: torch.Tensor, k_yy: torch.Tensor, k_xy: torch.Tensor) -> torch.Tensor:
    """U-statistic MMD² from Gram blocks ``(m, m)``, ``(n, n)``, ``(m, n)``."""
    m, n = k_xx.shape[0], k_yy.shape[0]
    if m < 2 or n < 2:
        raise MatchzooError(f"unbiased MMD needs at least 2 samples per side; got {m} fake and {n} real")
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return within_x + within_y - 2.0 * k_xy.mean()


@register_objective("mmd")
class MMD(Objective):
    """Unbiased MMD² with a Gaussian (multi-bandwidth), energy or polynomial kernel."""

    def __init__(self, kernel: str = "gaussian", bandwidths: Sequence[float] = (0.5, 1.0, 2.0),
                 absolute_bandwidths: bool = False, degree: int = 3, gamma: float | None = None, coef0: float = 1.0):
        super().__init__()
        if kernel not in KERNELS:
            raise MatchzooError(f"mmd kernel must be one of {', '.join(KERNELS)}; got {kernel!r}")
        if kernel == "gaussian" and (not bandwidths or min(bandwidths) <= 0):
            raise MatchzooError(f"mmd gaussian bandwidths must be positive; got {tuple(bandwidths)}")
        self.kernel, self.bandwidths, self.absolute_bandwidths = kernel, tuple(float(b) for b in bandwidths), absolute_bandwidths
        self.degree, self.gamma, self.coef0 = int(degree), gamma, float(coef0)

    def gram(self, x: torch.Tensor, y: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
        if self.kernel == "energy":
            return -safe_distances(x, y)
        if self.kernel == "polynomial":
            gamma = self.gamma if self.gamma is not None else 1.0 / x.shape[1]
            return (gamma * (x @ y.T) + self.coef0) ** self.degree
        d2 = squared_distances(x, y)
        return sum(torch.exp(-d2 / (2.0 * s**2)) for s in sigmas)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> LossOutput:
        self.check_features(fake, real)
        real = real.detach()
        sigmas = self.bandwidths
        if self.kernel == "gaussian" and not self.absolute_bandwidths:
            base = median_bandwidth(real.to(torch.float64))
            sigmas = tuple(b * base for b in self.bandwidths)
        value = unbiased_mmd2(self.gram(fake, fake, sigmas), self.gram(real, real, sigmas), self.gram(fake, real, sigmas))
        return LossOutput(value, {"mmd2": float(value.detach())})
