"""The MLflow UI's run-compare page shows objective, train space, stability and FDr^k without configuration.

The rule (MLflow 3.17.2, ``mlflow/server/js/src/experiment-tracking/components/ParallelCoordinatesPlotPanel``,
shipped minified in ``mlflow/server/js/build/static/js``)::

    selectedParamKeys: this.props.diffParamKeys.sort().slice(0, 3)
    selectedMetricKeys: this.props.sharedMetricKeys.slice(0, 1)

``diffParamKeys``: the union of the compared runs' param keys, kept when the values (a missing param counts as
``undefined``) are not all equal. ``sharedMetricKeys``: lodash ``intersection`` of
``Object.keys(latestMetricsByRunUuid[run])``, i.e. the first run's order, which is the order of
``run.data.metrics`` in the REST reply (``Run.to_proto``). JavaScript's default sort compares UTF-16 code
units, which for these ASCII keys is Python's ``sorted``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from matchzoo import keys, tracking

REPO = Path(__file__).resolve().parent.parent

TINY = [
    "train.steps = 4",
    "train.batch_size = 32",
    "train.eval_every = 2",
    "train.stability_resamples = 2",
    "train.eval_spaces = [@pixels(), @random_conv()]",
    "train.log_every = 1",
    "train.checkpoint_every = 4",
    "train.progress = False",
    "train.experiment = 'ui'",
]


def compare_page_defaults(runs) -> tuple[list[str], list[str]]:
    """Python port of the compare page's parallel-coordinates preselection (module docstring)."""
    params = [run.data.params for run in runs]
    keys = list(dict.fromkeys(key for run_params in params for key in run_params))
    differing = [key for key in keys if len({run_params.get(key) for run_params in params}) > 1]
    replies = [[metric.key for metric in run.to_proto().data.metrics] for run in runs]  # what the server sends
    shared = [key for key in replies[0] if all(key in reply for reply in replies[1:])]
    return sorted(differing)[:3], shared[:1]


def test_ui_rule_is_the_one_in_the_installed_mlflow_bundle():
    """If MLflow changes how the plot preselects, this fails: re-read the bundle and rename the keys."""
    import mlflow

    bundle = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    if not bundle.is_dir():
        pytest.skip("this mlflow install ships no UI bundle (mlflow-skinny)")
    code = "".join(
        path.read_text(errors="ignore")
        for path in bundle.glob("*.js")
        if "diffParamKeys" in path.read_text(errors="ignore")
        or "latestMetricsByRunUuid" in path.read_text(errors="ignore")
    )
    assert "selectedParamKeys:this.props.diffParamKeys.sort().slice(0,3)" in code
    assert "selectedMetricKeys:this.props.sharedMetricKeys.slice(0,1)" in code
    shared = (
        r"\w=\(\w,\w\)=>\(0,\w\.intersection\)\(\.\.\.\w\.map\("
        r"\w=>Object\.keys\(\w\.entities\.latestMetricsByRunUuid\[\w\]\)\)\)"
    )
    assert re.search(shared, code), "sharedMetricKeys is no longer the ordered intersection of the runs' latest metrics"


def test_summary_param_names_sort_before_every_gin_binding():
    """Gin scopes and selectors start with a letter or ``_``; a leading digit sorts before all of them."""
    names = [keys.OBJECTIVE_PARAM, keys.TRAIN_SPACE_PARAM, keys.STABILITY_PARAM]
    bindings = [
        "A/term.space",
        "Z.x",
        "_private.x",
        "a/term.objective",
        "bures.center",
        "term.objective",
        "train.steps",
    ]
    assert sorted(names + bindings)[:3] == names
    assert tracking.summary_params({"objective": "fd", "train_space": "pixels", "sweep": "s"}) == {
        "1 objective": "fd",
        "2 train_space": "pixels",
    }


def test_flush_writes_fdrk_then_stability_first(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracker = tracking.Tracker("order", "r", {})
    tracker.log_metrics({"train/loss": 1.0}, step=0)
    tracker.log_metrics(
        {"eval/fd/pixels": 2.0, "eval/fdr/pixels": 3.0, "eval/stability/pixels": 0.5, "eval/fdr_k": 4.0}, step=0
    )
    tracker.log_metrics({"eval/fdr_k": 5.0, "train/loss": 0.5}, step=1)
    tracker.finish()
    run = tracker.client.get_run(tracker.run_id)
    assert [m.key for m in run.to_proto().data.metrics][:3] == ["eval/fdr_k", "eval/stability/pixels", "train/loss"]
    assert [m.value for m in tracker.client.get_metric_history(tracker.run_id, "eval/fdr_k")] == [4.0, 5.0]
    assert run.data.params == {"3 stability": "0.5"}
    assert run.data.tags[keys.KEY_SCHEMA_TAG] == keys.KEY_SCHEMA  # compare reads eval/fd/<space> as schema 2


def test_final_stability_is_the_mean_over_train_spaces():
    assert tracking.final_stability({"eval/fdr_k": 2.0, "eval/stability/a": 0.25, "eval/stability/b": 0.75}) == 0.5
    assert tracking.final_stability({"eval/fdr_k": 2.0}) is None


def test_killed_run_gets_no_stability_param(tmp_path, monkeypatch):
    """A run that will resume must not freeze a stale value into an immutable param."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracker = tracking.Tracker("order", "r", {})
    tracker.log_metrics({"eval/stability/pixels": 0.5}, step=0)
    tracker.finish("KILLED")
    assert keys.STABILITY_PARAM not in tracker.client.get_run(tracker.run_id).data.params


@pytest.mark.slow
def test_two_real_runs_open_on_objective_space_stability_fdrk(isolated_runs):
    """Two tiny runs that differ in objective, train space and objective-specific bindings (``bures.*`` sorts
    before ``objective``: the old names lost their slots to it)."""
    from matchzoo.run import run_experiment

    cells = [("bures.gin", "@pixels()"), ("mmd.gin", "@random_conv()")]
    run_ids = [
        run_experiment([str(REPO / "gin" / "offline" / experiment)], [*TINY, f"term.space = {space}"])
        for experiment, space in cells
    ]
    client = tracking.client()
    runs = [client.get_run(run_id) for run_id in run_ids]
    params, metrics = compare_page_defaults(runs)
    assert params == ["1 objective", "2 train_space", "3 stability"]
    assert metrics == ["eval/fdr_k"]
    assert [run.data.params["1 objective"] for run in runs] == ["bures", "mmd"]
    assert [run.data.params["2 train_space"] for run in runs] == ["pixels", "random_conv"]
    for run in runs:
        assert float(run.data.params["3 stability"]) == pytest.approx(
            run.data.metrics[f"eval/stability/{run.data.tags['train_space']}"], rel=1e-5
        )
        assert any(key.startswith("bures.") for key in run.data.params) == (run.data.tags["objective"] == "bures")
        assert run.data.params["train.steps"] == "4"  # gin bindings stay params under their own names
