"""The class input shared by the conditional architectures (``conv``, ``dit``): a table of ``num_classes + 1``
learned vectors, the last one being the *null class* used for classifier-free guidance.

Label dropout (``label_dropout = p``) replaces each training label by the null class with probability ``p``, so
one network learns both the conditional and the unconditional distribution and ``sample(..., cfg_scale=s)``
can extrapolate between them. An unconditional generator (``num_classes = 0``) has a table of one vector that
every sample uses, so the architectures need no unconditional special case.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from matchzoo import validate as check
from matchzoo.errors import MatchzooError
from matchzoo.generators.base import check_labels


class ClassEmbedding(nn.Module):
    """``labels (N,) -> (N, dim)``; ``labels=None`` only for unconditional tables (every row is the null vector)."""

    def __init__(self, name: str, num_classes: int, dim: int, label_dropout: float, std: float = 1.0):
        super().__init__()
        self.name = name
        self.num_classes = check.non_negative_int(f"{name}.num_classes", num_classes)
        self.label_dropout = check.fraction(f"{name}.label_dropout", label_dropout, open_high=True)
        if self.num_classes == 0 and self.label_dropout > 0:
            raise MatchzooError(
                f"{name}.label_dropout = {self.label_dropout} needs classes; set {name}.num_classes or drop it"
            )
        self.table = nn.Embedding(self.num_classes + 1, dim)
        nn.init.normal_(self.table.weight, std=std)

    @property
    def null_label(self) -> Optional[int]:
        return self.num_classes if self.num_classes > 0 else None

    def forward(self, labels: Optional[torch.Tensor], n: int) -> torch.Tensor:
        labels = check_labels(labels, self.num_classes, self.name, null_label=self.null_label)
        if labels is None:  # unconditional: every sample gets the one (learned) vector
            return self.table.weight[0].expand(n, -1)
        if labels.shape[0] != n:
            raise MatchzooError(f"generator {self.name!r}: {labels.shape[0]} labels for a batch of {n} noise samples")
        labels = labels.to(self.table.weight.device)
        if self.training and self.label_dropout > 0:
            dropped = torch.rand(n, device=labels.device) < self.label_dropout  # global RNG: seeded, checkpointed
            labels = torch.where(dropped, torch.full_like(labels, self.num_classes), labels)
        return self.table(labels)
