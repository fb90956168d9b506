"""Real features per (space, split), extracted once per run and shared by terms and evaluation.

Uses the on-disk reference cache (:mod:`matchzoo.data.cache`) so repeated runs skip extraction.

* ``train(space)``: every train feature (the reference statistics, ``prepare_reference``, evaluation).
* ``heldout(space)``: the held-out side of FDr -- the dataset's held-out split, or all of ``heldout_dataset``
  (its train and held-out splits concatenated, each cached under that dataset's fingerprint).
* ``pool(space)``: what real minibatches are drawn from. Without ``pool_size`` it is ``train(space)`` itself (the
  runs before pools existed, bit for bit). With ``pool_size = P`` it is ``P`` train features drawn once without
  replacement by a generator seeded with ``pool_seed`` (the same indices in every space, so an image's features
  stay together), and the full train features stay on the CPU: only the pool is on the training device, and
  not even it when it is larger than :data:`POOL_DEVICE_BYTES` (minibatches are then gathered on the CPU).

Memory per space in float32, ``N`` train images of ``D``-d features: ``4 N D`` bytes (1.28M x 2048: 10.5 GB) on
the device without a pool; with one, ``4 N D`` on the CPU and ``4 P D`` on the device (``P`` = 100k x 2048:
0.82 GB).
"""

from __future__ import annotations

from typing import Optional

import torch

from matchzoo.data.datasets import ImageDataset
from matchzoo.errors import MatchzooError
from matchzoo.spaces.base import FeatureSpace

POOL_DEVICE_BYTES = 2**31  # a larger pool stays on the CPU: a real minibatch is gathered there and copied over
HELDOUT_SPLIT, ALL_SPLITS = "heldout", ("train", "heldout")


def pool_indices(count: int, size: int, seed: int) -> torch.Tensor:
    """``size`` distinct indices of ``range(count)`` (sorted), drawn by ``seed`` alone."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:size].sort().values


class RealFeatures:
    def __init__(
        self,
        dataset: Optional[ImageDataset],
        batch_size: int,
        device: torch.device,
        progress: bool = True,
        heldout_dataset: Optional[ImageDataset] = None,
        pool_size: Optional[int] = None,
        pool_seed: int = 0,
    ):
        self.dataset, self.batch_size, self.device, self.progress = dataset, batch_size, device, progress
        self.heldout_dataset, self.pool_size, self.pool_seed = heldout_dataset, pool_size, pool_seed
        self._features: dict[tuple[str, str, str], torch.Tensor] = {}
        self._pools: dict[str, torch.Tensor] = {}
        self._pool_index: Optional[torch.Tensor] = None
        # (C, H, W) of the real images; None without a dataset (the generator's own image_shape is then the rule)
        self.image_shape = None if dataset is None else tuple(dataset.split("train")[0].shape)

    @property
    def available(self) -> bool:
        return self.dataset is not None

    @property
    def heldout_source(self) -> str:
        """Which held-out side FDr divides by: ``heldout_split`` or ``heldout_dataset:<fingerprint>``."""
        if self.heldout_dataset is not None:
            return f"heldout_dataset:{self.heldout_dataset.fingerprint}"
        return "heldout_split"

    @property
    def has_heldout(self) -> bool:
        return self.heldout_dataset is not None or self.dataset is not None

    def _extract(self, space: FeatureSpace, dataset: ImageDataset, split: str, device: torch.device) -> torch.Tensor:
        key = (space.fingerprint, dataset.fingerprint, split)
        if key not in self._features:
            from matchzoo.data.cache import reference_features

            features = reference_features(
                space, dataset, split, batch_size=self.batch_size, device=self.device, progress=self.progress
            )
            self._features[key] = features.to(device)
        return self._features[key]

    def _dataset(self) -> ImageDataset:
        if self.dataset is None:
            raise MatchzooError(
                "real features were asked for but train.dataset = None; give the dataset (or train every term "
                "from statistics and evaluate with evaluator.reference_stats)"
            )
        return self.dataset

    def get(self, space: FeatureSpace, split: str) -> torch.Tensor:
        # with a pool, the full train split stays on the CPU (it can be far larger than the device)
        device = torch.device("cpu") if split == "train" and self.pool_size is not None else self.device
        return self._extract(space, self._dataset(), split, device)

    def train(self, space: FeatureSpace) -> torch.Tensor:
        return self.get(space, "train")

    def heldout(self, space: FeatureSpace) -> torch.Tensor:
        if self.heldout_dataset is None:
            return self.get(space, HELDOUT_SPLIT)
        key = (space.fingerprint, self.heldout_dataset.fingerprint, "all")
        if key not in self._features:
            parts = [self._extract(space, self.heldout_dataset, split, self.device) for split in ALL_SPLITS]
            self._features[key] = torch.cat(parts)
            for split in ALL_SPLITS:  # the concatenation is what is kept
                del self._features[(space.fingerprint, self.heldout_dataset.fingerprint, split)]
        return self._features[key]

    def pool_index(self) -> Optional[torch.Tensor]:
        """``(P,)`` train-split indices of the pooled items (shared by every space), None without a pool."""
        if self.pool_size is None:
            return None
        if self._pool_index is None:
            count = len(self._dataset().split("train"))
            self._pool_index = pool_indices(count, self.pool_size, self.pool_seed)
        return self._pool_index

    def pool(self, space: FeatureSpace) -> torch.Tensor:
        """The features real minibatches are drawn from (``train(space)`` itself without a pool)."""
        if self.pool_size is None:
            return self.train(space)
        if space.fingerprint not in self._pools:
            pooled = self.train(space)[self.pool_index()]  # (P, D) on the CPU
            small = pooled.numel() * pooled.element_size() <= POOL_DEVICE_BYTES
            self._pools[space.fingerprint] = pooled.to(self.device) if small else pooled
        return self._pools[space.fingerprint]
