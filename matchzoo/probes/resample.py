r"""The ``resample`` probe: lower a distance in one space by reweighting candidates, then look everywhere else.

After Kynkäänniemi et al., *The Role of ImageNet Classes in Fréchet Inception Distance* (Algorithm 1):
given ``N`` candidate samples with features :math:`x_i` in the attacked space, learn logits :math:`z`
(Adam, from :math:`z = 0`) so that the weighted objective
:math:`L(x, w)` with frequency weights :math:`w = n\,\mathrm{softmax}(z)` (``n`` = size of the sets drawn
later; see :mod:`matchzoo.probes.weighted`) is minimal. Then draw ``draws`` sets of ``n`` candidates with
replacement, uniformly (*before*) and with probabilities :math:`\mathrm{softmax}(z)` (*after*), and report
in **every** evaluation space the mean FD to the reference (the training split), the held-out baseline
FD at the same ``n`` and :math:`\mathrm{FDr}_X = \mathrm{FD}_X / \mathrm{FD}_X(\text{held-out}_n)`, plus
FDr^k, the mean over spaces. No sample changes: a drop in the attacked space that the other spaces do not
share is a metric being gamed, not a better generator.

Intervals: every drawn set is an independent draw of ``n`` samples from the candidate pool (uniform) or from the
attacked distribution (weighted), so the ``level`` interval of FD, FDr, FDr^k and ``fdr_unseen`` is the
percentile interval over the ``draws`` sets (no bootstrap needed; ``draws >= 40`` for a 95% interval to mean
much). The held-out denominator is the one FD at ``n`` for both conditions: its noise is common to before and
after, so it is left out of the before/after comparison. ``fdr_unseen`` (:mod:`matchzoo.metrics.summary`) is
the geometric mean FDr over the spaces in no family of the attacked space or of a ``seen`` space (e.g. the
generator's training spaces).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch
from tqdm.auto import tqdm

from matchzoo import validate
from matchzoo.errors import MatchzooError
from matchzoo.metrics.fdrk import heldout_frechet_distance
from matchzoo.metrics.frechet import FrechetReference
from matchzoo.metrics.intervals import percentile_interval
from matchzoo.metrics.summary import geometric_mean, unseen_spaces, unseen_value

LEVEL = 0.95  # the probe's intervals over its draws


@dataclass
class SpaceFeatures:
    """Features of one evaluation space: candidates ``(N, D)``, reference (train) ``(M, D)``, held-out ``(H, D)``."""

    candidates: torch.Tensor
    reference: torch.Tensor
    heldout: torch.Tensor


@dataclass
class SpaceRow:
    space: str
    fd_before: float
    fd_after: float
    fd_heldout: float
    attacked: bool = False
    before_draws: Optional[torch.Tensor] = None  # (draws,) FD of every drawn set, uniform
    after_draws: Optional[torch.Tensor] = None  # ... weighted
    seen: bool = False  # a space the candidates' generator was trained in (left out of fdr_unseen)

    def fdr_draws(self, which: str) -> Optional[torch.Tensor]:
        draws = self.before_draws if which == "before" else self.after_draws
        return None if draws is None else draws / self.fd_heldout

    def fdr_interval(self, which: str, level: float = LEVEL) -> Optional[tuple[float, float]]:
        return _interval(self.fdr_draws(which), level)

    @property
    def fdr_before(self) -> float:
        return self.fd_before / self.fd_heldout

    @property
    def fdr_after(self) -> float:
        return self.fd_after / self.fd_heldout

    @property
    def change(self) -> float:
        """Relative change of FD, after vs before (-0.3 = 30% lower)."""
        return self.fd_after / self.fd_before - 1.0


@dataclass
class ProbeResult:
    rows: list[SpaceRow]
    sample_size: int
    draws: int
    attack_value_before: float  # the weighted objective at uniform weights
    attack_value_after: float  # ... at the optimised weights
    probabilities: torch.Tensor  # (N,) optimised sampling probabilities
    effective_size: float  # 1 / Σ p_i²: how many candidates the weights really use
    label: str = ""
    extra: dict = field(default_factory=dict)
    families: dict = field(default_factory=dict)  # {space: family} of the built spaces (default: registered)

    @property
    def fdr_k_before(self) -> float:
        return sum(r.fdr_before for r in self.rows) / len(self.rows)

    @property
    def fdr_k_after(self) -> float:
        return sum(r.fdr_after for r in self.rows) / len(self.rows)

    @property
    def unseen(self) -> list[SpaceRow]:
        """The spaces in no family of an attacked or trained space: those ``fdr_unseen`` summarises."""
        seen = [r.space for r in self.rows if r.attacked or r.seen]
        names = unseen_spaces([r.space for r in self.rows], seen, self.families)
        return [r for r in self.rows if r.space in names]

    def fdr_unseen(self, which: str) -> Optional[float]:
        """The geometric mean FDr over :attr:`unseen` (:mod:`matchzoo.metrics.summary`)."""
        fdr = {r.space: r.fdr_before if which == "before" else r.fdr_after for r in self.rows}
        return unseen_value(fdr, [r.space for r in self.rows if r.attacked or r.seen], self.families)

    def interval(self, name: str, which: str, level: float = LEVEL) -> Optional[tuple[float, float]]:
        """The interval of ``fdr_k`` or ``fdr_unseen`` (``which`` = before/after) over the drawn sets."""
        rows = self.rows if name == "fdr_k" else self.unseen
        draws = [r.fdr_draws(which) for r in rows]
        if not rows or any(d is None for d in draws):
            return None
        per_draw = torch.stack(draws)
        return _interval(per_draw.mean(dim=0) if name == "fdr_k" else geometric_mean(per_draw), level)


def _interval(draws: Optional[torch.Tensor], level: float) -> Optional[tuple[float, float]]:
    return None if draws is None or draws.shape[0] < 2 else percentile_interval(draws, level)


def optimise_logits(
    loss: Callable[[torch.Tensor], torch.Tensor],
    count: int,
    steps: int,
    lr: float,
    before_step: Optional[Callable[[torch.Tensor], None]] = None,
    progress: bool = False,
) -> tuple[torch.Tensor, float, float]:
    """Adam on logits ``(count,)`` from 0 to minimise ``loss(softmax(logits))``; returns (probabilities, first, last).

    ``before_step(probabilities)`` (detached) runs before every evaluation: adversarial weighted forms train
    their critic there against the current weighted measure.
    """
    logits = torch.zeros(count, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=lr)
    first = last = float("nan")
    bar = tqdm(range(steps + 1), desc="weights", unit="step", disable=not progress)
    for step in bar:
        if before_step is not None:
            before_step(torch.softmax(logits.detach(), dim=0))
        value = loss(torch.softmax(logits, dim=0))
        if not torch.isfinite(value):
            raise MatchzooError(f"the weighted objective became {float(value)} at step {step}; lower --lr")
        if step == 0:
            first = float(value.detach())
        last = float(value.detach())
        bar.set_postfix(objective=f"{last:.5g}", refresh=False)
        if step == steps:
            break
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    bar.close()
    return torch.softmax(logits.detach(), dim=0), first, last


def draw_sets(probabilities: torch.Tensor, sample_size: int, draws: int, seed: int) -> torch.Tensor:
    """``(draws, sample_size)`` candidate indices drawn with replacement from ``probabilities`` ``(N,)``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.stack(
        [
            torch.multinomial(probabilities.float(), sample_size, replacement=True, generator=generator)
            for _ in range(draws)
        ]
    )


