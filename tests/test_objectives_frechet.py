"""FD-loss (``fd``): value vs an independent SciPy FD, gradient vs finite differences and the closed form
c·[f − (μ_r + T(f − μ))], population bookkeeping, checkpoint round trip, normalisation."""

import numpy as np
import pytest
import scipy.linalg
import torch

from matchzoo.errors import MatchzooError
from matchzoo.objectives.frechet import FrechetDistance


def scipy_fd(mu1, cov1, mu2, cov2):
    covmean = scipy.linalg.sqrtm(cov1 @ cov2)
    covmean = np.real(covmean)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(covmean))


def gaussian_ot_matrix(cov_pop, cov_ref):
    """T = R^1/2 (R^1/2 Σ R^1/2)^-1/2 R^1/2 computed with SciPy (independent of matchzoo.linalg)."""
    r_half = np.real(scipy.linalg.sqrtm(cov_ref))
    middle = np.real(scipy.linalg.sqrtm(r_half @ cov_pop @ r_half))
    return r_half @ np.linalg.inv(middle) @ r_half


def make_data(n_ref=400, d=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=gen, dtype=torch.float64) / d**0.5 + torch.eye(d, dtype=torch.float64)
    ref = torch.randn(n_ref, d, generator=gen, dtype=torch.float64) @ mix + 0.5
    return ref, gen


def filled(objective, d, gen, steps, batch):
    for _ in range(steps):
        fake = torch.randn(batch, d, generator=gen, dtype=torch.float64) * 1.3 - 0.2
        objective(fake.requires_grad_(), fake.detach())
    return objective


