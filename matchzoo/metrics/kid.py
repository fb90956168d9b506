r"""KID: unbiased squared MMD with the cubic polynomial kernel, averaged over random subsets.

.. math::  k(x, y) = \big(x^\top y / d + 1\big)^3

For subsets :math:`X` (``m`` generated) and :math:`Y` (``m`` real) drawn without replacement,

.. math::  \widehat{\mathrm{MMD}}^2_u = \frac{\sum_{i\ne j}k(x_i,x_j)}{m(m-1)}
           + \frac{\sum_{i\ne j}k(y_i,y_j)}{m(m-1)} - \frac{2}{m^2}\sum_{i,j}k(x_i,y_j),

an unbiased estimate (it can be slightly negative). KID is its mean over ``subsets`` draws; the
standard deviation over draws is returned beside it. Kernel sums are accumulated in float64 over row
chunks, so only ``chunk x m`` kernel blocks are ever in memory.

The registered metric ``kid`` (keys ``kid``, ``kid_std``) compares generated features with the reference
(train split); its cost grows as ``subsets x subset_size^2``, so training leaves it out unless selected.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from matchzoo import linalg
from matchzoo import validate as check
from matchzoo.metrics.registry import Metric, register_metric


@dataclass(frozen=True)
class KID:
    mean: float
    std: float
    subsets: int
    subset_size: int


def polynomial_kernel_sum(
    x: torch.Tensor, y: torch.Tensor, chunk: int = 4096, exclude_diagonal: bool = False
) -> torch.Tensor:
    """:math:`\\sum_{i,j} (x_i^\\top y_j/d+1)^3` over ``x`` ``(n, d)``, ``y`` ``(m, d)`` in row chunks (float64).

    ``exclude_diagonal`` drops the ``i == j`` terms (``x`` and ``y`` must then be the same set).
    """
    dim = x.shape[1]
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], chunk):
        block = (x[start : start + chunk] @ y.T).div_(dim).add_(1.0).pow_(3)  # (chunk, m)
        total += block.sum()
        if exclude_diagonal:
            rows = torch.arange(start, min(start + chunk, x.shape[0]), device=x.device)
            total -= block[rows - start, rows].sum()
    return total


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, chunk: int = 4096) -> float:
    """Unbiased polynomial-kernel MMD² between equal-size sets ``x``, ``y`` ``(m, d)`` (float64)."""
    m = x.shape[0]
    within_x = polynomial_kernel_sum(x, x, chunk, exclude_diagonal=True) / (m * (m - 1))
    within_y = polynomial_kernel_sum(y, y, chunk, exclude_diagonal=True) / (m * (m - 1))
    across = polynomial_kernel_sum(x, y, chunk) / (m * m)
    return float(within_x + within_y - 2.0 * across)


def kernel_inception_distance(
    generated: linalg.ArrayLike,
    real: linalg.ArrayLike,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    chunk: int = 4096,
) -> KID:
    """KID between ``generated`` ``(n, d)`` and ``real`` ``(m, d)`` features; ``subset_size`` capped at min(n, m)."""
    x, y = linalg.as_float64_tensor(generated), linalg.as_float64_tensor(real)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need two (N, D) arrays with the same D, got {tuple(x.shape)} and {tuple(y.shape)}")
    size = min(subset_size, x.shape[0], y.shape[0])
    if size < 2 or subsets < 1:
        raise ValueError(f"KID needs subsets >= 1 of at least 2 samples, got {subsets} subsets of {size}")
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        pick_x = torch.randperm(x.shape[0], generator=generator)[:size].to(x.device)
        pick_y = torch.randperm(y.shape[0], generator=generator)[:size].to(y.device)
        values.append(mmd2_unbiased(x[pick_x], y[pick_y], chunk))
    estimates = torch.tensor(values, dtype=torch.float64)
    std = float(estimates.std()) if subsets > 1 else 0.0
    return KID(float(estimates.mean()), std, subsets, size)


@register_metric("kid")
class KernelInceptionDistance(Metric):
    """``kid`` / ``kid_std``: KID of the generated features against the reference (train split)."""

    keys = ("kid", "kid_std")
    headers = {"kid": "KID", "kid_std": "±"}
    during_training = False

    def __init__(self, subsets: int = 100, subset_size: int = 1000):
        # named as gin binds them: the evaluate options are checked where they are declared
        self.subsets = check.integer("kid.subsets", subsets, 1)
        self.subset_size = check.integer("kid.subset_size", subset_size, 2)

    @classmethod
    def from_suite(cls, settings) -> "KernelInceptionDistance":
        return cls(settings.kid_subsets, settings.kid_subset_size)

    def __call__(self, generated: torch.Tensor, real, seed: int) -> dict[str, float]:
        kid = kernel_inception_distance(generated, real.reference, self.subsets, self.subset_size, seed)
        return {"kid": kid.mean, "kid_std": kid.std}
