"""Probes: weighted objectives (uniform = unweighted, integer = duplicated samples, oracles), the resample and
top-N probes on constructed cases, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
import torch

import matchzoo
from matchzoo import linalg
from matchzoo.errors import MatchzooError
from matchzoo.metrics.intervals import percentile_interval
from matchzoo.objectives import frechet, mmd
from matchzoo.objectives.base import Objective
from matchzoo.probes import resample, topn, weighted


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """These are many tiny tensor ops: on a shared CPU, OpenMP threads mostly spin-wait (10x the CPU time)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gaussian(n, d, shift=0.0, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * scale + shift


def counts_and_duplicates(x, seed=1):
    counts = torch.randint(1, 4, (x.shape[0],), generator=torch.Generator().manual_seed(seed))
    return counts.to(torch.float64), x.repeat_interleave(counts, dim=0)


def scipy_fd(a: np.ndarray, b: np.ndarray) -> float:
    """Independent oracle: unbiased moments and scipy.linalg.sqrtm of the product."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


# ----------------------------------------------------------------------------- weighted forms


def test_weighted_moments_uniform_and_integer():
    x = gaussian(30, 5)
    mu, cov = frechet.weighted_mean_cov(x, torch.ones(30))
    ref_mu, ref_cov = linalg.mean_cov(x)
    assert torch.allclose(mu, ref_mu, atol=1e-12) and torch.allclose(cov, ref_cov, atol=1e-12)
    counts, dup = counts_and_duplicates(x)
    mu, cov = frechet.weighted_mean_cov(x, counts)
    ref_mu, ref_cov = linalg.mean_cov(dup)
    assert torch.allclose(mu, ref_mu, atol=1e-12) and torch.allclose(cov, ref_cov, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Fréchet distance from n=")  # n < D on purpose
@pytest.mark.parametrize("n", [40, 4])  # primal (N >= D) and dual (N < D) forms
def test_weighted_frechet_matches_scipy_and_duplicates(n):
    d = 6
    x, y = gaussian(n, d, shift=0.5, seed=2), gaussian(80, d, seed=3)
    mu_ref, cov_ref = linalg.mean_cov(y)
    value = frechet.weighted_frechet(x, torch.ones(n), mu_ref, cov_ref)
    if n > d:  # sqrtm of a rank-deficient product is unreliable; the oracle is only trusted at full rank
        assert float(value) == pytest.approx(scipy_fd(x.numpy(), y.numpy()), rel=1e-8)
    # the dual form's null eigenvalue (centring) is round-off; its square root costs ~sqrt(eps) absolute
    tolerance = 1e-9 if n > d else 1e-7
    assert float(value) == pytest.approx(linalg.frechet_distance(x, y), rel=tolerance)
    counts, dup = counts_and_duplicates(x)
    assert float(frechet.weighted_frechet(x, counts, mu_ref, cov_ref)) == pytest.approx(
        linalg.frechet_distance(dup, y), rel=tolerance
    )


def test_weighted_frechet_gradient_matches_finite_differences():
    x, y = gaussian(12, 3, shift=0.3, seed=4), gaussian(50, 3, seed=5)
    mu_ref, cov_ref = linalg.mean_cov(y)
    logits = torch.randn(12, dtype=torch.float64, generator=torch.Generator().manual_seed(6), requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda z: frechet.weighted_frechet(x, 12 * torch.softmax(z, 0), mu_ref, cov_ref), (logits,)
    )


@pytest.mark.parametrize("flags", [dict(), dict(normalize_rows=True), dict(divide_by_n=False, center=False)])
@pytest.mark.parametrize("n", [30, 4])
def test_weighted_bures_equals_bures_objective(flags, n):
    from matchzoo.objectives.bures import bures_squared

    x, y = gaussian(n, 5, shift=0.4, seed=7), gaussian(40, 5, seed=8)
    objective = matchzoo.make_objective("bures", **flags)
    form = weighted.weighted_loss_for(objective, y)
    tolerance = 1e-9 if n > 5 else 1e-7  # centred n < D: a round-off null eigenvalue under the square root
    assert float(form(x, torch.ones(n))) == pytest.approx(float(objective(x, y).loss), rel=tolerance, abs=1e-12)
    counts, dup = counts_and_duplicates(x)
    assert float(form(x, counts)) == pytest.approx(float(bures_squared(dup, y, **flags)), rel=tolerance, abs=1e-12)


def test_weighted_sinkhorn_equals_objective_and_duplicates():
    x, y = gaussian(20, 3, shift=0.5, seed=9), gaussian(25, 3, seed=10)
    objective = matchzoo.make_objective("sinkhorn", blur=0.3)
    form = weighted.weighted_loss_for(objective, y)
    assert float(form(x, torch.ones(20))) == pytest.approx(float(objective(x, y).loss), rel=1e-6)
    counts, dup = counts_and_duplicates(x)
    assert float(form(x, counts)) == pytest.approx(float(objective(dup, y).loss), rel=1e-5)


def test_weighted_mmd_is_the_v_statistic():
    from geomloss import SamplesLoss

    x, y = gaussian(15, 4, shift=0.5, seed=11), gaussian(20, 4, seed=12)
    sigma = 1.3
    value = float(mmd.weighted_mmd(x, torch.ones(15), y, mmd.gaussian_gram([sigma])))
    a, b = x.numpy(), y.numpy()
    k = lambda u, v: np.exp(-((u[:, None] - v[None]) ** 2).sum(-1) / (2 * sigma**2))  # noqa: E731
    assert value == pytest.approx(k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean(), rel=1e-10)
    probs = torch.rand(15, dtype=torch.float64, generator=torch.Generator().manual_seed(13))
    geom = SamplesLoss("gaussian", blur=sigma, backend="tensorized")(
        probs / probs.sum(), x, torch.full((20,), 1 / 20, dtype=torch.float64), y
    )
    assert float(mmd.weighted_mmd(x, probs, y, mmd.gaussian_gram([sigma]))) == pytest.approx(2 * float(geom), rel=1e-9)
    counts, dup = counts_and_duplicates(x)
    dup_value = mmd.weighted_mmd(dup, torch.ones(dup.shape[0]), y, mmd.gaussian_gram([sigma]))
    assert float(mmd.weighted_mmd(x, counts, y, mmd.gaussian_gram([sigma]))) == pytest.approx(
        float(dup_value), rel=1e-10
    )


# ----------------------------------------------------------------------------- every registered objective

# small settings so that every form runs in well under a second on these sizes
SMALL_SETTINGS = {
    "fd": dict(population="batch"),
    "san": dict(hidden=(16,), out_dim=None),
    "sinkhorn_transport": dict(taus=(0.1, 0.3), iterations=200),
    "sliced_wasserstein": dict(num_projections=16),
}


def small_objective(name, **overrides):
    return matchzoo.make_objective(name, **{**SMALL_SETTINGS.get(name, {}), **overrides})


def own_value(name, objective, fake, real):
    """The objective's own value on an unweighted set, or ``None`` where the weighted form is not that value.

    mmd: the objective is the U-statistic, the form the V-statistic; sinkhorn_transport: the objective's value is a
    constant-scale surrogate (its gradient is checked instead). sliced_wasserstein draws its directions from the global
    RNG: the caller seeds it identically before building the form and before calling this.
    """
    if name in ("mmd", "sinkhorn_transport"):
        return None
    if name == "sliced_wasserstein":
        from matchzoo.objectives.sliced import random_directions

        return float(objective.sw2(fake, real, random_directions(real.shape[1], objective.num_projections, real)))
    return float(objective(fake, real).loss)


def build_form(name, objective, reference, seed=21):
    torch.manual_seed(seed)
    objective.prepare_reference(reference)
    return weighted.weighted_loss_for(objective, reference)


@pytest.mark.parametrize("name", matchzoo.list_objectives())
def test_every_registered_objective_has_a_differentiable_weighted_form(name):
    """(a) a builder exists, the value is finite and so is its gradient w.r.t. the weights."""
    objective_class = type(small_objective(name))
    has_form = objective_class.weighted_form is not Objective.weighted_form or hasattr(objective_class, "weighted_loss")
    assert has_form, f"give {name!r} a weighted_form(reference) or weighted_loss(candidates, weights, reference) method"
    x, y = gaussian(12, 3, shift=0.5, seed=14).float(), gaussian(16, 3, seed=15).float()
    form = build_form(name, small_objective(name), y)
    logits = torch.randn(12, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    value = form(x, 12 * torch.softmax(logits, 0))
    (gradient,) = torch.autograd.grad(value, logits)
    assert value.ndim == 0 and torch.isfinite(value) and torch.isfinite(gradient).all() and gradient.abs().sum() > 0
    if name != "san":  # san's value is a generator loss against an (here untrained) critic, not a divergence
        assert float(form(3.0 * x + 1.0, torch.ones(12))) > float(form(x, torch.ones(12)))  # moving away costs more


@pytest.mark.filterwarnings("ignore:Fréchet distance from n=")
@pytest.mark.parametrize("name", matchzoo.list_objectives())
def test_weighted_form_is_the_objective_at_uniform_and_the_duplicated_set_at_integer_weights(name):
    """(b) integer weights == duplicated samples; (c) all-ones == the objective's own value where it is one."""
    x, y = gaussian(12, 3, shift=0.5, seed=16).float(), gaussian(16, 3, seed=17).float()
    objective = small_objective(name).eval()
    form = build_form(name, objective, y)
    counts, duplicated = counts_and_duplicates(x)
    at_counts = float(form(x, counts))
    torch.manual_seed(21)
    own_duplicated = own_value(name, objective, duplicated, y)
    expected = (
        own_duplicated if own_duplicated is not None else float(form(duplicated, torch.ones(duplicated.shape[0])))
    )
    assert at_counts == pytest.approx(expected, rel=1e-5, abs=1e-7)
    torch.manual_seed(21)
    own_uniform = own_value(name, objective, x, y)
    if own_uniform is not None:
        assert float(form(x, torch.ones(12))) == pytest.approx(own_uniform, rel=1e-5, abs=1e-7)


def test_max_sliced_weighted_form_trains_its_directions_on_the_weighted_measure():
    x, y = gaussian(20, 4, shift=0.5, seed=18).float(), gaussian(30, 4, seed=19).float()
    objective = matchzoo.make_objective("sliced_wasserstein", learned_directions=2, critic_steps=1)
    form = build_form("sliced_wasserstein", objective, y)
    assert float(form(x, torch.ones(20))) == pytest.approx(float(objective(x, y).loss), rel=1e-6)
    counts, duplicated = counts_and_duplicates(x)
    assert float(form(x, counts)) == pytest.approx(float(objective(duplicated, y).loss), rel=1e-6)
    before = float(form(x, torch.ones(20)))
    form.critic_step(x, torch.full((20,), 0.05, dtype=torch.float64))  # warm-up + one step: the critic maximises SW²
    assert float(form(x, torch.ones(20))) > before
    assert torch.allclose(objective.directions.detach().norm(dim=0), torch.ones(2))


def test_weighted_form_missing_gives_a_one_line_error():
    class Unweighted(torch.nn.Module):
        registry_name = "unweighted_demo"

    with pytest.raises(MatchzooError, match="objective 'unweighted_demo' has no weighted form"):
        weighted.weighted_loss_for(Unweighted(), torch.zeros(3, 2))


# ----------------------------------------------------------------------------- oracles for the newer forms


def explicit_quadratic_features(x: np.ndarray, gamma: float, coef0: float) -> np.ndarray:
    """Feature map of (γ xᵀy + c₀)²: [c₀, √(2γc₀) x, γ vec(x xᵀ)]."""
    outer = np.einsum("ni,nj->nij", x, x).reshape(x.shape[0], -1)
    return np.concatenate([np.full((x.shape[0], 1), coef0), np.sqrt(2 * gamma * coef0) * x, gamma * outer], axis=1)


def primal_bures(a: np.ndarray, b: np.ndarray) -> float:
    values, vectors = np.linalg.eigh(a)
    root = (vectors * np.sqrt(values.clip(0))) @ vectors.T
    return float(np.trace(a) + np.trace(b) - 2 * np.sqrt(np.linalg.eigvalsh(root @ b @ root).clip(0)).sum())


@pytest.mark.parametrize("flags", [dict(), dict(divide_by_n=False), dict(center=False)])
def test_weighted_kernel_bures_matches_an_explicit_feature_map(flags):
    """(d) the dual Gram form against the primal weighted covariance of the polynomial kernel's explicit features."""
    x, y = gaussian(9, 2, shift=0.4, seed=31), gaussian(11, 2, seed=32)
    gamma, coef0 = 0.5, 1.0
    objective = matchzoo.make_objective(
        "kernel_bures", kernel="polynomial", degree=2, gamma=gamma, coef0=coef0, **flags
    )
    weights = torch.rand(9, dtype=torch.float64, generator=torch.Generator().manual_seed(33)) * 3
    phi_x, phi_y = (
        explicit_quadratic_features(x.numpy(), gamma, coef0),
        explicit_quadratic_features(y.numpy(), gamma, coef0),
    )
    w = weights.numpy()
    p = w / w.sum()
    if flags.get("center", True):
        phi_x, phi_y = phi_x - p @ phi_x, phi_y - phi_y.mean(0)
    scale_x, scale_y = (p, 1 / 11) if flags.get("divide_by_n", True) else (w, 1.0)
    cov_x, cov_y = (phi_x * scale_x[:, None]).T @ phi_x, scale_y * phi_y.T @ phi_y
    value = float(weighted.weighted_loss_for(objective, y)(x, weights))
    assert value == pytest.approx(primal_bures(cov_y, cov_x), rel=1e-7, abs=1e-9)


def test_weighted_kernel_bures_weight_gradient_matches_finite_differences():
    x, y = gaussian(7, 2, shift=0.3, seed=34), gaussian(9, 2, seed=35)
    # uncentred: centring leaves a null singular value whose square root makes finite differences round-off noise
    form = weighted.weighted_loss_for(matchzoo.make_objective("kernel_bures", bandwidth=1.5, center=False), y)
    logits = torch.randn(7, dtype=torch.float64, generator=torch.Generator().manual_seed(36), requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: form(x, 7 * torch.softmax(z, 0)), (logits,))


def test_weighted_sliced_wasserstein_matches_pot_per_projection():
    import ot

    from matchzoo.objectives.sliced import weighted_wasserstein_1d_squared

    x, y = gaussian(13, 4, shift=0.3, seed=37), gaussian(17, 4, seed=38)
    p = torch.rand(13, dtype=torch.float64, generator=torch.Generator().manual_seed(39))
    p = p / p.sum()
    values = weighted_wasserstein_1d_squared(x, p, y)  # each column is one projection
    for column in range(4):
        oracle = ot.wasserstein_1d(x[:, column].numpy(), y[:, column].numpy(), p.numpy(), np.full(17, 1 / 17), p=2)
        assert float(values[column]) == pytest.approx(float(oracle), rel=1e-10)
    logits = torch.log(p).clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda z: weighted_wasserstein_1d_squared(x, torch.softmax(z, 0), y).sum(), (logits,)
    )


