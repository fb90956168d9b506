"""Per-class matching (``train.per_class_matching``): the loss is the class-weighted sum of the objective on
each class's fake and real items, and only batch objectives qualify."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import matchzoo.objectives  # noqa: F401  (registers every objective)
from matchzoo.errors import MatchzooError
from matchzoo.registry import OBJECTIVES
from matchzoo.train.per_class import check_objective, per_class_loss


def test_per_class_loss_is_the_class_weighted_sum_of_the_objective():
    torch.manual_seed(0)
    objective = OBJECTIVES.make("mmd")
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 0, 3])  # class 3 has one sample: skipped
    fake, real = torch.randn(10, 5, requires_grad=True), torch.randn(10, 5)
    out = per_class_loss(objective, fake, real, labels)
    expected = sum((n / 9) * objective(fake[labels == c], real[labels == c]).loss for c, n in ((0, 4), (1, 2), (2, 3)))
    torch.testing.assert_close(out.loss, expected)
    assert out.logs["classes_matched"] == 3.0
    (grad,) = torch.autograd.grad(out.loss, fake)
    assert grad[labels == 3].abs().max() == 0 and grad[labels != 3].abs().max() > 0


def test_a_fake_of_one_class_is_pulled_only_towards_its_own_class():
    """Whole-batch matching cannot tell which fake goes with which real; per-class matching can: fakes of
    swapped classes have zero whole-batch loss but a positive per-class loss."""
    objective = OBJECTIVES.make("sliced_wasserstein")
    real = torch.cat([torch.full((4, 3), -2.0), torch.full((4, 3), 2.0)]) + 0.01 * torch.randn(8, 3)
    labels = torch.tensor([0] * 4 + [1] * 4)
    swapped = real.flip(0)
    whole = objective(swapped, real).loss
    per_class = per_class_loss(objective, swapped, real, labels).loss
    assert float(whole) < 1e-3 < float(per_class)


@pytest.mark.parametrize("name", ["fd", "san", "sinkhorn_transport"])
def test_objectives_with_a_global_reference_or_state_are_refused(name):
    term = SimpleNamespace(objective=OBJECTIVES.make(name), name="t")
    with pytest.raises(MatchzooError, match=f"term 't' uses objective '{name}', which cannot be applied class by"):
        check_objective(term)


@pytest.mark.parametrize("name", ["mmd", "sinkhorn", "sliced_wasserstein", "bures", "kernel_bures"])
def test_batch_objectives_are_accepted(name):
    check_objective(SimpleNamespace(objective=OBJECTIVES.make(name), name="t"))


def test_a_batch_without_two_samples_of_any_class_is_one_line():
    with pytest.raises(MatchzooError, match="no class has 2 samples in a batch of 3; raise train.batch_size"):
        per_class_loss(OBJECTIVES.make("mmd"), torch.randn(3, 2), torch.randn(3, 2), torch.tensor([0, 1, 2]))
