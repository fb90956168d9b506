r"""Weighted form of ``sinkhorn_transport``: the debiased entropic OT whose feature gradient the objective follows.

``sinkhorn_transport``'s loss *value* is a constant-scale surrogate (``MSE(f, sg(f+V))``); its signal is the
displacement :math:`V`, which is exactly (per ε) minus the feature gradient of a debiased entropic OT
divergence. So the natural weighted form is that divergence on the weighted measure
:math:`\alpha_w = \sum_i p_i\delta_{x_i}` (:math:`p = w/n`, :math:`n=\sum w`), with the objective's cost
:math:`C = \|x-y\|^2`, its ``taus``, ``iterations`` and its "no self-transport" rule:

.. math:: S^\tau(w) = \mathrm{OT}_{\varepsilon}(\alpha_w, \beta) - \tfrac12\,\mathrm{OT}^{\ne}_{\varepsilon'}(\alpha_w, \alpha_w),
          \qquad L(w) = \frac1{|\tau|}\sum_\tau S^\tau(w)

* :math:`\mathrm{OT}_\varepsilon(a, b) = \max_{f,g}\langle a,f\rangle + \langle b,g\rangle
  - \varepsilon\langle \nu, e^{(f\oplus g - C)/\varepsilon} - 1\rangle` with reference measure
  :math:`\nu = a\otimes b`; evaluated at the Sinkhorn potentials (no gradient through the iterations: by the
  envelope theorem :math:`\partial/\partial p_i = f_i` and :math:`\partial/\partial x_i = 2p_i(x_i - y_i)`,
  :math:`y_i` the barycentric target).
* :math:`\mathrm{OT}^{\ne}`: a sample may not transport to itself. For frequency weights that means each row
  sees the measure minus one copy of itself: :math:`\nu_{ij} = p_i (w_j - \delta_{ij})_+/n`. At ``w = 1`` this is the
  objective's :math:`C_{ii} = +\infty`; at integer weights the copies of a sample may transport to each
  other, exactly as in the duplicated set.
* :math:`\varepsilon = \tau\cdot\mathrm{std}(C_{fr})`, :math:`\varepsilon' = \tau\cdot\mathrm{std}(C_{ff})` over
  the off-diagonal entries: weighted standard deviations under :math:`\nu` with the duplicated set's
  ``count/(count-1)`` correction (no gradient, as in the objective).

Per ε, :math:`\nabla_{x_i}S^\tau = 2p_i(z_i - y_i) = -2p_i\rho_\tau V^\tau_i` (:math:`y_i`, :math:`z_i` the barycentric
targets, :math:`\rho_\tau` the displacement RMS): at ``w = 1`` and one τ the form's feature gradient is
:math:`D\rho_\tau` times the objective's :math:`-\tfrac2{BD}V`. Over several τ the objective also rescales each
displacement to unit RMS; that is a preconditioner of its gradient, not part of any value, so the weighted form
sums the divergences (dividing by a weight-dependent :math:`sg(\rho_\tau)` would make the reported value rise
while the weights improve).

What cannot hold: ``w = 1`` does not reproduce the objective's *value* (a surrogate whose value carries no
information; its gradient is reproduced instead), and the :math:`-\tfrac12\mathrm{OT}(\beta,\beta)` term of a
full divergence is left out: it is constant in ``w`` and ``x`` and the objective never defines its ε, so
:math:`L` is a divergence up to that constant (it can be negative).
"""
from __future__ import annotations

import torch

from matchzoo.errors import MatchzooError
from matchzoo.objectives.bures import squared_distances


def weighted_std(values: torch.Tensor, measure: torch.Tensor, count: float) -> float:
    """Standard deviation of ``values`` under the (sub-)probability ``measure``, with the ``count/(count-1)`` correction."""
    total = measure.sum()
    mean = (measure * values).sum() / total
    variance = (measure * (values - mean).square()).sum() / total * count / max(count - 1.0, 1.0)
    return float(variance.clamp_min(0.0).sqrt())


def c_transform(potential: torch.Tensor, log_kernel: torch.Tensor, eps: float) -> torch.Tensor:
    """``-eps log Σ_j ν_ij e^{(potential_j - C_ij)/eps}`` given ``log_kernel = log ν_ij - C_ij/eps`` ``(M, N)``; -> ``(M,)``.

    The measure and the cost are folded into one precomputed matrix: each iteration is one add and one logsumexp.
    """
    return -eps * torch.logsumexp(log_kernel + potential[None, :] / eps, dim=1)


