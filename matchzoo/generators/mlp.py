"""``mlp``: noise (plus a learned class embedding when class-conditional) -> fully connected layers -> tanh image.
The small offline generator."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from matchzoo import validate as check
from matchzoo.errors import MatchzooError
from matchzoo.generators.base import Generator, check_labels, image_shape_of
from matchzoo.registry import register_generator


@register_generator("mlp")
class MLPGenerator(Generator):
    """``depth`` hidden layers of ``width`` units with LeakyReLU, linear to C*H*W, tanh. With ``num_classes`` K > 0
    a K x ``noise_dim`` class embedding is concatenated to the noise (input 2 * noise_dim). 90,688 parameters at
    the defaults (99,200 with ``num_classes = 10``)."""

    def __init__(
        self,
        image_shape: tuple = (1, 8, 8),
        noise_dim: int = 32,
        width: int = 256,
        depth: int = 2,
        num_classes: int = 0,
    ):
        super().__init__()
        self.noise_dim = check.positive_int("mlp.noise_dim", noise_dim)
        self.image_shape = image_shape_of("mlp.image_shape", image_shape)
        width, depth = check.positive_int("mlp.width", width), check.non_negative_int("mlp.depth", depth)
        self.num_classes = check.non_negative_int("mlp.num_classes", num_classes)
        layers: list[nn.Module] = []
        fan_in = self.noise_dim * (2 if self.num_classes else 1)
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
        # Created after the layers (and only when conditional) so an unconditional mlp draws exactly the
        # parameters it drew before labels existed: same seed, same initial generator.
        self.embedding = nn.Embedding(self.num_classes, self.noise_dim) if self.num_classes else None

    def forward(self, noise: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        labels = check_labels(labels, self.num_classes, "mlp", self.null_label)
        if self.embedding is not None:
            noise = torch.cat([noise, self.embedding(labels.to(noise.device))], dim=1)  # (N, 2 * noise_dim)
        return torch.tanh(self.net(noise)).view(noise.shape[0], *self.image_shape)

    @classmethod
    def small_kwargs(cls) -> dict:
        return {"image_shape": (1, 8, 8), "noise_dim": 8, "width": 32, "depth": 1, "num_classes": 3}
