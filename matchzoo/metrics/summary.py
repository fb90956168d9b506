r"""Numbers across evaluation spaces: FDr^k with its interval, and ``fdr_unseen``, the summary a resample attack
on one space cannot lower directly.

**FDr^k** is the mean of FDr_X over the ``k`` evaluation spaces. Its interval comes from the per-draw FDr of
every space (:mod:`matchzoo.metrics.intervals`: every space resamples the same images), averaged per draw.

**fdr_unseen** (this project's definition, key schema 3): the **geometric mean** of FDr over the evaluation
spaces whose **family** the samples were not optimised in. A space is *seen* when a training term's space
(tag ``train_space``) or a probe's attacked space is in it; every space of a seen space's family is left out
too (:attr:`matchzoo.spaces.base.FeatureSpace.family`: one learned network, one recipe at several sizes, or no
learned weights at all). Its interval comes from the same per-draw values (geometric mean per draw). It is
undefined (absent) when every family was seen.

Why this and not a worst case or a median. The resample attack reweights a fixed candidate pool to lower FD in
one space ``A``; it can lower FDr_A as far as it likes (to 0.70 from about 1.7 on the quickstart generator).

* No aggregate of the FDr values alone can be immune to that. Let ``f`` be non-decreasing in every FDr (a
  better space never makes the summary worse) and suppose lowering any one coordinate never lowers ``f``.
  Lowering the coordinates one at a time to their minimum ``m`` then never lowers ``f``, and monotonicity never
  raises it, so ``f(x) = f(m, ..., m)`` for every ``x``: ``f`` is constant. The max is lowered when ``A`` is the
  worst space (and falls to the second worst); the median when ``A`` crosses it. An aggregate that resists the
  attack must therefore know which spaces were optimised.
* ``fdr_unseen`` does not contain FDr_A (nor the spaces gradient descent optimised in training), so the attack's
  direct effect cannot lower it. It can still move through the other spaces: when the reweighted set is closer
  in an unseen space too. Two choices, both fixed by what a space *is* (not by any attack's outcome), limit that:

  - **Families.** A space computed by the same network as ``A`` (Inception's pool3, logits and sFID layer) or
    by none (``pixels`` and a random network, ``random_conv``: with untrained weights its geometry is a fixed
    function of the pixels') is optimised whenever ``A`` is: logits are a linear map of pool3, so matching
    pool3's statistics moves the logits' with them. Such a space measures ``A`` again, not something ``A``
    missed. (Version 2 of this summary, an arithmetic mean over spaces other than ``A``, fell beyond its
    interval in 2 of 12 attacks, both through ``pixels`` when ``random_conv`` was attacked.)
  - **Geometric mean.** FDr values of different spaces differ by orders of magnitude (pixels 50-70, a
    semantic space 1-2 on the digits generators), so an arithmetic mean follows the largest, and a 17% drop
    there outweighs a 50% rise in a space with FDr 10. The geometric mean weighs every unseen space's relative
    change equally, and it is the only power mean whose ranking of two runs does not change when one space's
    FDr denominator is replaced by a fixed number (``fdr.baselines``: FDr_X scales by a constant, and
    ``prod_X (c_X r_X)^(1/k) = const * prod_X r_X^(1/k)``) -- the argument of Fleming & Wallace (1986) for
    summarising normalised benchmark results.

What it cannot resist, by design: an attack on a space the run *trained* in. The summary is a function of the
samples and of the seen families; reweighting a generator's samples to lower FD in its own training space gives a
distribution that a generator trained further in that space could produce, with the same seen families. A
summary that this attack could never lower could never be lowered by training either, and could not rank training
objectives -- which is what it is for (it records how much matching in the seen spaces carries to the others).
Measured (README, "Resample attack with intervals"): over 35 generators of 7 objectives, attacks on a space the
run did not train in never lowered ``fdr_unseen`` beyond its interval (0 of 105); attacks on the training space
did in 20 of 35, twice with every unseen space falling beyond its own interval (so the max, or any other monotone
summary of them, falls too), four times with the unseen spaces disagreeing (the classifier better, pixels worse).

FDr^k stays the headline (it is comparable across runs that trained in different spaces); ``fdr_unseen`` is
comparable between runs that saw the same families, and is the number to trust when a run may have gamed one.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional

import torch

from matchzoo import keys
from matchzoo.metrics.fdrk import fdr_k
from matchzoo.metrics.intervals import percentile_interval

FDRK, UNSEEN = "fdr_k", "fdr_unseen"  # the names under eval/ (keys.FDRK, keys.FDR_UNSEEN)


def space_family(space) -> str:
    """The family of a space (:attr:`~matchzoo.spaces.base.FeatureSpace.family`): a built space, or a registered
    name (its class's family); a name that is not registered is its own family."""
    from matchzoo.registry import FEATURE_SPACES

    if isinstance(space, str):
        if space not in FEATURE_SPACES:
            return space
        cls = FEATURE_SPACES.get(space)
        return getattr(cls, "family", None) or space
    return getattr(space, "family", None) or space.name


def families_of(spaces: Mapping[str, object]) -> dict[str, str]:
    """``{name: family}`` of built spaces (``{name: space}``), for :func:`unseen_spaces` and :func:`across_spaces`."""
    return {name: space_family(space) for name, space in spaces.items()}


def unseen_spaces(
    spaces: Iterable[str], seen: Iterable[str], families: Optional[Mapping[str, str]] = None
) -> list[str]:
    """The evaluation spaces in no family of a ``seen`` space (trained or attacked), in their order. ``families``:
    ``{name: family}`` of built spaces (default: each name's registered family)."""
    families, seen = dict(families or {}), list(seen)

    def family(name: str) -> str:
        return families.get(name) or space_family(name)

    excluded = {family(name) for name in seen}
    return [space for space in spaces if space not in seen and family(space) not in excluded]


def geometric_mean(values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """``exp(mean(log v))`` along ``dim`` in float64; 0 where any value is 0 (an FDr is never negative)."""
    values = values.to(torch.float64)
    if bool((values < 0).any()):
        raise ValueError("a geometric mean of FDr needs values >= 0")
    return torch.exp(torch.log(values).mean(dim=dim))


def unseen_value(
    fdr: Mapping[str, float], seen: Iterable[str], families: Optional[Mapping[str, str]] = None
) -> Optional[float]:
    """``fdr_unseen`` of ``{space: FDr}``: the geometric mean over :func:`unseen_spaces` (None when every family
    was seen)."""
    unseen = unseen_spaces(fdr, seen, families)
    if not unseen:
        return None
    return float(geometric_mean(torch.tensor([fdr[space] for space in unseen], dtype=torch.float64)))


def across_spaces(
    rows: Mapping[str, Mapping[str, float]],
    seen: Iterable[str] = (),
    families: Optional[Mapping[str, str]] = None,
) -> dict[str, float]:
    """``{'fdr_k', 'fdr_k_low', 'fdr_k_high', 'fdr_unseen', 'fdr_unseen_low', 'fdr_unseen_high'}`` over ``{space:
    row}`` rows of the ``fdr`` metric (intervals where every row carries per-draw FDr values, see
    :class:`~matchzoo.metrics.intervals.SpaceValues`); keys whose inputs are missing are left out. ``families``
    as in :func:`unseen_spaces`."""
    out: dict[str, float] = {}
    total = fdr_k(rows)
    if total is None:
        return out
    out[FDRK] = total
    out.update(_interval(FDRK, rows, list(rows), _mean))
    seen = list(seen)
    value = unseen_value({space: row[keys.FDR] for space, row in rows.items()}, seen, families)
    if value is not None:
        out[UNSEEN] = value
        out.update(_interval(UNSEEN, rows, unseen_spaces(rows, seen, families), geometric_mean))
    return out


def _mean(values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    return values.mean(dim=dim)


def eval_keys(values: Mapping[str, float]) -> dict[str, float]:
    """:func:`across_spaces`'s numbers under their MLflow keys (``eval/fdr_k``, ``eval/fdr_unseen_low``, ...)."""
    return {keys.EVAL_PREFIX + name: value for name, value in values.items()}


def _interval(name: str, rows: Mapping[str, Mapping[str, float]], spaces: list[str], combine) -> dict[str, float]:
    draws = [getattr(rows[space], "draws", {}).get(keys.FDR) for space in spaces]
    level = _level(rows[space] for space in spaces)
    if any(d is None for d in draws) or level is None or len({d.shape for d in draws}) != 1:
        return {}
    low, high = percentile_interval(combine(torch.stack(draws), dim=0), level)
    return {f"{name}_low": low, f"{name}_high": high}


def _level(rows: Iterable[Mapping[str, float]]) -> Optional[float]:
    levels = {getattr(row, "level", None) for row in rows}
    return levels.pop() if len(levels) == 1 else None
