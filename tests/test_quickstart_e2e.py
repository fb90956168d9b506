"""End to end: the quickstart (shortened) creates an MLflow run with the expected metrics and artifacts."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHORT = [
    "--gin_param",
    "train.steps = 40",
    "--gin_param",
    "train.eval_every = 20",
    "--gin_param",
    "train.checkpoint_every = 20",
    "--gin_param",
    "train.progress = False",
]


def run_cli(args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "matchzoo.run", "--gin", str(REPO / "gin" / "quickstart.gin"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_quickstart_creates_mlflow_run(isolated_runs):
    result = run_cli(SHORT, isolated_runs)
    assert result.returncode == 0, result.stderr[-2000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(
        tracking_uri=f"sqlite:///{Path.cwd() / 'runs' / 'mlflow.db'}"
    )  # absolute: MLflow caches stores by URI
    experiment = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    import gin

    from matchzoo import config

    config.parse([str(REPO / "gin" / "quickstart.gin")])
    eval_spaces = [ref.selector.split(".")[-1] for ref in gin.query_parameter("train.eval_spaces")]
    for space in eval_spaces:
        assert math.isfinite(metrics[f"eval/fd/{space}"])
        assert f"eval/fdr/{space}" in metrics
        assert math.isfinite(metrics[f"eval/fd_to_heldout/{space}"])  # eval/fd/<space> before key schema 2
        history = client.get_metric_history(run.info.run_id, f"eval/fd/{space}")
        assert [m.step for m in history] == [0, 20, 40]
    assert "eval/fdr_k" in metrics and "train/loss" in metrics
    for term_space in run.data.tags["train_space"].split(","):
        assert -1.0 <= metrics[f"eval/stability/{term_space}"] <= 1.0
    assert run.data.tags["objective"] and run.data.tags["train_space"]
    assert run.data.params["train.steps"] == "40"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "operative_config.gin" in artifacts
    samples = {a.path for a in client.list_artifacts(run.info.run_id, "samples")}
    assert "samples/step_000040.png" in samples
    checkpoints = list((isolated_runs / "runs" / "quickstart").glob("*/checkpoint.pt"))
    assert len(checkpoints) == 1


@pytest.mark.slow
def test_unused_binding_is_reported(isolated_runs):
    result = run_cli(
        [*SHORT[:2], "--gin_param", "train.progress = False", "--gin_param", "npz.key = 'x'"], isolated_runs
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "never used" in result.stderr and "npz.key" in result.stderr
