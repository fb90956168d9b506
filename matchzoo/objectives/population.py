r"""Generated-side populations for FD-loss: moments over many more samples than the gradient batch.

Both return the population mean :math:`\mu` ``(D,)`` and covariance :math:`\Sigma` ``(D, D)`` in float64,
differentiable with respect to the *live* batch ``f`` ``(B, D)`` only; older samples enter detached.

* :class:`QueuePopulation` -- a FIFO of the last ``P`` detached generated features. The live batch (with
  gradient) takes the place of the oldest ``B`` entries, so with ``n`` samples in the population

  .. math:: \mu = \tfrac1n\big(S_1^{kept} + \textstyle\sum_i f_i\big),\qquad
            \Sigma = \tfrac1n\big(S_2^{kept} + f^\top f\big) - \mu\mu^\top,

  where :math:`S_1, S_2` are float64 running sums of the kept queue entries and of their outer products,
  updated incrementally (``O(B D^2)`` per step, never ``O(P D^2)``; the two outer products computed for
  the loss are reused when the same batch is folded in). One live sample weighs ``w = 1/n``.
* :class:`EmaPopulation` -- moving first and second moments,
  :math:`\mu = (1-w)\,sg(\mu_{ema}) + w\,\overline f`, :math:`M_2 = (1-w)\,sg(M_{2,ema}) + w\,f^\top f/B`,
  :math:`\Sigma = M_2-\mu\mu^\top`, with :math:`w=\max(1-\beta, 1/t)` at step ``t`` (a plain running
  average until ``1/t`` falls below ``1-beta``, so the zero initial state never biases the moments).
  One live sample weighs ``w / B``.

Both use the population (``1/n``) covariance, i.e. the moments of the population as a distribution.
``advance(f)`` folds the detached live batch into the state; the objective calls it after the loss.
All state lives in buffers (checkpointed) and is sized by the first batch.
"""

from __future__ import annotations

from typing import Optional

import torch

from matchzoo.errors import MatchzooError
from matchzoo.objectives.base import LazyStateModule


class PopulationMoments:
    """What a population returns: float64 moments plus, for the dual trace form, the centred samples."""

    def __init__(
        self,
        mean: torch.Tensor,
        cov: torch.Tensor,
        size: int,
        sample_weight: float,
        centered: Optional[torch.Tensor] = None,
    ):
        self.mean = mean  # (D,)
        self.cov = cov  # (D, D)
        self.size = size  # number of samples the moments stand for
        self.sample_weight = sample_weight  # d mean / d f_i (scalar), used by the closed-form gradient
        self.centered = centered  # (n, D) or None: all population samples minus the mean


