"""`sinkhorn` and `sinkhorn_transport` against a converged entropic OT oracle (issue 14, item 1).

The oracle is written here, independently of geomloss and of matchzoo's transport solver: float64 log-domain
Sinkhorn between uniform measures, annealed start, plain alternate updates at the final ε until the row
marginal error is below ``tol``; checked against POT's log-domain plan and against finite differences (1e-9).
At realistic shapes the final ε is tiny against the costs and Sinkhorn converges sublinearly, so those tests
stop at 1e-4: the barycentric displacement then agrees with a 1e-5 run to 2e-4 (256 points, D = 768), far
inside the 1% / 0.99-cosine tolerances checked. With cost C = ½‖x−y‖² (geomloss's p = 2) and ε = blur²,
OT_ε(a, b) = ⟨π, C⟩ + ε·KL(π | a⊗b) (geomloss's dual value ⟨a, f⟩ + ⟨b, g⟩ at convergence),
S = OT_ε(a, b) − ½OT_ε(a, a) − ½OT_ε(b, b), and by the envelope theorem ∇_{x_i} S = a_i (T_aa(x_i) − T_ab(x_i))
with T the barycentric maps of the plans.

At the old defaults (`scaling=0.9`, `iterations=30`) these tests fail: gradient cosines 0.95–0.97 (sinkhorn) and
displacement cosines 0.97–0.985 or a 13% error (sinkhorn_transport).
"""

import math

import numpy as np
import ot
import pytest
import torch

import matchzoo
from matchzoo.kernels import squared_distances
from matchzoo.objectives.sinkhorn import Sinkhorn, feature_scale
from matchzoo.objectives.transport import SinkhornTransport


