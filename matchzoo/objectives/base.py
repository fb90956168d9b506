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
  is part of ``state_dict()`` and therefore of the checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class LossOutput:
    """What every objective returns: a scalar loss with gradient to ``fake`` and float logs."""

    loss: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)


class Objective(nn.Module):
    """Base class: subclasses implement ``forward(fake, real) -> LossOutput``."""

    has_critic: bool = False
    critic_steps: int = 0

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
        from matchzoo.errors import MatchzooError

        if fake.ndim != 2 or real.ndim != 2:
            raise MatchzooError(
                f"objectives take (N, D) feature tensors; got fake {tuple(fake.shape)} and real {tuple(real.shape)}"
            )
        if fake.shape[1] != real.shape[1]:
            raise MatchzooError(
                f"feature dimension mismatch: fake has D={fake.shape[1]}, real has D={real.shape[1]}; "
                f"both sides must come from the same feature space"
            )
