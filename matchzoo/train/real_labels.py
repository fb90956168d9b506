"""Labels where :class:`matchzoo.train.labels.LabelSource` does not reach: a run without a dataset, and class
matching inside a bounded real pool.

* ``train.dataset = None`` with a class-conditional generator: the fake labels are uniform over its classes
  (``train.label_sampling = 'uniform'`` must say so: ``'data'`` has no class frequencies to follow) and
  ``train.class_matched_real`` is refused (there is no real item to match).
* ``train.real_pool_size`` with ``train.class_matched_real``: item ``i`` of the real batch is drawn uniformly
  among the *pooled* train items of class ``y_i`` (the rule of :meth:`LabelSource.real_indices`, over the pool);
  a class the fake labels can draw but the pool lacks is one line.
"""

from __future__ import annotations

from typing import Optional

import torch

from matchzoo.errors import MatchzooError
from matchzoo.train.labels import ClassIndex, LabelSource, num_classes, train_labels


class UniformLabels:
    """Fake labels of a class-conditional generator trained without a dataset: uniform over its classes."""

    class_matched = False
    frequencies = None

    def __init__(self, classes: int):
        self.num_classes = classes

    @property
    def conditional(self) -> bool:
        return True

    def fake(self, generator, n: int, rng: torch.Generator) -> Optional[torch.Tensor]:
        return generator.sample_labels(n, generator=rng, frequencies=None)


def label_source(setup):
    """The labels of a run (:class:`LabelSource`); without a dataset a class-conditional generator draws uniform
    labels, and only when asked to (``'data'`` has no frequencies to follow, no real item has a class)."""
    if setup.dataset is not None or not num_classes(setup.generator):
        return LabelSource(setup.generator, setup.dataset, setup.label_sampling, setup.class_matched_real)
    if setup.class_matched_real:
        raise MatchzooError(
            "train.class_matched_real = True but train.dataset = None: there are no real items to match; drop "
            "the binding or give a labelled dataset"
        )
    if setup.label_sampling != "uniform":
        raise MatchzooError(
            f"train.label_sampling = {setup.label_sampling!r} follows the dataset's class frequencies but "
            f"train.dataset = None; set train.label_sampling = 'uniform' (or give a labelled dataset)"
        )
    return UniformLabels(num_classes(setup.generator))


class PoolLabels:
    """Class-matched real items within the pool: item ``i`` of the batch is drawn uniformly among the *pooled*
    train items of class ``labels[i]`` (a :class:`ClassIndex` over the pool, as :meth:`LabelSource.real_indices`
    has over the train split). Without a pool it is ``labels.real_indices`` itself."""

    def __init__(self, labels, dataset, index: Optional[torch.Tensor], pool_size: Optional[int]):
        self.labels, self.pooled = labels, index is not None
        if not self.pooled or not labels.class_matched:
            return
        self.index = ClassIndex(train_labels(dataset)[index], labels.num_classes)  # the pooled items by class
        counts = self.index.counts
        drawn = labels.counts > 0 if labels.frequencies is not None else torch.ones_like(counts, dtype=torch.bool)
        empty = torch.nonzero(drawn & (counts == 0)).flatten()
        if empty.numel():
            raise MatchzooError(
                f"train.real_pool_size = {pool_size} holds no train item of class {int(empty[0])} (of "
                f"{labels.num_classes}) but train.class_matched_real = True draws it; raise train.real_pool_size"
            )

    def real_indices(self, labels: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """``(n,)`` indices into the pool (into the train split without a pool) of items of class ``labels[i]``."""
        if not self.pooled:
            return self.labels.real_indices(labels, rng)
        return self.index.draw(labels, rng)