def test_weighted_transport_terms_match_pot():
    """(d) the cross term at random weights and the no-self-transport term at uniform weights against POT's plans."""
    import ot

    from matchzoo.kernels import squared_distances
    from matchzoo.objectives.transport import cross_ot, leave_one_out_measure, self_ot

    x, y = gaussian(10, 3, seed=40), gaussian(12, 3, shift=0.5, seed=41)
    p = torch.rand(10, dtype=torch.float64, generator=torch.Generator().manual_seed(42))
    p = p / p.sum()
    eps = 0.8

    def primal(plan, cost, reference):  # <π, C> + ε KL(π | ν), generalised KL with mass terms
        support = plan > 0
        kl = (plan[support] * np.log(plan[support] / reference[support])).sum() - plan.sum() + reference.sum()
        return (plan * cost).sum() + eps * kl

    cost = squared_distances(x, y)
    value = cross_ot(p, cost, eps, 400)
    a, b = p.numpy(), np.full(12, 1 / 12)
    plan = ot.sinkhorn(a, b, cost.numpy(), eps, numItermax=100000, stopThr=1e-14)
    assert float(value) == pytest.approx(primal(plan, cost.numpy(), np.outer(a, b)), rel=1e-8)

    uniform = torch.full((10,), 0.1, dtype=torch.float64)
    self_cost = squared_distances(x, x)
    value = self_ot(uniform, leave_one_out_measure(torch.ones(10, dtype=torch.float64)), self_cost, eps, 400)
    masked = self_cost.numpy() + np.diag(np.full(10, 1e4))  # exp(-1e4/ε) = 0: no self-transport
    plan = ot.sinkhorn(np.full(10, 0.1), np.full(10, 0.1), masked, eps, numItermax=100000, stopThr=1e-14)
    reference = np.full((10, 10), 0.01) - np.diag(np.full(10, 0.01))
    assert float(value) == pytest.approx(primal(plan, self_cost.numpy(), reference), rel=1e-7)


