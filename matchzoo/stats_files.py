r"""Reference statistics files: a float64 mean ``mu`` ``(D,)`` and covariance ``sigma`` ``(D, D)`` in an npz.

Written by ``python -m matchzoo stats --export DIR`` (``DIR/<space>.npz`` for the train split,
``DIR/<space>.<split>.npz`` for the others), read wherever a reference is accepted. Three layouts are read:

* a matchzoo export: ``mu``, ``sigma`` and the metadata ``n``, ``space``, ``space_fingerprint``, ``dataset``,
  ``dataset_fingerprint``, ``split``, ``matchzoo_version``, ``feature_convention`` and ``format``;
* a plain ``mu``/``sigma`` npz (pytorch-fid ``--save-stats``, clean-fid, FD-loss reference files);
* an ADM reference batch (guided-diffusion's evaluator): ``mu``/``sigma`` of pool3, ``mu_s``/``sigma_s`` of the
  sFID spatial features (read for the ``inception_sfid`` space) and ``arr_0``, NHWC uint8 images, which are
  read only when a metric needs samples (:meth:`ReferenceStats.images`).

Validation (each failure is one line naming the option): ``mu`` ``(D,)`` and ``sigma`` ``(D, D)``, floating point,
finite, symmetric and positive semi-definite within the round-off of the stored precision,

.. math:: \max|\Sigma-\Sigma^\top| \le \tau\max|\Sigma|, \qquad
          \lambda_{\min}(\Sigma) \ge -\tau\,\lambda_{\max}(\Sigma), \qquad \tau = 10\,D\,\epsilon_{\text{dtype}},

and, given a feature space, ``D`` equal to the space's dimension. A matchzoo export whose space fingerprint differs
from the configured space is refused; a file without fingerprints is accepted with one
:class:`StatsConventionWarning` (its features must follow the space's convention: network, layer, resize filter).
The SHA-256 of the file is returned for the run to record. Files are data: ``np.load(allow_pickle=False)``.

Writes are atomic (temporary file in the target folder + ``os.replace``) and refuse to replace a file unless
forced.
"""

from __future__ import annotations

import os
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
import torch

from matchzoo.digest import file_sha256
from matchzoo.errors import MatchzooError

FORMAT = "matchzoo-stats/1"
POOL_KEYS, SPATIAL_KEYS = ("mu", "sigma"), ("mu_s", "sigma_s")
IMAGES_KEY = "arr_0"  # ADM reference batches: NHWC uint8 images beside the statistics
# spaces whose statistics an ADM reference batch stores under mu_s/sigma_s instead of mu/sigma
SPATIAL_SPACES = ("inception_sfid",)
METADATA_KEYS = (
    "format",
    "space",
    "space_fingerprint",
    "dataset",
    "dataset_fingerprint",
    "split",
    "matchzoo_version",
    "feature_convention",
)
EXPORT_HINT = "python -m matchzoo stats --dataset D --spaces S --export DIR"


class StatsConventionWarning(UserWarning):
    """A statistics file without matchzoo fingerprints: nothing proves its features follow the space's convention."""


