r"""Streaming float64 Gaussian statistics and a cached reference for fast Fréchet distances.

:class:`StreamingMoments` accumulates, batch by batch, the shifted sums

.. math::  n,\quad s_1=\sum_i (x_i-k),\quad S_2=\sum_i (x_i-k)(x_i-k)^\top

in float64 (``k`` = mean of the first batch, which removes the cancellation of the raw
:math:`\sum xx^\top - n\mu\mu^\top` formula when features have a large offset), so 50k samples cost
``O(D^2)`` memory. The statistics are :math:`\mu = k + s_1/n` and the unbiased covariance
:math:`\Sigma = (S_2 - s_1 s_1^\top/n)/(n-1)`.

:class:`FrechetReference` holds the reference :math:`(\mu_r, \Sigma_r)` and caches a factor
:math:`F F^\top=\Sigma_r` (:func:`matchzoo.linalg.psd_factor`), so each later
:math:`\mathrm{FD}=\|\mu-\mu_r\|^2+\operatorname{Tr}\Sigma+\operatorname{Tr}\Sigma_r
-2\operatorname{Tr}(F^\top\Sigma F)^{1/2}` is one triangular congruence and one ``eigvalsh``; the reference
is validated once. Sample sets smaller than ``D`` use the exact ``n x n`` dual form.

:class:`SpaceReference` is the real side of one feature space as every registered metric sees it, and
the metrics ``fd_reference`` (key ``fd``: generated vs the train split, the FID convention) and
``fd_to_heldout`` (generated vs the held-out split) live here. Either side may come from a statistics file
(:meth:`FrechetReference.from_stats_file`, :meth:`SpaceReference.from_stats`; formats in
:mod:`matchzoo.stats_files`): FD metrics then need no real samples, and a metric that does (KID, PRDC, the
equal-size FDr) says in one line that it needs the dataset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable, Optional, Sequence, Union

import numpy as np
import torch

from matchzoo import linalg, stats_files
from matchzoo.errors import MatchzooError
from matchzoo.keys import FD, FD_TO_HELDOUT
from matchzoo.metrics.registry import Metric, register_metric


@dataclass(frozen=True)
class GaussianStats:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` (float64) of ``count`` samples."""

    mean: torch.Tensor
    cov: torch.Tensor
    count: int

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    @classmethod
    def from_features(cls, features: linalg.ArrayLike, batch_size: int = 4096) -> "GaussianStats":
        moments = StreamingMoments()
        # batches are cast to float64 one at a time (update does it): no float64 copy of all the features
        x = (
            torch.from_numpy(np.ascontiguousarray(features))
            if isinstance(features, np.ndarray)
            else torch.as_tensor(features)
        )
        for start in range(0, x.shape[0], batch_size):
            moments.update(x[start : start + batch_size])
        return moments.stats()


class StreamingMoments:
    """Float64 running mean/covariance over batches of ``(B, D)`` features (see module docstring)."""

    def __init__(self) -> None:
        self.count = 0
        self.shift: Optional[torch.Tensor] = None  # (D,)
        self.sum: Optional[torch.Tensor] = None  # (D,)
        self.outer: Optional[torch.Tensor] = None  # (D, D)

    def update(self, batch: linalg.ArrayLike) -> "StreamingMoments":
        x = linalg.as_float64_tensor(batch)
        if x.ndim != 2:
            raise ValueError(f"StreamingMoments takes (B, D) batches, got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            return self
        if not torch.isfinite(x).all():
            raise ValueError("features contain NaN or inf")
        if self.shift is None:
            self.shift = x.mean(dim=0)
            self.sum = torch.zeros_like(self.shift)
            self.outer = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=x.device)
        elif x.shape[1] != self.shift.shape[0]:
            raise ValueError(f"feature dimension changed from {self.shift.shape[0]} to {x.shape[1]}")
        shifted = x - self.shift  # (B, D)
        self.sum += shifted.sum(dim=0)
        self.outer.addmm_(shifted.T, shifted)
        self.count += x.shape[0]
        return self

    def merge(self, other: "StreamingMoments") -> "StreamingMoments":
        r"""Add another accumulator's samples (e.g. from another process or worker), exactly.

        Re-centres ``other``'s sums from its shift :math:`k'` to ours :math:`k` with :math:`\delta = k'-k`:
        :math:`s_1 \mathrel{+}= s_1' + n'\delta`,
        :math:`S_2 \mathrel{+}= S_2' + \delta s_1'^\top + s_1'\delta^\top + n'\delta\delta^\top`.
        """
        if other.count == 0:
            return self
        if self.count == 0:
            self.count, self.shift, self.sum, self.outer = (
                other.count,
                other.shift.clone(),
                other.sum.clone(),
                other.outer.clone(),
            )
            return self
        if other.shift.shape != self.shift.shape:
            raise ValueError(f"cannot merge moments of dimension {other.shift.shape[0]} into {self.shift.shape[0]}")
        delta = (other.shift - self.shift).to(self.shift.device)  # (D,)
        other_sum, other_outer = other.sum.to(self.sum.device), other.outer.to(self.outer.device)
        self.outer += (
            other_outer
            + torch.outer(delta, other_sum)
            + torch.outer(other_sum, delta)
            + other.count * torch.outer(delta, delta)
        )
        self.sum += other_sum + other.count * delta
        self.count += other.count
        return self

    def stats(self) -> GaussianStats:
        if self.count < 2:
            raise ValueError(f"need at least 2 samples for a covariance, have {self.count}")
        mean_shifted = self.sum / self.count  # (D,)
        cov = (self.outer - self.count * torch.outer(mean_shifted, mean_shifted)) / (self.count - 1)
        return GaussianStats(self.shift + mean_shifted, linalg.symmetrize(cov), self.count)


