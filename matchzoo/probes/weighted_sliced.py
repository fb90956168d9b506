r"""Weighted sliced Wasserstein-2: 1-D optimal transport of a weighted measure along each direction.

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
weighted form is built by :mod:`matchzoo.probes.weighted_adversarial` around :func:`weighted_sliced_w2`.
"""
from __future__ import annotations

import torch

from matchzoo.objectives.sliced import random_directions


def weighted_wasserstein_1d_squared(x: torch.Tensor, p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """W₂² per column between ``Σ p_i δ_{x_il}`` and uniform on ``y[:, l]``: ``x`` ``(N, L)``, ``p`` ``(N,)``, ``y`` ``(M, L)`` -> ``(L,)``."""
    n_points, m_points = x.shape[0], y.shape[0]
    x_sorted, order = x.sort(dim=0)  # (N, L)
    y_sorted = y.sort(dim=0).values  # (M, L)
    levels_x = p.to(x.dtype)[order].cumsum(dim=0)  # (N, L) cumulative weights of the sorted projections
    levels_y = (torch.arange(1, m_points + 1, dtype=x.dtype, device=x.device) / m_points)[:, None].expand(-1, x.shape[1])
    merged = torch.cat([levels_x, levels_y]).sort(dim=0).values  # (N + M, L), differentiable in the levels
    widths = torch.diff(merged, dim=0, prepend=merged.new_zeros(1, x.shape[1]))  # (N + M, L)
    mids = (merged - widths / 2).detach()
    index_x = torch.searchsorted(levels_x.detach().T.contiguous(), mids.T.contiguous()).T.clamp_max(n_points - 1)
    index_y = (mids * m_points).floor().long().clamp_max(m_points - 1)
    gaps = x_sorted.gather(0, index_x) - y_sorted.gather(0, index_y)  # (N + M, L)
    return (widths * gaps.square()).sum(0)


def weighted_sliced_w2(x: torch.Tensor, weights: torch.Tensor, reference: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Mean over ``directions`` ``(D, L)`` of the weighted W₂²; float64 scalar."""
    from matchzoo.probes.weighted import _probabilities

    p, _ = _probabilities(weights, x.shape[0])
    directions = directions.detach().to(torch.float64)
    projected_x = x.to(torch.float64) @ directions  # (N, L)
    projected_y = reference.detach().to(torch.float64) @ directions  # (M, L)
    return weighted_wasserstein_1d_squared(projected_x, p, projected_y).mean()


def sliced_builder(objective, reference: torch.Tensor):
    if objective.has_critic:
        from matchzoo.probes.weighted_adversarial import adversarial_sliced_builder

        return adversarial_sliced_builder(objective, reference)
    directions = random_directions(reference.shape[1], objective.num_projections, reference)  # (D, L), fixed
    return lambda x, w: weighted_sliced_w2(x, w, reference, directions)
