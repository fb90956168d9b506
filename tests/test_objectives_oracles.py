"""Oracle tests: sinkhorn vs POT exact OT, bures vs POT and kernel_bures, mmd vs an independent NumPy/SciPy
U-statistic, sliced_wasserstein vs POT on the same projections."""

import numpy as np
import ot
import pytest
import scipy.linalg
import scipy.spatial.distance
import sklearn.metrics.pairwise
import torch

from matchzoo.errors import MatchzooError
from matchzoo.objectives.bures import Bures, KernelBures
from matchzoo.objectives.mmd import MMD
from matchzoo.objectives.sinkhorn import Sinkhorn
from matchzoo.objectives.sliced import SlicedWasserstein, wasserstein_1d_squared


def two_clouds(m=40, n=40, d=3, seed=0, shift=1.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(m, d))
    y = rng.normal(size=(n, d)) * 0.7 + shift
    return torch.from_numpy(x), torch.from_numpy(y)


# --- sinkhorn ---------------------------------------------------------------------------------------


def test_sinkhorn_small_blur_approaches_half_exact_w2_squared():
    x, y = two_clouds(30, 30, d=3)
    value = Sinkhorn(blur=0.01, scaling=0.95, standardize=False)(x, y).loss.item()
    exact = ot.emd2(np.full(30, 1 / 30), np.full(30, 1 / 30), ot.dist(x.numpy(), y.numpy(), "sqeuclidean"))
    assert value == pytest.approx(0.5 * exact, rel=2e-2)


def test_sinkhorn_restores_grad_mode_and_gradient_is_finite():
    x, y = two_clouds(20, 25)
    objective = Sinkhorn()
    with torch.no_grad():
        objective(x, y)
        assert not torch.is_grad_enabled()
    xg = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(objective(xg, y).loss, xg)
    assert torch.is_grad_enabled() and torch.isfinite(grad).all()


def test_sinkhorn_standardize_is_scale_invariant():
    x, y = two_clouds(20, 20)
    objective = Sinkhorn(blur=0.3)
    a = objective(x, y).loss.item()
    b = objective(x * 50, y * 50).loss.item()
    assert a == pytest.approx(b, rel=1e-6)


def test_sinkhorn_bad_settings_are_user_errors():
    with pytest.raises(MatchzooError):
        Sinkhorn(scaling=1.5)
    with pytest.raises(MatchzooError):
        Sinkhorn(backend="keops")


# --- bures / kernel bures ---------------------------------------------------------------------------


