"""Trainer behaviour: resume after kill -9 reproduces an uninterrupted run; bad generators and NaNs stop cleanly."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
BASE = [
    "--gin",
    str(REPO / "gin" / "quickstart.gin"),
    "--gin_param",
    "train.steps = 60",
    "--gin_param",
    "train.eval_every = 30",
    "--gin_param",
    "train.checkpoint_every = 10",
    "--gin_param",
    "train.progress = False",
    "--gin_param",
    "train.batch_size = 64",
    # the training recipe resumes too: schedule state, every EMA, clipping
    "--gin_param",
    "train.lr_schedule = @warmup_cosine",
    "--gin_param",
    "warmup_cosine.warmup_steps = 10",
    "--gin_param",
    "train.ema_decay = (0.99, 0.9)",
    "--gin_param",
    "train.grad_clip_norm = 0.5",
]


def start(args, cwd):
    return subprocess.Popen(
        [sys.executable, "-m", "matchzoo.run", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def final_metrics(run_dir: Path):
    from mlflow.tracking import MlflowClient

    payload = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    # absolute: MLflow caches stores by URI
    client = MlflowClient(tracking_uri=f"sqlite:///{Path.cwd() / 'runs' / 'mlflow.db'}")
    run = client.get_run(payload["mlflow_run_id"])
    return payload, run, client


@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted(isolated_runs):
    full = start([*BASE, "--gin_param", "train.run_dir = 'runs/full'"], isolated_runs)
    assert full.wait(timeout=600) == 0, full.stderr.read()[-2000:]

    victim = start([*BASE, "--gin_param", "train.run_dir = 'runs/killed'"], isolated_runs)
    checkpoint = isolated_runs / "runs" / "killed" / "checkpoint.pt"
    deadline = time.time() + 600
    while time.time() < deadline:
        if checkpoint.is_file() and torch.load(checkpoint, weights_only=True)["step"] >= 20:
            break
        assert victim.poll() is None, victim.stderr.read()[-2000:]
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    killed_step = torch.load(checkpoint, weights_only=True)["step"]
    assert 20 <= killed_step < 60

    resumed = start([*BASE, "--resume", "runs/killed"], isolated_runs)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-2000:]

    full_payload, full_run, client = final_metrics(isolated_runs / "runs" / "full")
    resumed_payload, resumed_run, _ = final_metrics(isolated_runs / "runs" / "killed")
    assert resumed_payload["step"] == full_payload["step"] == 60
    for key, tensor in full_payload["generator_ema"].items():
        torch.testing.assert_close(resumed_payload["generator_ema"][key], tensor, rtol=1e-5, atol=1e-6)
    for key, tensor in full_payload["generator_emas"]["0.9"].items():
        torch.testing.assert_close(resumed_payload["generator_emas"]["0.9"][key], tensor, rtol=1e-5, atol=1e-6)
    assert resumed_payload["lr_schedule"] == full_payload["lr_schedule"]
    for key, value in full_run.data.metrics.items():
        if key.startswith("eval/"):
            assert resumed_run.data.metrics[key] == pytest.approx(value, rel=1e-5), key
    # same MLflow run continued, no duplicated evaluation steps
    history = client.get_metric_history(resumed_run.info.run_id, "eval/fd/pixels")
    steps = [m.step for m in history]
    assert steps == sorted(set(steps)) and steps[-1] == 60
    assert resumed_run.info.status == "FINISHED"


def test_wrong_generator_output_is_one_line_error(isolated_runs):
    result = subprocess.run(
        [sys.executable, "-m", "matchzoo.run", *BASE, "--gin_param", "mlp.image_shape = (1, 6, 6)"],
        cwd=isolated_runs,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 2
    assert "returned shape" in result.stderr and "Traceback" not in result.stderr


def test_nonfinite_loss_stops_with_named_term(isolated_runs):
    import matchzoo
    from matchzoo.errors import MatchzooError
    from matchzoo.run import run_experiment

    name = "test_nan_objective"
    if name not in matchzoo.list_objectives():

        @matchzoo.register_objective(name)
        class NanObjective(matchzoo.Objective):
            def forward(self, fake, real):
                return matchzoo.LossOutput(fake.sum() * float("nan"), {})

    with pytest.raises(MatchzooError, match=r"digits_ssl.test_nan_objective.*step 1"):
        run_experiment(
            [str(REPO / "gin" / "quickstart.gin")],
            [f"ssl/term.objective = @{name}()", "train.progress = False", "train.steps = 5"],
        )


@pytest.mark.slow
def test_ctrl_c_saves_checkpoint_and_marks_run_killed(isolated_runs):
    run = start(
        [*BASE, "--gin_param", "train.steps = 100000", "--gin_param", "train.run_dir = 'runs/interrupted'"],
        isolated_runs,
    )
    checkpoint = isolated_runs / "runs" / "interrupted" / "checkpoint.pt"
    deadline = time.time() + 600
    while not checkpoint.is_file() and time.time() < deadline:
        assert run.poll() is None, run.stderr.read()[-2000:]
        time.sleep(0.05)
    os.kill(run.pid, signal.SIGINT)
    assert run.wait(timeout=300) == 130
    assert "checkpoint saved" in run.stderr.read()
    payload, mlflow_run, _ = final_metrics(isolated_runs / "runs" / "interrupted")
    assert payload["step"] >= 10
    assert mlflow_run.info.status == "KILLED"
