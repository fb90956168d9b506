"""Real features per (space, split), extracted once per run and shared by terms and evaluation.

Uses the on-disk reference cache (:mod:`matchzoo.data.cache`) so repeated runs skip extraction.
"""

from __future__ import annotations

import torch

from matchzoo.data.datasets import ImageDataset
from matchzoo.spaces.base import FeatureSpace


class RealFeatures:
    def __init__(self, dataset: ImageDataset, batch_size: int, device: torch.device, progress: bool = True):
        self.dataset, self.batch_size, self.device, self.progress = dataset, batch_size, device, progress
        self._features: dict[tuple[str, str], torch.Tensor] = {}
        first = dataset.split("train")[0]
        self.image_shape = tuple(first.shape)

    def get(self, space: FeatureSpace, split: str) -> torch.Tensor:
        key = (space.fingerprint, split)
        if key not in self._features:
            from matchzoo.data.cache import reference_features

            features = reference_features(
                space, self.dataset, split, batch_size=self.batch_size, device=self.device, progress=self.progress
            )
            self._features[key] = features.to(self.device)
        return self._features[key]

    def train(self, space: FeatureSpace) -> torch.Tensor:
        return self.get(space, "train")

    def heldout(self, space: FeatureSpace) -> torch.Tensor:
        return self.get(space, "heldout")