def test_weighted_transport_feature_gradient_is_the_objectives_displacement():
    """At w = 1 and one τ, ∇_x of the weighted form is D·ρ times the gradient of sinkhorn_transport's own loss
    (ρ: the displacement RMS the objective divides by, which it logs)."""
    x, y = gaussian(12, 3, seed=43), gaussian(15, 3, shift=0.5, seed=44)
    objective = small_objective("sinkhorn_transport", taus=(0.1,), iterations=800).eval()  # holds at convergence
    form = weighted.weighted_loss_for(objective, y)
    fake = x.clone().requires_grad_(True)
    (form_gradient,) = torch.autograd.grad(form(fake, torch.ones(12)), fake)
    fake = x.clone().requires_grad_(True)
    output = objective(fake, y)
    (objective_gradient,) = torch.autograd.grad(output.loss, fake)
    rms = output.logs["displacement_rms/tau_0.1"]
    assert torch.allclose(form_gradient, 3 * rms * objective_gradient, rtol=1e-4, atol=1e-7)


def test_weighted_transport_weight_gradient_matches_finite_differences():
    """The envelope-theorem gradient (potentials held fixed) against central differences, at fixed ε."""
    from matchzoo.kernels import squared_distances
    from matchzoo.objectives.transport import cross_ot, leave_one_out_measure, self_ot

    x, y = gaussian(8, 2, seed=45), gaussian(10, 2, shift=0.5, seed=46)
    cost, self_cost = squared_distances(x, y), squared_distances(x, x)

    def divergence(weights):
        p = weights / weights.sum()
        return cross_ot(p, cost, 0.7, 600) - 0.5 * self_ot(p, leave_one_out_measure(weights), self_cost, 0.5, 600)

    weights = (1.0 + torch.rand(8, dtype=torch.float64, generator=torch.Generator().manual_seed(47))).requires_grad_(
        True
    )
    assert torch.autograd.gradcheck(divergence, (weights,), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("loss", ["hinge", "logistic", "nonsaturating", "least_squares"])
def test_weighted_san_generator_loss_and_critic_steps(loss):
    x, y = gaussian(10, 3, shift=0.5, seed=48).float(), gaussian(14, 3, seed=49).float()
    objective = small_objective("san", loss=loss)
    form = build_form("san", objective, y)
    assert float(form(x, torch.ones(10))) == pytest.approx(float(objective(x, y).loss), rel=1e-6)
    counts, duplicated = counts_and_duplicates(x)
    assert float(form(x, counts)) == pytest.approx(float(objective(duplicated, y).loss), rel=1e-6)
    before = [p.detach().clone() for p in objective.critic_parameters()]
    form.critic_step(x, torch.full((10,), 0.1, dtype=torch.float64))
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, objective.critic_parameters()))
    assert float(objective.direction.detach().norm()) == pytest.approx(
        1.0, abs=1e-6
    )  # after_critic_step re-projected it


