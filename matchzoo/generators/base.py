"""The generator contract: ``generator(noise)`` maps ``(N, noise_dim)`` noise to images ``(N, C, H, W)`` in [-1, 1].

``sample(n, generator=...)`` draws the noise itself. A user generator is any ``nn.Module`` subclass of
:class:`Generator` registered with ``@register_generator``; the trainer checks its output shape and range
on the first batch and stops with a one-line error if they are wrong.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from matchzoo.errors import MatchzooError


class Generator(nn.Module):
    noise_dim: int
    image_shape: tuple[int, int, int]

    def sample_noise(self, n: int, generator: Optional[torch.Generator] = None, device=None) -> torch.Tensor:
        return torch.randn(n, self.noise_dim, generator=generator, device=device)

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        device = next(self.parameters()).device
        noise = self.sample_noise(n, generator=generator, device="cpu" if generator is not None else device)
        return self(noise.to(device))


def check_generator_output(images: torch.Tensor, expected_shape: tuple[int, ...], name: str) -> None:
    """One-line error when a generator returns the wrong shape or leaves [-1, 1]."""
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(expected_shape):
        raise MatchzooError(
            f"generator {name!r} returned shape {tuple(images.shape)}; the dataset needs (N, {', '.join(map(str, expected_shape))})"
        )
    if not torch.isfinite(images).all():
        raise MatchzooError(f"generator {name!r} returned NaN or inf values")
    low, high = float(images.detach().min()), float(images.detach().max())
    if low < -1.001 or high > 1.001:
        raise MatchzooError(
            f"generator {name!r} returned values in [{low:.3g}, {high:.3g}]; images must lie in [-1, 1] (end with tanh)"
        )
