"""On-disk cache of real-data reference features and their float64 statistics.

One file per (feature space, dataset, split), named ``<dataset>-<split>-<space>-<key>.pt`` where
``key = sha256(space.fingerprint | dataset.fingerprint | split)[:16]``; it holds the float32 features
(N, D), the float64 mean (D,) and unbiased covariance (D, D) (Σ = XcᵀXc / (N − 1)), both fingerprints,
the split and a SHA-256 of the feature bytes. A file that cannot be read, whose fingerprints or split
differ, or whose checksum or shapes are wrong is reported with a warning and rebuilt — never used.
Writes are atomic (temporary file in the same directory + ``os.replace``).

The cache directory is ``cache_dir`` if given, else ``$MATCHZOO_CACHE_DIR``, else ``runs/cache``.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Optional

import torch

from matchzoo.atomic import WriteFailed, torch_save_atomic
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


def _load(path: Path, space: FeatureSpace, dataset: ImageDataset, split: str) -> Optional[dict]:
    if not path.is_file():
        return None
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, garbage bytes, pickle errors: all mean "corrupt"
        problem = f"unreadable ({type(error).__name__})"
    else:
        problem = _problem(record, space, dataset, split)
        if problem is None:
            return record
    warnings.warn(f"reference cache {path} is unusable ({problem}); rebuilding it", CacheRebuildWarning, stacklevel=4)
    return None


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
) -> dict:
    """The cached record (features + float64 statistics) for this space/dataset/split; built if needed."""
    return load_or_build(space, dataset, split, batch_size, device, cache_dir, progress)[0]


def load_or_build(
    space: FeatureSpace,
    dataset: ImageDataset,
    split: str,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    cache_dir: Optional[str | Path] = None,
    progress: bool = True,
) -> tuple[dict, bool]:
    """``(record, built)``: ``built`` is False when a valid cache file was reused."""
    dataset.check_split(split)
    path = cache_path(space, dataset, split, cache_dir)
    record = _load(path, space, dataset, split)
    if record is not None:
        return record, False
    writable_cache_dir(path.parent)
    features = extract_features(
        space,
        dataset.split(split),
        batch_size=batch_size,
        device=device,
        desc=f"{dataset.name}/{split} in {space.name}",
        progress=progress,
    )  # (N, D) f32
    mean, cov = mean_cov(features)  # float64
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
    _atomic_save(record, path)
    return record, True


def reference_features(
    space: FeatureSpace,
    dataset: ImageDataset,
    split: str,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    cache_dir: Optional[str | Path] = None,
    progress: bool = True,
) -> torch.Tensor:
    """float32 features (N, dim) on CPU of every image in ``dataset.split(split)``, cached on disk."""
    return reference_record(space, dataset, split, batch_size, device, cache_dir, progress)["features"]


def reference_stats(
    space: FeatureSpace,
    dataset: ImageDataset,
    split: str,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    cache_dir: Optional[str | Path] = None,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 mean (dim,) and unbiased covariance (dim, dim) of the cached reference features."""
    record = reference_record(space, dataset, split, batch_size, device, cache_dir, progress)
    return record["mean"], record["cov"]
