"""All evaluation numbers of one feature space: every selected registered metric
(:mod:`matchzoo.metrics.registry`) over the generated features and the space's real side.

The one evaluation path: ``matchzoo evaluate`` prints one row per space, the training evaluator logs the
same quantities as ``eval/<key>/<space>``. Registered now (``fd_reference``, ``fd_to_heldout``, ``fdr``,
``kid``, ``prdc``):

* ``fd``: FD(all generated, reference), the reference being the train split (fast path against its cached factor);
* ``fd_to_heldout``: FD(all generated, held-out split);
* ``fd_matched`` / ``fd_heldout`` / ``fdr`` / ``fdr_n``: FD of ``n`` generated vs ``n`` held-out samples against
  the reference, ``n = min(#generated, #held-out)``, and their ratio (see :mod:`matchzoo.metrics.fdrk`);
* ``kid`` / ``kid_std``: polynomial-kernel KID against the reference (:mod:`matchzoo.metrics.kid`);
* ``precision``/``recall`` (k=3) and ``density``/``coverage`` (k=5) on equal-size sets of at most
  ``prdc_samples`` generated and reference samples (:mod:`matchzoo.metrics.prdc`; cost grows as N x M).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Optional, Sequence

import torch

from matchzoo.metrics.frechet import FrechetReference, SpaceReference
from matchzoo.metrics.registry import Metric, make_metrics, metric_names

PRDC_METRIC = "prdc"  # the one metric `evaluate --no_prdc` leaves out


@dataclass(frozen=True)
class SuiteSettings:
    """``matchzoo evaluate``'s metric options; every registered metric runs (``prdc=False``: all but ``prdc``)."""

    kid_subsets: int = 100
    kid_subset_size: int = 1000
    prdc: bool = True
    prdc_samples: int = 10000
    seed: int = 0

    def metrics(self) -> list[Metric]:
        return make_metrics([name for name in metric_names() if self.prdc or name != PRDC_METRIC], self)


def compute_row(
    metrics: Sequence[Metric], generated: torch.Tensor, real: SpaceReference, seed: int
) -> dict[str, float]:
    """``{key: value}`` of every metric for ``generated`` ``(n, D)`` in one space."""
    row: dict[str, float] = {}
    for metric in metrics:
        row.update(metric(generated, real, seed))
    return row


def evaluate_space(
    generated: torch.Tensor,
    reference: torch.Tensor,
    heldout: torch.Tensor,
    settings: SuiteSettings = SuiteSettings(),
    frechet_reference: Optional[FrechetReference] = None,
    cache_key: Optional[Hashable] = None,
) -> dict[str, float]:
    """One row of metrics for ``generated`` ``(n, D)`` vs ``reference`` ``(N, D)`` (+ ``heldout`` ``(H, D)``)."""
    real = SpaceReference(reference, heldout, frechet_reference, cache_key)
    row = {"dim": float(generated.shape[1]), "n": float(generated.shape[0])}
    row.update(compute_row(settings.metrics(), generated, real, settings.seed))
    return row