def dual_value(first: torch.Tensor, second: torch.Tensor, row_potential: torch.Tensor, col_potential: torch.Tensor,
               measure: torch.Tensor, cost: torch.Tensor, eps: float) -> torch.Tensor:
    """``<a, f> + <b, g> - eps <ν, exp((f ⊕ g - C)/eps) - 1>``, differentiable in ``a``, ``b``, ``ν``, ``C``."""
    # clamped: where ν_ij = 0 (a forbidden self-transport) the exponent may be large; 0 * finite keeps gradients finite
    kernel = torch.exp(((row_potential[:, None] + col_potential[None, :] - cost) / eps).clamp_max(600.0))
    return first @ row_potential + second @ col_potential - eps * (measure * (kernel - 1.0)).sum()


def cross_ot(p: torch.Tensor, cost: torch.Tensor, eps: float, iterations: int) -> torch.Tensor:
    """Entropic OT between ``Σ p_i δ`` and the uniform columns of ``cost`` ``(N, M)`` (potentials held fixed in autograd)."""
    q = torch.full((cost.shape[1],), 1.0 / cost.shape[1], dtype=cost.dtype, device=cost.device)
    with torch.no_grad():  # the objective's schedule: cold start, column update first, rows last
        scaled = cost.detach() / eps
        rows_kernel = q.log()[None, :] - scaled  # (N, M)
        cols_kernel = (p.detach().log()[None, :] - scaled.T).contiguous()  # (M, N)
        row = torch.zeros_like(p.detach())
        col = c_transform(row, cols_kernel, eps)
        for _ in range(iterations):
            row = c_transform(col, rows_kernel, eps)
            col = c_transform(row, cols_kernel, eps)
        row = c_transform(col, rows_kernel, eps)
    return dual_value(p, q, row, col, p[:, None] * q[None, :], cost, eps)


def self_ot(p: torch.Tensor, measure: torch.Tensor, cost: torch.Tensor, eps: float, iterations: int) -> torch.Tensor:
    """Symmetric entropic OT of ``Σ p_i δ`` with itself under the leave-one-out reference ``measure`` ``(N, N)``."""
    with torch.no_grad():  # averaged symmetric updates, as the objective
        conditional = measure.detach() / p.detach().clamp_min(torch.finfo(p.dtype).tiny)[:, None]  # ν_ij / p_i
        kernel = conditional.log() - cost.detach() / eps  # (N, N)
        potential = torch.zeros_like(p.detach())
        for _ in range(iterations):
            potential = 0.5 * (potential + c_transform(potential, kernel, eps))
    return dual_value(p, p, potential, potential, measure, cost, eps)


def leave_one_out_measure(weights: torch.Tensor) -> torch.Tensor:
    """``ν_ij = p_i (w_j - δ_ij)_+ / n``: each sample's row without one copy of itself ``(N, N)``."""
    total = weights.sum()
    p = weights / total
    others = (weights[None, :] - torch.eye(weights.shape[0], dtype=weights.dtype, device=weights.device)).clamp_min(0.0)
    return p[:, None] * others / total


class WeightedSinkhornTransport:
    """``(x (N, D), w (N,)) -> scalar``: mean over τ of the debiased entropic OT divergences (no self-transport)."""

    def __init__(self, objective, reference: torch.Tensor):
        self.taus, self.iterations = objective.taus, objective.iterations
        self.reference = reference.detach().to(torch.float64)  # (M, D)

    def __call__(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        from matchzoo.probes.weighted import _probabilities

        p, total = _probabilities(weights, x.shape[0])
        x, y, w = x.to(torch.float64), self.reference, weights.to(torch.float64)
        if x.shape[0] < 2 or float(total.detach()) <= 1.0:
            raise MatchzooError("the weighted sinkhorn_transport needs a total weight above 1 (a sample may not transport to itself)")
        cross_cost, self_cost = squared_distances(x, y), squared_distances(x, x)  # (N, M), (N, N)
        self_measure = leave_one_out_measure(w)  # (N, N)
        count = float(total.detach())
        eps_scale_cross = weighted_std(cross_cost.detach(), (p.detach()[:, None] / y.shape[0]).expand_as(cross_cost), count * y.shape[0])
        eps_scale_self = weighted_std(self_cost.detach(), self_measure.detach(), count * count - count)
        terms = []
        for tau in self.taus:
            eps_cross, eps_self = tau * eps_scale_cross, tau * eps_scale_self
            cross_value = cross_ot(p, cross_cost, eps_cross, self.iterations)
            self_value = self_ot(p, self_measure, self_cost, eps_self, self.iterations)
            terms.append(cross_value - 0.5 * self_value)
        return sum(terms) / len(terms)


def transport_builder(objective, reference: torch.Tensor) -> WeightedSinkhornTransport:
    return WeightedSinkhornTransport(objective, reference)

