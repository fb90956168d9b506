r"""Weighted candidate sets: the conventions every objective's weighted form (for the resample probe) shares.

Weights are **frequency weights** ``w`` ``(N,)``: ``w_i`` is the (possibly fractional) number of copies of
candidate ``i``, so integer weights give exactly the value of the set with every sample duplicated ``w_i``
times, and all-ones weights give the plain unweighted value. With ``p = w / n`` and ``n = Σ w`` an objective's
form measures :math:`\sum_i p_i\delta_{x_i}` (or the duplicated set) against a fixed reference sample; the form
itself lives in the objective's module (``Objective.weighted_form(reference)`` or
``weighted_loss(candidates, weights, reference)``).

Adversarial objectives (``san``; ``sliced_wasserstein`` with learned directions) measure their generator loss
*against their critic*, and a critic is only meaningful once trained against the very measure being scored.
So their weighted form is a small game on the weights (:class:`CriticTrainedWeightedLoss`), the same
alternation the trainer plays on the generator:

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
that keeps training against :math:`\alpha_p` penalises such collapse, as it would a generator's. For a fixed
critic the forms are deterministic (``w = 1`` gives the objective's value, integer weights the duplicated
set's); the sequence of values the optimiser sees is not a fixed function of ``w`` (the critic moves).
"""

from __future__ import annotations

from typing import Callable

import torch

WeightedLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (candidates (N, D), weights (N,)) -> scalar


def probabilities(weights: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(p, n)``: weights normalised to sum 1 (float64) and their total ``n = Σ w``."""
    if weights.ndim != 1 or weights.shape[0] != count:
        raise ValueError(f"need one weight per sample: weights {tuple(weights.shape)} for {count} samples")
    w = weights.to(torch.float64)
    total = w.sum()
    return w / total, total


class CriticTrainedWeightedLoss:
    """A weighted generator-side loss plus :meth:`critic_step`, which the resample probe calls before each weight
    update."""

    def __init__(
        self,
        objective,
        reference: torch.Tensor,
        value: WeightedLoss,
        warmup_steps: int = 200,
        batch_size: int = 256,
        seed: int = 0,
    ):
        self.objective, self.value = objective, value
        self.reference = reference.detach()  # (M, D)
        self.warmup_steps, self.batch_size = int(warmup_steps), int(batch_size)
        self.generator = torch.Generator().manual_seed(seed)
        objective.prepare_reference(self.reference)  # sizes lazy critic parameters
        self.optimizer = torch.optim.Adam(
            objective.critic_parameters(), lr=objective.critic_lr, betas=objective.critic_betas
        )
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
                fake_index = torch.multinomial(
                    probabilities.detach().float(), self.batch_size, replacement=True, generator=self.generator
                )
                real_index = torch.randint(0, self.reference.shape[0], (self.batch_size,), generator=self.generator)
                loss = self.objective.critic_loss(features[fake_index], self.reference[real_index]).loss
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                self.objective.after_critic_step()
