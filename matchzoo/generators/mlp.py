"""``mlp``: noise -> fully connected layers -> tanh image. The small offline generator."""
from __future__ import annotations

import math

import torch
from torch import nn

from matchzoo.generators.base import Generator
from matchzoo.registry import register_generator


@register_generator("mlp")
class MLPGenerator(Generator):
    """``depth`` hidden layers of ``width`` units with LeakyReLU, linear to C*H*W, tanh."""

    def __init__(self, image_shape: tuple = (1, 8, 8), noise_dim: int = 32, width: int = 256, depth: int = 2):
        super().__init__()
        self.noise_dim = noise_dim
        self.image_shape = tuple(int(s) for s in image_shape)
        layers: list[nn.Module] = []
        fan_in = noise_dim
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), nn.LeakyReLU(0.2)]
            fan_in = width
        layers.append(nn.Linear(fan_in, math.prod(self.image_shape)))
        self.net = nn.Sequential(*layers)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(noise)).view(noise.shape[0], *self.image_shape)