# ----------------------------------------------------------------------------- resample probe


def constructed_case(seed=0):
    """Attacked space: half the candidates match the reference, half are shifted. Other space: candidates'
    features are independent of the attacked ones and all equally off, so no reweighting can help there."""
    n, d = 200, 4
    good, bad = gaussian(n // 2, d, seed=seed), gaussian(n // 2, d, shift=2.5, seed=seed + 1)
    attacked = resample.SpaceFeatures(
        torch.cat([good, bad]), gaussian(400, d, seed=seed + 2), gaussian(100, d, seed=seed + 3)
    )
    other = resample.SpaceFeatures(
        gaussian(n, d, shift=1.0, seed=seed + 4), gaussian(400, d, seed=seed + 5), gaussian(100, d, seed=seed + 6)
    )
    return {"attacked": attacked, "other": other}


def test_resample_lowers_attacked_space_fd_only():
    features = constructed_case()
    objective = matchzoo.make_objective("fd", population="batch")
    form = weighted.weighted_loss_for(objective, features["attacked"].reference)
    result = resample.resample_probe(features, "attacked", form, sample_size=100, steps=150, lr=0.1, draws=4, seed=0)
    rows = {r.space: r for r in result.rows}
    assert result.attack_value_after < 0.2 * result.attack_value_before
    assert rows["attacked"].attacked and rows["attacked"].fd_after < 0.3 * rows["attacked"].fd_before
    assert result.probabilities[:100].sum() > 0.9  # the weights moved onto the matching half
    assert abs(rows["other"].change) < 0.25  # nothing to gain in the independent space
    assert result.fdr_k_after < result.fdr_k_before
    assert rows["attacked"].fdr_after == pytest.approx(rows["attacked"].fd_after / rows["attacked"].fd_heldout)
    text = resample.format_result(result, "title")
    assert "attacked (attacked)" in text and "FDr^k" in text
    record = resample.result_record(result)
    assert record["spaces"]["attacked"]["attacked"] is True and json.dumps(record)


def small_constructed_case(seed=0):
    """The constructed case at registry-test size: 30 matching + 30 shifted candidates in 3-d."""
    n, d = 60, 3
    good, bad = gaussian(n // 2, d, seed=seed), gaussian(n // 2, d, shift=2.5, seed=seed + 1)
    attacked = resample.SpaceFeatures(
        torch.cat([good, bad]).float(), gaussian(120, d, seed=seed + 2).float(), gaussian(40, d, seed=seed + 3).float()
    )
    other = resample.SpaceFeatures(
        gaussian(n, d, shift=1.0, seed=seed + 4).float(),
        gaussian(120, d, seed=seed + 5).float(),
        gaussian(40, d, seed=seed + 6).float(),
    )
    return {"attacked": attacked, "other": other}


@pytest.mark.parametrize("name", matchzoo.list_objectives())
def test_resample_with_every_registered_objective_lowers_the_attacked_space(name):
    """(e) the probe moves the weights onto the matching half and lowers FD in the attacked space."""
    features = small_constructed_case()
    overrides = {"iterations": 30} if name == "sinkhorn_transport" else {}
    form = build_form(name, small_objective(name, **overrides), features["attacked"].reference)
    result = resample.resample_probe(features, "attacked", form, sample_size=30, steps=40, lr=0.1, draws=2, seed=0)
    attacked = {r.space: r for r in result.rows}["attacked"]
    assert attacked.fd_after < 0.3 * attacked.fd_before
    assert float(result.probabilities[:30].sum()) > 0.75
    if name != "san":  # san's before/after values are measured against different critics
        assert result.attack_value_after < 0.8 * result.attack_value_before


def test_draw_sets_follow_the_probabilities():
    probs = torch.tensor([0.0, 0.25, 0.75], dtype=torch.float64)
    sets = resample.draw_sets(probs, 2000, 2, seed=0)
    assert sets.shape == (2, 2000) and not (sets == 0).any()
    assert (sets == 2).double().mean().item() == pytest.approx(0.75, abs=0.03)


def test_resample_checks_its_inputs():
    features = constructed_case()
    form = lambda x, w: (w * x.sum(1)).sum()  # noqa: E731
    with pytest.raises(MatchzooError, match="attacked space 'nope'"):
        resample.resample_probe(features, "nope", form, sample_size=10, steps=1)
    with pytest.raises(MatchzooError, match="sample_size 500 must be in"):
        resample.resample_probe(features, "attacked", form, sample_size=500, steps=1)


# ----------------------------------------------------------------------------- top-N probe


def test_topn_indicators_and_histogram_matching():
    probs = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.1, 0.3, 0.6]], dtype=torch.float64)
    assert topn.topn_indicators(probs, 1).tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 1]]
    assert topn.topn_indicators(probs, 2).tolist() == [[0, 1, 1], [1, 0, 1], [0, 1, 1]]
    with pytest.raises(MatchzooError, match="1 <= N <= 3"):
        topn.topn_indicators(probs, 4)
    # candidates: 80% class 0, reference: uniform over 2 classes -> weights must rebalance to 50/50
    g = torch.Generator().manual_seed(0)
    labels = (torch.rand(100, generator=g) < 0.2).long()
    indicators = torch.nn.functional.one_hot(labels, 2).double()
    loss = topn.histogram_loss(indicators, torch.tensor([0.5, 0.5]))
    probs_opt, first, last = resample.optimise_logits(lambda p: loss(indicators, 100 * p), 100, steps=200, lr=0.1)
    assert first > 0.1 and last < 1e-4
    assert float(probs_opt[labels == 1].sum()) == pytest.approx(0.5, abs=0.01)


