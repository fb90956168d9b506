"""Work split across ``torchrun`` ranks: contiguous shards, rows gathered back in order, float64 moments merged.

Under ``torchrun --nproc_per_node=W`` every rank runs the same command. Inside :func:`all_ranks` (a block that
*every* rank enters, e.g. the ``stats`` or ``evaluate`` command), :func:`matchzoo.data.features.extract_features`
gives rank ``r`` the contiguous rows ``bounds[r]:bounds[r + 1]`` and :func:`gather_rows` hands every rank all rows
in the original order, so the result equals one process. Outside such a block nothing is sharded: work done on
rank 0 alone (the trainer's evaluation) must not wait for peers that never come.

Moments: each rank keeps ``n``, the mean and the *centred* sum of outer products
:math:`M_2 = \\sum_i (x_i - \\mu)(x_i - \\mu)^T` in float64. Merging uses the parallel-variance rule
(Chan, Golub & LeVeque)

.. math:: M_2 = \\sum_r M_{2,r} + \\sum_r n_r (\\mu_r - \\mu)(\\mu_r - \\mu)^T, \\quad \\mu = \\sum_r n_r \\mu_r / n,

which, unlike raw sums :math:`\\sum x x^T - n \\mu\\mu^T`, does not cancel catastrophically when the mean is
large against the spread. The covariance is the unbiased :math:`M_2 / (n - 1)`, as :func:`matchzoo.linalg.mean_cov`.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist

_STATE = threading.local()


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextlib.contextmanager
def all_ranks() -> Iterator[None]:
    """Mark a block that every rank executes, in the same order: feature extraction inside it is sharded."""
    depth = getattr(_STATE, "depth", 0)
    _STATE.depth = depth + 1
    try:
        yield
    finally:
        _STATE.depth = depth


def collective() -> bool:
    """True inside :func:`all_ranks` when more than one process is in the group."""
    return getattr(_STATE, "depth", 0) > 0 and rank_and_world()[1] > 1


def shard_bounds(n: int, world: int, unit: int = 1) -> list[int]:
    """``world + 1`` row boundaries of contiguous shards of ``n`` rows, cut at multiples of ``unit`` (a batch),
    as even as whole units allow: every batch a rank forms is a batch one process forms, so each row goes
    through the same computation either way."""
    units = -(-n // unit)  # ceil
    return [min(n, (units * r // world) * unit) for r in range(world + 1)]


def communication_device() -> torch.device:
    """Where collectives run: the current CUDA device for NCCL, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@torch.no_grad()
def gather_rows(local: torch.Tensor, bounds: list[int]) -> torch.Tensor:
    """Every rank's ``local`` rows (rank ``r`` holds ``bounds[r + 1] - bounds[r]`` of them) concatenated in rank
    order, on every rank, on the device of ``local``. Shards may differ in size: they are padded for the
    collective and trimmed after."""
    rank, world = rank_and_world()
    if world == 1:
        return local
    sizes = [high - low for low, high in zip(bounds, bounds[1:])]
    if local.shape[0] != sizes[rank]:
        raise ValueError(f"rank {rank} holds {local.shape[0]} rows, its shard has {sizes[rank]}")
    device = communication_device()
    padded = torch.zeros((max(sizes), *local.shape[1:]), dtype=local.dtype, device=device)
    padded[: sizes[rank]] = local.to(device)
    shards = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(shards, padded)
    return torch.cat([shard[:size] for shard, size in zip(shards, sizes)]).to(local.device)


@dataclass(frozen=True)
class Moments:
    """``n`` rows summarised in float64 by their mean ``(D,)`` and centred sum of outer products ``m2 (D, D)``."""

    n: int
    mean: torch.Tensor
    m2: torch.Tensor

    @classmethod
    def empty(cls, dim: int) -> "Moments":
        return cls(0, torch.zeros(dim, dtype=torch.float64), torch.zeros(dim, dim, dtype=torch.float64))

    @classmethod
    def of(cls, features: torch.Tensor) -> "Moments":
        """The moments of ``features`` ``(N, D)``."""
        x = features.detach().to(device="cpu", dtype=torch.float64)
        if x.shape[0] == 0:
            return cls.empty(x.shape[1])
        mean = x.mean(dim=0)
        centred = x - mean
        return cls(x.shape[0], mean, centred.T @ centred)

    def merge(self, other: "Moments") -> "Moments":
        """The moments of both sets of rows (streaming: ``total = total.merge(Moments.of(batch))``)."""
        n = self.n + other.n
        if not other.n or not self.n:
            return other if not self.n else self
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        return Moments(n, mean, self.m2 + other.m2 + torch.outer(delta, delta) * (self.n * other.n / n))

    def all_reduce(self) -> "Moments":
        """The moments of the rows of every rank (a collective: every rank calls it); itself without a group."""
        if rank_and_world()[1] == 1:
            return self
        device = communication_device()
        weighted = torch.cat([torch.tensor([float(self.n)], dtype=torch.float64), self.mean * self.n]).to(device)
        dist.all_reduce(weighted)
        n = int(round(float(weighted[0])))
        mean = (weighted[1:] / max(n, 1)).cpu()
        delta = self.mean - mean
        spread = (self.m2 + torch.outer(delta, delta) * self.n).to(device)
        dist.all_reduce(spread)
        return Moments(n, mean, spread.cpu())

    def covariance(self) -> torch.Tensor:
        """Unbiased covariance ``M_2 / (n - 1)`` (float64)."""
        if self.n < 2:
            raise ValueError(f"need n >= 2 rows to estimate a covariance, got {self.n}")
        return self.m2 / (self.n - 1)