class QueuePopulation(LazyStateModule):
    """FIFO of the last ``size`` generated features (see module docstring)."""

    lazy_buffers = ("features", "feature_sum", "outer_sum")

    def __init__(self, size: int = 50_000):
        super().__init__()
        if size < 2:
            raise MatchzooError(f"population size must be >= 2, got {size}")
        self.size = int(size)
        self.register_buffer("features", torch.empty(0))  # (P, D), detached generated features
        self.register_buffer("feature_sum", torch.empty(0, dtype=torch.float64))  # (D,) over valid entries
        self.register_buffer("outer_sum", torch.empty(0, dtype=torch.float64))  # (D, D) over valid entries
        self.register_buffer("count", torch.zeros((), dtype=torch.long))  # valid entries
        self.register_buffer("write_pos", torch.zeros((), dtype=torch.long))  # next slot to overwrite
        self._pending: Optional[tuple] = None  # sums computed by moments(), reused by advance() on the same batch

    def _ensure_state(self, live: torch.Tensor) -> None:
        d = live.shape[1]
        if live.shape[0] > self.size:
            raise MatchzooError(
                f"FD-loss queue population ({self.size}) is smaller than the batch ({live.shape[0]}); "
                f"set population_size >= batch size"
            )
        if self.features.shape == (self.size, d):
            return
        if self.features.numel():
            raise MatchzooError(f"FD-loss population holds D={self.features.shape[1]} features, got D={d}")
        self.features = torch.zeros(self.size, d, dtype=live.dtype, device=live.device)
        self.feature_sum = torch.zeros(d, dtype=torch.float64, device=live.device)
        self.outer_sum = torch.zeros(d, d, dtype=torch.float64, device=live.device)

    def _slots(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Slots the live batch will occupy, and the subset of them that hold valid (to-be-dropped) data."""
        device = self.features.device
        count, write_pos = int(self.count), int(self.write_pos)
        slots = (write_pos + torch.arange(batch, device=device)) % self.size
        oldest = (write_pos - count) % self.size
        holds_data = (slots - oldest) % self.size < count
        return slots, slots[holds_data]

    def moments(self, live: torch.Tensor, need_samples: bool = False) -> PopulationMoments:
        """Moments with the live batch in place of the oldest entries; ``centered`` only when ``n < D``."""
        self._ensure_state(live)
        _, dropped_slots = self._slots(live.shape[0])
        dropped = self.features[dropped_slots].to(torch.float64)  # (k, D)
        live64 = live.to(torch.float64)  # (B, D)
        n = int(self.count) - dropped.shape[0] + live.shape[0]
        if n < 2:
            raise MatchzooError("FD-loss needs at least 2 generated samples (batch size >= 2)")
        dropped_sum, dropped_outer = dropped.sum(0), dropped.T @ dropped  # (D,), (D, D)
        live_sum, live_outer = live64.sum(0), live64.T @ live64  # (D,), (D, D), with gradient
        self._pending = (
            live.detach(),
            self._batch_key(live),
            dropped_sum,
            dropped_outer,
            live_sum.detach(),
            live_outer.detach(),
        )
        mean = (self.feature_sum - dropped_sum + live_sum) / n
        second = (self.outer_sum - dropped_outer + live_outer) / n
        cov = second - torch.outer(mean, mean)
        centered = None
        if need_samples and n < live.shape[1]:  # only the dual (n x n) trace form needs the samples
            kept_count = int(self.count) - dropped.shape[0]
            oldest_kept = (int(self.write_pos) - kept_count) % self.size
            kept_slots = (oldest_kept + torch.arange(kept_count, device=live.device)) % self.size
            samples = torch.cat([self.features[kept_slots].to(torch.float64), live64])  # (n, D)
            centered = samples - mean
        return PopulationMoments(mean, cov, n, 1.0 / n, centered)

    def _batch_key(self, live: torch.Tensor) -> tuple:
        """Identifies (queue state, live batch contents). The pending entry keeps the batch's storage alive,
        so an equal address means the same storage, and the version counter changes on any in-place write."""
        return (
            int(self.count),
            int(self.write_pos),
            live.data_ptr(),
            live._version,
            live.shape,
            live.stride(),
            live.dtype,
        )

    def _same_batch(self, pending: tuple, live: torch.Tensor) -> bool:
        return pending[1] == self._batch_key(live)

    @torch.no_grad()
    def advance(self, live: torch.Tensor) -> None:
        self._ensure_state(live)
        slots, dropped_slots = self._slots(live.shape[0])
        pending, self._pending = self._pending, None
        if pending is not None and self._same_batch(pending, live):  # moments() of this very batch: reuse
            _, _, dropped_sum, dropped_outer, live_sum, live_outer = pending
        else:
            dropped = self.features[dropped_slots].to(torch.float64)
            live64 = live.detach().to(torch.float64)
            dropped_sum, dropped_outer = dropped.sum(0), dropped.T @ dropped
            live_sum, live_outer = live64.sum(0), live64.T @ live64
        self.feature_sum += live_sum - dropped_sum
        self.outer_sum += live_outer - dropped_outer
        self.features[slots] = live.detach().to(self.features.dtype)
        self.count.fill_(min(int(self.count) + live.shape[0], self.size))
        self.write_pos.fill_((int(self.write_pos) + live.shape[0]) % self.size)


class EmaPopulation(LazyStateModule):
    """Exponential moving first and second moments (see module docstring)."""

    lazy_buffers = ("mean", "second_moment")

    def __init__(self, beta: float = 0.999):
        super().__init__()
        if not 0.0 <= beta < 1.0:
            raise MatchzooError(f"FD-loss ema beta must be in [0, 1), got {beta}")
        self.beta = float(beta)
        self.register_buffer("mean", torch.empty(0, dtype=torch.float64))  # (D,)
        self.register_buffer("second_moment", torch.empty(0, dtype=torch.float64))  # (D, D)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def _ensure_state(self, live: torch.Tensor) -> None:
        d = live.shape[1]
        if self.mean.shape == (d,):
            return
        if self.mean.numel():
            raise MatchzooError(f"FD-loss population holds D={self.mean.shape[0]} features, got D={d}")
        self.mean = torch.zeros(d, dtype=torch.float64, device=live.device)
        self.second_moment = torch.zeros(d, d, dtype=torch.float64, device=live.device)

    def live_weight(self) -> float:
        return max(1.0 - self.beta, 1.0 / (int(self.steps) + 1))

    def _blend(self, live: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Moving mean ``(D,)`` and second moment ``(D, D)`` including the live batch."""
        self._ensure_state(live)
        w = self.live_weight()
        live64 = live.to(torch.float64)  # (B, D)
        mean = (1.0 - w) * self.mean + w * live64.mean(0)
        second = (1.0 - w) * self.second_moment + w * (live64.T @ live64) / live.shape[0]
        return mean, second

    def moments(self, live: torch.Tensor, need_samples: bool = False) -> PopulationMoments:
        mean, second = self._blend(live)
        cov = second - torch.outer(mean, mean)
        size = int(round(min(int(self.steps) + 1, 1.0 / (1.0 - self.beta)) * live.shape[0]))
        return PopulationMoments(mean, cov, size, self.live_weight() / live.shape[0], None)

    @torch.no_grad()
    def advance(self, live: torch.Tensor) -> None:
        mean, second = self._blend(live.detach())
        self.mean.copy_(mean)
        self.second_moment.copy_(second)
        self.steps += 1
