"""Distribution-matching objectives. Importing this package registers every objective."""
from matchzoo.objectives.base import LossOutput, Objective
from matchzoo.objectives import frechet  # noqa: F401  (registers "fd")
from matchzoo.objectives import sinkhorn  # noqa: F401  (registers "sinkhorn")
from matchzoo.objectives import transport  # noqa: F401  (registers "sinkhorn_transport")
from matchzoo.objectives import bures  # noqa: F401  (registers "bures", "kernel_bures")
from matchzoo.objectives import san  # noqa: F401  (registers "san")
from matchzoo.objectives import mmd  # noqa: F401  (registers "mmd")
from matchzoo.objectives import sliced  # noqa: F401  (registers "sliced_wasserstein")

__all__ = ["LossOutput", "Objective"]
