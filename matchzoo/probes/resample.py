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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from tqdm.auto import tqdm

from matchzoo import validate
from matchzoo.errors import MatchzooError
from matchzoo.metrics.fdrk import heldout_frechet_distance
from matchzoo.metrics.frechet import FrechetReference


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

    @property
    def fdr_k_before(self) -> float:
        return sum(r.fdr_before for r in self.rows) / len(self.rows)

    @property
    def fdr_k_after(self) -> float:
        return sum(r.fdr_after for r in self.rows) / len(self.rows)


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
        fd_before, fd_after = (
            mean_fd(reference, space.candidates, before, bar),
            mean_fd(reference, space.candidates, after, bar),
        )
        baseline = heldout_frechet_distance(space.heldout, reference, sample_size, seed)
        bar.update()
        rows.append(SpaceRow(name, fd_before, fd_after, baseline, attacked=name == attack_space))
    bar.close()
    return rows


def mean_fd(reference: FrechetReference, candidates: torch.Tensor, sets: torch.Tensor, bar: tqdm) -> float:
    """Mean FD to ``reference`` of the candidate sets ``(draws, n)`` (indices into ``candidates`` ``(N, D)``)."""
    total = 0.0
    for chosen in sets:
        total += reference.distance_to_features(candidates[chosen])
        bar.update()
    return total / len(sets)


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
    rows = fd_rows(features, before, after, attack_space, seed, progress)
    return ProbeResult(
        rows, sample_size, draws, first, last, probabilities, float(1.0 / probabilities.square().sum()), label
    )


def format_result(result: ProbeResult, title: str) -> str:
    """A plain-text table: FD and FDr per space before/after, the attacked space marked, FDr^k last."""
    lines = [
        title,
        f"attacked objective (weighted): {result.attack_value_before:.5g} -> {result.attack_value_after:.5g}; "
        f"{result.draws} draws of {result.sample_size}; effective candidates {result.effective_size:.0f} of "
        f"{result.probabilities.shape[0]}",
        f"{'space':<30} {'FD before':>11} {'FD after':>11} {'change':>8} {'FDr before':>11} {'FDr after':>10}",
    ]
    for row in result.rows:
        name = f"{row.space}{' (attacked)' if row.attacked else ''}"
        lines.append(
            f"{name:<30} {row.fd_before:>11.4g} {row.fd_after:>11.4g} {100 * row.change:>+7.1f}% "
            f"{row.fdr_before:>11.3f} {row.fdr_after:>10.3f}"
        )
    change = result.fdr_k_after / result.fdr_k_before - 1.0
    lines.append(
        f"{'FDr^k':<30} {'':>11} {'':>11} {100 * change:>+7.1f}% "
        f"{result.fdr_k_before:>11.3f} {result.fdr_k_after:>10.3f}"
    )
    return "\n".join(lines)


def result_record(result: ProbeResult) -> dict:
    """JSON-ready summary of a probe result."""
    return {
        "label": result.label,
        "sample_size": result.sample_size,
        "draws": result.draws,
        "attack_value_before": result.attack_value_before,
        "attack_value_after": result.attack_value_after,
        "effective_size": result.effective_size,
        "fdr_k_before": result.fdr_k_before,
        "fdr_k_after": result.fdr_k_after,
        "spaces": {
            r.space: {
                "attacked": r.attacked,
                "fd_before": r.fd_before,
                "fd_after": r.fd_after,
                "fd_heldout": r.fd_heldout,
                "fdr_before": r.fdr_before,
                "fdr_after": r.fdr_after,
            }
            for r in result.rows
        },
        **result.extra,
    }
