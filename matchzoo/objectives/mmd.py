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

Weighted form (resample probe): the V-statistic :math:`p^\top K_{xx}p - 2p^\top K_{xy}q + q^\top K_{yy}q` with
:math:`p = w/\sum w`, ``q`` uniform and this kernel (bandwidths relative to the reference's median distance).
The U-statistic is not a function of the measure, so no weighted form agrees with it on duplicated samples.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from matchzoo.errors import MatchzooError
from matchzoo.kernels import energy_kernel, gaussian_kernel, median_bandwidth, polynomial_kernel
from matchzoo.objectives.base import LossOutput, Objective
from matchzoo.objectives.weighting import WeightedLoss, probabilities
from matchzoo.registry import register_objective

KERNELS = ("gaussian", "energy", "polynomial")
Gram = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (a (Na, D), b (Nb, D)) -> (Na, Nb)


def unbiased_mmd2(k_xx: torch.Tensor, k_yy: torch.Tensor, k_xy: torch.Tensor) -> torch.Tensor:
    """U-statistic MMD² from Gram blocks ``(m, m)``, ``(n, n)``, ``(m, n)``."""
    m, n = k_xx.shape[0], k_yy.shape[0]
    if m < 2 or n < 2:
        raise MatchzooError(f"unbiased MMD needs at least 2 samples per side; got {m} fake and {n} real")
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return within_x + within_y - 2.0 * k_xy.mean()


def weighted_mmd(x: torch.Tensor, weights: torch.Tensor, reference: torch.Tensor, gram: Gram) -> torch.Tensor:
    """Squared MMD (V-statistic) between Σ p_i δ_{x_i} and the uniform measure on ``reference``; float64.

    The V-statistic, not the unbiased U-statistic of the ``mmd`` objective: only the V-statistic is a
    function of the measure, so only it gives the duplicated-sample value at integer weights.
    """
    probs, _ = probabilities(weights, x.shape[0])
    x, y = x.to(torch.float64), reference.detach().to(torch.float64)
    q = torch.full((y.shape[0],), 1.0 / y.shape[0], dtype=torch.float64, device=y.device)
    return probs @ gram(x, x) @ probs - 2.0 * probs @ gram(x, y) @ q + q @ gram(y, y) @ q


def gaussian_gram(bandwidths: Sequence[float]) -> Gram:
    """Sum of Gaussian kernels exp(-‖a-b‖²/2σ²) over ``bandwidths``."""
    return lambda a, b: gaussian_kernel(a, b, bandwidths)


@register_objective("mmd")
class MMD(Objective):
    """Unbiased MMD² with a Gaussian (multi-bandwidth), energy or polynomial kernel."""

    def __init__(
        self,
        kernel: str = "gaussian",
        bandwidths: Sequence[float] = (0.5, 1.0, 2.0),
        absolute_bandwidths: bool = False,
        degree: int = 3,
        gamma: float | None = None,
        coef0: float = 1.0,
    ):
        super().__init__()
        if kernel not in KERNELS:
            raise MatchzooError(f"mmd kernel must be one of {', '.join(KERNELS)}; got {kernel!r}")
        if kernel == "gaussian" and (not bandwidths or min(bandwidths) <= 0):
            raise MatchzooError(f"mmd gaussian bandwidths must be positive; got {tuple(bandwidths)}")
        self.kernel, self.absolute_bandwidths = kernel, absolute_bandwidths
        self.bandwidths = tuple(float(b) for b in bandwidths)
        self.degree, self.gamma, self.coef0 = int(degree), gamma, float(coef0)

    def gram(self, x: torch.Tensor, y: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
        if self.kernel == "energy":
            return energy_kernel(x, y)
        if self.kernel == "polynomial":
            return polynomial_kernel(x, y, self.degree, self.gamma, self.coef0)
        return gaussian_kernel(x, y, sigmas)

    def sigmas(self, real: torch.Tensor) -> tuple[float, ...]:
        """The Gaussian bandwidths: multiples of the median real-side distance unless ``absolute_bandwidths``."""
        if self.kernel != "gaussian" or self.absolute_bandwidths:
            return self.bandwidths
        base = median_bandwidth(real.detach().to(torch.float64))
        return tuple(b * base for b in self.bandwidths)

    def weighted_form(self, reference: torch.Tensor) -> WeightedLoss:
        sigmas = self.sigmas(reference)
        return lambda x, w: weighted_mmd(x, w, reference, lambda a, b: self.gram(a, b, sigmas))

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> LossOutput:
        self.check_features(fake, real)
        real = real.detach()
        sigmas = self.sigmas(real)
        k_ff, k_rr, k_fr = self.gram(fake, fake, sigmas), self.gram(real, real, sigmas), self.gram(fake, real, sigmas)
        value = unbiased_mmd2(k_ff, k_rr, k_fr)
        return LossOutput(value, {"mmd2": float(value.detach())})