@dataclass(frozen=True)
class ReferenceStats:
    """A validated statistics file: float64 ``mean`` ``(D,)`` and symmetric ``cov`` ``(D, D)`` on CPU."""

    path: Path
    mean: torch.Tensor
    cov: torch.Tensor
    count: Optional[int]  # samples behind the statistics (matchzoo exports; None when the file does not say)
    sha256: str
    arrays: tuple[str, str]  # the keys read: ("mu", "sigma") or ("mu_s", "sigma_s")
    metadata: dict[str, str] = field(default_factory=dict)  # matchzoo metadata; empty for foreign files
    images_key: Optional[str] = None  # "arr_0" when the file carries images (an ADM reference batch)

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    @property
    def space_fingerprint(self) -> Optional[str]:
        return self.metadata.get("space_fingerprint")

    @property
    def layout(self) -> str:
        """``matchzoo``, ``adm`` (a reference batch) or ``plain`` (pytorch-fid / clean-fid / FD-loss)."""
        if self.space_fingerprint is not None:
            return "matchzoo"
        return "adm" if self.images_key is not None or self.arrays == SPATIAL_KEYS else "plain"

    def images(self) -> np.ndarray:
        """The file's NHWC uint8 images (an ADM reference batch), read now; a file without them is one line."""
        if self.images_key is None:
            raise MatchzooError(
                f"statistics file {self.path} holds only {'/'.join(self.arrays)}: metrics that compare samples "
                "need the reference images; give the dataset (or an ADM reference batch with arr_0 images)"
            )
        with np.load(self.path, allow_pickle=False) as archive:
            return archive[self.images_key]

    def record(self) -> dict[str, str]:
        """What a run records about the file (params/tags): where it was, its SHA-256 and which arrays were read."""
        return {"path": str(self.path), "sha256": self.sha256, "arrays": "/".join(self.arrays), "layout": self.layout}


# ----------------------------------------------------------------------------------------------------- writing


def export_path(directory: str | Path, space_name: str, split: str = "train") -> Path:
    """``DIR/<space>.npz`` for the train split (the reference), ``DIR/<space>.<split>.npz`` for any other."""
    suffix = "" if split == "train" else f".{split}"
    return Path(directory) / f"{space_name}{suffix}.npz"


def stats_file(reference: str | Path, space_name: str) -> Path:
    """A reference given as a statistics file, or as a folder written by ``stats --export``: the file to read for
    ``space_name`` (the folder's ``<space>.npz``; a file is itself, ``~`` expanded)."""
    path = Path(os.path.expanduser(str(reference)))
    return export_path(path, space_name) if path.is_dir() else path


def check_writable(paths: Iterable[Path], force: bool) -> None:
    """Before any extraction: the folders exist (created) and are writable, and no file would be replaced unless
    ``force``."""
    for path in paths:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise MatchzooError(
                f"--export: cannot create the folder {path.parent}: {error.strerror}; choose another folder"
            ) from None
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise MatchzooError(f"--export: the folder {path.parent} is not writable; choose another folder")
        if path.exists() and not force:
            raise MatchzooError(f"--export: {path} exists; pass --force to overwrite it or choose another folder")


def package_version() -> str:
    try:
        return package_metadata.version("matchzoo")
    except package_metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown (not installed)"


def feature_convention(space) -> str:
    """What a feature of ``space`` is, in words: name, dimension, preprocessing (size, filter, layer)."""
    return f"{space.name}: dim={space.dim}; {space.preprocessing.describe()}"


def export_arrays(mean: torch.Tensor, cov: torch.Tensor, count: int, space, dataset, split: str) -> dict[str, Any]:
    """The arrays of a matchzoo export: float64 statistics, then the metadata as 0-d arrays (no pickle needed)."""
    return {
        "mu": np.asarray(mean.detach().cpu().to(torch.float64).numpy()),
        "sigma": np.asarray(cov.detach().cpu().to(torch.float64).numpy()),
        "n": np.asarray(int(count), dtype=np.int64),
        "format": np.asarray(FORMAT),
        "space": np.asarray(space.name),
        "space_fingerprint": np.asarray(space.fingerprint),
        "dataset": np.asarray(dataset.name),
        "dataset_fingerprint": np.asarray(dataset.fingerprint),
        "split": np.asarray(split),
        "matchzoo_version": np.asarray(package_version()),
        "feature_convention": np.asarray(feature_convention(space)),
    }


def write_npz_atomic(path: str | Path, arrays: dict[str, Any], force: bool = False) -> Path:
    """``np.savez`` into a temporary file beside ``path``, then ``os.replace``: a crash or a full disk leaves the
    previous file (or none), never half of one."""
    path = Path(path)
    check_writable([path], force)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
        os.replace(temporary, path)
    except OSError as error:  # ENOSPC, EDQUOT, EIO
        raise MatchzooError(
            f"cannot write the statistics file {path}: {error.strerror or error}; free space or choose another folder"
        ) from None
    finally:
        Path(temporary).unlink(missing_ok=True)
    return path