def test_linear_probe_probabilities_separate_classes():
    a, b = gaussian(50, 3, seed=1), gaussian(50, 3, shift=4.0, seed=2)
    train = torch.cat([a, b]).float()
    labels = torch.cat([torch.zeros(50), torch.ones(50)]).long()
    (probs,) = topn.linear_probe_probabilities(train, labels, [torch.tensor([[0.0, 0, 0], [4.0, 4, 4]])])
    assert probs.shape == (2, 2) and probs[0, 0] > 0.9 and probs[1, 1] > 0.9


# ----------------------------------------------------------------------------- CLI


@pytest.fixture
def noisy_digits(tmp_path, monkeypatch):
    monkeypatch.setenv("MATCHZOO_CACHE_DIR", str(tmp_path / "cache"))
    images = matchzoo.make_dataset("digits").images.numpy()
    rng = np.random.default_rng(0)
    path = tmp_path / "noisy.npz"
    np.savez(path, images=np.clip(images[:300] + rng.normal(0, 0.5, images[:300].shape), -1, 1).astype(np.float32))
    return path


CLI_OBJECTIVE_ARGS = {
    "fd": ["population='batch'"],
    "san": ["hidden=(32,)", "out_dim=None"],
    "sinkhorn_transport": ["iterations=10"],
    "sinkhorn": ["scaling=0.5"],
    "sliced_wasserstein": ["num_projections=32"],
}


