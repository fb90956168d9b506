"""``train.optimizer``: the generator's optimiser as a gin factory.

A factory is called as ``factory(parameters, lr=train.lr, betas=train.betas)`` and returns a
``torch.optim.Optimizer``; ``lr`` and ``betas`` stay ``train.*`` bindings so every experiment file keeps them,
anything else is bound on the factory::

    train.optimizer = @adamw
    adamw.weight_decay = 0.05

The default, :func:`adam` with no weight decay, is exactly ``torch.optim.Adam(parameters, lr, betas)``.
"""

from __future__ import annotations

from typing import Any, Callable

import gin
import torch

from matchzoo import validate as check
from matchzoo.errors import MatchzooError

OptimizerFactory = Callable[..., torch.optim.Optimizer]
EXAMPLE = "an optimiser factory such as @adam or @adamw (no parentheses)"


@gin.configurable("adam", module="train", denylist=["parameters", "lr", "betas"])
def adam(parameters, lr: float, betas: tuple, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam with L2 weight decay folded into the gradient (``torch.optim.Adam``)."""
    decay = check.real("adam.weight_decay", weight_decay, 0.0)
    return torch.optim.Adam(parameters, lr=lr, betas=betas, weight_decay=decay)


@gin.configurable("adamw", module="train", denylist=["parameters", "lr", "betas"])
def adamw(parameters, lr: float, betas: tuple, weight_decay: float = 0.01) -> torch.optim.Optimizer:
    """Adam with decoupled weight decay (``torch.optim.AdamW``, Loshchilov & Hutter)."""
    decay = check.real("adamw.weight_decay", weight_decay, 0.0)
    return torch.optim.AdamW(parameters, lr=lr, betas=betas, weight_decay=decay)


def check_optimizer_factory(name: str, value: Any) -> Any:
    """A factory such as ``@adam``, checked before it is called."""
    if isinstance(value, (str, bytes)):
        raise MatchzooError(f"{name} must be {EXAMPLE}, got the string {value!r} (write @{value} instead of '{value}')")
    if not callable(value) or isinstance(value, torch.nn.Module):
        raise MatchzooError(f"{name} must be {EXAMPLE}, got {type(value).__name__} {value!r}"[:300])
    return value


def build(name: str, factory: OptimizerFactory, parameters, lr: float, betas: tuple) -> torch.optim.Optimizer:
    """The optimiser, or one line naming the factory when it cannot take (parameters, lr, betas)."""
    label = getattr(factory, "registry_name", None) or getattr(factory, "__name__", type(factory).__name__)
    try:
        built = factory(parameters, lr=lr, betas=betas)
    except TypeError as error:
        raise MatchzooError(
            f"{name} = @{label} cannot build an optimiser from (parameters, lr, betas): "
            f"{str(error).splitlines()[0]}; use {EXAMPLE}"
        ) from None
    if not isinstance(built, torch.optim.Optimizer):
        raise MatchzooError(f"{name} = @{label} built {type(built).__name__}, not a torch optimiser; use {EXAMPLE}")
    return built
