"""Distribution-matching objectives. Importing this package registers every objective."""
from matchzoo.objectives.base import LossOutput, Objective
from matchzoo.objectives import frechet  # noqa: F401  (registers "fd")

__all__ = ["LossOutput", "Objective"]
