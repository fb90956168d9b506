"""Registry-driven properties every objective must have; a newly registered objective is covered at once.

finite and differentiable in float32 and float64 for batch < dim and batch > dim; permutation invariant;
divergences are ≈ 0 on identical inputs and positive and decreasing as a shift (and scale change) shrinks; surrogate losses
(``is_divergence = False``, no critic) have a gradient that moves the generated batch toward the real one.
"""
import pytest
import torch

import matchzoo.objectives  # noqa: F401  (registers every objective)
from matchzoo.registry import OBJECTIVES

NAMES = OBJECTIVES.names()
SHAPES = [(6, 16), (48, 4)]  # (batch, dim): batch < dim and batch > dim


def make(name):
    torch.manual_seed(0)
    return OBJECTIVES.make(name)


def evaluate(name, fake, real, seed=1):
    """Loss of a fresh objective (FD's population starts empty; sliced draws seeded directions)."""
    torch.manual_seed(seed)
    return make(name)(fake, real).loss


def clouds(batch, dim, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    real = torch.randn(batch, dim, generator=gen, dtype=dtype)
    fake = torch.randn(batch, dim, generator=gen, dtype=dtype)
    return fake, real


def test_every_issue_objective_is_registered():
    expected = {"fd", "sinkhorn", "sinkhorn_transport", "bures", "kernel_bures", "san", "mmd", "sliced_wasserstein"}
    assert expected <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch,dim", SHAPES)
def test_finite_and_differentiable(name, dtype, batch, dim):
    fake, real = clouds(batch, dim, dtype)
    fake.requires_grad_()
    loss = evaluate(name, fake, real)
    assert loss.ndim == 0 and torch.isfinite(loss)
    (grad,) = torch.autograd.grad(loss, fake)
    assert grad.dtype == dtype and torch.isfinite(grad).all()
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch,dim", SHAPES)
def test_permutation_invariant(name, batch, dim):
    fake, real = clouds(batch, dim, torch.float64)
    perm_f, perm_r = torch.randperm(batch), torch.randperm(batch)
    a = evaluate(name, fake, real).item()
    b = evaluate(name, fake[perm_f], real[perm_r]).item()
    assert b == pytest.approx(a, rel=1e-6, abs=1e-9)


def divergence_names():
    return [n for n in NAMES if OBJECTIVES.get(n).is_divergence]


def surrogate_names():
    return [n for n in NAMES if not OBJECTIVES.get(n).is_divergence and not OBJECTIVES.get(n).has_critic]


@pytest.mark.parametrize("name", divergence_names())
@pytest.mark.parametrize("batch,dim", [(24, 8), (64, 4)])
def test_divergence_zero_on_identical_and_decreasing_with_shift(name, batch, dim):
    sample, real = clouds(batch, dim, torch.float64)  # two independent draws of one distribution
    direction = torch.nn.functional.normalize(torch.ones(dim, dtype=torch.float64), dim=0)
    # a shift *and* a scale change: centred covariance objectives (bures) ignore pure translations
    values = [evaluate(name, sample * (1 + s / 3) + s * direction, real).item() for s in (3.0, 2.0, 1.0)]
    at_zero = evaluate(name, real.clone(), real).item()
    assert values[0] > values[1] > values[2] > max(at_zero, 0.0), (at_zero, values)
    # unbiased estimators (mmd's U-statistic) are slightly negative on identical samples: small and minimal
    assert abs(at_zero) < 0.25 * values[0], (at_zero, values)


@pytest.mark.parametrize("name", surrogate_names())
def test_surrogate_gradient_moves_fake_toward_real(name):
    _, real = clouds(64, 4, torch.float64)
    shift = torch.tensor([2.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    fake = (real + shift + 0.1 * torch.randn_like(real)).requires_grad_()
    (grad,) = torch.autograd.grad(evaluate(name, fake, real), fake)
    step = -grad.mean(0)
    assert torch.dot(step, -shift) > 0.9 * step.norm() * shift.norm()


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_after_a_step(name):
    fake, real = clouds(16, 5, torch.float32)
    torch.manual_seed(0)
    first = OBJECTIVES.make(name)
    first.prepare_reference(real)
    first(fake.requires_grad_(), real)
    second = OBJECTIVES.make(name)
    second.prepare_reference(real)
    second.load_state_dict(first.state_dict())
    for key, value in first.state_dict().items():
        torch.testing.assert_close(second.state_dict()[key], value)
