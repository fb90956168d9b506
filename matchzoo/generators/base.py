"""The generator contract: ``generator(noise)`` maps ``(N, noise_dim)`` noise to images ``(N, C, H, W)`` in [-1, 1].

``sample(n, generator=...)`` draws the noise itself. A user generator is any ``nn.Module`` subclass of
:class:`Generator` registered with ``@register_generator``; the trainer checks its output shape and range
on the first batch and stops with a one-line error if they are wrong.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from matchzoo import validate as check
from matchzoo.errors import MatchzooError

MAX_IMAGE_ELEMENTS = 2**26  # C*H*W of one generated image (3 x 4096 x 4096 is 50 M): beyond it, a typo


class Generator(nn.Module):
    noise_dim: int
    image_shape: tuple[int, int, int]

    def sample_noise(self, n: int, generator: Optional[torch.Generator] = None, device=None) -> torch.Tensor:
        return torch.randn(n, self.noise_dim, generator=generator, device=device)

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        device = next(self.parameters()).device
        noise = self.sample_noise(n, generator=generator, device="cpu" if generator is not None else device)
        return self(noise.to(device))


def image_shape_of(name: str, value) -> tuple[int, int, int]:
    """``(C, H, W)`` of positive integers, e.g. ``mlp.image_shape = (1, 8, 8)``."""
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise MatchzooError(f"{name} must be (channels, height, width) such as (1, 8, 8), got {value!r}")
    shape = tuple(check.positive_int(f"{name}[{index}]", size) for index, size in enumerate(value))
    if shape[0] * shape[1] * shape[2] > MAX_IMAGE_ELEMENTS:
        raise MatchzooError(f"{name} = {shape} has more than {MAX_IMAGE_ELEMENTS:,} values per image; check the sizes")
    return shape


def check_generator_output(images: torch.Tensor, expected_shape: tuple[int, ...], name: str) -> None:
    """One-line error when a generator returns the wrong shape or leaves [-1, 1]."""
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(expected_shape):
        raise MatchzooError(
            f"generator {name!r} returned shape {tuple(images.shape)}; "
            f"the dataset needs (N, {', '.join(map(str, expected_shape))})"
        )
    if not torch.isfinite(images).all():
        raise MatchzooError(f"generator {name!r} returned NaN or inf values")
    low, high = float(images.detach().min()), float(images.detach().max())
    if low < -1.001 or high > 1.001:
        raise MatchzooError(
            f"generator {name!r} returned values in [{low:.3g}, {high:.3g}]; images must lie in [-1, 1] (end with tanh)"
        )
