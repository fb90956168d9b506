r"""Improved precision/recall (Kynkäänniemi et al., 2019) and density/coverage (Naeem et al., 2020).

Each real sample :math:`x_i` (``N`` of them) gets a ball of radius :math:`r_i` = distance to its k-th
nearest *other* real sample; each generated sample :math:`y_j` (``M``) likewise gets :math:`s_j` from the
generated set.

.. math::  \text{precision} = \tfrac1M\sum_j \mathbb 1[\exists i: \|y_j-x_i\|\le r_i] \qquad
           \text{recall} = \tfrac1N\sum_i \mathbb 1[\exists j: \|x_i-y_j\|\le s_j]

.. math::  \text{density} = \tfrac1{kM}\sum_j\sum_i \mathbb 1[\|y_j-x_i\|\le r_i] \qquad
           \text{coverage} = \tfrac1N\sum_i \mathbb 1[\min_j\|x_i-y_j\|\le r_i]

Conventional ``k``: 3 for precision/recall, 5 for density/coverage. Distances are computed in row
chunks (``chunk x N`` blocks, float64), so a 50k x 50k distance matrix is never held at once; one pass
over the generated-vs-real pairs gives all four numbers.

The registered metric ``prdc`` computes all four on equal-size sets of at most ``samples`` generated and
reference (train split) samples; it costs ``O(samples^2)``, so training leaves it out unless selected.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from matchzoo import linalg
from matchzoo import validate as check
from matchzoo.errors import MatchzooError
from matchzoo.kernels import squared_distances
from matchzoo.metrics.fdrk import subsample
from matchzoo.metrics.registry import Metric, register_metric


@dataclass(frozen=True)
class PRDC:
    precision: float
    recall: float
    density: float
    coverage: float


def knn_squared_radii(points: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Squared distance of each point ``(N, D)`` to its k-th nearest other point, ``(N,)``."""
    if not 1 <= k < points.shape[0]:
        raise ValueError(f"k-NN radius needs 1 <= k < N, got k={k} with N={points.shape[0]}")
    sq_norms = points.square().sum(dim=1)
    radii = []
    for start in range(0, points.shape[0], chunk):
        block = squared_distances(points[start : start + chunk], points, sq_norms)  # (chunk, N)
        rows = torch.arange(block.shape[0], device=points.device)
        block[rows, rows + start] = 0.0  # self-distance exactly 0 (round-off could make it positive)
        radii.append(block.kthvalue(k + 1, dim=1).values)  # the 1st smallest is the point itself
    return torch.cat(radii)


def _pair_pass(
    real: torch.Tensor, fake: torch.Tensor, real_radii: torch.Tensor, fake_radii: torch.Tensor | None, chunk: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One chunked pass over fake x real: (fake in some real ball, #real balls per fake, real in fake ball,
    nearest fake)."""
    real_sq = real.square().sum(dim=1)
    inside_real, ball_counts = [], []
    real_in_fake_ball = torch.zeros(real.shape[0], dtype=torch.bool, device=real.device)
    nearest_fake = torch.full((real.shape[0],), float("inf"), dtype=real.dtype, device=real.device)
    for start in range(0, fake.shape[0], chunk):
        block = squared_distances(fake[start : start + chunk], real, real_sq)  # (chunk, N)
        within = block <= real_radii[None, :]
        inside_real.append(within.any(dim=1))
        ball_counts.append(within.sum(dim=1))
        nearest_fake = torch.minimum(nearest_fake, block.min(dim=0).values)
        if fake_radii is not None:
            real_in_fake_ball |= (block <= fake_radii[start : start + chunk, None]).any(dim=0)
    return torch.cat(inside_real), torch.cat(ball_counts), real_in_fake_ball, nearest_fake


def _as_pair(real: linalg.ArrayLike, fake: linalg.ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = linalg.as_float64_tensor(real), linalg.as_float64_tensor(fake)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need two (N, D) arrays with the same D, got {tuple(x.shape)} and {tuple(y.shape)}")
    return x, y.to(x.device)


def precision_recall(
    real: linalg.ArrayLike, fake: linalg.ArrayLike, k: int = 3, chunk: int = 1024
) -> tuple[float, float]:
    """Improved precision and recall of ``fake`` ``(M, D)`` against ``real`` ``(N, D)``."""
    x, y = _as_pair(real, fake)
    real_radii, fake_radii = knn_squared_radii(x, k, chunk), knn_squared_radii(y, k, chunk)
    inside_real, _, real_in_fake_ball, _ = _pair_pass(x, y, real_radii, fake_radii, chunk)
    return float(inside_real.double().mean()), float(real_in_fake_ball.double().mean())


def density_coverage(
    real: linalg.ArrayLike, fake: linalg.ArrayLike, k: int = 5, chunk: int = 1024
) -> tuple[float, float]:
    """Density and coverage of ``fake`` ``(M, D)`` against ``real`` ``(N, D)``."""
    x, y = _as_pair(real, fake)
    real_radii = knn_squared_radii(x, k, chunk)
    _, ball_counts, _, nearest_fake = _pair_pass(x, y, real_radii, None, chunk)
    density = ball_counts.double().sum() / (k * y.shape[0])
    coverage = (nearest_fake <= real_radii).double().mean()
    return float(density), float(coverage)


def prdc(real: linalg.ArrayLike, fake: linalg.ArrayLike, k_pr: int = 3, k_dc: int = 5, chunk: int = 1024) -> PRDC:
    """All four numbers with the conventional ``k`` (3 for precision/recall, 5 for density/coverage)."""
    precision, recall = precision_recall(real, fake, k_pr, chunk)
    density, coverage = density_coverage(real, fake, k_dc, chunk)
    return PRDC(precision, recall, density, coverage)


@register_metric("prdc")
class PrecisionRecallDensityCoverage(Metric):
    """``precision``/``recall`` (k=3) and ``density``/``coverage`` (k=5) against the reference (train split)."""

    keys = ("precision", "recall", "density", "coverage")
    during_training = False

    def __init__(self, samples: int = 10000):
        self.samples = check.integer("prdc.samples", samples, 6)  # k-NN with k = 5 needs 6 points per side

    @classmethod
    def from_suite(cls, settings) -> "PrecisionRecallDensityCoverage":
        return cls(settings.prdc_samples)

    def __call__(self, generated: torch.Tensor, real, seed: int) -> dict[str, float]:
        # equal set sizes, as the metrics' authors recommend (coverage depends on N/M)
        size = min(self.samples, real.reference.shape[0], generated.shape[0])
        if size <= 5:
            raise MatchzooError(
                f"precision/recall/density/coverage need more than 5 samples per side (k-NN with k=5), "
                f"got {size}; provide more samples or skip them (--no_prdc)"
            )
        scores = prdc(subsample(real.reference, size, seed), subsample(generated, size, seed + 1))
        return {
            "precision": scores.precision,
            "recall": scores.recall,
            "density": scores.density,
            "coverage": scores.coverage,
        }
