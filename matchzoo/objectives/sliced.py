r"""``sliced_wasserstein``: squared sliced Wasserstein-2 distance, random or learned (max-sliced) directions.

.. math:: SW_2^2(\alpha,\beta) = \frac1L\sum_{l=1}^L W_2^2(\theta_l^\#\alpha, \theta_l^\#\beta),
          \qquad \theta_l \in S^{D-1}

Each 1-D term is exact for uniform empirical measures of any sizes ``m``, ``n``: with the merged
quantile levels :math:`0 = t_0 < t_1 < \dots < t_K = 1` (the union of :math:`\{i/m\}` and
:math:`\{j/n\}`), :math:`W_2^2 = \sum_k (t_k - t_{k-1})\,(F^{-1}(s_k) - G^{-1}(s_k))^2` at the midpoints
:math:`s_k`, read off the sorted projections. Random directions are drawn afresh on every call
(``num_projections`` of them, from the global seeded RNG).

``learned_directions = L > 0`` switches to max-sliced matching: ``L`` trainable unit directions form a
critic that *maximises* :math:`SW_2^2` over them (``critic_loss = -SW_2^2``; directions re-projected to
the sphere after each critic step), and the generator minimises :math:`SW_2^2` along them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from matchzoo.errors import MatchzooError
from matchzoo.objectives.base import LossOutput, Objective
from matchzoo.registry import register_objective


def wasserstein_1d_squared(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exact W₂² between uniform measures on the columns' values: ``x`` ``(m, L)``, ``y`` ``(n, L)`` -> ``(L,)``."""
    m, n = x.shape[0], y.shape[0]
    x_sorted, y_sorted = x.sort(dim=0).values, y.sort(dim=0).values
    levels = torch.cat([torch.arange(1, m + 1, dtype=torch.float64) / m, torch.arange(1, n + 1, dtype=torch.float64) / n])
    levels = levels.unique()  # sorted merged levels t_1..t_K, t_K = 1
    widths = torch.diff(levels, prepend=levels.new_zeros(1))  # (K,)
    mids = levels - widths / 2
    index_x = (mids * m).floor().long().clamp_max(m - 1).to(x.device)
    index_y = (mids * n).floor().long().clamp_max(n - 1).to(x.device)
    gaps = x_sorted[index_x] - y_sorted[index_y]  # (K, L)
    return (widths.to(x.device, x.dtype)[:, None] * gaps.square()).sum(0)


def random_directions(dim: int, count: int, like: torch.Tensor) -> torch.Tensor:
    """``(D, L)`` directions uniform on the sphere."""
    return F.normalize(torch.randn(dim, count, dtype=like.dtype, device=like.device), dim=0)


@register_objective("sliced_wasserstein")
class SlicedWasserstein(Objective):
    """Squared sliced Wasserstein-2 over fresh random directions, or max-sliced over learned ones."""

    critic_lr = 1e-3
    critic_betas = (0.0, 0.99)

    def __init__(self, num_projections: int = 256, learned_directions: int = 0, critic_steps: int = 1):
        super().__init__()
        if num_projections < 1 or learned_directions < 0:
            raise MatchzooError(
                f"sliced_wasserstein needs num_projections >= 1 and learned_directions >= 0; "
                f"got {num_projections}, {learned_directions}"
            )
        self.num_projections, self.learned_count = int(num_projections), int(learned_directions)
        self.has_critic = self.learned_count > 0
        self.critic_steps = int(critic_steps) if self.has_critic else 0
        self.directions = nn.UninitializedParameter() if self.has_critic else None

    def prepare_reference(self, features: torch.Tensor) -> None:
        if self.has_critic:
            self._learned(features)  # size the directions so the trainer can build the critic optimiser

    def _learned(self, like: torch.Tensor) -> torch.Tensor:
        if isinstance(self.directions, nn.UninitializedParameter):
            self.directions.materialize((like.shape[1], self.learned_count), device=like.device, dtype=like.dtype)
            with torch.no_grad():
                self.directions.copy_(random_directions(like.shape[1], self.learned_count, like))
        return F.normalize(self.directions, dim=0)

    def sw2(self, fake: torch.Tensor, real: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        return wasserstein_1d_squared(fake @ directions, real @ directions).mean()

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> LossOutput:
        self.check_features(fake, real)
        real = real.detach()
        if self.has_critic:
            directions = self._learned(fake).detach().to(fake.dtype)
        else:
            directions = random_directions(fake.shape[1], self.num_projections, fake)
        value = self.sw2(fake, real, directions)
        return LossOutput(value, {"sw2": float(value.detach())})

    def critic_parameters(self) -> list[nn.Parameter]:
        return [self.directions] if self.has_critic else []

    def critic_loss(self, fake: torch.Tensor, real: torch.Tensor) -> LossOutput:
        value = self.sw2(fake.detach(), real.detach(), self._learned(fake).to(fake.dtype))
        return LossOutput(-value, {"max_sw2": float(value.detach())})

    @torch.no_grad()
    def after_critic_step(self) -> None:
        if self.has_critic and not isinstance(self.directions, nn.UninitializedParameter):
            self.directions.copy_(F.normalize(self.directions, dim=0))
