"""On-disk cache of real-data reference features and their float64 statistics.

One file per (feature space, dataset, split), named ``<dataset>-<split>-<space>-<key>.pt`` where
``key = sha256(space.fingerprint | dataset.fingerprint | split)[:16]``; it holds the float32 features
(N, D), the float64 mean (D,) and unbiased covariance (D, D) (Σ = XcᵀXc / (N − 1)), both fingerprints,
the split and a SHA-256 of the feature bytes. A file that cannot be read, whose fingerprints or split
differ, or whose checksum or shapes are wrong is reported with a warning and rebuilt — never used.
Writes are atomic (temporary file in the same directory + ``os.replace``).

Under ``torchrun``, inside :func:`matchzoo.data.sharding.all_ranks` (the ``stats`` and ``evaluate`` commands),
every rank calls :func:`load_or_build` in the same order and the ranks act as one: they reuse the file only if
every rank can (a cache folder that is not shared by every node is rebuilt, with a warning); otherwise each rank
extracts its shard of the images, the features are gathered in dataset order (the same float32 rows as one
process), the float64 moments of the shards are merged (:class:`~matchzoo.data.sharding.Moments`; equal to one
process's statistics to round-off) and broadcast from rank 0 so every rank holds the same bytes; rank 0 alone
writes the file and every rank waits for the write, so none reads a file that is not there yet. A user error on
rank 0 (an unwritable folder) is raised on every rank, in the same line.

The cache directory is ``cache_dir`` if given, else ``$MATCHZOO_CACHE_DIR``, else ``runs/cache``.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.distributed as dist

from matchzoo.atomic import WriteFailed, torch_save_atomic
from matchzoo.data import sharding
from matchzoo.data.datasets import ImageDataset
from matchzoo.data.features import extract_features
from matchzoo.errors import MatchzooError
from matchzoo.linalg import mean_cov
from matchzoo.spaces.base import FeatureSpace

FORMAT_VERSION = 1


class CacheRebuildWarning(UserWarning):
    """A cached reference file was unusable (corrupt or for other fingerprints) and is being rebuilt."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("MATCHZOO_CACHE_DIR") or "runs/cache")


def cache_key(space: FeatureSpace, dataset: ImageDataset, split: str) -> str:
    return hashlib.sha256(f"{space.fingerprint}|{dataset.fingerprint}|{split}".encode()).hexdigest()[:16]


def cache_path(space: FeatureSpace, dataset: ImageDataset, split: str, cache_dir: Optional[str | Path] = None) -> Path:
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return directory / f"{dataset.name}-{split}-{space.name}-{cache_key(space, dataset, split)}.pt"


def tensor_sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def _problem(record: object, space: FeatureSpace, dataset: ImageDataset, split: str) -> Optional[str]:
    """Why a loaded record must not be used, or ``None`` when it is valid for this request."""
    if not isinstance(record, dict) or record.get("format") != FORMAT_VERSION:
        return "unknown format"
    expected = {"space_fingerprint": space.fingerprint, "dataset_fingerprint": dataset.fingerprint, "split": split}
    for field, value in expected.items():
        if record.get(field) != value:
            return f"{field} is {record.get(field)!r}, expected {value!r}"
    features, mean, cov = record.get("features"), record.get("mean"), record.get("cov")
    if not all(isinstance(t, torch.Tensor) for t in (features, mean, cov)):
        return "missing tensors"
    n, dim = features.shape if features.ndim == 2 else (-1, -1)
    if dim != space.dim or features.dtype != torch.float32 or mean.shape != (dim,) or cov.shape != (dim, dim):
        return f"shapes {tuple(features.shape)}/{tuple(mean.shape)}/{tuple(cov.shape)} do not fit dim {space.dim}"
    if mean.dtype != torch.float64 or cov.dtype != torch.float64:
        return "statistics are not float64"
    if record.get("features_sha256") != tensor_sha256(features):
        return "feature checksum mismatch"
    return None


def _read(path: Path, space: FeatureSpace, dataset: ImageDataset, split: str) -> tuple[Optional[dict], Optional[str]]:
    """``(record, None)`` for a valid file, ``(None, why)`` for an unusable one, ``(None, None)`` when absent."""
    if not path.is_file():
        return None, None
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, garbage bytes, pickle errors: all mean "corrupt"
        return None, f"unreadable ({type(error).__name__})"
    problem = _problem(record, space, dataset, split)
    return (record, None) if problem is None else (None, problem)


def _usable_everywhere(record: Optional[dict], problem: Optional[str], path: Path, together: bool) -> bool:
    """Whether to reuse the file: here, or (``together``) on every rank; an unusable file is reported once."""
    usable = record is not None
    if together:
        flag = torch.tensor([int(usable)], device=sharding.communication_device())
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        everywhere = bool(flag.item())
        if sharding.rank_and_world()[0] != 0:
            return everywhere
        if usable and not everywhere:
            problem = "valid here but missing or unusable on another rank: is the cache folder shared by every node?"
        usable = everywhere
    if problem is not None:
        message = f"reference cache {path} is unusable ({problem}); rebuilding it"
        warnings.warn(message, CacheRebuildWarning, stacklevel=4)
    return usable


