r"""FDr^k: Fréchet distances relative to held-out real data, averaged over k feature spaces.

.. math::  \mathrm{FDr}_X = \frac{\mathrm{FD}_X(\text{generated}_n,\ \text{reference})}
                                 {\mathrm{FD}_X(\text{held-out real}_n,\ \text{reference})},
           \qquad \mathrm{FDr}^k = \frac1k\sum_{X} \mathrm{FDr}_X

The reference is the *training* split of the real data; both numerators and denominators use the same
sample size ``n`` (FD is biased upwards by ``O(D/n)``, so unequal sizes would skew the ratio); ``n`` is
``min(#generated, #held-out)`` unless given. 1.0 means "as close to the reference as real held-out
data"; report each FDr_X beside the mean. The held-out baseline depends only on (space, dataset, n,
seed), so it is computed once per key and cached for the process.

The registered metric ``fdr`` returns, per space, ``fd_matched`` (numerator), ``fd_heldout``
(denominator), ``fdr``, ``fdr_n`` (the sample size ``n``) and ``fdr_fixed_baseline`` (which denominator: 0 the
held-out split, 1 a fixed number); :func:`fdr_k` averages a set of such rows.

**Fixed baselines** (the FD-loss paper's convention): ``fdr.baselines = {'inception': 1.68, ...}`` in gin, or
``evaluate --fdr_baselines inception=1.68,...``, divides FD_X by a published FD of real validation data to the
same reference instead of the held-out split. The numerator is then FD of *all* generated samples (the
baseline's own sample size is whatever its authors used, so nothing can be matched) and ``fdr_n`` is their
number. A space without an entry keeps the held-out denominator; the run records which per space.
"""

from __future__ import annotations

import weakref
from typing import Hashable, Mapping, Optional

import torch

from matchzoo import linalg, validate
from matchzoo.errors import MatchzooError
from matchzoo.keys import FD_HELDOUT, FD_MATCHED, FDR, FDR_FIXED_BASELINE, FDR_N
from matchzoo.metrics.frechet import FrechetReference, SpaceReference
from matchzoo.metrics.registry import Metric, register_metric

# memoised per reference object: the numerator and the denominator of an FDr must use the same reference
# statistics (two references of the same data, computed along different paths, differ by round-off)
_HELDOUT_CACHE: "weakref.WeakKeyDictionary[FrechetReference, dict[Hashable, float]]" = weakref.WeakKeyDictionary()


def fdr_table(fd_generated: dict[str, float], fd_heldout: dict[str, float]) -> dict[str, float]:
    """``{'fdr/<space>': FD_gen/FD_heldout, ..., 'fdr_k': mean}`` over the spaces of ``fd_generated``."""
    if not fd_generated:
        raise MatchzooError("FDr^k needs at least one evaluation space")
    missing = sorted(set(fd_generated) - set(fd_heldout))
    if missing:
        raise MatchzooError(
            f"no held-out FD baseline for space(s) {', '.join(missing)}; compute heldout_frechet_distance first"
        )
    table: dict[str, float] = {}
    for space, fd in fd_generated.items():
        baseline = float(fd_heldout[space])
        if not baseline > 0.0:
            raise MatchzooError(
                f"held-out FD in space {space!r} is {baseline:g}; FDr needs a positive baseline "
                f"(held-out and reference data are identical or the space is constant)"
            )
        table[f"fdr/{space}"] = float(fd) / baseline
    table["fdr_k"] = sum(table.values()) / len(fd_generated)
    return table


