r"""``san``: Slicing Adversarial Network critic on frozen features (Takida et al., 2024).

Critic :math:`d(x) = s\,\langle\omega, h(x)\rangle` with a trainable MLP head :math:`h`, a direction
:math:`\omega` on the unit sphere and a learnable scale :math:`s = e^{\log s}`. Critic training splits the
logit into a *function* part and a *direction* part:

.. math:: \mathcal L_{critic} = \underbrace{\ell_{base}\big(s\langle h(r), sg(\omega)\rangle,\
          s\langle h(f), sg(\omega)\rangle\big)}_{\text{trains } h,\ s}
          \;\underbrace{-\ \mathbb E_r\langle sg(h(r)),\omega\rangle
          + \mathbb E_f\langle sg(h(f)),\omega\rangle}_{\text{trains }\omega}

so :math:`\omega` follows the linear (Wasserstein-like) objective: with :math:`h` the identity it converges to
:math:`(\mu_r-\mu_f)/\|\mu_r-\mu_f\|`. :math:`\omega = w/\|w\|` inside the critic (tangent gradients, so
Adam settles at the optimum instead of drifting to a sign vector), and :math:`w` is re-projected to the
sphere after every critic step.
Base losses (``loss=``), critic / generator on logits :math:`l_r, l_f`:

* ``hinge`` (default): :math:`\mathrm{relu}(1-l_r)+\mathrm{relu}(1+l_f)` / :math:`-l_f`;
* ``logistic`` (saturating): :math:`\mathrm{sp}(-l_r)+\mathrm{sp}(l_f)` / :math:`-\mathrm{sp}(l_f)` (= log(1 − D));
* ``nonsaturating``: same critic / :math:`\mathrm{sp}(-l_f)`;
* ``least_squares``: :math:`\tfrac12(l_r-1)^2+\tfrac12(l_f+1)^2` / :math:`\tfrac12(l_f-1)^2`.

The generator loss uses the plain logit and the critic weights *detached*, so a generator backward never
writes into the critic's gradients. The trainer owns the critic optimiser (``critic_lr``, ``critic_betas``)
and runs ``critic_steps`` critic updates per generator step; every weight is a parameter (checkpointed).
The head's input size is ``dim`` or, if ``None``, that of the first features (:meth:`prepare_reference` or
the first batch); the parameters exist from construction, so the critic optimiser may be built first.

Weighted form (resample probe): :math:`\sum_i p_i\,\ell_G(d(x_i))` with the per-sample generator loss
:math:`\ell_G`, against a critic that keeps training on the weighted measure between weight updates
(:class:`matchzoo.objectives.weighting.CriticTrainedWeightedLoss`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parameter import is_lazy

from matchzoo.errors import MatchzooError
from matchzoo.objectives.base import LossOutput, Objective
from matchzoo.objectives.weighting import CriticTrainedWeightedLoss, WeightedLoss, probabilities
from matchzoo.registry import register_objective

BASE_LOSSES = ("hinge", "logistic", "nonsaturating", "least_squares")


def critic_base_loss(kind: str, logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    if kind == "hinge":
        return F.relu(1.0 - logit_real).mean() + F.relu(1.0 + logit_fake).mean()
    if kind in ("logistic", "nonsaturating"):
        return F.softplus(-logit_real).mean() + F.softplus(logit_fake).mean()
    return 0.5 * (logit_real - 1.0).square().mean() + 0.5 * (logit_fake + 1.0).square().mean()


def generator_base_loss(kind: str, logit_fake: torch.Tensor) -> torch.Tensor:
    if kind == "hinge":
        return -logit_fake.mean()
    if kind == "logistic":
        return -F.softplus(logit_fake).mean()
    if kind == "nonsaturating":
        return F.softplus(-logit_fake).mean()
    return 0.5 * (logit_fake - 1.0).square().mean()


@register_objective("san")
class SAN(Objective):
    """SAN: adversarial sliced critic (MLP head, unit direction, fun/dir split) on frozen features."""

    has_critic = True
    is_divergence = False
    critic_betas = (0.0, 0.99)

    def __init__(
        self,
        loss: str = "hinge",
        hidden: Sequence[int] = (512, 512),
        out_dim: Optional[int] = 256,
        dim: Optional[int] = None,
        critic_steps: int = 1,
        critic_lr: float = 2e-4,
        slope: float = 0.2,
    ):
        super().__init__()
        if loss not in BASE_LOSSES:
            raise MatchzooError(f"san loss must be one of {', '.join(BASE_LOSSES)}; got {loss!r}")
        if critic_steps < 1:
            raise MatchzooError(f"san critic_steps must be >= 1; got {critic_steps}")
        self.loss_kind, self.out_dim, self.slope = loss, out_dim, float(slope)
        self.hidden = tuple(int(h) for h in hidden)
        self.critic_steps, self.critic_lr = int(critic_steps), float(critic_lr)
        # The input dimension is taken from the first features seen (LazyLinear / UninitializedParameter),
        # so the trainer may build the critic optimiser before any feature exists.
        widths = [*self.hidden] + ([int(out_dim)] if out_dim is not None else [])
        self.layers = nn.ModuleList(
            [nn.LazyLinear(widths[0])] + [nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])] if widths else []
        )
        self.direction = (
            nn.Parameter(F.normalize(torch.randn(widths[-1]), dim=0)) if widths else nn.UninitializedParameter()
        )
        self.log_scale = nn.Parameter(torch.zeros(()))
        if dim is not None:
            self.build(int(dim))

    def is_built(self) -> bool:
        return not any(is_lazy(p) for p in self.parameters())

    def input_dim(self) -> int:
        return self.layers[0].in_features if len(self.layers) else self.direction.shape[0]

    @torch.no_grad()
    def build(self, dim: int, device: Optional[torch.device] = None) -> None:
        """Size the head for ``D = dim`` features (identity head: the direction lives in feature space)."""
        if self.is_built():
            if self.input_dim() != dim:
                raise MatchzooError(f"san critic was built for D={self.input_dim()} features, got D={dim}")
            return
        if len(self.layers):
            self.layers[0](torch.zeros(1, dim, device=device))  # materialises the LazyLinear
        else:
            self.direction.materialize((dim,), device=device)
            self.direction.copy_(F.normalize(torch.randn(dim, device=device), dim=0))

    def prepare_reference(self, features: torch.Tensor) -> None:
        self.build(features.shape[1], features.device)

    def head(self, x: torch.Tensor, detach_weights: bool = False) -> torch.Tensor:
        """``h(x)``: Linear + LeakyReLU blocks (no activation after the last layer); ``(N, D) -> (N, K)``."""
        for i, layer in enumerate(self.layers):
            weight, bias = layer.weight, layer.bias
            if detach_weights:
                weight, bias = weight.detach(), bias.detach()
            x = F.linear(x, weight.to(x.dtype), bias.to(x.dtype))
            if i < len(self.layers) - 1:
                x = F.leaky_relu(x, self.slope)
        return x

    def _ready(self, x: torch.Tensor) -> None:
        self.build(x.shape[1], x.device)

    def unit_direction(self) -> torch.Tensor:
        """ω = w/‖w‖: the gradient w.r.t. w is tangent to the sphere (it vanishes at the optimum)."""
        return F.normalize(self.direction, dim=0)

    def critic_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    def critic_loss(self, fake: torch.Tensor, real: torch.Tensor) -> LossOutput:
        self.check_features(fake, real)
        self._ready(fake)
        h_fake, h_real = self.head(fake.detach()), self.head(real.detach())  # (B, K), (N, K)
        scale = self.log_scale.exp()
        omega = self.unit_direction().to(fake.dtype)
        fun = critic_base_loss(self.loss_kind, scale * h_real @ omega.detach(), scale * h_fake @ omega.detach())
        direction = -(h_real.detach() @ omega).mean() + (h_fake.detach() @ omega).mean()
        logs = {"critic_fun": float(fun.detach()), "critic_direction": float(direction.detach())}
        return LossOutput(fun + direction, logs)

    @torch.no_grad()
    def after_critic_step(self) -> None:
        if not is_lazy(self.direction):
            self.direction.copy_(F.normalize(self.direction, dim=0))

    def generator_logit(self, x: torch.Tensor) -> torch.Tensor:
        """``d(x) = s⟨ω, h(x)⟩`` ``(N,)`` with every critic weight detached (the generator's view)."""
        scale = self.log_scale.detach().exp().to(x.dtype)
        return scale * self.head(x, detach_weights=True) @ self.unit_direction().detach().to(x.dtype)

    def weighted_form(self, reference: torch.Tensor) -> WeightedLoss:
        """``Σ p_i ℓ_G(d(x_i))`` against the critic of the moment, which keeps training on the weighted measure."""
        per_sample = torch.func.vmap(lambda logit: generator_base_loss(self.loss_kind, logit))

        def value(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
            p, _ = probabilities(weights, x.shape[0])
            return p @ per_sample(self.generator_logit(x)).to(torch.float64)

        return CriticTrainedWeightedLoss(self, reference, value)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> LossOutput:
        self.check_features(fake, real)
        self._ready(fake)
        logit = self.generator_logit(fake)
        value = generator_base_loss(self.loss_kind, logit)
        return LossOutput(value, {"generator": float(value.detach()), "logit_fake": float(logit.detach().mean())})
