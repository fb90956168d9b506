"""Numbers across spaces (matchzoo.metrics.summary): FDr^k's interval from per-draw FDr, and ``fdr_unseen``, the
geometric mean over the spaces in no family a run was optimised in, so lowering any one of those cannot lower it --
while any monotone aggregate of all spaces (max, median, mean) can be lowered by lowering one space."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from matchzoo import keys
from matchzoo.metrics.intervals import SpaceValues, percentile_interval
from matchzoo.metrics.summary import across_spaces, eval_keys, families_of, geometric_mean, space_family, unseen_spaces
from matchzoo.registry import FEATURE_SPACES

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
    assert out["fdr_unseen"] == pytest.approx(6.0 ** (1 / 3), rel=1e-12)  # nothing seen: the geometric mean of all
    assert eval_keys(out)[keys.FDRK] == out["fdr_k"] and keys.FDR_UNSEEN_HIGH in eval_keys(out)


def test_fdr_unseen_is_the_geometric_mean_over_spaces_not_trained_or_attacked():
    table = rows({"ssl": 0.7, "classifier": 2.5, "b": 1.9, "c": 8.0})  # unregistered names: their own families
    out = across_spaces(table, seen=["ssl", "c"])
    assert unseen_spaces(table, ["ssl", "c"]) == ["classifier", "b"]
    assert out["fdr_unseen"] == pytest.approx(math.sqrt(2.5 * 1.9), rel=1e-12)  # not (2.5 + 1.9) / 2
    per_draw = torch.exp(torch.stack([table[s].draws[keys.FDR].log() for s in ("classifier", "b")]).mean(dim=0))
    assert (out["fdr_unseen_low"], out["fdr_unseen_high"]) == pytest.approx(percentile_interval(per_draw, 0.95))
    assert out["fdr_unseen_low"] < out["fdr_unseen"] < out["fdr_unseen_high"]
    assert "fdr_unseen" not in across_spaces(table, seen=list(table))  # every space seen: undefined


def test_a_seen_space_takes_its_family_with_it():
    """random_conv has no learned weights (family "pixels"); Inception's three layers are one network."""
    table = rows({"pixels": 60.0, "random_conv": 25.0, "digits_classifier": 10.0, "digits_ssl": 1.5})
    assert unseen_spaces(table, ["random_conv"]) == ["digits_classifier", "digits_ssl"]
    assert unseen_spaces(table, ["pixels", "digits_ssl"]) == ["digits_classifier"]
    assert unseen_spaces(table, ["digits_classifier"]) == ["pixels", "random_conv", "digits_ssl"]
    out = across_spaces(table, seen=["random_conv", "digits_ssl"])
    assert out["fdr_unseen"] == pytest.approx(10.0, rel=1e-12)
    inception = ["inception", "inception_logits", "inception_sfid"]
    assert unseen_spaces([*inception, "dinov2_vitb14"], ["inception_logits"]) == ["dinov2_vitb14"]
    assert unseen_spaces(["dinov2_vits14", "dinov2_vitl14", "clip_vitl14", "siglip"], ["dinov2_vitb14"]) == [
        "clip_vitl14",
        "siglip",
    ]
    # a built space's own family wins over its registered one (a digits encoder without weights is a random net)
    assert unseen_spaces(table, ["pixels"], families={"digits_ssl": "pixels"}) == ["digits_classifier"]


def test_every_registered_space_has_a_family_and_built_spaces_agree_with_their_names():
    for name, cls in FEATURE_SPACES.items():
        family = space_family(name)
        assert isinstance(family, str) and family, name
        assert family == (getattr(cls, "family", None) or name)
    offline = {name: FEATURE_SPACES.make(name) for name in ("pixels", "random_conv", "digits_classifier")}
    assert families_of(offline) == {
        "pixels": "pixels",
        "random_conv": "pixels",
        "digits_classifier": "digits_classifier",
    }
    assert space_family(FEATURE_SPACES.make("digits_ssl", pretrained=False)) == "pixels"  # random init
    assert space_family("not_registered") == "not_registered"


def test_fdr_unseen_ranks_runs_the_same_whatever_fixed_denominators_scale_the_spaces():
    """fdr.baselines replaces a space's denominator by a fixed number: FDr_X scales by a constant per space. The
    geometric mean's ratio between two runs is unchanged; the arithmetic mean's is not (it can even flip)."""
    run_a, run_b = {"u": 2.0, "v": 30.0}, {"u": 4.0, "v": 20.0}
    scale = {"u": 10.0, "v": 0.1}

    def summary(run, scaled=False):
        return across_spaces(rows({s: v * (scale[s] if scaled else 1.0) for s, v in run.items()}))["fdr_unseen"]

    assert summary(run_a) / summary(run_b) == pytest.approx(summary(run_a, True) / summary(run_b, True), rel=1e-12)
    arithmetic = [sum(run.values()) for run in (run_a, run_b)]
    arithmetic_scaled = [sum(v * scale[s] for s, v in run.items()) for run in (run_a, run_b)]
    assert (arithmetic[0] < arithmetic[1]) != (arithmetic_scaled[0] < arithmetic_scaled[1])  # the mean flips


def test_geometric_mean_against_numpy_and_its_edge_cases():
    import numpy as np
    from scipy.stats import gmean

    values = torch.tensor([[0.5, 70.0, 3.0], [1.0, 2.0, 1e-6]], dtype=torch.float64)
    assert torch.allclose(geometric_mean(values, dim=1), torch.from_numpy(gmean(values.numpy(), axis=1)), rtol=1e-13)
    assert float(geometric_mean(torch.tensor([0.0, 5.0]))) == 0.0  # an exact zero FDr
    with pytest.raises(ValueError, match=">= 0"):
        geometric_mean(torch.tensor([-1.0, 2.0]))
    assert np.isclose(float(geometric_mean(torch.tensor([4.0]))), 4.0)


def test_lowering_a_seen_space_never_lowers_fdr_unseen_but_lowers_every_monotone_aggregate():
    """The docstring's argument, on numbers: the attack drives the attacked space's FDr towards 0."""
    before = {"a": 1.5, "ssl": 0.9, "classifier": 2.5, "random": 1.9}
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
    assert out == {"fdr_k": 1.5, "fdr_unseen": pytest.approx(2.0, rel=1e-15)}
    assert across_spaces({}) == {}
