"""Bootstrap intervals of FD, FDr and FDr^k (matchzoo.metrics.intervals): coverage of the closed-form FD and of
the at-n FDr on Gaussians at about the nominal rate, shrinking with n, deterministic under the seed, shared
resamples across spaces, fixed FDr baselines, and their one-line errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from matchzoo import keys
from matchzoo.errors import MatchzooError
from matchzoo.metrics import SpaceReference, SuiteSettings, evaluate_space
from matchzoo.metrics.fdrk import FDr, parse_baselines
from matchzoo.metrics.frechet import FrechetReference, GaussianStats
from matchzoo.metrics.intervals import Intervals, fd_draws, percentile_interval, resample_indices
from matchzoo.metrics.suite import named

DIM = 3
SHIFT, SCALE = 0.5, 1.2  # generated ~ N(SHIFT, SCALE * I); reference ~ N(0, I)


def population_reference(dim: int = DIM) -> FrechetReference:
    """The reference as the population itself: the closed form is then exact."""
    zeros, eye = torch.zeros(dim, dtype=torch.float64), torch.eye(dim, dtype=torch.float64)
    return FrechetReference(GaussianStats(zeros, eye, 10**9))


def closed_form_fd() -> float:
    """FD between N(SHIFT, SCALE I) and N(0, I): |mu|^2 + sum (sqrt(SCALE) - 1)^2 over dimensions."""
    return DIM * SHIFT**2 + DIM * (math.sqrt(SCALE) - 1.0) ** 2


def draw(rng: torch.Generator, n: int, generated, dim: int = DIM, shift: float = SHIFT, scale: float = SCALE):
    x = torch.randn(n, dim, generator=rng, dtype=torch.float64)
    return x * math.sqrt(scale) + shift if generated else x


@pytest.fixture(autouse=True)
def one_thread():
    """Thousands of tiny FDs: thread hand-offs would cost more than the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def binomial_floor(trials: int, rate: float, z: float = 3.0) -> int:
    """Coverage below this many hits in ``trials`` is more than ``z`` sd under ``rate``."""
    return int(math.floor(trials * rate - z * math.sqrt(trials * rate * (1 - rate))))


def test_fd_interval_covers_the_closed_form_at_about_the_nominal_rate():
    reference, truth = population_reference(), closed_form_fd()
    rng, trials, hits = torch.Generator().manual_seed(0), 100, 0
    for trial in range(trials):
        sample = draw(rng, 400, generated=True)
        observed = reference.distance_to_features(sample)
        low, high = percentile_interval(fd_draws(reference, sample, observed, 100, seed=trial), 0.95)
        hits += low <= truth <= high
    assert binomial_floor(trials, 0.95) <= hits <= trials  # 95 +- 3 sd; the plain bootstrap gets far fewer


def test_fdr_interval_covers_the_at_n_ratio_at_about_the_nominal_rate():
    """Target: E FD_n(generated) / E FD_n(held-out), the ratio the protocol gives on average at this n (the
    n -> infinity FDr is infinite: held-out and reference share one distribution). D = 8, n = 359 (the digits
    held-out size): FD is bias-dominated there, where the plain bootstrap fails (module docstring)."""
    dim, n = 8, 359
    reference, rng = population_reference(dim), torch.Generator().manual_seed(1)
    sample = lambda generated: draw(rng, n, generated, dim, shift=0.3, scale=1.0)  # noqa: E731
    expected = {side: np.mean([reference.distance_to_features(sample(side)) for _ in range(1000)]) for side in (1, 0)}
    target = expected[1] / expected[0]
    metric, trials, hits = Intervals(draws=100, fdr=FDr()), 100, 0
    for trial in range(trials):
        row = metric(sample(1), SpaceReference(None, sample(0), reference), seed=trial)
        hits += row[keys.FDR_LOW] <= target <= row[keys.FDR_HIGH]
    assert binomial_floor(trials, 0.95) <= hits <= trials


def test_intervals_shrink_with_n_and_contain_the_observed_value():
    reference, rng = population_reference(), torch.Generator().manual_seed(2)
    widths = []
    for n in (100, 400, 1600):
        width = 0.0
        for trial in range(5):  # one sample's interval width is itself noisy: average five
            sample = draw(rng, n, generated=True)
            observed = reference.distance_to_features(sample)
            low, high = percentile_interval(fd_draws(reference, sample, observed, 100, seed=trial), 0.95)
            assert low < observed < high
            width += (high - low) / 5
        widths.append(width)
    assert widths[0] > 1.5 * widths[1] > 1.5**2 * widths[2]  # ~1/sqrt(n): halves per 4x samples


def test_deterministic_under_the_seed_and_shared_across_spaces():
    rng = torch.Generator().manual_seed(3)
    generated, heldout, reference = draw(rng, 300, True), draw(rng, 300, False), draw(rng, 1000, False)
    real = SpaceReference(reference, heldout)
    metric = Intervals(draws=50, fdr=FDr())
    first, again, other = metric(generated, real, 7), metric(generated, real, 7), metric(generated, real, 8)
    assert dict(first) == dict(again) and torch.equal(first.draws[keys.FDR], again.draws[keys.FDR])
    assert dict(first) != dict(other)
    # the resamples depend on (n, draws, seed, stream) only: every space resamples the same images
    assert torch.equal(resample_indices(300, 50, 7, 0), resample_indices(300, 50, 7, 0))
    assert not torch.equal(resample_indices(300, 50, 7, 0), resample_indices(300, 50, 7, 1))


