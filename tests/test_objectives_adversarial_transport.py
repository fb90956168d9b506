"""sinkhorn_transport (potentials vs POT, targets, warm start, checkpoint) and san (direction convergence,
fun/dir split, generator loss leaves critic grads alone, variants, checkpoint)."""

import numpy as np
import ot
import pytest
import torch

from matchzoo.errors import MatchzooError
from matchzoo.kernels import squared_distances
from matchzoo.objectives.san import BASE_LOSSES, SAN
from matchzoo.objectives.transport import SinkhornTransport, barycentric_targets, sinkhorn_potentials


def test_log_domain_sinkhorn_coupling_matches_pot():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 3)), rng.normal(size=(15, 3)) + 1
    cost = squared_distances(torch.from_numpy(x), torch.from_numpy(y))
    eps = 0.3 * float(cost.std())
    row, col = sinkhorn_potentials(cost, eps, iterations=500)
    coupling = torch.exp((row[:, None] + col[None, :] - cost) / eps) / (12 * 15)
    oracle = ot.sinkhorn(
        np.full(12, 1 / 12),
        np.full(15, 1 / 15),
        cost.numpy(),
        eps,
        method="sinkhorn_log",
        numItermax=3000,
        stopThr=1e-12,
    )
    np.testing.assert_allclose(coupling.numpy(), oracle, atol=1e-9)
    targets = barycentric_targets(cost, row, col, eps, torch.from_numpy(y))
    np.testing.assert_allclose(targets.numpy(), 12 * oracle @ y, atol=1e-7)


def test_transport_gradient_points_from_fake_to_real_and_is_minus_2v_over_bd():
    torch.manual_seed(0)
    real = torch.randn(64, 4, dtype=torch.float64)
    fake = (
        torch.randn(32, 4, dtype=torch.float64) + torch.tensor([3.0, 0, 0, 0], dtype=torch.float64)
    ).requires_grad_()
    objective = SinkhornTransport().eval()
    velocity, _ = objective.displacement(fake, real)
    (grad,) = torch.autograd.grad(objective(fake, real).loss, fake)
    torch.testing.assert_close(grad, -2 * velocity / fake.numel())
    assert velocity[:, 0].mean() < -0.9 * velocity.norm(dim=1).mean()
    assert velocity.square().sum(1).mean().item() == pytest.approx(1.0, abs=0.35)


def test_transport_debiasing_is_zero_in_expectation_for_matching_distributions():
    torch.manual_seed(1)
    real = torch.randn(200, 2, dtype=torch.float64)
    fake = torch.randn(200, 2, dtype=torch.float64)
    shifted = fake + torch.tensor([1.0, 0.0], dtype=torch.float64)
    objective = SinkhornTransport(taus=(0.05,)).eval()
    _, logs_same = objective.displacement(fake, real)
    _, logs_shift = objective.displacement(shifted, real)
    assert logs_same["displacement_rms/tau_0.05"] < 0.5 * logs_shift["displacement_rms/tau_0.05"]


def test_transport_warm_start_is_checkpointed_and_helps_few_iterations():
    torch.manual_seed(2)
    real, fake = torch.randn(40, 3), torch.randn(30, 3) + 1
    warm = SinkhornTransport(iterations=5)
    for _ in range(30):  # successive steps on nearby batches keep refining the same potentials
        warm(fake, real)
    assert warm.previous_real.shape == (40, 3) and warm.real_potentials.shape == (3, 40)
    fresh = SinkhornTransport(iterations=5)
    fresh.load_state_dict(warm.state_dict())
    torch.testing.assert_close(fresh.real_potentials, warm.real_potentials)
    fake2 = fake + 0.05 * torch.randn(30, 3)
    converged, _ = SinkhornTransport(iterations=600, warm_start=False).displacement(fake2, real)
    v_warm, _ = fresh.displacement(fake2, real)
    v_cold, _ = SinkhornTransport(iterations=5, warm_start=False).displacement(fake2, real)
    assert (v_warm - converged).norm() < 0.5 * (v_cold - converged).norm()


def test_transport_user_errors():
    with pytest.raises(MatchzooError):
        SinkhornTransport(taus=())
    with pytest.raises(MatchzooError):
        SinkhornTransport()(torch.randn(1, 3), torch.randn(4, 3))


def test_san_direction_converges_to_normalized_mean_difference():
    torch.manual_seed(0)
    fake = torch.randn(256, 5)
    real = torch.randn(256, 5) * 1.5 + torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0])
    critic = SAN(hidden=(), out_dim=None, dim=5)  # h = identity
    assert len(critic.layers) == 0
    optimizer = torch.optim.Adam(critic.critic_parameters(), lr=0.02, betas=critic.critic_betas)
    for _ in range(300):
        optimizer.zero_grad()
        critic.critic_loss(fake, real).loss.backward()
        optimizer.step()
        critic.after_critic_step()
    target = torch.nn.functional.normalize(real.mean(0) - fake.mean(0), dim=0)
    assert critic.direction.norm().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.dot(critic.direction.detach(), target).item() > 0.999


def test_san_fun_dir_split_routes_gradients():
    torch.manual_seed(0)
    critic = SAN(hidden=(8,), out_dim=4, dim=3)
    fake, real = torch.randn(16, 3), torch.randn(16, 3) + 1
    out = critic.critic_loss(fake, real)
    grads = torch.autograd.grad(out.loss, [critic.direction, critic.layers[0].weight])
    # direction gradient comes only from the linear term: -E_r sg(h) + E_f sg(h)
    h_fake, h_real = critic.head(fake).detach(), critic.head(real).detach()
    omega = critic.direction.detach()
    tangent = lambda g: g - torch.dot(g, omega) * omega  # noqa: E731  (omega = w/|w| and |w| = 1)
    torch.testing.assert_close(grads[0], tangent(h_fake.mean(0) - h_real.mean(0)))
    assert grads[1].abs().sum() > 0


@pytest.mark.parametrize("kind", BASE_LOSSES)
def test_san_generator_loss_reaches_features_only(kind):
    torch.manual_seed(0)
    critic = SAN(loss=kind, hidden=(8,), out_dim=4, dim=3)
    fake = torch.randn(16, 3, requires_grad=True)
    critic(fake, torch.randn(16, 3)).loss.backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in critic.parameters())


def test_san_identity_head_loads_into_a_fresh_critic():
    critic = SAN(hidden=(), out_dim=None)
    critic.prepare_reference(torch.randn(10, 3))
    fresh = SAN(hidden=(), out_dim=None)
    fresh.load_state_dict(critic.state_dict())
    torch.testing.assert_close(fresh.direction, critic.direction)


def test_san_critic_state_round_trips_and_is_sized_by_prepare_reference():
    critic = SAN(hidden=(8,), out_dim=4)
    optimizer = torch.optim.Adam(critic.critic_parameters(), lr=1e-3)  # before the dimension is known
    critic.prepare_reference(torch.randn(20, 6))
    critic.critic_loss(torch.randn(4, 6), torch.randn(4, 6)).loss.backward()
    optimizer.step()
    with pytest.raises(MatchzooError, match="built for D=6"):
        critic.prepare_reference(torch.randn(20, 7))
    fresh = SAN(hidden=(8,), out_dim=4, dim=6)
    fresh.load_state_dict(critic.state_dict())
    x = torch.randn(5, 6)
    assert fresh(x, x).loss.item() == critic(x, x).loss.item()
    with pytest.raises(MatchzooError, match="loss must be one of"):
        SAN(loss="wgan")
