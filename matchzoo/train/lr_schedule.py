"""``train.lr_schedule``: the generator's learning-rate schedule as a gin factory.

A factory is called as ``factory(optimizer, steps=train.steps)`` and returns a
``torch.optim.lr_scheduler.LRScheduler`` that the trainer steps once after every optimiser step; its state is
part of the checkpoint, so a resumed run continues the schedule. The learning rate of update ``s``
(``s = 0 .. steps - 1``) is ``train.lr * factor(s)``:

* :func:`constant_lr` (the default): ``factor(s) = 1`` -- exactly the run without a schedule;
* :func:`warmup_cosine`: a linear warm-up over ``warmup_steps`` updates, then a cosine from ``train.lr`` down
  to ``min_lr_ratio * train.lr``, reached at the last update::

      factor(s) = (s + 1) / W                                         s < W
      factor(s) = r + (1 - r) * (1 + cos(pi * p)) / 2,  p = (s - W) / max(1, steps - 1 - W)   s >= W

  (W = ``warmup_steps``, r = ``min_lr_ratio``). The warm-up starts at ``lr / W``, not 0, so no update is wasted.

    train.lr_schedule = @warmup_cosine
    warmup_cosine.warmup_steps = 500
    warmup_cosine.min_lr_ratio = 0.1
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import gin
import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from matchzoo import validate as check
from matchzoo.errors import MatchzooError

ScheduleFactory = Callable[..., LRScheduler]
EXAMPLE = "a schedule factory such as @constant_lr or @warmup_cosine (no parentheses)"


def constant_factor(step: int) -> float:
    return 1.0


def warmup_cosine_factor(step: int, steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """The multiple of ``train.lr`` used by update ``step`` (0-based) of a run of ``steps`` updates."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, steps - 1 - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@gin.configurable("constant_lr", module="train", denylist=["optimizer", "steps"])
def constant_lr(optimizer: torch.optim.Optimizer, steps: int) -> LRScheduler:
    """``train.lr`` at every step (stepping it changes nothing: the factor is exactly 1)."""
    return LambdaLR(optimizer, constant_factor)


@gin.configurable("warmup_cosine", module="train", denylist=["optimizer", "steps"])
def warmup_cosine(
    optimizer: torch.optim.Optimizer, steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0
) -> LRScheduler:
    """Linear warm-up over ``warmup_steps`` updates, then cosine to ``min_lr_ratio * train.lr`` at the last one."""
    warmup_steps = check.non_negative_int("warmup_cosine.warmup_steps", warmup_steps)
    if warmup_steps >= steps:
        raise MatchzooError(
            f"warmup_cosine.warmup_steps = {warmup_steps} leaves no step for the cosine of a {steps}-step run "
            f"(train.steps); use fewer warm-up steps"
        )
    min_lr_ratio = check.fraction("warmup_cosine.min_lr_ratio", min_lr_ratio)
    factor = functools.partial(warmup_cosine_factor, steps=steps, warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio)
    return LambdaLR(optimizer, factor)


def check_schedule_factory(name: str, value: Any) -> Any:
    """A factory such as ``@warmup_cosine``, checked before it is called."""
    if isinstance(value, (str, bytes)):
        raise MatchzooError(f"{name} must be {EXAMPLE}, got the string {value!r} (write @{value} instead of '{value}')")
    if not callable(value) or isinstance(value, (torch.nn.Module, LRScheduler)):
        raise MatchzooError(f"{name} must be {EXAMPLE}, got {type(value).__name__} {value!r}"[:300])
    return value


def build(name: str, factory: ScheduleFactory, optimizer: torch.optim.Optimizer, steps: int) -> LRScheduler:
    """The scheduler, or one line naming the factory when it cannot take (optimizer, steps)."""
    label = getattr(factory, "registry_name", None) or getattr(factory, "__name__", type(factory).__name__)
    try:
        built = factory(optimizer, steps=steps)
    except TypeError as error:
        raise MatchzooError(
            f"{name} = @{label} cannot build a schedule from (optimizer, steps): {str(error).splitlines()[0]}; "
            f"use {EXAMPLE}"
        ) from None
    if not isinstance(built, LRScheduler):
        raise MatchzooError(f"{name} = @{label} built {type(built).__name__}, not a torch LR scheduler; use {EXAMPLE}")
    return built