def fd_rows(
    features: dict[str, SpaceFeatures],
    before: torch.Tensor,
    after: torch.Tensor,
    attack_space: Optional[str],
    seed: int,
    progress: bool = False,
    seen: Sequence[str] = (),
) -> list[SpaceRow]:
    """Mean FD over the drawn sets (uniform ``before``, weighted ``after``) and the held-out baseline, per space."""
    rows = []
    sample_size = before.shape[1]
    bar = tqdm(
        total=len(features) * (before.shape[0] + after.shape[0] + 1), desc="draws", unit="FD", disable=not progress
    )
    for name, space in features.items():
        reference = FrechetReference.from_features(space.reference)
        bar.set_postfix_str(name, refresh=False)
        before_draws = set_fds(reference, space.candidates, before, bar)
        after_draws = set_fds(reference, space.candidates, after, bar)
        baseline = heldout_frechet_distance(space.heldout, reference, sample_size, seed)
        bar.update()
        rows.append(
            SpaceRow(
                name,
                float(before_draws.mean()),
                float(after_draws.mean()),
                baseline,
                attacked=name == attack_space,
                before_draws=before_draws,
                after_draws=after_draws,
                seen=name in seen,
            )
        )
    bar.close()
    return rows


def set_fds(reference: FrechetReference, candidates: torch.Tensor, sets: torch.Tensor, bar: tqdm) -> torch.Tensor:
    """FD to ``reference`` of each candidate set ``(draws, n)`` (indices into ``candidates`` ``(N, D)``)."""
    values = []
    for chosen in sets:
        values.append(reference.distance_to_features(candidates[chosen]))
        bar.update()
    return torch.tensor(values, dtype=torch.float64)


