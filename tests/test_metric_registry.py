"""The metric registry drives both evaluation paths: every registered metric is finite on Gaussian features,
matches its closed form where one exists, and gives the same numbers in training (``eval/<key>/<space>``) and
in ``matchzoo evaluate`` (JSON, CSV and table). A metric written as one new module appears in both."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from test_metrics import expected_poly_kernel

import matchzoo
from matchzoo import keys
from matchzoo.__main__ import main
from matchzoo.errors import UnknownNameError
from matchzoo.metrics import METRICS, SpaceReference, SuiteSettings, compute_row, evaluate_space, metric_names
from matchzoo.registry import ALL_REGISTRIES
from matchzoo.train.callbacks import Evaluator

DIM, SHIFT = 4, 0.5
NAMES = METRICS.names()


@pytest.fixture(scope="module")
def gaussians():
    """Generated ~ N(SHIFT, I); reference (train split) and held-out ~ N(0, I), in float64."""
    rng = torch.Generator().manual_seed(0)
    draw = lambda n, mean: torch.randn(n, DIM, generator=rng, dtype=torch.float64) + mean  # noqa: E731
    return draw(2000, SHIFT), draw(3000, 0.0), draw(2000, 0.0)


def oracles() -> dict[str, tuple[float, float]]:
    """key -> (population value, relative tolerance) for the Gaussians above."""
    gap = DIM * SHIFT**2  # FD between N(SHIFT, I) and N(0, I) is the squared mean distance
    zero, shifted, eye = np.zeros(DIM), np.full(DIM, SHIFT), np.eye(DIM)
    kid = (
        expected_poly_kernel(shifted, eye, shifted, eye)
        + expected_poly_kernel(zero, eye, zero, eye)
        - 2 * expected_poly_kernel(shifted, eye, zero, eye)
    )
    return {
        keys.FD: (gap, 0.1),
        keys.FD_TO_HELDOUT: (gap, 0.1),
        keys.FD_MATCHED: (gap, 0.1),
        "kid": (kid, 0.15),
        keys.FDR_N: (2000.0, 0.0),
    }


def real_side(gaussians) -> SpaceReference:
    _, reference, heldout = gaussians
    return SpaceReference(reference, heldout, cache_key=("gaussians", DIM))


@pytest.mark.parametrize("name", NAMES)
def test_metric_is_finite_declares_its_keys_and_matches_its_oracle(name, gaussians):
    metric = METRICS.get(name).from_suite(SuiteSettings(kid_subsets=20, prdc_samples=1000))
    row = metric(gaussians[0], real_side(gaussians), seed=0)
    assert tuple(row) == metric.keys, "a metric returns exactly the keys it declares, in that order"
    assert all(math.isfinite(value) for value in row.values()), row
    assert set(metric.table_headers()) <= set(metric.keys)
    for key, value in row.items():
        if key in oracles():
            expected, rel = oracles()[key]
            assert value == pytest.approx(expected, rel=rel), key


def test_keys_and_names_are_unique_and_unambiguous_in_gin():
    declared = [key for name in NAMES for key in METRICS.get(name).keys]
    assert len(declared) == len(set(declared)), "two metrics would write the same eval/<key>/<space>"
    other_names = {name for kind, registry in ALL_REGISTRIES.items() for name in registry.names()}
    assert not set(NAMES) & other_names, "a shared name makes @name() ambiguous in gin"
    assert set(metric_names(during_training=True)) >= {"fd_reference", "fd_to_heldout", "fdr"}


def test_training_and_evaluate_report_the_same_numbers_under_the_same_names(gaussians):
    generated, reference, heldout = gaussians
    row = evaluate_space(generated, reference, heldout, SuiteSettings(), cache_key=("gaussians", DIM))
    evaluator = Evaluator(None, every=1, samples=None, seed=0, metrics=NAMES)
    evaluator.references["gauss"] = real_side(gaussians)
    logged = evaluator.score({"gauss": generated})
    for name in NAMES:
        for key in METRICS.get(name).keys:
            assert logged[keys.eval_key(key, "gauss")] == pytest.approx(row[key], rel=1e-12), key
    assert logged[keys.FDRK] == pytest.approx(row[keys.FDR], rel=1e-12)  # one space: FDr^k is its FDr


def test_training_defaults_leave_out_only_the_slow_metrics(gaussians):
    evaluator = Evaluator(None, every=1, samples=None, seed=0)
    evaluator.references["gauss"] = real_side(gaussians)
    logged = evaluator.score({"gauss": gaussians[0]})
    slow = {name for name in NAMES if not METRICS.get(name).during_training}
    expected = {keys.eval_key(key, "gauss") for name in NAMES if name not in slow for key in METRICS.get(name).keys}
    across = {keys.FDRK, keys.FDRK_LOW, keys.FDRK_HIGH, keys.FDR_UNSEEN, keys.FDR_UNSEEN_LOW, keys.FDR_UNSEEN_HIGH}
    assert keys.FDRK in logged and expected <= set(logged) and set(logged) - expected <= across
    assert slow == {"kid", "prdc"}
    assert {keys.eval_key(key, "gauss") for key in METRICS.get("intervals").keys} <= set(logged)  # on by default


def test_the_numbers_across_spaces_match_between_training_and_evaluate(gaussians):
    """FDr^k and fdr_unseen with their intervals, from the same per-draw values in both paths."""
    from matchzoo.metrics.summary import across_spaces

    generated, reference, heldout = gaussians
    rows = {
        space: evaluate_space(generated + shift, reference, heldout, SuiteSettings(prdc=False, kid_subsets=2))
        for space, shift in (("a", 0.0), ("b", 0.2))
    }
    evaluator = Evaluator(None, every=1, samples=None, seed=0)
    evaluator.references.update({"a": real_side(gaussians), "b": real_side(gaussians)})
    trained = {"a": generated, "b": generated + 0.2}
    training_rows = {
        space: compute_row(evaluator.metrics, fake, evaluator.references[space], 0) for space, fake in trained.items()
    }
    assert across_spaces(training_rows, seen=["a"]) == pytest.approx(across_spaces(rows, seen=["a"]), rel=1e-12)
    assert set(across_spaces(rows, seen=["a"])) == {
        "fdr_k",
        "fdr_k_low",
        "fdr_k_high",
        "fdr_unseen",
        "fdr_unseen_low",
        "fdr_unseen_high",
    }


def test_a_metric_declaring_its_spaces_runs_only_there(gaussians):
    """The Inception Score reads class logits: a named space outside its ``spaces`` skips it; unnamed runs all."""
    from matchzoo.metrics.suite import named

    metrics = SuiteSettings(prdc=False, kid_subsets=2).metrics()
    assert METRICS.get("inception_score").spaces == ("inception_logits",)
    pixels = compute_row(metrics, gaussians[0], named(real_side(gaussians), "pixels"), seed=0)
    logits = compute_row(metrics, gaussians[0], named(real_side(gaussians), "inception_logits"), seed=0)
    assert "inception_score" not in pixels and "inception_score" in logits and keys.FDR in pixels


def test_unknown_metric_names_the_known_ones():
    with pytest.raises(UnknownNameError, match=r"unknown metric 'fdx' \(did you mean 'fdr'\?\); known: "):
        Evaluator(None, every=1, samples=None, seed=0, metrics=["fdx"])


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory):
    digits = matchzoo.make_dataset("digits")
    path = tmp_path_factory.mktemp("registry") / "heldout.npz"
    np.savez(path, images=digits.images[digits.split_indices("heldout")].numpy())
    return str(path)


def test_evaluate_prints_every_registered_metric(digits_npz, tmp_path, tmp_path_factory, capsys):
    cache = str(tmp_path_factory.getbasetemp() / "evaluate-cache")
    json_path, csv_path = tmp_path / "out.json", tmp_path / "out.csv"
    code = main(
        [
            "evaluate",
            "--samples",
            digits_npz,
            "--reference",
            "digits",
            "--spaces",
            "pixels",
            "--cache_dir",
            cache,
            "--kid_subsets",
            "5",
            "--kid_subset_size",
            "200",
            "--no_progress",
            "--json",
            str(json_path),
            "--csv",
            str(csv_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    row = json.loads(json_path.read_text())["spaces"]["pixels"]
    with open(csv_path) as handle:
        header = next(csv.reader(handle))
    for name in NAMES:
        metric = METRICS.get(name)
        assert set(metric.keys) <= set(header), name
        assert set(metric.keys) <= set(row) if metric.applies_to("pixels") else not set(metric.keys) & set(row), name
        assert all(title in out.splitlines()[0].split() for title in metric.table_headers().values()), name


NEW_METRIC = '''
    import torch

    from matchzoo.metrics import Metric, register_metric


    @register_metric("mean_gap")
    class MeanGap(Metric):
        """Distance between the generated and the reference means."""

        keys = ("mean_gap",)

        def __call__(self, generated, real, seed):
            return {"mean_gap": float((generated.double().mean(0) - real.reference.double().mean(0)).norm())}
'''

BOTH_PATHS = """
    import json, sys, torch
    import extra_metric  # the new file: nothing else in matchzoo is edited
    from matchzoo.metrics import SpaceReference, SuiteSettings, evaluate_space
    from matchzoo.train.callbacks import Evaluator

    torch.manual_seed(0)
    generated, reference, heldout = torch.randn(50, 3) + 2.0, torch.randn(60, 3), torch.randn(40, 3)
    row = evaluate_space(generated, reference, heldout, SuiteSettings(kid_subsets=2, prdc=False))
    evaluator = Evaluator(None, every=1, samples=None, seed=0)
    evaluator.references["s"] = SpaceReference(reference, heldout)
    direct = float((generated.double().mean(0) - reference.double().mean(0)).norm())
    json.dump({"evaluate": row["mean_gap"], "training": evaluator.score({"s": generated})["eval/mean_gap/s"],
               "direct": direct}, sys.stdout)
