r"""Matching stability: how much an objective's gradient field depends on the samples it was estimated from.

This project's definition (DESIGN §4). Fix a probe batch :math:`P` ``(B, D)`` of generated features.
For ``k = 1..K`` draw, independently, everything else the objective estimates from -- the real minibatch
:math:`R_k` (``batch_size`` rows of the real pool, without replacement), the generated context
:math:`C_k` (``batch_size - B`` rows of ``generated_pool`` appended to the probe, when a pool is given)
and the objective's own randomness (torch RNG seeded per resample) -- and take

.. math::  g_k = \nabla_P\, \ell\big([P; C_k],\ R_k\big) \in \mathbb R^{B\times D},
           \qquad \mathrm{stability} = \frac{2}{K(K-1)}\sum_{k<l} \frac{\langle g_k, g_l\rangle}{\|g_k\|\,\|g_l\|}.

It lies in [-1, 1]; 1 means the matching signal on the probe does not depend on which samples were drawn
(e.g. FD-loss against precomputed full-data statistics). A zero gradient counts as cosine 0. Each
resample runs on a deep copy of the objective, so stateful objectives (FD-loss populations, warm-start
potentials, critics) keep their persistent state untouched and every resample starts from the same state.
"""

from __future__ import annotations

import copy
from typing import Optional

import torch

from matchzoo.errors import MatchzooError


def _draw_rows(pool: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    order = torch.randperm(pool.shape[0], generator=generator)[:size]
    return pool[order.to(pool.device)]


def gradient_field(
    objective: torch.nn.Module, probe: torch.Tensor, real: torch.Tensor, context: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """``d loss / d probe`` ``(B, D)`` of a deep copy of ``objective`` on ``([probe; context], real)``."""
    copy_ = copy.deepcopy(objective)
    with torch.enable_grad():  # callers often evaluate under no_grad
        fake = probe.detach().clone().requires_grad_(True)  # (B, D)
        batch = fake if context is None else torch.cat([fake, context.detach().to(fake.dtype)])
        output = copy_(batch, real.detach())
        loss = output.loss if hasattr(output, "loss") else output
        (gradient,) = torch.autograd.grad(loss, fake, allow_unused=True)
    return torch.zeros_like(fake) if gradient is None else gradient.detach()


def mean_pairwise_cosine(fields: list[torch.Tensor]) -> float:
    """Mean cosine similarity over all pairs of flattened fields (float64; zero fields count as 0)."""
    flat = torch.stack([f.reshape(-1).to(torch.float64) for f in fields])  # (K, B*D)
    norms = flat.norm(dim=1)
    unit = flat / norms.clamp_min(torch.finfo(torch.float64).tiny)[:, None]
    cosine = unit @ unit.T  # (K, K)
    k = flat.shape[0]
    off_diagonal = cosine.sum() - cosine.diagonal().sum()
    return float(off_diagonal / (k * (k - 1)))


def matching_stability(
    objective: torch.nn.Module,
    probe: torch.Tensor,
    real_pool: torch.Tensor,
    resamples: int = 8,
    batch_size: Optional[int] = None,
    generated_pool: Optional[torch.Tensor] = None,
    seed: int = 0,
) -> float:
    """Matching stability of ``objective`` on ``probe`` ``(B, D)`` (see module docstring).

    ``real_pool`` ``(N, D)``: real features to draw minibatches of ``batch_size`` (default ``B``) from;
    ``generated_pool`` ``(M, D)``: optional generated features for the context (``batch_size - B`` rows).
    """
    if probe.ndim != 2 or real_pool.ndim != 2 or probe.shape[1] != real_pool.shape[1]:
        raise MatchzooError(
            f"stability needs probe (B, D) and real_pool (N, D) with the same D; "
            f"got {tuple(probe.shape)} and {tuple(real_pool.shape)}"
        )
    if resamples < 2:
        raise MatchzooError(f"stability needs at least 2 resamples to compare, got {resamples}")
    batch = probe.shape[0] if batch_size is None else int(batch_size)
    if not 2 <= batch <= real_pool.shape[0]:
        raise MatchzooError(f"stability batch_size {batch} must be in [2, {real_pool.shape[0]}] (the real pool size)")
    context_size = batch - probe.shape[0] if generated_pool is not None else 0
    if generated_pool is not None and not 0 <= context_size <= generated_pool.shape[0]:
        raise MatchzooError(
            f"generated context needs batch_size - B = {context_size} rows in [0, {generated_pool.shape[0]}]"
        )
    sampler = torch.Generator().manual_seed(seed)
    fields = []
    for k in range(resamples):
        real = _draw_rows(real_pool, batch, sampler)
        context = _draw_rows(generated_pool, context_size, sampler) if context_size > 0 else None
        devices = [probe.device] if probe.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed * 1_000_003 + k)
            fields.append(gradient_field(objective, probe, real, context))
    return mean_pairwise_cosine(fields)
