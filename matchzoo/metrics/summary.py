r"""Numbers across evaluation spaces: FDr^k with its interval, and ``fdr_unseen``, the summary a resample attack
on one space cannot lower directly.

**FDr^k** is the mean of FDr_X over the ``k`` evaluation spaces. Its interval comes from the per-draw FDr of
every space (:mod:`matchzoo.metrics.intervals`: every space resamples the same images), averaged per draw.

**fdr_unseen** (this project's definition): the mean FDr over the evaluation spaces the samples were *not*
optimised in -- neither a training term's space (tag ``train_space``) nor a space a probe attacked -- with
its interval from the same per-draw values. It is undefined (absent) when every space was seen.

Why this and not a worst case or a median. The resample attack reweights a fixed candidate pool to lower FD in
one space ``A``; it can lower FDr_A as far as it likes (to 0.70 from about 1.7 on the quickstart generator).

* No aggregate of the FDr values alone can be immune to that. Let ``f`` be non-decreasing in every FDr (a
  better space never makes the summary worse) and suppose lowering any one coordinate never lowers ``f``.
  Lowering the coordinates one at a time to their minimum ``m`` then never lowers ``f``, and monotonicity never
  raises it, so ``f(x) = f(m, ..., m)`` for every ``x``: ``f`` is constant. The max is lowered when ``A`` is the
  worst space (and falls to the second worst); the median when ``A`` crosses it. An aggregate that resists the
  attack must therefore know which spaces were optimised.
* ``fdr_unseen`` does not contain FDr_A (nor the spaces gradient descent optimised in training), so the attack's
  direct effect cannot lower it. It can still move through the other spaces' FDr: when the reweighted set is
  closer in an unseen space too. That transfer is either a real improvement of the sample set (rejection
  sampling is legitimate) or correlated features; ``probe resample`` measures it on every generator, and the
  README table reports whether it ever fell beyond its interval.

FDr^k stays the headline (it is comparable across runs that trained in different spaces); ``fdr_unseen`` is
comparable between runs that saw the same spaces, and is the number to trust when a run may have gamed one.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional

import torch

from matchzoo import keys
from matchzoo.metrics.fdrk import fdr_k
from matchzoo.metrics.intervals import percentile_interval

FDRK, UNSEEN = "fdr_k", "fdr_unseen"  # the names under eval/ (keys.FDRK, keys.FDR_UNSEEN)


def unseen_spaces(spaces: Iterable[str], seen: Iterable[str]) -> list[str]:
    """The evaluation spaces not in ``seen`` (trained or attacked), in their order."""
    excluded = set(seen)
    return [space for space in spaces if space not in excluded]


def across_spaces(rows: Mapping[str, Mapping[str, float]], seen: Iterable[str] = ()) -> dict[str, float]:
    """``{'fdr_k', 'fdr_k_low', 'fdr_k_high', 'fdr_unseen', 'fdr_unseen_low', 'fdr_unseen_high'}`` over ``{space:
    row}`` rows of the ``fdr`` metric (intervals where every row carries per-draw FDr values, see
    :class:`~matchzoo.metrics.intervals.SpaceValues`); keys whose inputs are missing are left out."""
    out: dict[str, float] = {}
    total = fdr_k(rows)
    if total is None:
        return out
    out[FDRK] = total
    out.update(_interval(FDRK, rows, list(rows)))
    unseen = unseen_spaces(rows, seen)
    if unseen:
        out[UNSEEN] = sum(rows[space][keys.FDR] for space in unseen) / len(unseen)
        out.update(_interval(UNSEEN, rows, unseen))
    return out


def eval_keys(values: Mapping[str, float]) -> dict[str, float]:
    """:func:`across_spaces`'s numbers under their MLflow keys (``eval/fdr_k``, ``eval/fdr_unseen_low``, ...)."""
    return {keys.EVAL_PREFIX + name: value for name, value in values.items()}


def _interval(name: str, rows: Mapping[str, Mapping[str, float]], spaces: list[str]) -> dict[str, float]:
    draws = [getattr(rows[space], "draws", {}).get(keys.FDR) for space in spaces]
    level = _level(rows[space] for space in spaces)
    if any(d is None for d in draws) or level is None or len({d.shape for d in draws}) != 1:
        return {}
    low, high = percentile_interval(torch.stack(draws).mean(dim=0), level)
    return {f"{name}_low": low, f"{name}_high": high}


def _level(rows: Iterable[Mapping[str, float]]) -> Optional[float]:
    levels = {getattr(row, "level", None) for row in rows}
    return levels.pop() if len(levels) == 1 else None
