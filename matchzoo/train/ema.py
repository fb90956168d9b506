"""Exponential moving average of generator weights (evaluation uses the EMA generator)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from matchzoo.errors import MatchzooError


class EMA:
    """``ema = decay * ema + (1 - decay) * online`` for parameters; buffers are copied."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise MatchzooError(f"train.ema_decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for ema_param, param in zip(self.model.parameters(), model.parameters()):
            ema_param.lerp_(param.detach(), 1.0 - self.decay)
        for ema_buffer, buffer in zip(self.model.buffers(), model.buffers()):
            ema_buffer.copy_(buffer)
