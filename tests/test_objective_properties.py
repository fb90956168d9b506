"""Registry-driven properties every objective must have; a newly registered objective is covered at once.

The checks live in :mod:`matchzoo.testing` (so users run the same ones on their own objectives with
``pytest -p matchzoo.testing --matchzoo-import my_losses``); this file parametrises them over the registry:
finite and differentiable in float32 and float64 for batch < dim and batch > dim; permutation invariant;
divergences are ≈ 0 on identical inputs and positive and decreasing as a shift (and scale change) shrinks;
surrogate losses (``is_divergence = False``, no critic) have a gradient that moves the generated batch
toward the real one; state dicts round-trip after a step.
"""

import pytest

import matchzoo.objectives  # noqa: F401  (registers every objective)
from matchzoo import testing as contract
from matchzoo.registry import OBJECTIVES

NAMES = OBJECTIVES.names()


def test_every_issue_objective_is_registered():
    expected = {"fd", "sinkhorn", "sinkhorn_transport", "bures", "kernel_bures", "san", "mmd", "sliced_wasserstein"}
    assert expected <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", contract.DTYPES)
@pytest.mark.parametrize("batch,dim", contract.SHAPES)
def test_finite_and_differentiable(name, dtype, batch, dim):
    contract.check_finite_and_differentiable(name, dtype, batch, dim)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch,dim", contract.SHAPES)
def test_permutation_invariant(name, batch, dim):
    contract.check_permutation_invariant(name, batch, dim)


@pytest.mark.parametrize("name", [n for n in NAMES if contract.is_divergence(n)])
@pytest.mark.parametrize("batch,dim", contract.DIVERGENCE_SHAPES)
def test_divergence_zero_on_identical_and_decreasing_with_shift(name, batch, dim):
    contract.check_divergence_zero_on_identical_and_decreasing_with_shift(name, batch, dim)


@pytest.mark.parametrize("name", [n for n in NAMES if contract.is_surrogate(n)])
def test_surrogate_gradient_moves_fake_toward_real(name):
    contract.check_surrogate_gradient_moves_fake_toward_real(name)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_after_a_step(name):
    contract.check_state_dict_round_trip(name)