@pytest.mark.parametrize("mode", ["queue", "ema"])
def test_value_matches_scipy_fd_of_population(mode):
    ref, gen = make_data()
    objective = FrechetDistance(population=mode, population_size=64, beta=0.9)
    objective.prepare_reference(ref)
    filled(objective, 5, gen, steps=7, batch=16)
    live = torch.randn(16, 5, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        moments = objective.population_moments(live)
    value = objective.eval()(live, ref).loss.item()
    mu_ref, cov_ref = ref.mean(0).numpy(), np.cov(ref.numpy(), rowvar=False)
    if mode == "queue":  # independent population: the 48 newest queue entries + the live batch
        queue = objective.population.features.numpy()
        pos = int(objective.population.write_pos)
        order = [(pos + k) % 64 for k in range(16, 64)]
        samples = np.concatenate([queue[order], live.numpy()])
        mu_pop, cov_pop = samples.mean(0), np.cov(samples, rowvar=False, bias=True)
        assert moments.size == 64
    else:
        mu_pop, cov_pop = moments.mean.numpy(), moments.cov.numpy()
    np.testing.assert_allclose(moments.mean.numpy(), mu_pop, rtol=1e-10)
    np.testing.assert_allclose(moments.cov.numpy(), cov_pop, rtol=1e-9, atol=1e-12)
    assert value == pytest.approx(scipy_fd(mu_pop, cov_pop, mu_ref, cov_ref), rel=1e-8)


def test_batch_mode_equals_scipy_fd():
    ref, gen = make_data()
    fake = torch.randn(50, 5, generator=gen, dtype=torch.float64)
    value = FrechetDistance(population="batch")(fake, ref).loss.item()
    oracle = scipy_fd(
        fake.mean(0).numpy(), np.cov(fake.numpy(), rowvar=False), ref.mean(0).numpy(), np.cov(ref.numpy(), rowvar=False)
    )
    assert value == pytest.approx(oracle, rel=1e-9)


@pytest.mark.parametrize("mode,size", [("queue", 64), ("queue", 24), ("ema", 0)])
def test_gradient_closed_form_and_finite_differences(mode, size):
    d = 6
    ref, gen = make_data(d=d)
    objective = FrechetDistance(population=mode, population_size=max(size, 2), beta=0.95)
    objective.prepare_reference(ref)
    filled(objective, d, gen, steps=5, batch=8)
    live = (torch.randn(8, d, generator=gen, dtype=torch.float64) * 0.8 + 0.3).requires_grad_()
    objective.eval()
    (grad,) = torch.autograd.grad(objective(live, ref).loss, live)

    moments = objective.population_moments(live.detach())
    mu, cov = moments.mean.numpy(), moments.cov.numpy()
    mu_ref, cov_ref = ref.mean(0).numpy(), np.cov(ref.numpy(), rowvar=False)
    transport = gaussian_ot_matrix(cov, cov_ref)
    f = live.detach().numpy()
    closed_form = 2 * moments.sample_weight * (f - (mu_ref + (f - mu) @ transport.T))
    np.testing.assert_allclose(grad.numpy(), closed_form, rtol=1e-6, atol=1e-9 * np.abs(closed_form).max())

    def value_at(x):
        return objective(torch.as_tensor(x), ref).loss.item()

    step = 1e-6
    for i, j in [(0, 0), (3, 2), (7, 5)]:
        plus, minus = f.copy(), f.copy()
        plus[i, j] += step
        minus[i, j] -= step
        numeric = (value_at(plus) - value_at(minus)) / (2 * step)
        assert numeric == pytest.approx(grad[i, j].item(), rel=1e-5, abs=1e-9)


def test_batch_smaller_than_dimension_gives_finite_gradient_and_repeated_eigenvalues():
    ref = torch.randn(30, 16, dtype=torch.float64)
    fake = torch.zeros(4, 16, dtype=torch.float64)
    fake[:, 0] = torch.tensor([1.0, -1.0, 1.0, -1.0])  # repeated and zero eigenvalues
    for mode in ("queue", "ema", "batch"):
        x = fake.clone().requires_grad_()
        loss = FrechetDistance(population=mode, population_size=8)(x, ref).loss
        (grad,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(loss) and torch.isfinite(grad).all(), mode


def test_queue_fifo_bookkeeping_and_running_sums():
    objective = FrechetDistance(population="queue", population_size=10)
    batches = [
        torch.full((4, 2), float(k), dtype=torch.float64) + torch.randn(4, 2, dtype=torch.float64) for k in range(5)
    ]
    for b in batches:
        objective(b.clone().requires_grad_(), b)
    pop = objective.population
    newest = torch.cat(batches)[-10:]
    assert int(pop.count) == 10
    assert sorted(pop.features[:, 0].tolist()) == sorted(newest[:, 0].tolist())
    torch.testing.assert_close(pop.feature_sum, newest.sum(0))
    torch.testing.assert_close(pop.outer_sum, newest.T @ newest)


def test_queue_reuses_sums_only_for_the_batch_it_saw():
    from matchzoo.objectives.population import QueuePopulation

    pop = QueuePopulation(size=6)
    first, other = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    pop.moments(first)
    pop.advance(other)  # a different batch: its own sums, not the ones moments() cached
    torch.testing.assert_close(pop.outer_sum, other.T @ other)
    live = torch.randn(4, 3, dtype=torch.float64)
    pop.moments(live)
    live.mul_(2.0)  # written in place after moments(): the version counter changes, so no reuse
    pop.advance(live)
    kept = torch.cat([other[2:], live])  # queue of 6: the 2 newest of `other`, then all of `live`
    torch.testing.assert_close(pop.outer_sum, kept.T @ kept)
    torch.testing.assert_close(pop.feature_sum, kept.sum(0))


def test_population_advances_only_in_training_with_grad():
    objective = FrechetDistance(population="ema")
    x = torch.randn(8, 3)
    with torch.no_grad():
        objective(x, x)
    objective.eval()(x.requires_grad_(), x)
    assert int(objective.population.steps) == 0
    objective.train()(x, x)
    assert int(objective.population.steps) == 1


@pytest.mark.parametrize("mode", ["queue", "ema"])
def test_state_dict_round_trip_into_a_fresh_objective(mode):
    ref, gen = make_data()
    a = FrechetDistance(population=mode, population_size=32)
    filled(a, 5, gen, steps=3, batch=8)
    b = FrechetDistance(population=mode, population_size=32)
    b.load_state_dict(a.state_dict())
    live = torch.randn(8, 5, dtype=torch.float64)
    assert a.eval()(live, ref).loss.item() == b.eval()(live, ref).loss.item()


def test_normalized_term_is_about_one_and_gradient_is_scaled():
    ref = torch.randn(100, 4, dtype=torch.float64)
    fake = (torch.randn(32, 4, dtype=torch.float64) + 2).requires_grad_()
    raw = FrechetDistance(population="batch")(fake, ref)
    norm = FrechetDistance(population="batch", normalize=True, normalize_eps=0.01)(fake, ref)
    assert norm.loss.item() == pytest.approx(raw.logs["fd"] / (raw.logs["fd"] + 0.01))
    (g_raw,) = torch.autograd.grad(raw.loss, fake)
    (g_norm,) = torch.autograd.grad(norm.loss, fake)
    torch.testing.assert_close(g_norm, g_raw / (raw.logs["fd"] + 0.01))


def test_user_errors_are_one_line():
    with pytest.raises(MatchzooError, match="population must be one of"):
        FrechetDistance(population="fifo")
    with pytest.raises(MatchzooError, match="population_size >= batch size"):
        FrechetDistance(population="queue", population_size=4)(torch.randn(8, 3), torch.randn(8, 3))


def test_queue_dual_form_when_population_is_smaller_than_dimension():
    ref, gen = make_data(n_ref=300, d=12)
    objective = FrechetDistance(population="queue", population_size=8)
    objective.prepare_reference(ref)
    filled(objective, 12, gen, steps=2, batch=4)
    live = torch.randn(4, 12, generator=gen, dtype=torch.float64)
    moments = objective.population_moments(live)
    assert moments.centered.shape == (8, 12)
    value = objective.eval()(live, ref).loss.item()
    oracle = scipy_fd(moments.mean.numpy(), moments.cov.numpy(), ref.mean(0).numpy(), np.cov(ref.numpy(), rowvar=False))
    assert value == pytest.approx(oracle, rel=1e-6)
