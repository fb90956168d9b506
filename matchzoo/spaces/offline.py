"""Offline feature spaces that need no download: raw pixels and a seeded random-init CNN."""

from __future__ import annotations

import math

import torch
from torch import nn

from matchzoo.registry import register_feature_space
from matchzoo.spaces.base import FeatureSpace, Preprocessing


@register_feature_space("pixels")
class Pixels(FeatureSpace):
    """Flattened pixels after an area resize to ``size`` x ``size``: the 'no representation' baseline."""

    family = "pixels"

    def __init__(self, size: int = 8, channels: int = 1):
        super().__init__()
        self.preprocessing = Preprocessing(
            size=size,
            resize="area",
            channels=channels,
            mean=(0.5,) * channels,
            std=(0.5,) * channels,
            layer="flattened pixels in [-1, 1]",
        )
        self.dim = channels * size * size
        self.freeze()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x


@register_feature_space("random_conv")
class RandomConv(FeatureSpace):
    """A random-init CNN (three 3x3 conv + ReLU blocks, 2x2 average pool, fixed random projection).

    Weights come from ``torch.Generator().manual_seed(seed)`` only, so the same seed gives the same
    features on every machine and in every process, independent of the global RNG.
    """

    weights_source = "random init (seeded)"
    family = "pixels"  # no learned weights: a fixed random function of the pixels (see FeatureSpace.family)

    def __init__(self, seed: int = 0, size: int = 8, channels: int = 1, width: int = 32, dim: int = 128):
        super().__init__()
        self.seed, self.width = seed, width
        self.preprocessing = Preprocessing(
            size=size,
            resize="bilinear",
            channels=channels,
            mean=(0.5,) * channels,
            std=(0.5,) * channels,
            layer=f"conv3 -> avgpool(2x2) -> random projection to {dim}",
        )
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
        )
        self.project = nn.Linear(2 * width * 4, dim, bias=False)
        self.dim = dim
        self._seeded_init()
        self.freeze()

    def _seeded_init(self) -> None:
        generator = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    fan_in = module.weight[0].numel()
                    module.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
                    if module.bias is not None:
                        module.bias.normal_(0.0, 0.1, generator=generator)

    def config(self) -> dict:
        return {"seed": self.seed, "width": self.width}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.body(x).flatten(1))