def test_evaluate_space_row_has_intervals_and_zero_draws_leave_them_out():
    rng = torch.Generator().manual_seed(4)
    generated, reference, heldout = draw(rng, 300, True), draw(rng, 1000, False), draw(rng, 300, False)
    row = evaluate_space(generated, reference, heldout, SuiteSettings(prdc=False, kid_subsets=2, interval_draws=40))
    assert row[keys.FD_LOW] < row[keys.FD] < row[keys.FD_HIGH]
    assert row[keys.FDR_LOW] < row[keys.FDR] < row[keys.FDR_HIGH]
    assert row[keys.FDR_BELOW_ONE] == 0.0 and row.draws[keys.FDR].shape == (40,) and row.level == 0.95
    off = evaluate_space(generated, reference, heldout, SuiteSettings(prdc=False, kid_subsets=2, interval_draws=0))
    assert keys.FD_LOW not in off and not off.draws
    assert off[keys.FDR] == pytest.approx(row[keys.FDR], rel=1e-12)


def test_memorised_samples_are_flagged_below_one():
    """Generated = most of the reference set: far closer to it than held-out data, beyond noise; independent
    samples of the same distribution are not flagged."""
    rng, dim = torch.Generator().manual_seed(5), 16
    reference, heldout = draw(rng, 2000, False, dim), draw(rng, 1500, False, dim)
    real = SpaceReference(reference, heldout)
    metric = Intervals(draws=100, fdr=FDr())
    memorised = metric(reference[:1500], real, seed=0)
    assert memorised[keys.FDR_HIGH] < 1.0 and memorised[keys.FDR_BELOW_ONE] == 1.0
    fresh = metric(draw(rng, 1500, False, dim), real, seed=0)
    assert fresh[keys.FDR_LOW] < 1.0 < fresh[keys.FDR_HIGH] and fresh[keys.FDR_BELOW_ONE] == 0.0


def test_fixed_baselines_divide_fd_of_all_samples():
    rng = torch.Generator().manual_seed(6)
    generated, reference, heldout = draw(rng, 500, True), draw(rng, 1000, False), draw(rng, 300, False)
    settings = SuiteSettings(prdc=False, kid_subsets=2, interval_draws=40, fdr_baselines={"gauss": 0.25})
    row = evaluate_space(generated, reference, heldout, settings, name="gauss")
    assert row[keys.FDR] == pytest.approx(row[keys.FD] / 0.25, rel=1e-12)
    assert (row[keys.FD_HELDOUT], row[keys.FDR_N], row[keys.FDR_FIXED_BASELINE]) == (0.25, 500.0, 1.0)
    assert row[keys.FDR_LOW] == pytest.approx(row[keys.FD_LOW] / 0.25, rel=1e-12)
    other = evaluate_space(generated, reference, heldout, settings, name="other")  # no entry: held-out split
    assert (other[keys.FDR_N], other[keys.FDR_FIXED_BASELINE]) == (300.0, 0.0)
    with pytest.raises(MatchzooError, match="fdr.baselines needs the name of the space"):
        FDr({"gauss": 1.0})(generated, SpaceReference(reference, heldout), 0)
    assert FDr({"gauss": 1.0})(generated, named(SpaceReference(reference, heldout), "gauss"), 0)[keys.FDR] > 0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: FDr({"inception": 0.0}), "fdr.baselines['inception'] must be > 0.0, got 0.0"),
        (lambda: FDr([1.68]), "fdr.baselines must map space names to FDs, e.g. {'inception': 1.68"),
        (lambda: parse_baselines("inception:1.68"), "--fdr_baselines: expected SPACE=FD pairs"),
        (lambda: parse_baselines("inception=-1"), "--fdr_baselines['inception'] must be > 0.0, got -1.0"),
        (lambda: Intervals(draws=1), "intervals.draws must be 0 (no intervals) or at least 2, got 1"),
        (lambda: Intervals(level=1.0), "intervals.level must be in (0, 1), got 1.0"),
        (lambda: Intervals(draws=-3), "intervals.draws must be >= 0, got -3"),
    ],
)
def test_bad_settings_fail_in_one_line(make, message):
    with pytest.raises(MatchzooError) as error:
        make()
    assert str(error.value).splitlines()[0].startswith(message)


def test_gin_binds_draws_level_and_baselines():
    import gin

    from matchzoo.metrics import make_metrics

    gin.parse_config("intervals.draws = 30\nintervals.level = 0.9\nfdr.baselines = {'pixels': 2.0}")
    intervals = [m for m in make_metrics(["intervals"]) if isinstance(m, Intervals)][0]
    assert (intervals.spec.draws, intervals.spec.level, intervals.fdr.baselines) == (30, 0.9, {"pixels": 2.0})
