"""Labels in training: the fake batch's class labels, and a real minibatch with exactly those labels.

* ``train.label_sampling = 'data'`` (default) draws each fake label from the train split's label frequencies,
  ``'uniform'`` from the uniform distribution over the generator's ``num_classes``. Labels are drawn from the
  trainer's per-rank noise RNG right after the noise, so a seed fixes them.
* ``train.class_matched_real = True``: for fake labels ``y_1..y_n`` the real minibatch is ``x_1..x_n`` with
  ``x_i`` drawn uniformly among the train items of class ``y_i`` (from the per-rank real RNG): the real batch has
  the fake batch's label multiset exactly -- item by item -- so a distribution-matching objective compares
  class-conditional distributions, not the class mixture. Under torchrun each rank matches its own shard and the
  gathered global batches match as a whole.

An unconditional generator (``num_classes = 0``) draws no labels and consumes no random numbers for them: its
run is exactly the run without labels, whether the dataset has labels or not.
"""

from __future__ import annotations

from typing import Optional

import torch

from matchzoo.data.datasets import ImageDataset
from matchzoo.errors import MatchzooError
from matchzoo.generators.base import Generator

LABELLED_DATASETS = "digits, image_folder with class sub-folders, or an npz with a labels array"


def num_classes(generator: Generator) -> int:
    return int(getattr(generator, "num_classes", 0) or 0)


def train_labels(dataset: ImageDataset) -> Optional[torch.Tensor]:
    """``(N_train,)`` long class of every train item (aligned with ``dataset.split('train')``), None if unlabelled."""
    labels = dataset.labels("train") if hasattr(dataset, "labels") else None
    return None if labels is None else torch.as_tensor(labels, dtype=torch.long).cpu()


class LabelSource:
    """The fake labels of each step and, with ``class_matched``, the real items that match them."""

    def __init__(
        self, generator: Generator, dataset: ImageDataset, sampling: str = "data", class_matched: bool = False
    ):
        self.num_classes = num_classes(generator)
        self.class_matched = class_matched
        self.frequencies: Optional[torch.Tensor] = None  # (K,) float64 weights; None = uniform
        self.counts: Optional[torch.Tensor] = None  # (K,) train items per class
        self.index: Optional[ClassIndex] = None  # with class_matched: the train split grouped by class
        generator_name = getattr(generator, "generator_name", type(generator).__name__)
        if not self.num_classes:
            if class_matched:
                raise MatchzooError(
                    f"train.class_matched_real = True needs a class-conditional generator, but generator "
                    f"{generator_name!r} is unconditional (num_classes = 0); set its num_classes or drop the binding"
                )
            return
        labels = train_labels(dataset)
        if labels is None:
            raise MatchzooError(
                f"generator {generator_name!r} is class-conditional ({self.num_classes} classes) but dataset "
                f"{dataset.name!r} has no labels; use a labelled dataset ({LABELLED_DATASETS}) or num_classes = 0"
            )
        if labels.numel() and int(labels.max()) >= self.num_classes:
            raise MatchzooError(
                f"dataset {dataset.name!r} has label {int(labels.max())} but generator {generator_name!r} has "
                f"num_classes = {self.num_classes}; set {generator_name}.num_classes = {int(labels.max()) + 1} "
                f"(or more)"
            )
        self.counts = torch.bincount(labels, minlength=self.num_classes)  # (K,) train items per class
        if sampling == "data":
            self.frequencies = self.counts.to(torch.float64)
        if class_matched:
            drawn = self.counts > 0 if sampling == "data" else torch.ones(self.num_classes, dtype=torch.bool)
            empty = torch.nonzero(drawn & (self.counts == 0)).flatten()
            if empty.numel():
                raise MatchzooError(
                    f"train.class_matched_real = True but class {int(empty[0])} (of {self.num_classes}) has no item "
                    f"in the train split of dataset {dataset.name!r}, and train.label_sampling = {sampling!r} "
                    f"draws it; use train.label_sampling = 'data' or class_matched_real = False"
                )
            self.index = ClassIndex(labels, self.num_classes)  # train items grouped by class

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def fake(self, generator: Generator, n: int, rng: torch.Generator) -> Optional[torch.Tensor]:
        """``(n,)`` long labels on the CPU drawn from ``rng``; None (and no draw) for an unconditional generator."""
        if not self.conditional:
            return None
        return generator.sample_labels(n, generator=rng, frequencies=self.frequencies)

    def real_indices(self, labels: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """``(n,)`` train-split indices whose item ``i`` has class ``labels[i]``, each uniform within its class."""
        return self.index.draw(labels, rng)


class ClassIndex:
    """Items grouped by class (the train split, or a pool of it): :meth:`draw` picks, for labels ``y_1..y_n``,
    item ``i`` uniformly among the items of class ``y_i``."""

    def __init__(self, item_labels: torch.Tensor, classes: int):
        self.counts = torch.bincount(item_labels, minlength=classes)  # (K,) items per class
        self.order = torch.argsort(item_labels, stable=True)  # item positions grouped by class
        self.offsets = torch.cumsum(self.counts, 0) - self.counts  # (K,) where each class starts in `order`

    def draw(self, labels: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """``(n,)`` item positions of classes ``labels`` (one float64 uniform per item from ``rng``)."""
        labels = labels.cpu()
        counts = self.counts[labels]  # (n,)
        uniform = torch.rand(labels.shape[0], generator=rng, dtype=torch.float64)
        within = torch.minimum((uniform * counts).long(), counts - 1)  # float64: exact for any realistic count
        return self.order[self.offsets[labels] + within]
