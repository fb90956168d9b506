r"""Weighted forms of adversarial objectives (``san``; ``sliced_wasserstein`` with learned directions).

An adversarial objective's generator loss is measured *against its critic*, and the critic is only
meaningful once trained against the very measure being scored. So the weighted form is a small game on
the weights, the same alternation the trainer plays on the generator:

1. **warm-up**: before the first weight update, ``warmup_steps`` critic steps on the uniform candidate
   measure (a randomly initialised critic would send the weights anywhere);
2. **alternation**: before every weight update, ``objective.critic_steps`` critic steps on the current
   weighted measure :math:`\alpha_p = \sum_i p_i\delta_{x_i}`, with the objective's own ``critic_loss``,
   ``critic_parameters``, ``after_critic_step``, ``critic_lr`` and ``critic_betas``; the fake batch is drawn
   from :math:`p` (``torch.multinomial``, so the critic sees exactly the measure the weights describe, in
   expectation) and the real batch uniformly from the reference;
3. the weights then descend the weighted generator loss with the critic frozen.

Alternating (rather than training the critic once and then optimising the weights against it) matters: a
frozen critic is maximised by putting all mass on its few highest-scoring candidates, whereas a critic
that keeps training against :math:`\alpha_p` penalises such collapse, as it would a generator's.

Weighted generator losses, for a fixed critic:

* ``san``: :math:`\sum_i p_i\,\ell_G(d(x_i))` with :math:`d(x) = s\langle\omega, h(x)\rangle` and the
  objective's per-sample generator loss :math:`\ell_G` (hinge, logistic, non-saturating, least squares);
* max-sliced ``sliced_wasserstein``: the weighted :math:`SW_2^2` along the learned directions
  (:func:`matchzoo.probes.weighted_sliced.weighted_sliced_w2`).

For a fixed critic both are deterministic: ``w = 1`` gives the objective's own value and integer weights the
duplicated set's. The sequence of values seen by the optimiser is not a fixed function of ``w`` (the critic
moves), so the probe's "before -> after" objective values are each measured against the critic of that moment.
"""
from __future__ import annotations

from typing import Callable

import torch

WeightedValue = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class CriticTrainedWeightedLoss:
    """A weighted generator-side loss plus :meth:`critic_step`, which the resample probe calls before each weight update."""

    def __init__(self, objective, reference: torch.Tensor, value: WeightedValue, warmup_steps: int = 200,
                 batch_size: int = 256, seed: int = 0):
        self.objective, self.value = objective, value
        self.reference = reference.detach()  # (M, D)
        self.warmup_steps, self.batch_size = int(warmup_steps), int(batch_size)
        self.generator = torch.Generator().manual_seed(seed)
        objective.prepare_reference(self.reference)  # sizes lazy critic parameters
        self.optimizer = torch.optim.Adam(objective.critic_parameters(), lr=getattr(objective, "critic_lr", 2e-4),
                                          betas=getattr(objective, "critic_betas", (0.0, 0.99)))
        self.warmed_up = False

    def __call__(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.value(x, weights)

    def critic_step(self, x: torch.Tensor, probabilities: torch.Tensor) -> None:
        """Critic updates against the measure ``Σ p_i δ_{x_i}`` (warm-up on uniform the first time)."""
        if not self.warmed_up:
            self.warmed_up = True
            uniform = torch.full((x.shape[0],), 1.0 / x.shape[0], dtype=torch.float64)
            self._train(x, uniform, self.warmup_steps)
        self._train(x, probabilities, max(self.objective.critic_steps, 1))

    def _train(self, x: torch.Tensor, probabilities: torch.Tensor, steps: int) -> None:
        features = x.detach().to(self.reference.dtype)
        with torch.enable_grad():
            for _ in range(steps):
                fake_index = torch.multinomial(probabilities.detach().float(), self.batch_size, replacement=True,
                                               generator=self.generator)
                real_index = torch.randint(0, self.reference.shape[0], (self.batch_size,), generator=self.generator)
                loss = self.objective.critic_loss(features[fake_index], self.reference[real_index]).loss
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                self.objective.after_critic_step()


def weighted_san_value(objective) -> WeightedValue:
    """``Σ p_i ℓ_G(d(x_i))`` for the objective's current critic (weights detached, as its generator loss)."""
    from matchzoo.objectives.san import generator_base_loss
    from matchzoo.probes.weighted import _probabilities

    per_sample = torch.func.vmap(lambda logit: generator_base_loss(objective.loss_kind, logit))

    def value(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        p, _ = _probabilities(weights, x.shape[0])
        omega = objective.unit_direction().detach().to(x.dtype)
        scale = objective.log_scale.detach().exp().to(x.dtype)
        logits = scale * objective.head(x, detach_weights=True) @ omega  # (N,)
        return p @ per_sample(logits).to(torch.float64)

    return value


def san_builder(objective, reference: torch.Tensor) -> CriticTrainedWeightedLoss:
    return CriticTrainedWeightedLoss(objective, reference, weighted_san_value(objective))


def adversarial_sliced_builder(objective, reference: torch.Tensor) -> CriticTrainedWeightedLoss:
    from matchzoo.probes.weighted_sliced import weighted_sliced_w2

    def value(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return weighted_sliced_w2(x, weights, reference, objective._learned(reference).detach())

    return CriticTrainedWeightedLoss(objective, reference, value)
