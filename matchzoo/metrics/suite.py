"""All evaluation numbers of one feature space: every selected registered metric
(:mod:`matchzoo.metrics.registry`) over the generated features and the space's real side.

The one evaluation path: ``matchzoo evaluate`` prints one row per space, the training evaluator logs the
same quantities as ``eval/<key>/<space>``. Registered now (``fd_reference``, ``fd_to_heldout``, ``fdr``,
``kid``, ``prdc``):

* ``fd``: FD(all generated, reference), the reference being the train split (fast path against its cached factor);
* ``fd_to_heldout``: FD(all generated, held-out split);
* ``fd_matched`` / ``fd_heldout`` / ``fdr`` / ``fdr_n``: FD of ``n`` generated vs ``n`` held-out samples against
  the reference, ``n = min(#generated, #held-out)``, and their ratio (see :mod:`matchzoo.metrics.fdrk`);
* ``fd_low``/``fd_high``, ``fdr_low``/``fdr_high``, ``fdr_below_one``: bootstrap intervals at the reported ``n``
  (:mod:`matchzoo.metrics.intervals`; ``interval_draws = 0`` leaves them out);
* ``kid`` / ``kid_std``: polynomial-kernel KID against the reference (:mod:`matchzoo.metrics.kid`);
* ``precision``/``recall`` (k=3) and ``density``/``coverage`` (k=5) on equal-size sets of at most
  ``prdc_samples`` generated and reference samples (:mod:`matchzoo.metrics.prdc`; cost grows as N x M).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Optional, Sequence

import torch

from matchzoo.metrics.frechet import FrechetReference, SpaceReference
from matchzoo.metrics.intervals import DEFAULT_DRAWS, DEFAULT_LEVEL, IntervalSpec, SpaceValues
from matchzoo.metrics.registry import Metric, make_metrics, metric_names

PRDC_METRIC = "prdc"  # the one metric `evaluate --no_prdc` leaves out
INTERVALS_METRIC = "intervals"  # left out when interval_draws = 0


@dataclass(frozen=True)
class SuiteSettings:
    """``matchzoo evaluate``'s metric options; every registered metric runs (``prdc=False``: all but ``prdc``)."""

    kid_subsets: int = 100
    kid_subset_size: int = 1000
    prdc: bool = True
    prdc_samples: int = 10000
    seed: int = 0
    interval_draws: int = DEFAULT_DRAWS
    interval_level: float = DEFAULT_LEVEL
    fdr_baselines: Optional[dict] = None  # {space: fixed FDr denominator}; None: the held-out split everywhere

    def metrics(self) -> list[Metric]:
        left_out = {PRDC_METRIC} if not self.prdc else set()
        if self.interval_draws == 0:
            left_out.add(INTERVALS_METRIC)
        return make_metrics([name for name in metric_names() if name not in left_out], self)

    @property
    def intervals(self) -> IntervalSpec:
        return IntervalSpec(self.interval_draws, self.interval_level)


def compute_row(metrics: Sequence[Metric], generated: torch.Tensor, real: SpaceReference, seed: int) -> SpaceValues:
    """``{key: value}`` of every metric that applies to the space (:meth:`Metric.applies_to`, by ``real.name``) for
    ``generated`` ``(n, D)``, with the per-draw values of
    the interval metric attached (``.draws``) for the numbers across spaces (:mod:`matchzoo.metrics.summary`)."""
    row = SpaceValues({})
    space = getattr(real, "name", None)
    for metric in metrics:
        if metric.applies_to(space):  # e.g. the Inception Score only in a logits space
            row.merge(metric(generated, real, seed))
    return row


def named(real: SpaceReference, name: Optional[str]) -> SpaceReference:
    """``real`` knowing its space's name (``fdr.baselines`` are per space name)."""
    if name is not None:
        real.name = name
    return real


def evaluate_space(
    generated: torch.Tensor,
    reference: torch.Tensor,
    heldout: torch.Tensor,
    settings: SuiteSettings = SuiteSettings(),
    frechet_reference: Optional[FrechetReference] = None,
    cache_key: Optional[Hashable] = None,
    name: Optional[str] = None,
) -> SpaceValues:
    """One row of metrics for ``generated`` ``(n, D)`` vs ``reference`` ``(N, D)`` (+ ``heldout`` ``(H, D)``) in
    the space called ``name``."""
    real = named(SpaceReference(reference, heldout, frechet_reference, cache_key), name)
    row = SpaceValues({"dim": float(generated.shape[1]), "n": float(generated.shape[0])})
    return row.merge(compute_row(settings.metrics(), generated, real, settings.seed))
