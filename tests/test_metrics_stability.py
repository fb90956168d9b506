"""Matching stability: 1 without sampling noise, lower with small real minibatches, no side effects,
and finite in [-1, 1] for every registered objective."""

from __future__ import annotations

import inspect

import pytest
import torch

import matchzoo  # noqa: F401  (registers every objective)
from matchzoo.errors import MatchzooError
from matchzoo.metrics.stability import matching_stability, mean_pairwise_cosine
from matchzoo.objectives.base import LossOutput, Objective
from matchzoo.objectives.frechet import FrechetDistance
from matchzoo.registry import OBJECTIVES


def features(n, d=6, shift=0.0, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).float() + shift


class MeanMatch(Objective):
    """||mean(fake) - mean(real)||^2 with a persistent step counter buffer (stateful on purpose)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, fake, real):
        self.calls += 1
        return LossOutput((fake.mean(0) - real.mean(0)).square().sum())


def test_no_sampling_noise_gives_one():
    objective = FrechetDistance()
    objective.prepare_reference(features(2000, seed=1))  # full-data statistics: real minibatch unused
    value = matching_stability(objective, features(32, shift=0.5, seed=2), features(500, seed=3), resamples=4)
    assert value == pytest.approx(1.0, abs=1e-9)


def test_smaller_real_minibatch_is_less_stable():
    probe, pool = features(16, shift=0.3, seed=4), features(4000, seed=5)
    small = matching_stability(MeanMatch(), probe, pool, resamples=8, batch_size=4)
    large = matching_stability(MeanMatch(), probe, pool, resamples=8, batch_size=1024)
    assert -1.0 <= small < large < 1.0
    assert large > 0.9


def test_generated_context_is_resampled():
    objective = FrechetDistance()  # no reference: covariance of [probe; context] depends on the context
    probe, real, generated = features(8, seed=6), features(64, seed=7), features(400, shift=1.0, seed=8)
    with_context = matching_stability(objective, probe, real[:32], resamples=6, batch_size=32, generated_pool=generated)
    assert -1.0 <= with_context < 1.0


def test_state_and_global_rng_untouched():
    objective = MeanMatch()
    before_state = {k: v.clone() for k, v in objective.state_dict().items()}
    before_rng = torch.get_rng_state()
    first = matching_stability(objective, features(8, seed=9), features(100, seed=10), resamples=3, seed=7)
    assert all(torch.equal(before_state[k], v) for k, v in objective.state_dict().items())
    assert torch.equal(before_rng, torch.get_rng_state())
    assert matching_stability(objective, features(8, seed=9), features(100, seed=10), resamples=3, seed=7) == first


def test_works_under_no_grad_like_an_eval_callback():
    objective = FrechetDistance()
    objective.prepare_reference(features(500, seed=13))
    with torch.no_grad():
        value = matching_stability(objective, features(16, shift=0.2, seed=14), features(200, seed=15), resamples=2)
    assert value == pytest.approx(1.0, abs=1e-9)


def test_mean_pairwise_cosine_oracle():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert mean_pairwise_cosine([a, a, -a]) == pytest.approx(-1.0 / 3.0)
    assert mean_pairwise_cosine([a, b]) == pytest.approx(0.0)
    assert mean_pairwise_cosine([a, torch.zeros(2)]) == 0.0  # zero field counts as cosine 0, never NaN


def test_user_errors_are_one_line():
    with pytest.raises(MatchzooError, match="at least 2 resamples"):
        matching_stability(MeanMatch(), features(4), features(10), resamples=1)
    with pytest.raises(MatchzooError, match="batch_size 50"):
        matching_stability(MeanMatch(), features(4), features(10), batch_size=50)
    with pytest.raises(MatchzooError, match="same D"):
        matching_stability(MeanMatch(), features(4, d=3), features(10, d=5))


def _constructible_with_defaults(cls) -> bool:
    return all(
        p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name != "self"
    )


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_every_registered_objective_has_a_finite_stability(name):
    cls = OBJECTIVES.get(name)
    if not _constructible_with_defaults(cls):
        pytest.skip(f"{name} needs constructor arguments")
    torch.manual_seed(0)
    objective = cls()
    pool = features(256, d=6, seed=11)
    objective.prepare_reference(pool)
    value = matching_stability(objective, features(16, d=6, shift=0.5, seed=12), pool, resamples=3)
    assert -1.0 - 1e-9 <= value <= 1.0 + 1e-9
