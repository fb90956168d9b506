"""All evaluation numbers of one feature space, from features: the row that ``matchzoo evaluate`` prints.

Given generated features and the reference (train split) and held-out real features of one space:

* ``fd``: FD(all generated, reference), fast path against the cached reference factor;
* ``fd_matched`` / ``fd_heldout`` / ``fdr``: FD of ``n`` generated vs ``n`` held-out samples against the
  reference, ``n = min(#generated, #held-out)``, and their ratio (see :mod:`matchzoo.metrics.fdrk`);
* ``kid`` / ``kid_std``: polynomial-kernel KID against the reference (:mod:`matchzoo.metrics.kid`);
* ``precision``/``recall`` (k=3) and ``density``/``coverage`` (k=5) on equal-size sets of at most
  ``prdc_samples`` generated and reference samples (:mod:`matchzoo.metrics.prdc`; cost grows as N x M).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Optional

import torch

from matchzoo.errors import MatchzooError
from matchzoo.metrics.fdrk import matched_frechet_distances, subsample
from matchzoo.metrics.frechet import FrechetReference
from matchzoo.metrics.kid import kernel_inception_distance
from matchzoo.metrics.prdc import prdc


@dataclass(frozen=True)
class SuiteSettings:
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    prdc: bool = True
    prdc_samples: int = 10000
    seed: int = 0


def evaluate_space(generated: torch.Tensor, reference: torch.Tensor, heldout: torch.Tensor,
                   settings: SuiteSettings = SuiteSettings(), frechet_reference: Optional[FrechetReference] = None,
                   cache_key: Optional[Hashable] = None) -> dict[str, float]:
    """One row of metrics for ``generated`` ``(n, D)`` vs ``reference`` ``(N, D)`` (+ ``heldout`` ``(H, D)``)."""
    frechet_reference = frechet_reference or FrechetReference.from_features(reference)
    fd_matched, fd_heldout, matched = matched_frechet_distances(generated, heldout, frechet_reference, settings.seed, cache_key)
    row = {
        "dim": float(generated.shape[1]), "n": float(generated.shape[0]), "fdr_n": float(matched),
        "fd": frechet_reference.distance_to_features(generated),
        "fd_matched": fd_matched, "fd_heldout": fd_heldout, "fdr": fd_matched / fd_heldout if fd_heldout > 0 else float("inf"),
    }
    kid = kernel_inception_distance(generated, reference, settings.kid_subsets, settings.kid_subset_size, settings.seed)
    row.update(kid=kid.mean, kid_std=kid.std)
    if settings.prdc:  # equal set sizes, as the metrics' authors recommend (coverage depends on N/M)
        size = min(settings.prdc_samples, reference.shape[0], generated.shape[0])
        if size <= 5:
            raise MatchzooError(f"precision/recall/density/coverage need more than 5 samples per side (k-NN with k=5), "
                                f"got {size}; provide more samples or skip them (--no_prdc)")
        real = subsample(reference, size, settings.seed)
        fake = subsample(generated, size, settings.seed + 1)
        scores = prdc(real, fake)
        row.update(precision=scores.precision, recall=scores.recall, density=scores.density, coverage=scores.coverage)
    return row