def on_rank_zero(action: Callable[[], None]) -> None:
    """``action()`` on rank 0 alone while the other ranks wait for it, inside a collective block
    (:func:`matchzoo.data.sharding.collective`); a :class:`MatchzooError` it raises is raised on every rank with
    the same line, so no rank is left waiting for a peer that stopped. Elsewhere simply ``action()``."""
    if not sharding.collective():
        action()
        return
    outcome: list[Optional[str]] = [None]
    error: Optional[BaseException] = None
    if sharding.rank_and_world()[0] == 0:
        try:
            action()
        except MatchzooError as failure:
            outcome[0] = str(failure)
        except Exception as failure:  # a bug: rank 0 keeps its traceback, the others learn that it stopped
            outcome[0], error = f"rank 0 failed: {type(failure).__name__}: {failure}", failure
    dist.broadcast_object_list(outcome, src=0)
    if error is not None:
        raise error
    if outcome[0] is not None:
        raise MatchzooError(outcome[0])


def _statistics(features: torch.Tensor, batch_size: int, together: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 mean and unbiased covariance of ``features`` ``(N, D)``; ``together``: each rank summarises its own
    shard (the rows it extracted) and the moments are merged, then rank 0's result is broadcast."""
    if not together:
        return mean_cov(features)
    rank, world = sharding.rank_and_world()
    bounds = sharding.shard_bounds(features.shape[0], world, batch_size)  # the shards extract_features cut
    moments = sharding.Moments.of(features[bounds[rank] : bounds[rank + 1]]).all_reduce()
    device = sharding.communication_device()
    mean, cov = moments.mean.to(device), moments.covariance().to(device)
    dist.broadcast(mean, src=0)  # the same bytes on every rank, whatever the backend's reduction order
    dist.broadcast(cov, src=0)
    return mean.cpu(), cov.cpu()


def writable_cache_dir(directory: Path) -> Path:
    """Create ``directory`` (checked before minutes of feature extraction, not after)."""
    hint = "set MATCHZOO_CACHE_DIR (or --cache_dir) to a writable folder"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a file in the way, a read-only parent
        raise MatchzooError(f"cannot create the reference cache folder {directory}: {error.strerror}; {hint}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise MatchzooError(f"the reference cache folder {directory} is not writable; {hint}")
    return directory


def _atomic_save(record: dict, path: Path) -> None:
    writable_cache_dir(path.parent)
    try:
        torch_save_atomic(record, path)
    except WriteFailed as failure:  # disk full, quota
        raise MatchzooError(
            f"cannot write the reference cache {path}: {failure}; "
            "free space or set MATCHZOO_CACHE_DIR to another folder"
        ) from None


def reference_record(
    space: FeatureSpace,
    dataset: ImageDataset,
    split: str,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    cache_dir: Optional[str | Path] = None,
    progress: bool = True,
    workers: int = 0,
) -> dict:
    """The cached record (features + float64 statistics) for this space/dataset/split; built if needed."""
    return load_or_build(space, dataset, split, batch_size, device, cache_dir, progress, workers)[0]


def load_or_build(
    space: FeatureSpace,
    dataset: ImageDataset,
    split: str,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    cache_dir: Optional[str | Path] = None,
    progress: bool = True,
    workers: int = 0,
) -> tuple[dict, bool]:
    """``(record, built)``: ``built`` is False when a valid cache file was reused. ``workers``: DataLoader
    processes decoding images. Inside :func:`matchzoo.data.sharding.all_ranks` under ``torchrun`` it is a
    collective (every rank calls it, in the same order) and every rank returns the same record."""
    dataset.check_split(split)
    path = cache_path(space, dataset, split, cache_dir)
    together = sharding.collective()
    record, problem = _read(path, space, dataset, split)
    if _usable_everywhere(record, problem, path, together):
        return record, False
    on_rank_zero(lambda: writable_cache_dir(path.parent))  # checked before minutes of extraction
    features = extract_features(
        space,
        dataset.split(split),
        batch_size=batch_size,
        device=device,
        desc=f"{dataset.name}/{split} in {space.name}",
        progress=progress,
        workers=workers,
        shard=together,
    )  # (N, D) f32, all rows on every rank
    mean, cov = _statistics(features, batch_size, together)  # float64
    record = {
        "format": FORMAT_VERSION,
        "space": space.name,
        "space_fingerprint": space.fingerprint,
        "dataset": dataset.name,
        "dataset_fingerprint": dataset.fingerprint,
        "split": split,
        "features": features.contiguous(),
        "mean": mean,
        "cov": cov,
        "features_sha256": tensor_sha256(features),
    }
    on_rank_zero(lambda: _atomic_save(record, path))  # the others wait: the file exists when any rank returns
    return record, True


def reference_features(
    space: FeatureSpace,
    dataset: ImageDataset,
    split: str,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    cache_dir: Optional[str | Path] = None,
    progress: bool = True,
    workers: int = 0,
) -> torch.Tensor:
    """float32 features (N, dim) on CPU of every image in ``dataset.split(split)``, cached on disk."""
    return reference_record(space, dataset, split, batch_size, device, cache_dir, progress, workers)["features"]


def reference_stats(
    space: FeatureSpace,
    dataset: ImageDataset,
    split: str,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    cache_dir: Optional[str | Path] = None,
    progress: bool = True,
    workers: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 mean (dim,) and unbiased covariance (dim, dim) of the cached reference features."""
    record = reference_record(space, dataset, split, batch_size, device, cache_dir, progress, workers)
    return record["mean"], record["cov"]
