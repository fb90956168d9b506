"""``mlp``: noise -> fully connected layers -> tanh image. The small offline generator."""

from __future__ import annotations

import math

import torch
from torch import nn

from matchzoo import validate as check
from matchzoo.errors import MatchzooError
from matchzoo.generators.base import Generator, image_shape_of
from matchzoo.registry import register_generator


@register_generator("mlp")
class MLPGenerator(Generator):
    """``depth`` hidden layers of ``width`` units with LeakyReLU, linear to C*H*W, tanh."""

    def __init__(self, image_shape: tuple = (1, 8, 8), noise_dim: int = 32, width: int = 256, depth: int = 2):
        super().__init__()
        self.noise_dim = check.positive_int("mlp.noise_dim", noise_dim)
        self.image_shape = image_shape_of("mlp.image_shape", image_shape)
        width, depth = check.positive_int("mlp.width", width), check.non_negative_int("mlp.depth", depth)
        layers: list[nn.Module] = []
        fan_in = self.noise_dim
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), nn.LeakyReLU(0.2)]
            fan_in = width
        needed, available = 4 * fan_in * math.prod(self.image_shape), check.memory_bytes()  # float32 output weights
        if available is not None and needed > available:
            raise MatchzooError(
                f"mlp: the output layer ({fan_in} x {math.prod(self.image_shape)}) needs {needed / 2**30:.1f} GiB, "
                f"more than this machine's {available / 2**30:.1f} GiB; lower mlp.image_shape or mlp.width"
            )
        layers.append(nn.Linear(fan_in, math.prod(self.image_shape)))
        self.net = nn.Sequential(*layers)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(noise)).view(noise.shape[0], *self.image_shape)
