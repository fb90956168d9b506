"""A command body run by every ``torchrun`` rank as one (``stats``; ``evaluate`` may use it too).

``torchrun --nproc_per_node=W -m matchzoo stats ...`` starts W copies of the command. :func:`command_ranks` joins
the process group torchrun describes in the environment (nothing happens for one process), gives each rank its own
GPU for ``--device cuda`` (``cuda:LOCAL_RANK``, NCCL; gloo on the CPU), marks the body with
:func:`matchzoo.data.sharding.all_ranks` so feature extraction inside it is sharded, and leaves the group at the
end, also after an error. The command prints and writes files only where ``Ranks.main`` is true.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

from matchzoo.errors import MatchzooError


@dataclass(frozen=True)
class Ranks:
    device: str  # this rank's device
    main: bool  # rank 0 (or the only process): prints and writes
    world: int = 1


def launched_processes() -> int:
    """How many processes torchrun started for this command (1 without torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise MatchzooError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number; start with torchrun") from None


def rank_device(device: str) -> str:
    """``device`` for this rank: ``cuda`` becomes ``cuda:LOCAL_RANK`` (made current, as NCCL needs); a fixed GPU
    index is refused, since every rank would share that GPU."""
    import torch

    parsed = torch.device(device)
    if parsed.type != "cuda":
        return device
    if parsed.index is not None:
        raise MatchzooError(
            f"--device {device} under torchrun would put every rank on one GPU; pass --device cuda "
            "(rank r uses cuda:LOCAL_RANK) and choose GPUs with CUDA_VISIBLE_DEVICES"
        )
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if local >= torch.cuda.device_count():
        raise MatchzooError(
            f"torchrun started local rank {local} but this machine has {torch.cuda.device_count()} CUDA device(s); "
            "use --nproc_per_node <= the number of GPUs"
        )
    torch.cuda.set_device(local)
    return f"cuda:{local}"


@contextlib.contextmanager
def command_ranks(device: str) -> Iterator[Ranks]:
    """The body of a command, run by every rank in the same order; see the module docstring."""
    world = launched_processes()
    if world == 1:
        yield Ranks(device, True)
        return
    import torch

    from matchzoo.data import sharding
    from matchzoo.train import distributed

    device = rank_device(device)
    joined = distributed.current().enabled  # a group the caller made is the caller's to leave
    info = distributed.init_from_env(torch.device(device).type)
    finished = False
    try:
        with sharding.all_ranks():
            yield Ranks(device, info.is_main, info.world_size)
        finished = True
    finally:
        if not joined:
            distributed.cleanup(finished)
