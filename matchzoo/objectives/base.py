"""The objective contract shared by every distribution-matching loss.

An objective is an ``nn.Module`` called as ``objective(fake, real)`` on ``(N, D)`` feature tensors:
``fake`` carries gradients to the generator, ``real`` does not. It returns a :class:`LossOutput` whose
``loss`` is a scalar tensor differentiable w.r.t. ``fake`` and whose ``logs`` are plain floats.

Hooks the trainer uses (all optional):

* ``prepare_reference(features)`` -- called once per run with *all* real training features of the
  space (float32, ``(N_ref, D)``); objectives that match full-dataset statistics (FD-loss) keep them.
* ``has_critic`` / ``critic_loss(fake, real)`` / ``critic_parameters()`` / ``after_critic_step()``
  -- adversarial objectives (SAN) own trainable parameters; the trainer owns their optimiser and runs
  ``critic_steps`` critic updates per generator step.
* state that must survive a restart (population, potentials, critic) lives in buffers/parameters so it
  is part of ``state_dict()`` and therefore of the checkpoint. Buffers whose shape is only known once
  features arrive (it depends on ``D``, the batch size, ...) are registered empty and listed in
  ``lazy_buffers``; loading a checkpoint resizes them to the saved shape first.
* ``weighted_form(reference)`` -- the objective on a frequency-weighted candidate set against a fixed
  reference, ``(x (N, D), w (N,)) -> scalar`` (the resample probe minimises it; conventions in
  :mod:`matchzoo.objectives.weighting`). A class overrides it when the reference side is worth preparing
  once, or defines the simpler ``weighted_loss(candidates, weights, reference) -> scalar``.
* ``is_divergence`` -- ``True`` when ``loss`` itself estimates a discrepancy (about 0 for identical
  inputs, growing with a shift); ``False`` for surrogate losses whose *gradient* carries the matching
  signal (transport targets, adversarial generator losses). The property tests use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.parameter import is_lazy

from matchzoo.errors import MatchzooError
from matchzoo.objectives.weighting import WeightedLoss


@dataclass
class LossOutput:
    """What every objective returns: a scalar loss with gradient to ``fake`` and float logs."""

    loss: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)


class LazyStateModule(nn.Module):
    """A module whose buffers named in ``lazy_buffers`` take their shape from the first batch.

    They start empty; :meth:`load_state_dict` resizes them to the checkpoint's shape before copying,
    so a fresh objective can resume from a checkpoint written after its state was sized. Uninitialised
    (lazy) parameters of the module itself are materialised the same way.
    """

    lazy_buffers: tuple[str, ...] = ()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        for name in self.lazy_buffers:
            saved = state_dict.get(prefix + name)
            current = self._buffers.get(name)
            if saved is not None and current is not None and saved.shape != current.shape:
                self._buffers[name] = torch.empty(saved.shape, dtype=saved.dtype, device=current.device)
        for name, param in self._parameters.items():  # UninitializedParameter sized on first use
            saved = state_dict.get(prefix + name)
            if saved is not None and param is not None and is_lazy(param):
                param.materialize(saved.shape, dtype=saved.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class Objective(LazyStateModule):
    """Base class: subclasses implement ``forward(fake, real) -> LossOutput``."""

    has_critic: bool = False
    critic_steps: int = 0
    critic_lr: float = 2e-4
    critic_betas: tuple[float, float] = (0.0, 0.99)
    is_divergence: bool = True

    def weighted_form(self, reference: torch.Tensor) -> WeightedLoss:
        """``(x (N, D), w (N,)) -> scalar``: this objective on frequency-weighted candidates against ``reference``."""
        own = getattr(self, "weighted_loss", None)
        if not callable(own):
            raise MatchzooError(no_weighted_form(self))
        reference = reference.detach()
        return lambda x, w: own(x, w, reference)

    def prepare_reference(self, features: torch.Tensor) -> None:
        """Receive all real training features of the space once per run (default: unused)."""

    def critic_parameters(self) -> list[nn.Parameter]:
        return []

    def critic_loss(self, fake: torch.Tensor, real: torch.Tensor) -> LossOutput:
        raise NotImplementedError(f"{type(self).__name__} has no critic")

    def after_critic_step(self) -> None:
        """Called after each critic optimiser step (e.g. to re-project a direction to the sphere)."""

    @staticmethod
    def check_features(fake: torch.Tensor, real: torch.Tensor) -> None:
        """Raise a one-line error for inputs no objective can use."""
        if fake.ndim != 2 or real.ndim != 2:
            raise MatchzooError(
                f"objectives take (N, D) feature tensors; got fake {tuple(fake.shape)} and real {tuple(real.shape)}"
            )
        if fake.shape[1] != real.shape[1]:
            raise MatchzooError(
                f"feature dimension mismatch: fake has D={fake.shape[1]}, real has D={real.shape[1]}; "
                f"both sides must come from the same feature space"
            )


def no_weighted_form(objective) -> str:
    name = getattr(type(objective), "registry_name", type(objective).__name__)
    return (
        f"objective {name!r} has no weighted form for the resample probe; give its class a "
        f"weighted_loss(candidates, weights, reference) or weighted_form(reference) method"
    )