class FrechetReference:
    """Reference Gaussian with a cached covariance factor: many fast FDs against the same data."""

    def __init__(self, stats: GaussianStats):
        self.stats = stats
        self._factor: Optional[torch.Tensor] = None
        self._factor_lower = False

    @classmethod
    def from_features(cls, features: linalg.ArrayLike) -> "FrechetReference":
        return cls(GaussianStats.from_features(features))

    @classmethod
    def from_stats_file(
        cls, path, space=None, option: str = "reference statistics"
    ) -> tuple["FrechetReference", stats_files.ReferenceStats]:
        """The reference read from a statistics file (validated, and checked against ``space`` when given), and
        the file's record (path, SHA-256, layout) for the run to log."""
        stats = stats_files.load_stats(path, space, option)
        return cls(GaussianStats(stats.mean, stats.cov, stats.count or 0)), stats

    @property
    def factor(self) -> torch.Tensor:
        """``F`` with ``F F^T = Σ_ref`` (Cholesky, or the PSD root when singular); computed and checked once."""
        if self._factor is None:
            linalg.check_finite(reference_mean=self.stats.mean, reference_cov=self.stats.cov)
            self._factor = linalg.psd_factor(self.stats.cov)
            self._factor_lower = linalg.is_lower_triangular(self._factor)
        return self._factor

    def distance_to_stats(self, stats: GaussianStats) -> float:
        """FD between ``stats`` and the reference, reusing the cached factor (only ``stats`` is checked)."""
        ref, factor = self.stats, self.factor
        linalg.check_stats_shapes(ref.mean, ref.cov, stats.mean, stats.cov)
        linalg.check_finite(mean=stats.mean, cov=stats.cov)
        return linalg.frechet_distance_checked(ref.mean, ref.cov, stats.mean, stats.cov, factor, self._factor_lower)

    def distance_to_features(self, features: linalg.ArrayLike) -> float:
        """FD between the Gaussian fitted to ``features`` ``(n, D)`` and the reference.

        ``n < D`` uses the exact dual form :math:`\\operatorname{Tr}(X_c\\Sigma_r X_c^\\top/(n-1))^{1/2}` and warns.
        """
        x = linalg.as_float64_tensor(features)
        if x.ndim != 2 or x.shape[1] != self.stats.dim:
            raise ValueError(f"need (n, {self.stats.dim}) features, got shape {tuple(x.shape)}")
        if x.shape[0] >= x.shape[1]:
            return self.distance_to_stats(GaussianStats.from_features(x))
        if x.shape[0] < 2:
            raise ValueError(f"need at least 2 samples, got {x.shape[0]}")
        if not torch.isfinite(x).all():
            raise ValueError("features contain NaN or inf")
        linalg.warn_if_few_samples(x.shape[0], x.shape[1])
        mean = x.mean(dim=0)
        centered = x - mean  # (n, D)
        ref = self.stats
        trace_term = linalg.trace_sqrt_product_dual(centered, ref.cov.to(x.device))
        trace_x = centered.square().sum() / (x.shape[0] - 1)
        value = (mean - ref.mean).square().sum() + trace_x + ref.cov.trace() - 2.0 * trace_term
        return float(value.clamp_min(0.0))


Features = Union[torch.Tensor, Callable[[], torch.Tensor], None]  # a tensor, a loader called on first use, absent


