"""Numbers across spaces (matchzoo.metrics.summary): FDr^k's interval from per-draw FDr, and ``fdr_unseen``, which
leaves out the spaces a run was optimised in, so lowering any one of those cannot lower it -- while any monotone
aggregate of all spaces (max, median, mean) can be lowered by lowering one space."""

from __future__ import annotations

import statistics

import pytest
import torch

from matchzoo import keys
from matchzoo.metrics.intervals import SpaceValues, percentile_interval
from matchzoo.metrics.summary import across_spaces, eval_keys, unseen_spaces

DRAWS = 200


def rows(fdr: dict[str, float], seed: int = 0) -> dict[str, SpaceValues]:
    """Rows as the fdr + intervals metrics return them, per-draw FDr around each value."""
    rng = torch.Generator().manual_seed(seed)
    out = {}
    for space, value in fdr.items():
        draws = value * torch.exp(0.1 * torch.randn(DRAWS, generator=rng, dtype=torch.float64))
        values = {keys.FDR: value, keys.FD_MATCHED: value, keys.FD_HELDOUT: 1.0}
        out[space] = SpaceValues(values, {keys.FDR: draws}, 0.95)
    return out


def test_fdr_k_and_its_interval_are_the_mean_over_spaces_per_draw():
    table = rows({"a": 1.0, "b": 3.0, "c": 2.0})
    out = across_spaces(table)
    assert out["fdr_k"] == pytest.approx(2.0)
    per_draw = torch.stack([row.draws[keys.FDR] for row in table.values()]).mean(dim=0)
    assert (out["fdr_k_low"], out["fdr_k_high"]) == pytest.approx(percentile_interval(per_draw, 0.95))
    assert out["fdr_unseen"] == out["fdr_k"] and out["fdr_unseen_low"] == out["fdr_k_low"]  # nothing seen
    assert eval_keys(out)[keys.FDRK] == out["fdr_k"] and keys.FDR_UNSEEN_HIGH in eval_keys(out)


def test_fdr_unseen_leaves_out_trained_and_attacked_spaces():
    table = rows({"pixels": 1.5, "ssl": 0.7, "classifier": 2.5, "random": 1.9})
    out = across_spaces(table, seen=["ssl", "pixels"])
    assert unseen_spaces(table, ["ssl", "pixels"]) == ["classifier", "random"]
    assert out["fdr_unseen"] == pytest.approx((2.5 + 1.9) / 2)
    assert out["fdr_unseen_low"] < out["fdr_unseen"] < out["fdr_unseen_high"]
    assert "fdr_unseen" not in across_spaces(table, seen=list(table))  # every space seen: undefined


def test_lowering_a_seen_space_never_lowers_fdr_unseen_but_lowers_every_monotone_aggregate():
    """The docstring's argument, on numbers: the attack drives the attacked space's FDr towards 0."""
    before = {"pixels": 1.5, "ssl": 0.9, "classifier": 2.5, "random": 1.9}
    for attacked in before:
        after = dict(before, **{attacked: 0.01})
        summary_before = across_spaces(rows(before), seen=[attacked])["fdr_unseen"]
        summary_after = across_spaces(rows(after), seen=[attacked])["fdr_unseen"]
        assert summary_after == summary_before
        assert sum(after.values()) < sum(before.values())  # FDr^k falls whichever space is attacked
    worst = max(before, key=before.get)
    assert max(dict(before, **{worst: 0.01}).values()) < max(before.values())  # the max falls with its argmax
    median_space = sorted(before, key=before.get)[2]
    lowered = dict(before, **{median_space: 0.01})
    assert statistics.median(lowered.values()) < statistics.median(before.values())


def test_rows_without_draws_give_values_without_intervals():
    plain = {space: dict(row) for space, row in rows({"a": 1.0, "b": 2.0}).items()}
    out = across_spaces(plain, seen=["a"])
    assert out == {"fdr_k": 1.5, "fdr_unseen": 2.0}
    assert across_spaces({}) == {}
