"""Inception Score against an independent SciPy implementation (scipy.special.softmax + scipy.stats.entropy) on
fixed logits, its closed-form extremes and the registered metric. The ``inception_logits`` space it reads (the FID
network's unbiased logits) is tested with the other FID Inception readouts in ``tests/test_sfid.py``."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from matchzoo.errors import MatchzooError
from matchzoo.metrics import METRICS, inception_score, inception_score_of_probs


def scipy_inception_score(logits: np.ndarray, splits: int) -> tuple[float, float]:
    """The published recipe: contiguous parts [i N/s, (i+1) N/s), each with its own marginal; mean and std."""
    probs = scipy.special.softmax(logits.astype(np.float64), axis=1)
    n = probs.shape[0]
    scores = []
    for i in range(splits):
        part = probs[i * n // splits : (i + 1) * n // splits]
        marginal = part.mean(axis=0)
        kl = scipy.stats.entropy(part, np.broadcast_to(marginal, part.shape), axis=1)  # KL(p(y|x) || p(y)), nats
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


@pytest.mark.parametrize("n, classes, splits", [(1000, 1008, 10), (1003, 17, 10), (64, 5, 1)])
def test_matches_the_independent_scipy_implementation(n, classes, splits):
    rng = np.random.default_rng(n + classes)
    logits = rng.normal(scale=3.0, size=(n, classes)) + rng.normal(size=classes)  # confident, uneven classes
    expected_mean, expected_std = scipy_inception_score(logits, splits)
    score = inception_score(torch.from_numpy(logits).float(), splits)  # float32 in, float64 inside
    ours = inception_score(logits, splits)
    assert ours.mean == pytest.approx(expected_mean, rel=1e-12) and ours.std == pytest.approx(expected_std, abs=1e-10)
    assert score.mean == pytest.approx(expected_mean, rel=1e-5) and score.splits == splits


def test_uniform_predictions_score_one():
    assert inception_score(np.zeros((100, 1008)), 10).mean == pytest.approx(1.0, abs=1e-12)
    same_row = np.tile(np.random.default_rng(0).normal(size=(1, 9)), (50, 1))  # p(y|x) = p(y), not uniform
    assert inception_score(same_row, 5).mean == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("classes", [1, 7, 100])
def test_one_hot_predictions_spread_evenly_over_k_classes_score_k(classes):
    labels = np.arange(10 * 2 * classes) % classes  # every split holds every class twice
    one_hot = np.eye(classes)[labels]
    assert inception_score_of_probs(one_hot, 10).mean == pytest.approx(classes, rel=1e-12)
    assert inception_score(one_hot * 1000.0, 10).mean == pytest.approx(classes, rel=1e-12)  # saturated logits
    assert inception_score_of_probs(one_hot, 10).std == pytest.approx(0.0, abs=1e-9)


def test_bad_inputs():
    with pytest.raises(ValueError, match="NaN or inf"):
        inception_score(np.full((20, 3), np.nan))
    with pytest.raises(ValueError, match="N >= splits"):
        inception_score(np.zeros((5, 3)), 10)
    with pytest.raises(ValueError, match="rows summing to 1"):
        inception_score_of_probs(np.full((20, 3), 0.5))


def test_registered_metric_declares_its_space_and_keys():
    cls = METRICS.get("inception_score")
    assert cls.spaces == ("inception_logits",) and cls.keys == ("inception_score", "inception_score_std")
    logits = torch.from_numpy(np.random.default_rng(1).normal(size=(200, 11)))
    row = cls()(logits, None, seed=0)
    expected_mean, expected_std = scipy_inception_score(logits.numpy(), 10)
    assert row == pytest.approx({"inception_score": expected_mean, "inception_score_std": expected_std}, rel=1e-12)
    with pytest.raises(MatchzooError, match=r"needs at least inception_score.splits = 10 generated samples, got 4"):
        cls()(logits[:4], None, seed=0)
    with pytest.raises(MatchzooError, match="inception_score.splits"):
        cls(splits=0)