def mean_fd(reference: FrechetReference, candidates: torch.Tensor, sets: torch.Tensor, bar: tqdm) -> float:
    """Mean FD to ``reference`` of the candidate sets ``(draws, n)`` (indices into ``candidates`` ``(N, D)``)."""
    return float(set_fds(reference, candidates, sets, bar).mean())


def check_features(features: dict[str, SpaceFeatures], sample_size: int) -> None:
    counts = {s.candidates.shape[0] for s in features.values()}
    if len(counts) != 1:
        raise MatchzooError(f"every space needs features of the same candidates; got counts {sorted(counts)}")
    smallest_heldout = min(s.heldout.shape[0] for s in features.values())
    if not 2 <= sample_size <= smallest_heldout:
        raise MatchzooError(
            f"--sample_size {sample_size} must be in [2, {smallest_heldout}] (the held-out split size, for FDr)"
        )


def resample_probe(
    features: dict[str, SpaceFeatures],
    attack_space: Optional[str],
    weighted_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    sample_size: Optional[int] = None,
    steps: int = 300,
    lr: float = 0.05,
    draws: int = 5,
    seed: int = 0,
    label: str = "",
    attack_candidates: Optional[torch.Tensor] = None,
    progress: bool = False,
    seen: Sequence[str] = (),
    families: Optional[dict] = None,
) -> ProbeResult:
    """Optimise sampling weights against ``weighted_loss(candidates, weights)``; FD in every space before/after.

    The weights see ``attack_candidates`` ``(N, ...)`` when given (e.g. top-N class indicators), else the
    features of ``attack_space``. A ``weighted_loss`` with a ``critic_step(candidates, probabilities)``
    method (an adversarial objective) gets it called before every weight update.
    """
    # a negative step count used to skip the optimisation and report "nan -> nan" with exit status 0
    steps, draws = validate.non_negative_int("steps", steps), validate.positive_int("draws", draws)
    lr = validate.positive_real("lr", lr)
    sample_size = sample_size or min(s.heldout.shape[0] for s in features.values())
    check_features(features, sample_size)
    if attack_candidates is None:
        if attack_space not in features:
            raise MatchzooError(
                f"attacked space {attack_space!r} is not among the evaluation spaces ({', '.join(features)}); add it"
            )
        attack_candidates = features[attack_space].candidates
    candidates = attack_candidates.detach()
    count = candidates.shape[0]
    critic_step = getattr(weighted_loss, "critic_step", None)  # adversarial forms (see matchzoo.objectives.weighting)
    before_step = (lambda p: critic_step(candidates, p)) if critic_step is not None else None
    probabilities, first, last = optimise_logits(
        lambda p: weighted_loss(candidates, sample_size * p), count, steps, lr, before_step, progress
    )
    uniform = torch.full((count,), 1.0 / count, dtype=torch.float64)
    before = draw_sets(uniform, sample_size, draws, seed)
    after = draw_sets(probabilities, sample_size, draws, seed)  # same stream: unchanged weights give the same sets
    rows = fd_rows(features, before, after, attack_space, seed, progress, seen)
    effective = float(1.0 / probabilities.square().sum())
    return ProbeResult(
        rows, sample_size, draws, first, last, probabilities, effective, label, families=dict(families or {})
    )


def _span(interval: Optional[tuple[float, float]]) -> str:
    return "" if interval is None else f"[{interval[0]:.3g}, {interval[1]:.3g}]"


def _flag(row: SpaceRow, which: str) -> str:
    interval = row.fdr_interval(which)
    value = row.fdr_before if which == "before" else row.fdr_after
    return "*" if interval is not None and value < 1.0 and interval[1] < 1.0 else ""


