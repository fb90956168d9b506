r"""Inception Score: how confidently and how diversely a classifier labels the generated samples.

.. math:: \mathrm{IS} = \exp\Big(\mathbb{E}_x\, \mathrm{KL}\big(p(y\mid x)\,\|\,p(y)\big)\Big),
          \qquad p(y) = \mathbb{E}_x\, p(y\mid x)

computed, as the original implementation and the ADM evaluator do, on ``splits`` contiguous parts of the samples
(part ``i`` is rows ``[i N / splits, (i+1) N / splits)``), each with its own marginal :math:`p(y)`; the score is
the mean over parts and the spread their standard deviation (``ddof=0``). 50,000 samples in 10 splits is the
published protocol (the ADM evaluator's ``split_size=5000``). Everything is float64; ``log p(y|x)`` comes from
``log_softmax`` of the logits, so confident predictions do not lose their tail to round-off.

Extremes: ``p(y|x)`` equal for every ``x`` gives 1; one-hot predictions spread evenly over ``K`` classes in every
part give ``K``.

The registered metric ``inception_score`` (keys ``inception_score``, ``inception_score_std``) is meaningful only on
class logits: it declares ``spaces = ("inception_logits",)`` (the FID network's 1008 logits, see
:mod:`matchzoo.spaces.inception`), and the evaluation paths run it in those spaces only. It ignores the real side.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from matchzoo import linalg
from matchzoo import validate as check
from matchzoo.errors import MatchzooError
from matchzoo.metrics.registry import Metric, register_metric

IS_SPACES = ("inception_logits",)


@dataclass(frozen=True)
class InceptionScore:
    mean: float
    std: float
    splits: int


def split_bounds(n: int, splits: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]``: ``splits`` contiguous parts of ``n`` rows, sizes differing by at most one."""
    return [(i * n // splits, (i + 1) * n // splits) for i in range(splits)]


def inception_score_from_log_probs(log_probs: torch.Tensor, splits: int = 10) -> InceptionScore:
    """IS of ``log p(y|x)`` ``(N, K)`` (float64; rows are normalised log-probabilities)."""
    n = log_probs.shape[0]
    if log_probs.ndim != 2 or n < splits or splits < 1:
        raise ValueError(
            f"Inception Score needs (N, K) predictions with N >= splits >= 1; got {tuple(log_probs.shape)}"
        )
    scores = []
    for start, stop in split_bounds(n, splits):
        part = log_probs[start:stop]  # (n_i, K)
        probs = part.exp()
        log_marginal = torch.logsumexp(part, dim=0) - torch.log(torch.tensor(float(stop - start), dtype=part.dtype))
        # 0 * log 0 = 0: a class with p(y|x) = 0 contributes nothing (xlogy semantics)
        terms = torch.where(probs > 0, probs * (part - log_marginal), torch.zeros_like(probs))
        scores.append(torch.exp(terms.sum(dim=1).mean()))
    values = torch.stack(scores)
    return InceptionScore(float(values.mean()), float(values.std(unbiased=False)), splits)


def inception_score(logits: linalg.ArrayLike, splits: int = 10) -> InceptionScore:
    """IS of class logits ``(N, K)`` (softmax taken here, in float64)."""
    x = linalg.as_float64_tensor(logits)
    if x.ndim != 2:
        raise ValueError(f"Inception Score takes (N, K) logits, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("logits contain NaN or inf")
    return inception_score_from_log_probs(torch.log_softmax(x, dim=1), splits)


def inception_score_of_probs(probs: linalg.ArrayLike, splits: int = 10) -> InceptionScore:
    """IS of class probabilities ``(N, K)`` (rows summing to 1; zeros allowed)."""
    p = linalg.as_float64_tensor(probs)
    if p.ndim != 2 or (p < 0).any() or not torch.allclose(p.sum(dim=1), torch.ones_like(p[:, 0]), atol=1e-6):
        raise ValueError("Inception Score takes (N, K) probabilities: non-negative rows summing to 1")
    return inception_score_from_log_probs(torch.log(p), splits)  # log 0 = -inf is masked by p > 0 above


@register_metric("inception_score")
class InceptionScoreMetric(Metric):
    """``inception_score`` / ``inception_score_std``: IS of the generated logits (``inception_logits`` space)."""

    keys = ("inception_score", "inception_score_std")
    headers = {"inception_score": "IS", "inception_score_std": "IS±"}
    spaces = IS_SPACES  # the metric reads class logits: only spaces whose features are logits

    def __init__(self, splits: int = 10):
        self.splits = check.positive_int("inception_score.splits", splits)

    def __call__(self, generated: torch.Tensor, real, seed: int) -> dict[str, float]:
        if generated.shape[0] < self.splits:
            raise MatchzooError(
                f"inception_score needs at least inception_score.splits = {self.splits} generated samples, "
                f"got {generated.shape[0]}; generate more samples or lower the splits"
            )
        score = inception_score(generated, self.splits)
        return {"inception_score": score.mean, "inception_score_std": score.std}