"""


def test_a_metric_in_one_new_file_appears_in_both_paths(tmp_path):
    """A separate process: registering is for the life of a process, and the other tests see the stock registry."""
    (tmp_path / "extra_metric.py").write_text(textwrap.dedent(NEW_METRIC))
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(BOTH_PATHS)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    values = json.loads(result.stdout)
    assert values["evaluate"] == values["training"] == pytest.approx(values["direct"], rel=1e-12)
    assert values["direct"] > 2.0


def test_compute_row_keeps_the_metric_order(gaussians):
    metrics = SuiteSettings(prdc=False, kid_subsets=2).metrics()
    row = compute_row(metrics, gaussians[0], real_side(gaussians), seed=0)
    assert list(row) == [key for metric in metrics for key in metric.keys]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: METRICS.make("kid", subsets=0), "kid.subsets must be >= 1, got 0"),
        (lambda: METRICS.make("kid", subset_size=1.5), "kid.subset_size must be an integer, got 1.5"),
        (lambda: METRICS.make("prdc", samples=5), "prdc.samples must be >= 6, got 5"),
    ],
)
def test_metric_settings_bound_in_gin_are_checked_in_one_line(make, message):
    with pytest.raises(matchzoo.errors.MatchzooError) as error:
        make()
    assert str(error.value).splitlines()[0] == message  # gin appends the configurable; the CLI prints line one
