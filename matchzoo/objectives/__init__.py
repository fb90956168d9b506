"""Distribution-matching objectives. Importing this package registers every objective."""

from matchzoo.objectives import (  # noqa: F401  (each module registers its objectives)
    bures,
    frechet,
    mmd,
    san,
    sinkhorn,
    sliced,
    transport,
)
from matchzoo.objectives.base import LossOutput, Objective

__all__ = ["LossOutput", "Objective"]