def converged_log_plan(cost: torch.Tensor, eps: float, tol: float = 1e-4, max_iter: int = 20000) -> torch.Tensor:
    """Entropic OT plan ``(m, n)`` between uniform measures for ``cost`` (``inf`` entries forbidden), float64.

    The annealed start (ε from the largest cost down by 0.8, three sweeps each) only saves iterations: the
    stopping rule is the row marginal error at the final ε, after which the column marginals are exact.
    """
    cost = cost.to(torch.float64)
    m, n = cost.shape
    log_a, log_b = -math.log(m), -math.log(n)
    f, g = torch.zeros(m, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    temperatures = [float(cost[torch.isfinite(cost)].max()) * 0.8**k for k in range(200)]
    for temperature in [t for t in temperatures if t > eps] + [eps]:
        final = temperature == eps
        for _ in range(max_iter if final else 3):
            f_new = -temperature * torch.logsumexp(log_b + (g[None, :] - cost) / temperature, dim=1)
            error = float(((f - f_new) / temperature).exp().sub(1).abs().mean())  # row marginal error of the plan
            f = f_new
            g = -temperature * torch.logsumexp(log_a + (f[:, None] - cost) / temperature, dim=0)
            if final and error < tol:
                break
    assert error < 10 * tol, f"oracle did not converge: marginal error {error:.1e}"
    f = -eps * torch.logsumexp(log_b + (g[None, :] - cost) / eps, dim=1)  # exact row marginals
    return (log_a + log_b + (f[:, None] + g[None, :] - cost) / eps).exp()


def half_squared(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * squared_distances(x.to(torch.float64), y.to(torch.float64))


def entropic_ot(x: torch.Tensor, y: torch.Tensor, eps: float, tol: float = 1e-4) -> tuple[float, torch.Tensor]:
    """OT_ε between the uniform measures on the rows (primal, with the entropy term) and the barycentric map of x."""
    cost = half_squared(x, y)
    plan = converged_log_plan(cost, eps, tol)
    product = 1.0 / (cost.shape[0] * cost.shape[1])
    entropy = (plan * (plan.clamp_min(1e-300) / product).log()).sum()
    barycentric = plan @ y.to(torch.float64) / plan.sum(1, keepdim=True)
    return float((plan * cost).sum() + eps * entropy), barycentric


def sinkhorn_oracle(x: torch.Tensor, y: torch.Tensor, eps: float, tol: float = 1e-4) -> tuple[float, torch.Tensor]:
    """Debiased Sinkhorn divergence and its gradient with respect to ``x``."""
    cross, to_y = entropic_ot(x, y, eps, tol)
    self_x, to_x = entropic_ot(x, x, eps, tol)
    self_y, _ = entropic_ot(y, y, eps, tol)
    return cross - 0.5 * self_x - 0.5 * self_y, (to_x - to_y) / x.shape[0]


def decaying_gaussians(n: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real-like features (scales 1 → 0.05) and a shifted, 20% wider generated side."""
    generator = torch.Generator().manual_seed(d)
    scales = torch.linspace(1.0, 0.05, d)
    real = torch.randn(n, d, generator=generator) * scales
    fake = torch.randn(n, d, generator=generator) * scales * 1.2 + 0.3 * scales
    return fake, real


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


def test_oracle_matches_pot_log_domain_plan_and_finite_differences():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(30, 4, generator=generator, dtype=torch.float64)
    y = torch.randn(40, 4, generator=generator, dtype=torch.float64) + 0.5
    eps = 1.0  # all three problems (x↔y, x↔x, y↔y) converge to 1e-10 here; the realistic shapes follow
    cost = half_squared(x, y).numpy()
    a, b = np.full(30, 1 / 30), np.full(40, 1 / 40)
    plan = ot.bregman.sinkhorn_log(a, b, cost, eps, numItermax=100000, stopThr=1e-13)
    pot_value = (plan * cost).sum() + eps * (plan * np.log(plan / np.outer(a, b))).sum()
    assert entropic_ot(x, y, eps, tol=1e-10)[0] == pytest.approx(pot_value, rel=1e-9)
    _, grad = sinkhorn_oracle(x, y, eps, tol=1e-9)
    step = 1e-5
    for i, k in [(0, 0), (7, 2), (29, 3)]:
        plus, minus = x.clone(), x.clone()
        plus[i, k] += step
        minus[i, k] -= step
        central = (sinkhorn_oracle(plus, y, eps, 1e-9)[0] - sinkhorn_oracle(minus, y, eps, 1e-9)[0]) / (2 * step)
        assert float(grad[i, k]) == pytest.approx(central, rel=1e-5, abs=1e-8)


def assert_default_sinkhorn_matches_oracle(fake: torch.Tensor, real: torch.Tensor) -> None:
    objective = Sinkhorn()  # the defaults are what is checked: blur 0.5, standardised features
    fake = fake.float().clone().requires_grad_(True)
    value = objective(fake, real.float()).loss
    (grad,) = torch.autograd.grad(value, fake)
    scale = feature_scale(real)
    oracle_value, oracle_grad = sinkhorn_oracle(fake.detach() / scale, real / scale, objective.blur**2)
    assert float(value.detach()) == pytest.approx(oracle_value, rel=1e-2)
    assert cosine(grad, oracle_grad) >= 0.99


@pytest.mark.parametrize("dim", [64, 768])
def test_default_sinkhorn_is_the_converged_divergence_on_gaussian_features(dim):
    assert_default_sinkhorn_matches_oracle(*decaying_gaussians(256, dim))


def test_default_sinkhorn_is_the_converged_divergence_in_the_digits_ssl_space():
    space = matchzoo.make_feature_space("digits_ssl")
    images = matchzoo.make_dataset("digits").images[:512]
    noise = 0.3 * torch.randn(images[256:].shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # a generator-like set: held-out digits with pixel noise
        real, fake = space(images[:256]), space((images[256:] + noise).clamp(-1, 1))
    assert_default_sinkhorn_matches_oracle(fake.double(), real.double())


def transport_oracle(fake: torch.Tensor, real: torch.Tensor, taus) -> torch.Tensor:
    """sinkhorn_transport's displacement from converged couplings (same ε rule and self-transport exclusion)."""
    f, r = fake.to(torch.float64), real.to(torch.float64)
    cross_cost, self_cost = squared_distances(f, r), squared_distances(f, f).fill_diagonal_(float("inf"))
    total = torch.zeros_like(f)
    for tau in taus:
        cross = converged_log_plan(cross_cost, tau * float(cross_cost.std()))
        itself = converged_log_plan(self_cost, tau * float(self_cost[torch.isfinite(self_cost)].std()))
        step = cross @ r / cross.sum(1, keepdim=True) - itself @ f / itself.sum(1, keepdim=True)
        total += step / step.square().sum(1).mean().sqrt()
    return total / len(taus)


@pytest.mark.parametrize("dim", [64, 768])
def test_default_sinkhorn_transport_displacement_matches_converged_couplings(dim):
    fake, real = decaying_gaussians(256, dim)
    objective = SinkhornTransport().eval()  # cold start, as on the first step and in evaluation
    displacement, _ = objective.displacement(fake, real)
    oracle = transport_oracle(fake, real, objective.taus)
    assert cosine(displacement, oracle) >= 0.99
    assert float((displacement - oracle).norm() / oracle.norm()) < 0.1
