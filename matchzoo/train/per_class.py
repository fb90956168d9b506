"""``train.per_class_matching``: a loss term compares the fake and real batches class by class.

A class-matched real batch (``train.class_matched_real``) has the fake batch's labels item by item, but a
distribution-matching objective is permutation invariant: it sees two sets of features and never which fake
belongs to which class, so it matches the class *mixture* and a generator may ignore its labels (measured on the
digits: 16.9% of class-conditional samples classified as the requested class). With per-class matching a term's
loss is

    L = sum_c (n_c / n) * D(fake[y == c], real[y == c])

over the classes c with at least ``MIN_PER_CLASS`` samples in the (global) batch, n = the samples of those
classes. Each class's fakes are pulled towards that class's real data, which is what a conditional generator
is for (91-97% on the digits).

Only objectives that compare the two batches they are given qualify: not ``fd`` (its reference is the statistics
of the whole training set, not of one class), and no objective with state carried across steps (a population
queue, transport potentials, a critic), which would mix the classes.
"""

from __future__ import annotations

import torch

from matchzoo.errors import MatchzooError
from matchzoo.objectives.base import LossOutput

MIN_PER_CLASS = 2  # statistics of one sample are not a distribution


def check_objective(term) -> None:
    """One line when a term's objective cannot be applied class by class."""
    objective = term.objective
    name = getattr(type(objective), "registry_name", type(objective).__name__)
    reason = None
    if getattr(objective, "has_critic", False):
        reason = "it trains a critic across steps"
    elif name == "fd" or not getattr(objective, "needs_real_samples", True):
        reason = "its reference is the statistics of the whole training set, not of a class"
    elif len(objective.state_dict()):
        reason = f"it carries state across steps ({', '.join(list(objective.state_dict())[:3])})"
    if reason:
        raise MatchzooError(
            f"train.per_class_matching = True: term {term.name!r} uses objective {name!r}, which cannot be "
            f"applied class by class ({reason}); use a batch objective (mmd, sinkhorn, sliced_wasserstein, bures, "
            f"kernel_bures) or per_class_matching = False"
        )


def per_class_loss(objective, fake: torch.Tensor, real: torch.Tensor, labels: torch.Tensor) -> LossOutput:
    """``sum_c (n_c / n) objective(fake_c, real_c)``; ``labels`` (B,) are the classes of fake and real item i."""
    if labels.shape[0] != fake.shape[0] or real.shape[0] != fake.shape[0]:
        raise ValueError(
            f"per-class matching needs aligned batches, got {fake.shape[0]}, {real.shape[0]}, labels {labels.shape[0]}"
        )
    labels = labels.to(fake.device)
    classes, counts = torch.unique(labels, return_counts=True)
    kept = [(c, int(n)) for c, n in zip(classes.tolist(), counts.tolist()) if n >= MIN_PER_CLASS]
    if not kept:
        raise MatchzooError(
            f"train.per_class_matching = True: no class has {MIN_PER_CLASS} samples in a batch of {fake.shape[0]}; "
            f"raise train.batch_size"
        )
    total = sum(n for _, n in kept)
    loss = torch.zeros((), device=fake.device)
    logs: dict[str, float] = {}
    for cls, n in kept:
        mask = labels == cls
        out = objective(fake[mask], real[mask])
        loss = loss + (n / total) * out.loss.float()
        for key, value in out.logs.items():
            logs[key] = logs.get(key, 0.0) + (n / total) * value
    logs["classes_matched"] = float(len(kept))
    return LossOutput(loss, logs)