def write_stats(
    path: str | Path,
    mean: torch.Tensor,
    cov: torch.Tensor,
    count: int,
    space,
    dataset,
    split: str = "train",
    force: bool = False,
) -> Path:
    """Write a matchzoo statistics file (``mu``, ``sigma`` float64 + metadata) atomically; returns its path."""
    return write_npz_atomic(path, export_arrays(mean, cov, count, space, dataset, split), force)


# ----------------------------------------------------------------------------------------------------- reading


def arrays_for(space, names: Iterable[str]) -> tuple[str, str]:
    """``mu_s``/``sigma_s`` for the sFID space when the file has them (ADM reference batches), else ``mu``/``sigma``."""
    names = set(names)
    if space is not None and space.name in SPATIAL_SPACES and set(SPATIAL_KEYS) <= names:
        return SPATIAL_KEYS
    return POOL_KEYS


def load_stats(path: str | Path, space=None, option: str = "reference statistics") -> ReferenceStats:
    """Read and validate a statistics file; with ``space``, also check it against that space (see module doc).

    ``option`` names the binding or command-line option in every message (``fd.reference_stats``, ...)."""
    path = Path(os.path.expanduser(str(path)))
    where = f"{option} = {str(path)!r}"
    if not path.is_file():
        raise MatchzooError(f"{where}: no such file; export one with `{EXPORT_HINT}` or give an npz with mu and sigma")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise MatchzooError(f"{where} is not a readable npz file ({type(error).__name__}: {error})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise MatchzooError(f"{where} holds a single array; a statistics file is an npz with mu (D,) and sigma (D, D)")
    with archive:
        names = archive.files
        arrays = arrays_for(space, names)
        if not set(arrays) <= set(names):
            found = ", ".join(sorted(names)) or "nothing"
            raise MatchzooError(
                f"{where} has no {' and '.join(arrays)} arrays (found: {found}); a statistics file holds "
                "mu (D,) and sigma (D, D) as written by pytorch-fid, clean-fid or matchzoo stats --export"
            )
        try:
            mean, cov = archive[arrays[0]], archive[arrays[1]]
            info = {key: str(archive[key][()]) for key in METADATA_KEYS if key in names}
            count = int(archive["n"][()]) if "n" in names else None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # truncated members, object arrays
            raise MatchzooError(f"{where} is damaged or holds objects ({type(error).__name__}: {error})") from None
        images_key = IMAGES_KEY if IMAGES_KEY in names else None
    mean64, cov64 = validated(mean, cov, arrays, where)
    stats = ReferenceStats(path, mean64, cov64, count, file_sha256(path), arrays, info, images_key)
    if space is not None:
        check_space(stats, space, option)
    return stats


def validated(mean: np.ndarray, cov: np.ndarray, arrays: tuple[str, str], where: str) -> tuple[torch.Tensor, ...]:
    """float64 ``(D,)`` mean and symmetrised ``(D, D)`` covariance, or a one-line error (shape, dtype, NaN, asymmetry,
    a negative eigenvalue beyond round-off)."""
    mu_name, sigma_name = arrays
    if mean.ndim != 1 or cov.shape != (mean.shape[0], mean.shape[0]) or mean.shape[0] == 0:
        raise MatchzooError(
            f"{where}: {mu_name} has shape {mean.shape} and {sigma_name} {cov.shape}; expected (D,) and (D, D)"
        )
    for name, value in ((mu_name, mean), (sigma_name, cov)):
        if value.dtype.kind != "f":
            raise MatchzooError(f"{where}: {name} is {value.dtype}, expected floating point statistics")
    stored = np.finfo(np.promote_types(mean.dtype, cov.dtype)).eps
    m, s = torch.from_numpy(np.asarray(mean, np.float64)), torch.from_numpy(np.asarray(cov, np.float64))
    for name, value in ((mu_name, m), (sigma_name, s)):
        if not torch.isfinite(value).all():
            raise MatchzooError(f"{where}: {name} contains NaN or inf")
    dim = m.shape[0]
    tolerance = 10.0 * dim * float(stored)
    scale = float(s.abs().max())
    asymmetry = float((s - s.T).abs().max())
    if asymmetry > tolerance * scale:
        raise MatchzooError(
            f"{where}: {sigma_name} is not symmetric (max |sigma - sigma^T| = {asymmetry:.3g}, "
            f"more than {tolerance:.1g} x max |sigma|); it is not a covariance matrix"
        )
    s = (s + s.T) / 2
    # Cholesky of sigma + tau * max(diag) * I succeeding proves lambda_min >= -tau * max(diag) >= -tau * lambda_max (a
    # third of an eigendecomposition); only when it fails do the eigenvalues decide, and name the culprit
    shift = tolerance * float(s.diagonal().max().clamp_min(0.0)) + torch.finfo(torch.float64).tiny
    if int(torch.linalg.cholesky_ex(s + shift * torch.eye(dim, dtype=s.dtype))[1]) == 0:
        return m.contiguous(), s.contiguous()
    eigenvalues = torch.linalg.eigvalsh(s)  # ascending
    smallest, largest = float(eigenvalues[0]), float(eigenvalues[-1])
    if smallest < -tolerance * max(largest, 0.0):
        raise MatchzooError(
            f"{where}: {sigma_name} is not positive semi-definite (smallest eigenvalue {smallest:.3g}, largest "
            f"{largest:.3g}); it is not a covariance matrix"
        )
    return m.contiguous(), s.contiguous()


def check_space(stats: ReferenceStats, space, option: str = "reference statistics") -> None:
    """The statistics fit ``space``: same dimension; a matchzoo export made in this very space (fingerprint); a
    foreign file is accepted with one warning naming the convention its features must follow."""
    where = f"{option} = {str(stats.path)!r}"
    mu_name = stats.arrays[0]
    if stats.dim != space.dim:
        raise MatchzooError(
            f"{where} holds {stats.dim}-d statistics ({mu_name}) but space {space.name!r} gives {space.dim}-d "
            f"features; give the statistics of this space"
        )
    fingerprint = stats.space_fingerprint
    if fingerprint is not None and fingerprint != space.fingerprint:
        made_in = stats.metadata.get("space", "?")
        raise MatchzooError(
            f"{where} was exported in space {made_in!r} (fingerprint {fingerprint}) but the configured space "
            f"{space.name!r} has fingerprint {space.fingerprint} (other weights, preprocessing or settings); export "
            f"it again in this space (`{EXPORT_HINT}`) or configure the space it was made in"
        )
    if fingerprint is None:
        warnings.warn(
            f"{where} has no matchzoo fingerprints ({stats.layout} {'/'.join(stats.arrays)}): its features must "
            f"follow the convention of space {feature_convention(space)} (same network weights, layer and resize "
            f"filter), which matchzoo cannot check; sha256 {stats.sha256}",
            StatsConventionWarning,
            stacklevel=3,
        )


# ----------------------------------------------------------------------------------------------------- training


def needs_real_samples(objective) -> bool:
    """Whether an objective matches real *samples* (every objective but FD-loss given ``reference_stats``)."""
    return bool(getattr(objective, "needs_real_samples", True))


def check_terms_without_dataset(terms: Iterable[Any]) -> None:
    """Training with no dataset: every term must train from statistics; the first that cannot is one line."""
    for term in terms:
        if needs_real_samples(term.objective):
            name = getattr(type(term.objective), "registry_name", type(term.objective).__name__)
            raise MatchzooError(
                f"term {term.name!r}: objective {name!r} matches real samples and needs train.dataset; without a "
                f"dataset only fd with fd.reference_stats = 'path.npz' trains (from statistics alone)"
            )
