r"""The weighted form of an objective, which the resample probe minimises over candidate weights.

Every objective's form lives beside it, in its own module (formulas there): ``Objective.weighted_form(reference)``
returns ``(candidates (N, D), weights (N,)) -> scalar`` for frequency weights (conventions in
:mod:`matchzoo.objectives.weighting`: integer weights give the duplicated set's value, all-ones weights the
unweighted value). A new objective joins the probe with its own ``weighted_form(reference)`` or the simpler
``weighted_loss(candidates, weights, reference)``; nothing here changes.

Where ``w = 1`` cannot give the objective's own value: ``mmd`` (the objective is the unbiased U-statistic,
which is not a function of the measure; the form is the V-statistic); ``sinkhorn_transport`` (its value is a
constant-scale surrogate; the form reproduces its gradient, ``D`` times); ``sliced_wasserstein`` with random
directions agrees when the objective is evaluated along the same directions (it draws fresh ones on every call);
the adversarial forms agree for the critic of that moment. Everywhere else (FD with ``population='batch'``,
Bures, kernel Bures, Sinkhorn) uniform weights give the objective's value, and every form gives the duplicated
set's value at integer weights.
"""

from __future__ import annotations

import torch

from matchzoo.errors import MatchzooError
from matchzoo.objectives.base import Objective, no_weighted_form
from matchzoo.objectives.weighting import WeightedLoss


def weighted_loss_for(objective, reference: torch.Tensor) -> WeightedLoss:
    """The weighted form of ``objective`` against ``reference`` ``(M, D)``: ``(x, w) -> scalar``."""
    if isinstance(objective, Objective):
        return objective.weighted_form(reference)
    own = getattr(objective, "weighted_loss", None)  # duck-typed modules keep the simple hook
    if not callable(own):
        raise MatchzooError(no_weighted_form(objective))
    reference = reference.detach()
    return lambda x, w: own(x, w, reference)