class SpaceReference:
    """The real side of one feature space: ``reference`` ``(N, D)`` (the train split) and ``heldout`` ``(H, D)``
    features, with their Gaussian fits made on first use and then shared by every metric and evaluation.

    ``frechet`` / ``frechet_heldout`` may be given (statistics read from the on-disk cache or a statistics file,
    :meth:`from_stats`). Features may then be absent (``None``; the held-out side entirely, e.g. with fixed FDr
    baselines) or a loader called on first use (features of an ADM reference batch's images), and a metric that
    reads absent samples gets a one-line error naming ``source``. ``cache_key`` (e.g.
    ``(space.fingerprint, dataset.fingerprint)``) memoises the held-out FDr baseline for the process. ``files``
    lists the statistics files read, for the run to record (:meth:`matchzoo.stats_files.ReferenceStats.record`);
    ``name`` is the space's name (metrics restricted to some spaces, per-space FDr baselines)."""

    def __init__(
        self,
        reference: Features,
        heldout: Features,
        frechet: Optional[FrechetReference] = None,
        cache_key: Optional[Hashable] = None,
        frechet_heldout: Optional[FrechetReference] = None,
        source: str = "statistics",
        files: Sequence[stats_files.ReferenceStats] = (),
        name: Optional[str] = None,
    ):
        if reference is None and frechet is None:
            raise ValueError("SpaceReference needs reference features or statistics")  # held-out: only when used
        self._features = {"reference": reference, "held-out": heldout}
        self.cache_key, self.source, self.files, self.name = cache_key, source, tuple(files), name
        self._frechet, self._frechet_heldout = frechet, frechet_heldout

    @classmethod
    def from_stats(
        cls,
        reference,
        space=None,
        heldout=None,
        option: str = "reference statistics",
        extract: Optional[Callable[[np.ndarray], torch.Tensor]] = None,
    ) -> "SpaceReference":
        """The real side from statistics: ``reference`` is a statistics file, or a folder written by
        ``matchzoo stats --export`` (its ``<space>.npz``, and ``<space>.heldout.npz`` as the held-out side when
        present and ``heldout`` is not given). FD metrics need nothing more; with ``extract`` (NHWC uint8 images ->
        ``(N, D)`` features in ``space``), an ADM reference batch's ``arr_0`` images become the reference samples
        of KID/PRDC on first use, else sample-based metrics say in one line that they need the dataset."""
        reference_path, heldout_path = Path(os.path.expanduser(str(reference))), heldout
        if reference_path.is_dir():
            if space is None:
                raise ValueError("a statistics folder needs the space whose <space>.npz to read")
            reference_path = stats_files.stats_file(reference_path, space.name)
            beside = stats_files.export_path(reference_path.parent, space.name, "heldout")
            heldout_path = heldout_path if heldout_path is not None or not beside.is_file() else beside
        frechet, reference_file = FrechetReference.from_stats_file(reference_path, space, option)
        files = [reference_file]
        frechet_heldout = None
        if heldout_path is not None:
            frechet_heldout, heldout_file = FrechetReference.from_stats_file(heldout_path, space, option)
            files.append(heldout_file)
        samples = None
        if extract is not None and reference_file.images_key is not None:
            samples = lambda: extract(reference_file.images())  # noqa: E731
        return cls(
            samples,
            None,
            frechet,
            ("stats", *(file.sha256 for file in files)),
            frechet_heldout,
            source=str(reference_path),
            files=files,
            name=getattr(space, "name", None),
        )

    def _samples(self, side: str) -> torch.Tensor:
        features = self._features[side]
        if callable(features):
            features = self._features[side] = features()
        if features is None:
            raise MatchzooError(
                f"this metric compares samples but the {side} side of the space is only statistics ({self.source}); "
                "give the dataset (or leave the metric out)"
            )
        return features

    @property
    def reference(self) -> torch.Tensor:
        return self._samples("reference")

    @property
    def heldout(self) -> torch.Tensor:
        return self._samples("held-out")

    @property
    def frechet(self) -> FrechetReference:
        if self._frechet is None:
            self._frechet = FrechetReference.from_features(self.reference)
        return self._frechet

    @property
    def frechet_heldout(self) -> FrechetReference:
        if self._frechet_heldout is None:
            self._frechet_heldout = FrechetReference.from_features(self.heldout)
        return self._frechet_heldout


@register_metric("fd_reference")
class FDToReference(Metric):
    """``fd``: FD of all generated samples to the reference (train split) statistics."""

    keys = (FD,)
    headers = {FD: "FD"}

    def __call__(self, generated: torch.Tensor, real: SpaceReference, seed: int) -> dict[str, float]:
        return {FD: real.frechet.distance_to_features(generated)}


@register_metric("fd_to_heldout")
class FDToHeldout(Metric):
    """``fd_to_heldout``: FD of all generated samples to the held-out split (what training logged as
    ``eval/fd/<space>`` before key schema 2). Left out of evaluate's printed table, where it would read
    like the FDr baseline ``FD(heldout)``; it is in the JSON and CSV."""

    keys = (FD_TO_HELDOUT,)
    headers: dict[str, str] = {}

    def __call__(self, generated: torch.Tensor, real: SpaceReference, seed: int) -> dict[str, float]:
        return {FD_TO_HELDOUT: real.frechet_heldout.distance_to_features(generated)}
