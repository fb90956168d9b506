r"""Weighted kernel Bures²: the ``kernel_bures`` objective on a frequency-weighted candidate set.

With feature map :math:`\varphi`, weights ``w`` ``(N,)``, :math:`p = w/\sum w` and the uniform reference
:math:`q_j = 1/M`, the weighted kernel covariance operator is
:math:`C_w = \sum_i s_i\,\tilde\varphi(x_i)\tilde\varphi(x_i)^\top` with the weighted centring
:math:`\tilde\varphi(x_i) = \varphi(x_i) - \sum_k p_k\varphi(x_k)` and :math:`s = p` (``divide_by_n``) or
:math:`s = w`. In dual (Gram) form, with :math:`H_p = I - \mathbf 1 p^\top`,

.. math:: \mathcal B^2_w = \sum_i s_i (H_p K_{ff} H_p^\top)_{ii} + t\operatorname{Tr}(H_q K_{rr} H_q^\top)
          - 2\,\big\|\operatorname{diag}(\sqrt s)\,H_p K_{fr} H_q^\top\sqrt t\big\|_*

(:math:`t = 1/M` or 1). The nuclear norm of :math:`\operatorname{diag}(\sqrt s)\tilde K_{fr}` equals that of the
duplicated-row matrix (same :math:`\tilde K^\top S\tilde K`), so integer weights give the value on the
duplicated set and ``w = 1`` gives ``kernel_bures`` itself. Kernel, bandwidth (the objective's ``bandwidth``
or the median distance of the reference), cosine row normalisation and centring follow the objective.
"""
from __future__ import annotations

import torch

from matchzoo.objectives.bures import double_center, median_bandwidth, nuclear_norm


def _cosine(k: torch.Tensor, diag_rows: torch.Tensor, diag_cols: torch.Tensor) -> torch.Tensor:
    tiny = torch.finfo(torch.float64).tiny
    return k / torch.outer(diag_rows.clamp_min(tiny).sqrt(), diag_cols.clamp_min(tiny).sqrt())


class WeightedKernelBures:
    """``(x (N, D), w (N,)) -> scalar``: kernel Bures² of the weighted candidates to a fixed reference ``(M, D)``."""

    def __init__(self, objective, reference: torch.Tensor):
        self.objective = objective
        self.reference = reference.detach().to(torch.float64)  # (M, D)
        y = self.reference
        self.bandwidth = objective.bandwidth if objective.bandwidth is not None else median_bandwidth(y)
        k_rr = objective.gram(y, y, self.bandwidth)  # (M, M), used once: only its centred trace survives
        self.diag_rr = k_rr.diagonal().clone()  # (M,)
        if objective.normalize_rows:
            k_rr = _cosine(k_rr, self.diag_rr, self.diag_rr)
        trace_rr = (double_center(k_rr) if objective.center else k_rr).trace()
        self.real_scale = 1.0 / y.shape[0] if objective.divide_by_n else 1.0
        self.real_term = trace_rr * self.real_scale

    def __call__(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        from matchzoo.probes.weighted import _probabilities

        objective, y = self.objective, self.reference
        p, _ = _probabilities(weights, x.shape[0])
        w = weights.to(torch.float64)
        x = x.to(torch.float64)
        k_ff, k_fr = objective.gram(x, x, self.bandwidth), objective.gram(x, y, self.bandwidth)  # (N, N), (N, M)
        if objective.normalize_rows:
            diag_ff = k_ff.diagonal()
            k_ff, k_fr = _cosine(k_ff, diag_ff, diag_ff), _cosine(k_fr, diag_ff, self.diag_rr)
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


def kernel_bures_builder(objective, reference: torch.Tensor) -> WeightedKernelBures:
    return WeightedKernelBures(objective, reference)