@pytest.fixture(scope="module")
def shared_feature_cache(tmp_path_factory):
    """One reference-feature cache for the registry-wide CLI runs (the spaces' digits features are extracted once)."""
    return tmp_path_factory.mktemp("probe_cli_cache")


@pytest.mark.parametrize("name", matchzoo.list_objectives())
def test_cli_resample_prints_before_after_table(
    name, noisy_digits, shared_feature_cache, tmp_path, capsys, monkeypatch
):
    from matchzoo.__main__ import main

    monkeypatch.setenv("MATCHZOO_CACHE_DIR", str(shared_feature_cache))
    out_json = tmp_path / "r.json"
    objective_args = [a for arg in CLI_OBJECTIVE_ARGS.get(name, []) for a in ("--objective_arg", arg)]
    code = main(
        [
            "probe",
            "resample",
            "--candidates",
            str(noisy_digits),
            "--spaces",
            "pixels,random_conv",
            "--attack",
            "random_conv",
            "--objective",
            name,
            *objective_args,
            "--num_candidates",
            "200",
            "--steps",
            "15",
            "--draws",
            "2",
            "--sample_size",
            "150",
            "--reference_size",
            "400",
            "--json",
            str(out_json),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert f"minimise weighted {name} in random_conv" in out
    assert "random_conv (attacked)" in out and "pixels" in out and "FDr^k" in out
    record = json.loads(out_json.read_text())[0]
    if name == "fd":
        assert record["spaces"]["random_conv"]["fd_after"] < record["spaces"]["random_conv"]["fd_before"]


def test_cli_topn_with_linear_probe_and_errors(noisy_digits, capsys):
    from matchzoo.__main__ import main

    code = main(
        [
            "probe",
            "topn",
            "--candidates",
            str(noisy_digits),
            "--spaces",
            "pixels",
            "--classifier",
            "pixels",
            "--top_n",
            "1,2",
            "--steps",
            "10",
            "--draws",
            "1",
            "--sample_size",
            "100",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "top-1 class histogram" in out and "top-2 class histogram" in out
    assert (
        main(["probe", "resample", "--candidates", str(noisy_digits), "--spaces", "pixels", "--attack", "random_conv"])
        == 2
    )
    assert "--attack 'random_conv' must be one of the --spaces" in capsys.readouterr().err
    assert (
        main(["probe", "resample", "--candidates", "/nonexistent.npz", "--attack", "pixels", "--spaces", "pixels"]) == 2
    )
    capsys.readouterr()
    for objective_arg, message in [
        ("critic_lr=abc", "cannot build san with {'critic_lr': 'abc'}: could not convert"),
        ("nope=1", "cannot build san with {'nope': 1}: "),
    ]:
        assert (
            main(
                [
                    "probe",
                    "resample",
                    "--candidates",
                    str(noisy_digits),
                    "--spaces",
                    "pixels",
                    "--attack",
                    "pixels",
                    "--objective",
                    "san",
                    "--objective_arg",
                    objective_arg,
                ]
            )
            == 2
        )
        errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(errors) == 1 and message in errors[0] and errors[0].startswith("matchzoo: error: --objective_arg")


def test_unchanged_weights_give_identical_before_and_after():
    features = constructed_case()
    result = resample.resample_probe(
        features, "attacked", lambda x, w: w.sum() * 0.0 + 1.0, sample_size=50, steps=3, draws=2
    )
    assert all(r.fd_after == r.fd_before for r in result.rows)


def test_resample_reports_intervals_over_its_draws_and_fdr_unseen():
    """Intervals are percentiles over the drawn sets; fdr_unseen leaves out the attacked and the trained spaces,
    so the attack's own drop never enters it."""
    features = constructed_case()
    features["trained"] = resample.SpaceFeatures(
        gaussian(200, 4, shift=0.5, seed=20), gaussian(400, 4, seed=21), gaussian(100, 4, seed=22)
    )
    objective = matchzoo.make_objective("fd", population="batch")
    form = weighted.weighted_loss_for(objective, features["attacked"].reference)
    result = resample.resample_probe(
        features, "attacked", form, sample_size=100, steps=150, lr=0.1, draws=20, seed=0, seen=["trained"]
    )
    rows = {r.space: r for r in result.rows}
    assert [r.space for r in result.unseen] == ["other"] and rows["trained"].seen
    assert result.fdr_unseen("after") == pytest.approx(rows["other"].fdr_after)
    low, high = rows["attacked"].fdr_interval("after")
    draws = rows["attacked"].fdr_draws("after")
    assert draws.shape == (20,) and float(draws.min()) <= low < high <= float(draws.max())
    assert float(draws.mean()) == pytest.approx(rows["attacked"].fdr_after)
    k_low, k_high = result.interval("fdr_k", "before")
    assert k_low <= result.fdr_k_before <= k_high
    record = resample.result_record(result)
    assert record["fdr_unseen_spaces"] == ["other"] and record["interval"]["draws"] == 20
    assert record["spaces"]["attacked"]["fdr_after_interval"] == [low, high]
    assert record["spaces"]["attacked"]["fdr_after_draws"] == draws.tolist()
    text = resample.format_result(result, "title")
    assert "fdr_unseen" in text and "trained (trained)" in text and "[" in text
    assert json.dumps(record)


def test_fdr_unseen_in_the_probe_is_a_geometric_mean_without_the_attacked_family():
    """A fourth space of the attacked space's family (declared) is left out and marked; the unseen spaces'
    geometric mean and its per-draw interval follow the summary's definition."""
    features = constructed_case()
    for name, seed in (("sibling", 30), ("third", 40)):
        features[name] = resample.SpaceFeatures(
            gaussian(200, 4, shift=0.3, seed=seed), gaussian(400, 4, seed=seed + 1), gaussian(100, 4, seed=seed + 2)
        )
    objective = matchzoo.make_objective("fd", population="batch")
    form = weighted.weighted_loss_for(objective, features["attacked"].reference)
    families = {"attacked": "net", "sibling": "net"}
    result = resample.resample_probe(
        features, "attacked", form, sample_size=100, steps=50, lr=0.1, draws=20, seed=0, families=families
    )
    rows = {r.space: r for r in result.rows}
    assert [r.space for r in result.unseen] == ["other", "third"]
    expected = (rows["other"].fdr_after * rows["third"].fdr_after) ** 0.5
    assert result.fdr_unseen("after") == pytest.approx(expected, rel=1e-12)
    per_draw = (rows["other"].fdr_draws("after") * rows["third"].fdr_draws("after")).sqrt()
    assert result.interval("fdr_unseen", "after") == pytest.approx(percentile_interval(per_draw, resample.LEVEL))
    assert "sibling (family)" in resample.format_result(result, "title")
