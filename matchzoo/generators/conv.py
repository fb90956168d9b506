"""``conv``: a class-conditional convolutional generator (BigGAN-style residual up-sampling, 8 to 256 px).

::

    z (noise_dim) ++ e(y) (embed_dim) --linear--> width x 4 x 4
        --> ResUp x log2(size / 4)        ResUp(x) = conv3(act(CN(conv3(up(act(CN(x, e)))), e))) + skip(up(x))
        --> CN -> act -> conv3x3 to C channels -> tanh

``e(y)`` is a learned class vector (:class:`~matchzoo.generators.conditioning.ClassEmbedding`, with a null class
for classifier-free guidance). ``CN`` is *conditional group normalisation*: GroupNorm without its own affine,
then a per-sample gain and bias ``x̂ · (1 + γ(e)) + β(e)`` projected from the class vector (zero-initialised, so
every block starts as plain GroupNorm). Group normalisation rather than BigGAN's batch normalisation keeps a
sample independent of the rest of its batch: evaluation, the EMA copy, and the multi-process run (each rank sees
its shard) all compute the same function. Unconditional (``num_classes = 0``): the class vector is one learned
constant.

Channels halve at every block (``width`` at 4x4), never below ``min(width, 32)``.

Parameters (counted): 1,859,587 at the defaults (3x32x32, width 256, unconditional); 1,987,587 with
``num_classes = 1000``; 1,661,569 for 1x8x8 digits.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from matchzoo import validate as check
from matchzoo.errors import MatchzooError
from matchzoo.generators.base import Generator, image_shape_of
from matchzoo.generators.conditioning import ClassEmbedding
from matchzoo.registry import register_generator

BASE_SIZE = 4
SIZES = tuple(2**k for k in range(3, 9))  # 8 .. 256


def groups_for(channels: int) -> int:
    """At most 32 groups, a divisor of ``channels`` (GroupNorm needs one)."""
    return math.gcd(32, channels)


class ConditionalGroupNorm(nn.Module):
    """``GroupNorm(x) * (1 + gamma(e)) + beta(e)``; with ``condition_dim = 0`` a plain affine GroupNorm."""

    def __init__(self, channels: int, condition_dim: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups_for(channels), channels, affine=False)
        self.modulation = nn.Linear(condition_dim, 2 * channels)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:  # x (N, C, H, W), condition (N, E)
        gain, bias = self.modulation(condition)[:, :, None, None].chunk(2, dim=1)
        return self.norm(x) * (1 + gain) + bias


class ResidualUpBlock(nn.Module):
    """Pre-activation residual block that doubles the resolution: two 3x3 convolutions, a 1x1 skip when the
    channel count changes."""

    def __init__(self, in_channels: int, out_channels: int, condition_dim: int, upsample: str):
        super().__init__()
        self.upsample = upsample
        self.norm1 = ConditionalGroupNorm(in_channels, condition_dim)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = ConditionalGroupNorm(out_channels, condition_dim)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def up(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample == "nearest":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.up(F.silu(self.norm1(x, condition))))
        h = self.conv2(F.silu(self.norm2(h, condition)))
        return h + self.skip(self.up(x))


@register_generator("conv")
class ConvGenerator(Generator):
    """Class-conditional residual conv generator, conditional GroupNorm, 8-256 px; 1.86 M params at defaults."""

    def __init__(
        self,
        image_shape: tuple = (3, 32, 32),
        noise_dim: int = 128,
        width: int = 256,
        num_classes: int = 0,
        embed_dim: int = 128,
        label_dropout: float = 0.0,
        upsample: str = "nearest",
    ):
        super().__init__()
        self.image_shape = image_shape_of("conv.image_shape", image_shape)
        channels, height, width_px = self.image_shape
        if height != width_px or height not in SIZES:
            raise MatchzooError(
                f"conv.image_shape = {self.image_shape}: conv makes square images of 8, 16, 32, 64, 128 or 256 px "
                f"(a power of two); resize the dataset (e.g. image_folder.size) to one of them"
            )
        self.noise_dim = check.positive_int("conv.noise_dim", noise_dim)
        self.width = check.positive_int("conv.width", width)
        embed_dim = check.positive_int("conv.embed_dim", embed_dim)
        self.upsample = check.choice("conv.upsample", upsample, ("nearest", "bilinear"))
        self.classes = ClassEmbedding("conv", num_classes, embed_dim, label_dropout)
        self.num_classes, self.null_label = self.classes.num_classes, self.classes.null_label

        levels = int(math.log2(height // BASE_SIZE))
        widths = [max(self.width >> level, min(self.width, 32)) for level in range(levels + 1)]
        self.stem = nn.Linear(self.noise_dim + embed_dim, widths[0] * BASE_SIZE * BASE_SIZE)
        self.blocks = nn.ModuleList(
            ResidualUpBlock(widths[level], widths[level + 1], embed_dim, self.upsample) for level in range(levels)
        )
        self.out_norm = ConditionalGroupNorm(widths[-1], embed_dim)
        self.out_conv = nn.Conv2d(widths[-1], channels, 3, padding=1)

    @classmethod
    def small_kwargs(cls) -> dict:
        return dict(image_shape=(3, 16, 16), noise_dim=8, width=16, num_classes=3, embed_dim=8, label_dropout=0.1)

    def forward(self, noise: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        if noise.ndim != 2 or noise.shape[1] != self.noise_dim:
            raise MatchzooError(f"conv: noise must be (N, {self.noise_dim}), got {tuple(noise.shape)}")
        condition = self.classes(labels, noise.shape[0])  # (N, E)
        x = self.stem(torch.cat([noise, condition], dim=1)).view(noise.shape[0], -1, BASE_SIZE, BASE_SIZE)
        for block in self.blocks:
            x = block(x, condition)
        return torch.tanh(self.out_conv(F.silu(self.out_norm(x, condition))))
