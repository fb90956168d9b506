r"""``fd``: Fréchet distance between the batch of generated features and the reference, differentiable.

.. math:: \mathrm{FD} = \|\mu_f-\mu_r\|^2 + \operatorname{Tr}\Sigma_f + \operatorname{Tr}\Sigma_r
          - 2\operatorname{Tr}(\Sigma_r^{1/2}\Sigma_f\Sigma_r^{1/2})^{1/2}

Statistics in float64, covariances unbiased. The reference statistics come from
:meth:`prepare_reference` (the trainer passes all real training features once) or, when the objective
is called standalone, from ``real``. The trace term uses :mod:`matchzoo.linalg` (cached
:math:`\Sigma_r^{1/2}`, dual ``n x n`` form when the batch is smaller than the dimension).
"""
from __future__ import annotations

from typing import Optional

import torch

from matchzoo import linalg
from matchzoo.objectives.base import LossOutput, Objective
from matchzoo.registry import register_objective


def frechet_loss(fake: torch.Tensor, mu_ref: torch.Tensor, cov_ref: torch.Tensor, sqrt_cov_ref: torch.Tensor) -> torch.Tensor:
    """Differentiable FD of ``fake`` ``(B, D)`` to N(mu_ref, cov_ref); float64 scalar."""
    mu, cov = linalg.mean_cov(fake)
    if fake.shape[0] < fake.shape[1]:
        trace_term = linalg.trace_sqrt_product_dual(fake.to(torch.float64) - mu, cov_ref)
    else:
        trace_term = linalg.trace_sqrt_product(cov, sqrt_cov_ref)
    return (mu - mu_ref).square().sum() + cov.trace() + cov_ref.trace() - 2.0 * trace_term


@register_objective("fd")
class FrechetDistance(Objective):
    """Batch Fréchet distance to the reference statistics (see module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._reference: Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None

    def prepare_reference(self, features: torch.Tensor) -> None:
        mu, cov = linalg.mean_cov(features.detach())
        self._reference = (mu, cov, linalg.psd_sqrt(cov))

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> LossOutput:
        self.check_features(fake, real)
        if self._reference is not None:
            mu_ref, cov_ref, sqrt_ref = (t.to(fake.device) for t in self._reference)
        else:
            mu_ref, cov_ref = linalg.mean_cov(real.detach())
            sqrt_ref = linalg.psd_sqrt(cov_ref)
        value = frechet_loss(fake, mu_ref, cov_ref, sqrt_ref)
        return LossOutput(value.to(fake.dtype), {"fd": float(value.detach())})
