"""A loss term = (feature space, objective, weight). The training loss is the weighted sum of its terms."""

from __future__ import annotations

from typing import Optional

import gin

from matchzoo.errors import MatchzooError
from matchzoo.objectives.base import Objective
from matchzoo.spaces.base import FeatureSpace


@gin.configurable("term", module="train")
class Term:
    """``weight * objective(space(fake_images), real_features_in_space)``; ``name`` keys its metrics."""

    def __init__(
        self,
        space: FeatureSpace = gin.REQUIRED,
        objective: Objective = gin.REQUIRED,
        weight: float = 1.0,
        name: Optional[str] = None,
    ):
        if not isinstance(space, FeatureSpace):
            raise MatchzooError(
                f"term.space must be a feature space such as @random_conv(), got {type(space).__name__}"
            )
        if not isinstance(objective, Objective):
            raise MatchzooError(f"term.objective must be an objective such as @fd(), got {type(objective).__name__}")
        self.space, self.objective, self.weight = space, objective, float(weight)
        self.name = name or f"{space.name}.{objective_name(objective)}"

    def __repr__(self) -> str:
        return f"Term({self.name}, weight={self.weight})"


def objective_name(objective: Objective) -> str:
    return getattr(type(objective), "registry_name", type(objective).__name__)
