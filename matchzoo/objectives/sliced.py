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

Weighted form (resample probe): 1-D optimal transport of the weighted measure along each direction.

For a direction :math:`\theta` the projected measures are :math:`\sum_i p_i\delta_{\theta^\top x_i}` and the
uniform :math:`\tfrac1M\sum_j\delta_{\theta^\top y_j}`. Their quantile functions are step functions whose
breakpoints are the cumulative weights of the sorted projections, :math:`c_k = \sum_{i\le k} p_{(i)}`, and
:math:`j/M`. With the merged breakpoints :math:`0 = t_0 \le t_1 \le \dots \le t_K = 1` and midpoints
:math:`s_k = (t_{k-1}+t_k)/2`,

.. math:: W_2^2 = \sum_k (t_k - t_{k-1})\,\big(F_p^{-1}(s_k) - G^{-1}(s_k)\big)^2,
          \qquad SW_2^2 = \frac1L\sum_{l=1}^L W_2^2(\theta_l)

Weights enter through the breakpoints (a sort of the concatenated levels, differentiable in its values), so
the value is piecewise quadratic and differentiable in ``w``; the quantile *indices* are piecewise constant.
Integer weights give the duplicated set (its breakpoints are the same :math:`c_k`), uniform weights the
``sliced_wasserstein`` objective's own merged-level formula.

Directions: the objective draws ``num_projections`` fresh random directions on every call; the weighted form
draws one such set (from the same global RNG, in the reference's dtype) when it is built and keeps it, so the
weights are optimised against a fixed, deterministic function (with ``L >= D`` directions a faithful
surrogate of the expectation). With ``learned_directions`` (max-sliced) the objective is adversarial and its
weighted form trains the directions on the weighted measure between weight updates
(:class:`matchzoo.objectives.weighting.CriticTrainedWeightedLoss`) around :func:`weighted_sliced_w2`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from matchzoo.errors import MatchzooError
from matchzoo.objectives.base import LossOutput, Objective
from matchzoo.objectives.weighting import CriticTrainedWeightedLoss, WeightedLoss, probabilities
from matchzoo.registry import register_objective


def wasserstein_1d_squared(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exact W₂² between uniform measures on the columns' values: ``x`` ``(m, L)``, ``y`` ``(n, L)`` -> ``(L,)``."""
    m, n = x.shape[0], y.shape[0]
    x_sorted, y_sorted = x.sort(dim=0).values, y.sort(dim=0).values
    levels_m = torch.arange(1, m + 1, dtype=torch.float64) / m
    levels = torch.cat([levels_m, torch.arange(1, n + 1, dtype=torch.float64) / n])
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


def weighted_wasserstein_1d_squared(x: torch.Tensor, p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """W₂² per column between ``Σ p_i δ_{x_il}`` and uniform on ``y[:, l]``.

    ``x`` ``(N, L)``, ``p`` ``(N,)``, ``y`` ``(M, L)`` -> ``(L,)``.
    """
    n_points, m_points = x.shape[0], y.shape[0]
    x_sorted, order = x.sort(dim=0)  # (N, L)
    y_sorted = y.sort(dim=0).values  # (M, L)
    levels_x = p.to(x.dtype)[order].cumsum(dim=0)  # (N, L) cumulative weights of the sorted projections
    steps_y = torch.arange(1, m_points + 1, dtype=x.dtype, device=x.device) / m_points  # (M,)
    levels_y = steps_y[:, None].expand(-1, x.shape[1])
    merged = torch.cat([levels_x, levels_y]).sort(dim=0).values  # (N + M, L), differentiable in the levels
    widths = torch.diff(merged, dim=0, prepend=merged.new_zeros(1, x.shape[1]))  # (N + M, L)
    mids = (merged - widths / 2).detach()
    index_x = torch.searchsorted(levels_x.detach().T.contiguous(), mids.T.contiguous()).T.clamp_max(n_points - 1)
    index_y = (mids * m_points).floor().long().clamp_max(m_points - 1)
    gaps = x_sorted.gather(0, index_x) - y_sorted.gather(0, index_y)  # (N + M, L)
    return (widths * gaps.square()).sum(0)


def weighted_sliced_w2(
    x: torch.Tensor, weights: torch.Tensor, reference: torch.Tensor, directions: torch.Tensor
) -> torch.Tensor:
    """Mean over ``directions`` ``(D, L)`` of the weighted W₂²; float64 scalar."""
    p, _ = probabilities(weights, x.shape[0])
    directions = directions.detach().to(torch.float64)
    projected_x = x.to(torch.float64) @ directions  # (N, L)
    projected_y = reference.detach().to(torch.float64) @ directions  # (M, L)
    return weighted_wasserstein_1d_squared(projected_x, p, projected_y).mean()


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
            self.current_directions(features)  # size the directions so the trainer can build the critic optimiser

    def current_directions(self, like: torch.Tensor) -> torch.Tensor:
        """The learned unit directions ``(D, L)`` (sized from ``like`` on first use; max-sliced only)."""
        if isinstance(self.directions, nn.UninitializedParameter):
            self.directions.materialize((like.shape[1], self.learned_count), device=like.device, dtype=like.dtype)
            with torch.no_grad():
                self.directions.copy_(random_directions(like.shape[1], self.learned_count, like))
        return F.normalize(self.directions, dim=0)

    def weighted_form(self, reference: torch.Tensor) -> WeightedLoss:
        """Random directions: one fixed draw; learned ones: the critic keeps training on the weighted measure."""
        reference = reference.detach()
        if self.has_critic:

            def value(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
                return weighted_sliced_w2(x, weights, reference, self.current_directions(reference).detach())

            return CriticTrainedWeightedLoss(self, reference, value)
        directions = random_directions(reference.shape[1], self.num_projections, reference)  # (D, L), fixed
        return lambda x, w: weighted_sliced_w2(x, w, reference, directions)

    def sw2(self, fake: torch.Tensor, real: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        return wasserstein_1d_squared(fake @ directions, real @ directions).mean()

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> LossOutput:
        self.check_features(fake, real)
        real = real.detach()
        if self.has_critic:
            directions = self.current_directions(fake).detach().to(fake.dtype)
        else:
            directions = random_directions(fake.shape[1], self.num_projections, fake)
        value = self.sw2(fake, real, directions)
        return LossOutput(value, {"sw2": float(value.detach())})

    def critic_parameters(self) -> list[nn.Parameter]:
        return [self.directions] if self.has_critic else []

    def critic_loss(self, fake: torch.Tensor, real: torch.Tensor) -> LossOutput:
        value = self.sw2(fake.detach(), real.detach(), self.current_directions(fake).to(fake.dtype))
        return LossOutput(-value, {"max_sw2": float(value.detach())})

    @torch.no_grad()
    def after_critic_step(self) -> None:
        if self.has_critic and not isinstance(self.directions, nn.UninitializedParameter):
            self.directions.copy_(F.normalize(self.directions, dim=0))
