"""Batched, gradient-free feature extraction of a dataset in one feature space (tqdm progress).

``workers`` processes decode images (PNG/JPEG folders, npz chunks) while the main process runs the space;
datasets that must run in the main process (a generator on the GPU) say so with ``workers_allowed = False``.
Under ``torchrun``, inside :func:`matchzoo.data.sharding.all_ranks` (or with ``shard=True``), every rank extracts a
contiguous shard cut at batch boundaries and receives all features in dataset order: the same numbers as one
process, batch for batch.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from matchzoo.data import sharding
from matchzoo.errors import MatchzooError
from matchzoo.spaces.base import FeatureSpace


def extract_features(
    space: FeatureSpace,
    images: Dataset,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    desc: str | None = None,
    progress: bool = True,
    workers: int = 0,
    shard: Optional[bool] = None,
) -> torch.Tensor:
    """Features ``(N, space.dim)`` (float32, on CPU) of every image in ``images``, in dataset order.

    ``workers``: DataLoader processes decoding images (0 = the main process). ``shard``: split the rows over the
    ranks of the process group and gather them (a collective: every rank must call); ``None`` = only inside
    :func:`matchzoo.data.sharding.all_ranks`."""
    rank, world = sharding.rank_and_world() if (sharding.collective() if shard is None else shard) else (0, 1)
    bounds = sharding.shard_bounds(len(images), world, batch_size)
    local = images if world == 1 else Subset(images, range(bounds[rank], bounds[rank + 1]))
    on_cuda = torch.device(device).type == "cuda"
    loader = DataLoader(
        local,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers if workers_allowed(images) else 0,
        persistent_workers=False,
        pin_memory=on_cuda,
        # an iterator draws its workers' base seed from this generator: without one it comes from the global RNG,
        # so extracting a reference (a cache miss) would shift every later random draw of a run (label dropout,
        # sliced directions) and a cold cache would give another run than a warm one
        generator=torch.Generator().manual_seed(0),
    )
    space = space.to(device)
    features = torch.empty(len(local), space.dim)  # filled in place: no list of chunks plus a concatenated copy
    filled = 0
    label = desc or f"features[{space.name}]"
    with torch.inference_mode():
        try:
            for batch in tqdm(loader, desc=label, disable=not progress or rank != 0, leave=False):
                out = space(batch.to(device, non_blocking=True))
                features[filled : filled + out.shape[0]] = out
                filled += out.shape[0]
        except MatchzooError as error:  # raised in a worker, it arrives wrapped in the worker's traceback
            raise MatchzooError(worker_message(error)) from None
    if world > 1:
        features = sharding.gather_rows(features, bounds)
    return features


def workers_allowed(dataset: Dataset) -> bool:
    """False when ``dataset`` (or one it wraps) must be read in the main process."""
    if isinstance(dataset, Subset):
        return workers_allowed(dataset.dataset)
    if isinstance(dataset, ConcatDataset):
        return all(workers_allowed(part) for part in dataset.datasets)
    return bool(getattr(dataset, "workers_allowed", True))


def worker_message(error: MatchzooError) -> str:
    """The user's one line of a :class:`MatchzooError`; a DataLoader worker re-raises it as
    ``Caught MatchzooError in DataLoader worker process 0.`` + the traceback, ending in ``...MatchzooError: <line>``."""
    text = str(error).strip()
    marker = f"{type(error).__name__}: "
    for line in reversed(text.splitlines()):
        if marker in line and line.split(marker, 1)[0].replace(".", "").replace("_", "").isalnum():
            return line.split(marker, 1)[1]
    return text.splitlines()[0] if text else type(error).__name__
