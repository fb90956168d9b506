"""kernel_bures(kernel='linear') is `bures` to 1e-9 (float64) at every shape, value and gradient (issue 14, item 2).

Before the fix the nuclear norm came from the eigenvalues of K Kᵀ: when both batches exceed the dimension,
hundreds of round-off null eigenvalues each added √(1e-16·λmax), 4e-7 relative at 256 x 256 in 64-d.
"""

import numpy as np
import pytest
import torch

from matchzoo.linalg import nuclear_norm
from matchzoo.objectives.bures import Bures, KernelBures

SHAPES = [(256, 256, 64), (300, 200, 16), (20, 30, 64), (40, 200, 64), (12, 9, 3)]  # batch above and below D
OPTIONS = [dict(), dict(normalize_rows=True), dict(center=False, divide_by_n=False)]


def decaying_clouds(m, n, d, seed=0):
    """Feature-like clouds: per-dimension scales from 1 down to 0.05, a shifted and shrunk real side."""
    generator = torch.Generator().manual_seed(seed)
    scales = torch.linspace(1.0, 0.05, d, dtype=torch.float64)
    fake = torch.randn(m, d, generator=generator, dtype=torch.float64) * scales
    real = torch.randn(n, d, generator=generator, dtype=torch.float64) * scales * 0.8 + 0.1
    return fake, real


def value_and_gradient(objective, fake, real):
    fake = fake.clone().requires_grad_(True)
    loss = objective(fake, real).loss
    (grad,) = torch.autograd.grad(loss, fake)
    return float(loss.detach()), grad


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("m,n,d", SHAPES)
def test_linear_kernel_bures_equals_bures_to_1e_9(m, n, d, options):
    fake, real = decaying_clouds(m, n, d)
    bures_value, bures_grad = value_and_gradient(Bures(**options), fake, real)
    kernel_value, kernel_grad = value_and_gradient(KernelBures(kernel="linear", **options), fake, real)
    assert kernel_value == pytest.approx(bures_value, rel=1e-9, abs=1e-12)
    assert float((kernel_grad - bures_grad).norm() / bures_grad.norm()) < 1e-9


@pytest.mark.parametrize("m,n,d", SHAPES)
def test_linear_kernel_bures_equals_an_independent_numpy_svd(m, n, d):
    fake, real = decaying_clouds(m, n, d, seed=1)
    x, y = fake.numpy() - fake.numpy().mean(0), real.numpy() - real.numpy().mean(0)
    rank = min(m - 1, n - 1, d)  # centring removes one dimension from each side; the rest is round-off
    nuclear = np.linalg.svd(x @ y.T, compute_uv=False)[:rank].sum()
    oracle = (x**2).sum() / m + (y**2).sum() / n - 2.0 * nuclear / np.sqrt(m * n)
    assert float(KernelBures(kernel="linear")(fake, real).loss) == pytest.approx(oracle, rel=1e-9)


def test_linear_kernel_bures_gradient_matches_finite_differences_above_the_dimension():
    fake, real = decaying_clouds(12, 9, 3, seed=2)
    objective = KernelBures(kernel="linear")
    assert torch.autograd.gradcheck(lambda x: objective(x, real).loss, (fake.clone().requires_grad_(True),))


@pytest.mark.parametrize("shape", [(30, 30), (50, 20), (20, 50)])
def test_nuclear_norm_gradient_is_u_v_transpose_over_the_numerical_rank(shape):
    generator = torch.Generator().manual_seed(3)
    left = torch.randn(shape[0], 4, generator=generator, dtype=torch.float64)
    k = left @ torch.randn(4, shape[1], generator=generator, dtype=torch.float64)  # rank 4
    u, s, vh = np.linalg.svd(k.numpy(), full_matrices=False)
    kg = k.clone().requires_grad_(True)
    value = nuclear_norm(kg)
    (grad,) = torch.autograd.grad(value, kg)
    assert float(value.detach()) == pytest.approx(s[:4].sum(), rel=1e-12)
    np.testing.assert_allclose(grad.numpy(), u[:, :4] @ vh[:4], atol=1e-10)
