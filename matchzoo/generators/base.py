"""The generator contract: ``generator(noise, labels=None)`` maps noise ``(N, *noise_shape)`` (and, for a
class-conditional generator, class indices ``(N,)``) to images ``(N, C, H, W)`` in [-1, 1].

* ``num_classes``: 0 for an unconditional generator (it is called as ``generator(noise)`` and refuses labels),
  K > 0 for a class-conditional one (labels in ``[0, K)``, a ``torch.long`` tensor of shape ``(N,)``).
* ``null_label``: the class index meaning "no class" (``== num_classes``) for a generator trained with label
  dropout; only such a generator can be sampled with classifier-free guidance.
* ``sample_noise`` / ``sample_labels`` / ``balanced_labels`` draw the inputs; ``sample(n, labels, generator,
  cfg_scale)`` draws noise on the CPU from ``generator`` (so a seed gives the same samples on every device),
  uses class-balanced labels when none are given, and applies guidance on the output of a one-step generator::

      out = uncond + cfg_scale * (cond - uncond),   uncond = G(z, null_label),  cond = G(z, y)

  ``cfg_scale = 1`` is the plain conditional sample, 0 the unconditional one; guided outputs may leave
  [-1, 1] slightly (they are not clipped here).
* ``weights_module()`` is what ``train.init_from`` loads weights into; ``small_kwargs()`` builds a tiny CPU
  instance for the registry-driven tests.

A user generator is an ``nn.Module`` subclass of :class:`Generator` registered with ``@register_generator``;
an unconditional one may keep ``forward(self, noise)``. The trainer checks its output shape and range on the
first batch and stops with a one-line error if they are wrong.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from matchzoo import validate as check
from matchzoo.errors import MatchzooError

MAX_IMAGE_ELEMENTS = 2**26  # C*H*W of one generated image (3 x 4096 x 4096 is 50 M): beyond it, a typo


class Generator(nn.Module):
    """Base class of every generator: subclasses set ``noise_dim`` (or override ``noise_shape``), ``image_shape``,
    ``num_classes`` / ``null_label`` when conditional, and define ``forward``; sampling is shared."""

    noise_dim: int
    image_shape: tuple[int, int, int]
    num_classes: int = 0  # 0 = unconditional
    null_label: Optional[int] = None  # == num_classes for generators trained with label dropout; else None

    @property
    def noise_shape(self) -> tuple[int, ...]:
        """Per-sample noise shape; vector noise by default, a tensor (e.g. latents ``(4, 32, 32)``) if overridden."""
        return (self.noise_dim,)

    @property
    def generator_name(self) -> str:
        return getattr(type(self), "registry_name", type(self).__name__)

    def forward(self, noise: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define forward(noise, labels=None)")

    def sample_noise(self, n: int, generator: Optional[torch.Generator] = None, device=None) -> torch.Tensor:
        return torch.randn(n, *self.noise_shape, generator=generator, device=device)

    def sample_labels(
        self,
        n: int,
        generator: Optional[torch.Generator] = None,
        frequencies: Optional[Any] = None,
        device=None,
    ) -> Optional[torch.Tensor]:
        """``n`` class indices drawn i.i.d. with probabilities ``frequencies`` (``(num_classes,)`` non-negative
        weights, normalised here; None = uniform) from ``generator``; None for an unconditional generator."""
        if not self.num_classes:
            return None
        weights = class_weights(frequencies, self.num_classes, f"{self.generator_name} label frequencies")
        if generator is not None:
            weights = weights.to(generator.device)
        labels = torch.multinomial(weights, n, replacement=True, generator=generator)
        return labels.to(device) if device is not None else labels

    def balanced_labels(self, n: int, device=None) -> Optional[torch.Tensor]:
        """Class-balanced labels in a fixed order, ``i % num_classes``; None for an unconditional generator."""
        if not self.num_classes:
            return None
        return torch.arange(n, device=device) % self.num_classes

    def sample(
        self,
        n: int,
        labels: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
        cfg_scale: float = 1.0,
    ) -> torch.Tensor:
        """``n`` images: noise from ``generator`` (drawn on the CPU when given), class-balanced labels when a
        conditional generator gets none, classifier-free guidance when ``cfg_scale != 1``."""
        cfg_scale = check.real("cfg_scale", cfg_scale, minimum=0.0)
        if cfg_scale != 1.0 and self.null_label is None:
            raise MatchzooError(
                f"cfg_scale = {cfg_scale:g} needs a generator trained with a null label (label dropout); "
                f"generator {self.generator_name!r} has none: use cfg_scale = 1"
            )
        device = next(self.parameters(), torch.empty(0)).device
        noise = self.sample_noise(n, generator=generator, device="cpu" if generator is not None else device)
        noise = noise.to(device)
        if not self.num_classes:
            if labels is not None:
                check_labels(labels, 0, self.generator_name)  # raises: an unconditional generator takes no labels
            return self(noise)
        if labels is None:
            labels = self.balanced_labels(n)
        labels = check_labels(labels, self.num_classes, self.generator_name)
        if labels.shape[0] != n:
            raise MatchzooError(f"generator {self.generator_name!r}: sample({n}) was given {labels.shape[0]} labels")
        labels = labels.to(device)
        cond = self(noise, labels)
        if cfg_scale == 1.0:
            return cond
        uncond = self(noise, torch.full_like(labels, self.null_label))
        return uncond + cfg_scale * (cond - uncond)

    def weights_module(self) -> nn.Module:
        """The module whose state dict ``train.init_from`` loads (a wrapper returns what it wraps)."""
        return self

    @classmethod
    def small_kwargs(cls) -> dict:
        """Keyword arguments for a tiny instance that runs in well under a second on a CPU (registry tests)."""
        return {}


def check_labels(labels: Any, num_classes: int, name: str, null_label: Optional[int] = None) -> torch.Tensor:
    """``labels`` as a ``torch.long`` tensor ``(N,)`` in ``[0, num_classes)`` (``null_label`` too when given),
    or a one-line error naming generator ``name``."""
    if labels is None:
        if num_classes:
            raise MatchzooError(
                f"generator {name!r} is class-conditional ({num_classes} classes) and needs labels (N,); "
                f"use a labelled dataset or a generator with num_classes = 0"
            )
        return labels
    if not num_classes:
        raise MatchzooError(
            f"generator {name!r} is unconditional (num_classes = 0) and takes no labels; "
            f"drop the labels or use a class-conditional generator"
        )
    if not isinstance(labels, torch.Tensor):
        try:
            labels = torch.as_tensor(labels)
        except (TypeError, ValueError, RuntimeError) as error:
            raise MatchzooError(f"labels for generator {name!r} must be integer class indices ({error})") from None
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise MatchzooError(
            f"labels for generator {name!r} must be integer class indices (torch.long), got {labels.dtype}"
        )
    if labels.ndim != 1:
        raise MatchzooError(f"labels for generator {name!r} must have shape (N,), got {tuple(labels.shape)}")
    labels = labels.long()
    outside = (labels < 0) | (labels >= num_classes)
    if null_label is not None:
        outside &= labels != null_label
    if outside.any():
        raise MatchzooError(
            f"label {int(labels[outside][0])} is outside [0, {num_classes}) for generator {name!r} "
            f"({num_classes} classes); check the dataset's labels and the generator's num_classes"
        )
    return labels


def class_weights(frequencies: Any, num_classes: int, name: str) -> torch.Tensor:
    """Float64 class probabilities ``(num_classes,)`` from non-negative weights (None = uniform)."""
    if frequencies is None:
        return torch.full((num_classes,), 1.0 / num_classes, dtype=torch.float64)
    weights = torch.as_tensor(frequencies, dtype=torch.float64).detach().cpu()
    if weights.shape != (num_classes,):
        raise MatchzooError(f"{name} must have shape ({num_classes},) (a weight per class), got {tuple(weights.shape)}")
    if not torch.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
        raise MatchzooError(f"{name} must be finite, non-negative and not all zero, got {weights.tolist()}")
    return weights / weights.sum()


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