def subsample(features: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """``size`` rows of ``features`` ``(N, D)`` without replacement, chosen by ``seed`` (all rows if N == size)."""
    if size > features.shape[0]:
        raise ValueError(f"cannot draw {size} samples from {features.shape[0]}")
    if size == features.shape[0]:
        return features
    order = torch.randperm(features.shape[0], generator=torch.Generator().manual_seed(seed))[:size]
    return features[order.to(features.device)]


def heldout_frechet_distance(
    heldout: torch.Tensor,
    reference: FrechetReference | torch.Tensor,
    sample_size: Optional[int] = None,
    seed: int = 0,
    cache_key: Optional[Hashable] = None,
) -> float:
    """FD(held-out real features, reference) at ``sample_size`` held-out samples (the FDr denominator).

    ``reference`` is a :class:`FrechetReference` or the training features ``(N_ref, D)``. With a
    ``cache_key`` (e.g. ``(space.fingerprint, dataset.fingerprint)``) and a :class:`FrechetReference`, the value
    is memoised on that reference per ``(cache_key, sample_size, seed)``.
    """
    size = heldout.shape[0] if sample_size is None else int(sample_size)
    if size < 2 or size > heldout.shape[0]:
        raise MatchzooError(
            f"FDr sample size {size} must be in [2, {heldout.shape[0]}] (the number of held-out samples); "
            f"evaluate with at most {heldout.shape[0]} samples or use a dataset with a larger held-out split"
        )
    if not isinstance(reference, FrechetReference):
        reference, cache_key = FrechetReference.from_features(reference), None  # a new object: nothing to reuse
    memo = None if cache_key is None else _HELDOUT_CACHE.setdefault(reference, {})
    key = (cache_key, size, seed)
    if memo is not None and key in memo:
        return memo[key]
    value = reference.distance_to_features(subsample(heldout, size, seed))
    if memo is not None:
        memo[key] = value
    return value


def matched_frechet_distances(
    generated: torch.Tensor,
    heldout: torch.Tensor,
    reference: FrechetReference,
    seed: int = 0,
    cache_key: Optional[Hashable] = None,
) -> tuple[float, float, int]:
    """``(FD(generated_n, ref), FD(heldout_n, ref), n)`` with ``n = min(#generated, #held-out)``."""
    size = min(generated.shape[0], heldout.shape[0])
    fd_generated = reference.distance_to_features(subsample(linalg.as_float64_tensor(generated), size, seed))
    fd_heldout = heldout_frechet_distance(heldout, reference, size, seed, cache_key)
    return fd_generated, fd_heldout, size


def check_baselines(option: str, baselines) -> dict[str, float]:
    """``{space: positive finite FD}``; the message names ``option`` and shows the expected form."""
    example = "{'inception': 1.68, 'dinov2': 19.2}" if option.startswith("fdr.") else "inception=1.68,dinov2=19.2"
    if baselines is None:
        return {}
    if not isinstance(baselines, Mapping) or not all(isinstance(name, str) for name in baselines):
        raise MatchzooError(f"{option} must map space names to FDs, e.g. {example}, got {baselines!r}")
    return {name: validate.positive_real(f"{option}[{name!r}]", value) for name, value in baselines.items()}


def parse_baselines(text: str) -> dict[str, float]:
    """``--fdr_baselines inception=1.68,dinov2=19.2`` -> ``{'inception': 1.68, 'dinov2': 19.2}``."""
    baselines: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",") if part.strip()):
        name, sep, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or not name.strip() or number is None:
            raise MatchzooError(
                f"--fdr_baselines: expected SPACE=FD pairs such as inception=1.68,dinov2=19.2, got {item!r}"
            )
        baselines[name.strip()] = number
    return check_baselines("--fdr_baselines", baselines)


@register_metric("fdr")
class FDr(Metric):
    """FDr of one space and its parts: FD of ``n`` generated and of ``n`` held-out samples to the reference, or
    FD of all generated samples over a fixed baseline (``baselines``)."""

    keys = (FDR, FD_HELDOUT, FD_MATCHED, FDR_N, FDR_FIXED_BASELINE)
    headers = {FDR: "FDr", FD_HELDOUT: "FD(heldout)"}

    def __init__(self, baselines: Optional[Mapping[str, float]] = None, option: str = "fdr.baselines"):
        self.baselines = check_baselines(option, baselines)

    @classmethod
    def from_suite(cls, settings) -> "FDr":
        return cls(getattr(settings, "fdr_baselines", None) or None, "--fdr_baselines")

    def fixed_baseline(self, real: SpaceReference) -> Optional[float]:
        """The fixed denominator of ``real``'s space, or ``None`` (held-out split). Needs the space's name."""
        if not self.baselines:
            return None
        name = getattr(real, "name", None)
        if name is None:
            raise MatchzooError(
                "fdr.baselines needs the name of the space being evaluated, and this evaluation path does not give "
                "it; leave fdr.baselines unbound here"
            )
        return self.baselines.get(name)

    def __call__(self, generated: torch.Tensor, real: SpaceReference, seed: int) -> dict[str, float]:
        baseline = self.fixed_baseline(real)
        if baseline is not None:
            matched, size = real.frechet.distance_to_features(generated), generated.shape[0]
            return {
                FDR: matched / baseline,
                FD_HELDOUT: baseline,
                FD_MATCHED: matched,
                FDR_N: float(size),
                FDR_FIXED_BASELINE: 1.0,
            }
        matched, baseline, size = matched_frechet_distances(generated, real.heldout, real.frechet, seed, real.cache_key)
        ratio = matched / baseline if baseline > 0 else float("inf")  # fdr_k says why a zero baseline is no ratio
        return {FDR: ratio, FD_HELDOUT: baseline, FD_MATCHED: matched, FDR_N: float(size), FDR_FIXED_BASELINE: 0.0}


def fdr_k(rows: dict[str, dict[str, float]]) -> Optional[float]:
    """FDr^k over ``{space: row}`` rows holding the ``fdr`` metric's numbers (``None`` if they do not)."""
    if not rows or any(FD_MATCHED not in row for row in rows.values()):
        return None
    return fdr_table(
        {space: row[FD_MATCHED] for space, row in rows.items()}, {space: row[FD_HELDOUT] for space, row in rows.items()}
    )["fdr_k"]
