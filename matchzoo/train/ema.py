"""Exponential moving average of generator weights (evaluation uses the EMA generator)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from matchzoo.errors import MatchzooError


def frozen_outside_the_tree(model: nn.Module) -> dict[int, nn.Module]:
    """Modules a generator holds as plain attributes outside its module tree -- a frozen decoder, deliberately
    kept out of the parameters, the state dict and DDP (``latent``) -- as a ``deepcopy`` memo: an EMA copy shares
    them instead of duplicating weights that never change (49.5 M for the SD-VAE decoder, per EMA decay)."""
    registered = {id(module) for module in model.modules()}
    return {
        id(value): value
        for value in vars(model).values()
        if isinstance(value, nn.Module) and id(value) not in registered
    }


class EMA:
    """``ema = decay * ema + (1 - decay) * online`` for parameters; buffers are copied."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise MatchzooError(f"train.ema_decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model, frozen_outside_the_tree(model)).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for ema_param, param in zip(self.model.parameters(), model.parameters()):
            ema_param.lerp_(param.detach(), 1.0 - self.decay)
        for ema_buffer, buffer in zip(self.model.buffers(), model.buffers()):
            ema_buffer.copy_(buffer)