def format_result(result: ProbeResult, title: str) -> str:
    """A plain-text table: FD and FDr (with intervals over the draws) per space before/after, the attacked space
    marked, FDr^k and fdr_unseen last; ``*`` on an FDr whose interval lies wholly below 1."""
    lines = [
        title,
        f"attacked objective (weighted): {result.attack_value_before:.5g} -> {result.attack_value_after:.5g}; "
        f"{result.draws} draws of {result.sample_size}; effective candidates {result.effective_size:.0f} of "
        f"{result.probabilities.shape[0]}; [low, high]: {100 * LEVEL:g}% interval over the draws",
        f"{'space':<30} {'FD before':>11} {'FD after':>11} {'change':>8} {'FDr before':>26} {'FDr after':>26}",
    ]
    unseen = {r.space for r in result.unseen}
    for row in result.rows:
        mark = " (attacked)" if row.attacked else " (trained)" if row.seen else ""
        mark = mark or ("" if row.space in unseen else " (family)")
        before = f"{row.fdr_before:.3f}{_flag(row, 'before')} {_span(row.fdr_interval('before'))}"
        after = f"{row.fdr_after:.3f}{_flag(row, 'after')} {_span(row.fdr_interval('after'))}"
        lines.append(
            f"{row.space + mark:<30} {row.fd_before:>11.4g} {row.fd_after:>11.4g} {100 * row.change:>+7.1f}% "
            f"{before:>26} {after:>26}"
        )
    summaries = [("FDr^k", result.fdr_k_before, result.fdr_k_after, "fdr_k")]
    if result.unseen:
        summaries.append(("fdr_unseen", result.fdr_unseen("before"), result.fdr_unseen("after"), "fdr_unseen"))
    for label, before_value, after_value, name in summaries:
        change = after_value / before_value - 1.0
        before = f"{before_value:.3f} {_span(result.interval(name, 'before'))}"
        after = f"{after_value:.3f} {_span(result.interval(name, 'after'))}"
        lines.append(f"{label:<30} {'':>11} {'':>11} {100 * change:>+7.1f}% {before:>26} {after:>26}")
    if result.unseen:
        lines.append(
            f"fdr_unseen: geometric mean FDr over {', '.join(r.space for r in result.unseen)} (in no family of an "
            "attacked or trained space; '(family)': shares one)"
        )
    return "\n".join(lines)


def _pair(interval: Optional[tuple[float, float]]) -> Optional[list[float]]:
    return None if interval is None else [interval[0], interval[1]]


def _values(draws: Optional[torch.Tensor]) -> Optional[list[float]]:
    return None if draws is None else [float(v) for v in draws]


def result_record(result: ProbeResult) -> dict:
    """JSON-ready summary of a probe result (intervals as ``[low, high]`` over the draws, ``None`` for one draw)."""
    return {
        "label": result.label,
        "sample_size": result.sample_size,
        "draws": result.draws,
        "interval": {"method": "percentile over the drawn sets", "draws": result.draws, "level": LEVEL},
        "attack_value_before": result.attack_value_before,
        "attack_value_after": result.attack_value_after,
        "effective_size": result.effective_size,
        "fdr_k_before": result.fdr_k_before,
        "fdr_k_after": result.fdr_k_after,
        "fdr_k_before_interval": _pair(result.interval("fdr_k", "before")),
        "fdr_k_after_interval": _pair(result.interval("fdr_k", "after")),
        "fdr_unseen_spaces": [r.space for r in result.unseen],
        "fdr_unseen_before": result.fdr_unseen("before"),
        "fdr_unseen_after": result.fdr_unseen("after"),
        "fdr_unseen_before_interval": _pair(result.interval("fdr_unseen", "before")),
        "fdr_unseen_after_interval": _pair(result.interval("fdr_unseen", "after")),
        "spaces": {
            r.space: {
                "attacked": r.attacked,
                "trained": r.seen,
                "fd_before": r.fd_before,
                "fd_after": r.fd_after,
                "fd_heldout": r.fd_heldout,
                "fdr_before": r.fdr_before,
                "fdr_after": r.fdr_after,
                "fdr_before_interval": _pair(r.fdr_interval("before")),
                "fdr_after_interval": _pair(r.fdr_interval("after")),
                "fdr_below_one_before": bool(_flag(r, "before")),
                "fdr_below_one_after": bool(_flag(r, "after")),
                # every drawn set's FDr, so any other summary (and its interval) can be recomputed from the file
                "fdr_before_draws": _values(r.fdr_draws("before")),
                "fdr_after_draws": _values(r.fdr_draws("after")),
            }
            for r in result.rows
        },
        **result.extra,
    }