@pytest.mark.parametrize("m,d", [(50, 4), (6, 10)])
def test_bures_equals_square_of_pot_bures_distance(m, d):
    x, y = two_clouds(m, 60, d=d)
    value = Bures(center=True, divide_by_n=True)(x, y).loss.item()
    xc, yc = x.numpy() - x.numpy().mean(0), y.numpy() - y.numpy().mean(0)
    cov_x, cov_y = xc.T @ xc / m, yc.T @ yc / 60
    if m > d:
        oracle = float(ot.gaussian.bures_distance(cov_y, cov_x)) ** 2
    else:  # POT's sqrtm NaNs on the rank-deficient product; SciPy's Schur-based sqrtm copes
        cross = np.real(scipy.linalg.sqrtm(cov_x @ cov_y))
        oracle = np.trace(cov_x) + np.trace(cov_y) - 2 * np.trace(cross)
    assert value == pytest.approx(oracle, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("options", [dict(), dict(normalize_rows=True), dict(center=False, divide_by_n=False)])
@pytest.mark.parametrize("m,n,d", [(30, 40, 5), (8, 12, 20)])
def test_kernel_bures_linear_equals_covariance_bures(options, m, n, d):
    x, y = two_clouds(m, n, d=d)
    cov_form = Bures(**options)(x, y).loss.item()
    dual_form = KernelBures(kernel="linear", **options)(x, y).loss.item()
    assert dual_form == pytest.approx(cov_form, rel=1e-6, abs=1e-10)


def test_bures_gan_preset_normalizes_and_centres():
    x, y = two_clouds(20, 20, d=4)
    assert Bures(preset="bures_gan")(x, y).loss.item() == pytest.approx(
        Bures(center=True, normalize_rows=True, divide_by_n=True)(x, y).loss.item()
    )
    with pytest.raises(MatchzooError, match="unknown bures preset"):
        Bures(preset="nope")


@pytest.mark.parametrize(
    "objective",
    [
        Bures(),
        Bures(preset="bures_gan"),
        KernelBures(kernel="linear"),
        KernelBures(kernel="rbf"),
        KernelBures(kernel="polynomial"),
    ],
)
@pytest.mark.parametrize("m,d", [(12, 5), (5, 12)])
def test_bures_family_has_finite_gradients_at_identical_inputs(objective, m, d):
    x, _ = two_clouds(m, m, d=d)
    xg = x.clone().requires_grad_()
    out = objective(xg, x)
    (grad,) = torch.autograd.grad(out.loss, xg)
    assert abs(out.loss.item()) < 1e-6
    assert torch.isfinite(grad).all()


def test_kernel_bures_rbf_and_polynomial_match_sklearn_grams():
    x, y = two_clouds(15, 18, d=4)
    xn, yn = x.numpy(), y.numpy()
    for kernel, gram in [
        ("rbf", lambda a, b: sklearn.metrics.pairwise.rbf_kernel(a, b, gamma=1 / (2 * 1.3**2))),
        ("polynomial", lambda a, b: sklearn.metrics.pairwise.polynomial_kernel(a, b, degree=3, gamma=0.25, coef0=1)),
    ]:
        k_ff, k_rr, k_fr = gram(xn, xn), gram(yn, yn), gram(xn, yn)
        h = lambda k: k - k.mean(0) - k.mean(1)[:, None] + k.mean()  # noqa: E731
        oracle = (
            np.trace(h(k_ff)) / 15
            + np.trace(h(k_rr)) / 18
            - 2 * np.linalg.svd(h(k_fr), compute_uv=False).sum() / np.sqrt(15 * 18)
        )
        value = KernelBures(kernel=kernel, bandwidth=1.3, gamma=0.25)(x, y).loss.item()
        assert value == pytest.approx(oracle, rel=1e-8), kernel


# --- mmd --------------------------------------------------------------------------------------------


def numpy_unbiased_mmd2(kxx, kyy, kxy):
    m, n = len(kxx), len(kyy)
    return (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()


def test_mmd_gaussian_matches_numpy_with_pot_distances():
    x, y = two_clouds(25, 30, d=4)
    xn, yn = x.numpy(), y.numpy()
    sigmas = (0.7, 2.0)
    gram = lambda a, b: sum(np.exp(-ot.dist(a, b, "sqeuclidean") / (2 * s**2)) for s in sigmas)  # noqa: E731
    oracle = numpy_unbiased_mmd2(gram(xn, xn), gram(yn, yn), gram(xn, yn))
    value = MMD(kernel="gaussian", bandwidths=sigmas, absolute_bandwidths=True)(x, y).loss.item()
    assert value == pytest.approx(oracle, rel=1e-9)


def test_mmd_energy_is_unbiased_energy_distance():
    x, y = two_clouds(25, 30, d=4)
    dxx = scipy.spatial.distance.cdist(x, x)
    dyy = scipy.spatial.distance.cdist(y, y)
    dxy = scipy.spatial.distance.cdist(x, y)
    oracle = 2 * dxy.mean() - dxx.sum() / (25 * 24) - dyy.sum() / (30 * 29)
    assert MMD(kernel="energy")(x, y).loss.item() == pytest.approx(oracle, rel=1e-9)


def test_mmd_polynomial_matches_sklearn():
    x, y = two_clouds(25, 30, d=4)
    gram = lambda a, b: sklearn.metrics.pairwise.polynomial_kernel(a, b, degree=3, gamma=1 / 4, coef0=1)  # noqa: E731
    oracle = numpy_unbiased_mmd2(gram(x, x), gram(y, y), gram(x, y))
    assert MMD(kernel="polynomial")(x, y).loss.item() == pytest.approx(oracle, rel=1e-9)


def test_mmd_energy_gradient_finite_at_coincident_points():
    x, _ = two_clouds(10, 10)
    xg = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(MMD(kernel="energy")(xg, x).loss, xg)
    assert torch.isfinite(grad).all()


# --- sliced wasserstein -----------------------------------------------------------------------------


@pytest.mark.parametrize("m,n", [(30, 30), (20, 35), (7, 3)])
def test_sliced_matches_pot_on_same_projections(m, n):
    x, y = two_clouds(m, n, d=5)
    torch.manual_seed(3)
    directions = torch.nn.functional.normalize(torch.randn(5, 40, dtype=torch.float64), dim=0)
    value = wasserstein_1d_squared(x @ directions, y @ directions).mean().item()
    oracle = ot.sliced_wasserstein_distance(x.numpy(), y.numpy(), projections=directions.numpy(), p=2) ** 2
    assert value == pytest.approx(oracle, rel=1e-9)


def test_wasserstein_1d_matches_pot_emd():
    x, y = two_clouds(9, 14, d=1)
    value = wasserstein_1d_squared(x, y).item()
    oracle = ot.emd2(np.full(9, 1 / 9), np.full(14, 1 / 14), ot.dist(x.numpy(), y.numpy(), "sqeuclidean"))
    assert value == pytest.approx(oracle, rel=1e-9)


def test_max_sliced_critic_finds_the_shift_direction():
    torch.manual_seed(0)
    x = torch.randn(200, 6)
    y = torch.randn(200, 6) + torch.tensor([0.0, 0.0, 3.0, 0.0, 0.0, 0.0])
    objective = SlicedWasserstein(learned_directions=1)
    objective.prepare_reference(y)
    optimizer = torch.optim.Adam(objective.critic_parameters(), lr=0.05)
    for _ in range(200):
        optimizer.zero_grad()
        objective.critic_loss(x, y).loss.backward()
        optimizer.step()
        objective.after_critic_step()
    direction = objective.directions[:, 0].detach()
    assert direction.norm().item() == pytest.approx(1.0, abs=1e-6)
    assert abs(direction[2].item()) > 0.99
    assert objective(x, y).loss.item() > 8.0


def test_max_sliced_directions_can_be_optimised_before_sizing_and_checkpointed():
    objective = SlicedWasserstein(learned_directions=3)
    optimizer = torch.optim.Adam(objective.critic_parameters(), lr=1e-2)  # trainer order: optimiser first
    x, y = torch.randn(20, 4), torch.randn(20, 4) + 1
    objective.prepare_reference(y)
    objective.critic_loss(x, y).loss.backward()
    optimizer.step()
    objective.after_critic_step()
    fresh = SlicedWasserstein(learned_directions=3)
    fresh.load_state_dict(objective.state_dict())
    torch.testing.assert_close(fresh.directions, objective.directions)
    assert fresh(x, y).loss.item() == pytest.approx(objective(x, y).loss.item())


@pytest.mark.parametrize("bandwidth", [0.0, -1.0, "wide"])
def test_kernel_bures_rejects_a_bandwidth_that_is_not_positive(bandwidth):
    with pytest.raises(MatchzooError, match="kernel_bures bandwidth must be a number > 0"):
        KernelBures(bandwidth=bandwidth)
