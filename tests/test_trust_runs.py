"""Checkpoints are data and runs are never lost or corrupted (issue 11, items 2 and 3).

A checkpoint someone hands you never executes its stored config; resume, SIGTERM, a second process on
the same run, a failing MLflow store and a full disk each leave the checkpoint and the MLflow run in a
state that says what happened, with one line on stderr.
"""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from matchzoo import stored_config
from matchzoo.__main__ import main as cli_main
from matchzoo.run import main as run_main
from matchzoo.train import checkpoint

REPO = Path(__file__).resolve().parent.parent
QUICK = str(REPO / "gin" / "quickstart.gin")
TINY = [
    "--gin",
    QUICK,
    "--gin_param",
    "train.steps = 2",
    "--gin_param",
    "train.batch_size = 8",
    "--gin_param",
    "train.eval_spaces = []",
    "--gin_param",
    "train.progress = False",
]
MARKER = "pwned-marker"
# gin given this text (as load_generator once did) runs the command when it builds the generator
MALICIOUS = """from __gin__ import dynamic_registration
import subprocess
import matchzoo.train.settings
subprocess.getoutput.cmd = 'touch {marker}'
matchzoo.train.settings.TrainSettings.generator = @subprocess.getoutput()
"""


def errors_of(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("matchzoo: error")]


def mlflow_run(run_id: str):
    from matchzoo.train.tracking import client

    return client().get_run(run_id)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("trust-cache"))  # reference features computed once for the module


@pytest.fixture
def isolated_runs(isolated_runs, shared_cache, monkeypatch):
    monkeypatch.setenv("MATCHZOO_CACHE_DIR", shared_cache)
    return isolated_runs


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, shared_cache):
    """One tiny finished run (2 steps): its checkpoint payload, shared by the tests that need a real one."""
    folder = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.setenv("MATCHZOO_CACHE_DIR", shared_cache)
        assert run_main([*TINY, "--gin_param", "train.run_dir = 'runs/done'"]) == 0
    return checkpoint.load(folder / "runs" / "done")


def write_malicious(path: Path, payload: dict, marker: Path) -> Path:
    """A checkpoint as an attacker would hand it over: real weights, no generator_spec, a config that runs a
    shell command through gin's dynamic registration if anything parses it with gin."""
    hostile = {key: value for key, value in payload.items() if key not in ("format", "generator_spec")}
    hostile["operative_config"] = MALICIOUS.format(marker=marker)
    checkpoint.save_atomic(hostile, path)
    return path


# --------------------------------------------------------------------------- checkpoints are data


def test_malicious_checkpoint_does_not_execute_through_evaluate(tmp_path, finished_run, capsys):
    marker = tmp_path / MARKER
    ckpt = write_malicious(tmp_path / "gift.pt", finished_run, marker)
    code = cli_main(
        [
            "evaluate",
            "--samples",
            str(ckpt),
            "--reference",
            "digits",
            "--spaces",
            "pixels",
            "--num_samples",
            "20",
            "--no_prdc",
            "--no_progress",
        ]
    )
    errors = errors_of(capsys)
    assert not marker.exists()
    assert code == 2 and len(errors) == 1, errors
    assert "imports '__gin__.dynamic_registration'" in errors[0] and "never executed" in errors[0]


def test_malicious_checkpoint_does_not_execute_through_probe(tmp_path, finished_run, capsys):
    marker = tmp_path / MARKER
    ckpt = write_malicious(tmp_path / "gift.pt", finished_run, marker)
    code = cli_main(
        [
            "probe",
            "resample",
            "--candidates",
            str(ckpt),
            "--num_candidates",
            "20",
            "--steps",
            "1",
            "--draws",
            "1",
            "--spaces",
            "pixels",
            "--attack",
            "pixels",
            "--no_progress",
        ]
    )
    errors = errors_of(capsys)
    assert not marker.exists()
    assert code == 2 and len(errors) == 1 and "never executed" in errors[0], errors


def test_malicious_checkpoint_does_not_execute_through_resume(isolated_runs, finished_run, capsys):
    marker = isolated_runs / MARKER
    write_malicious(isolated_runs / "runs" / "gift" / checkpoint.FILENAME, finished_run, marker)
    code = run_main([*TINY, "--resume", "runs/gift"])
    errors = errors_of(capsys)
    assert not marker.exists()
    assert code == 2 and len(errors) == 1, errors
    assert "imports 'subprocess'" in errors[0] and "start a new run instead" in errors[0]


def test_unregistered_generator_names_are_refused(tmp_path, finished_run):
    from matchzoo.errors import MatchzooError

    spec_payload = {**finished_run, "generator_spec": {"name": "getoutput", "kwargs": {"cmd": "true"}}}
    spec_payload.pop("format")
    checkpoint.save_atomic(spec_payload, tmp_path / "spec.pt")
    with pytest.raises(MatchzooError, match="unknown generator 'getoutput'"):
        stored_config.load_generator(tmp_path / "spec.pt")
    bindings_only = {
        **spec_payload,
        "generator_spec": None,
        "operative_config": "train.generator = @getoutput()\ngetoutput.cmd = 'true'\n",
    }
    checkpoint.save_atomic(bindings_only, tmp_path / "plain.pt")
    with pytest.raises(MatchzooError, match="refers to 'getoutput', which matchzoo has not registered"):
        stored_config.load_generator(tmp_path / "plain.pt")


def test_checkpoints_rebuild_from_spec_and_from_plain_stored_bindings(tmp_path, finished_run):
    assert finished_run["generator_spec"] == {
        "name": "mlp",
        "kwargs": {"depth": 2, "image_shape": (1, 8, 8), "noise_dim": 32, "num_classes": 0, "width": 256},
    }
    checkpoint.save_atomic({k: v for k, v in finished_run.items() if k != "format"}, tmp_path / "new.pt")
    old_style = {k: v for k, v in finished_run.items() if k not in ("format", "generator_spec")}  # before specs existed
    checkpoint.save_atomic(old_style, tmp_path / "old.pt")
    noise = torch.randn(4, 32)
    images = [stored_config.load_generator(tmp_path / name)(noise) for name in ("new.pt", "old.pt")]
    assert images[0].shape == (4, 1, 8, 8)
    torch.testing.assert_close(images[0], images[1])


# --------------------------------------------------------------------------- resume


def test_resume_changes_only_what_the_owner_of_the_run_asks(isolated_runs, capsys):
    """One finished run, then: a resume with a different experiment is refused before MLflow is touched; a
    resume while another process holds the run is refused; training longer is allowed and recorded."""
    from matchzoo.train.tracking import client

    assert run_main([*TINY, "--gin_param", "train.run_dir = 'runs/r'"]) == 0
    run_id = checkpoint.load("runs/r")["mlflow_run_id"]
    capsys.readouterr()

    code = run_main([*TINY, "--gin_param", "mlp.width = 64", "--resume", "runs/r"])
    errors = errors_of(capsys)
    assert code == 2 and len(errors) == 1 and "mlp.width (256 -> 64)" in errors[0], errors
    assert mlflow_run(run_id).info.status == "FINISHED" and checkpoint.load("runs/r")["step"] == 2

    with checkpoint.RunLock(Path("runs/r")):  # what a first, still training, --resume holds
        code = run_main([*TINY, "--gin_param", "train.steps = 4", "--resume", "runs/r"])
    errors = errors_of(capsys)
    assert code == 2 and len(errors) == 1 and f"in use by pid {os.getpid()}" in errors[0], errors
    assert mlflow_run(run_id).info.status == "FINISHED" and checkpoint.load("runs/r")["step"] == 2

    assert run_main([*TINY, "--gin_param", "train.steps = 4", "--resume", "runs/r"]) == 0
    assert "changed settings: train.steps: 2 -> 4" in capsys.readouterr().err
    run = mlflow_run(run_id)
    assert checkpoint.load("runs/r")["step"] == 4 and run.info.status == "FINISHED"
    assert run.data.tags["resume_changes"] == "step 2: train.steps: 2 -> 4"
    assert run.data.params["train.steps"] == "2"  # params are the run's start; the tag says what changed
    assert sorted(m.step for m in client().get_metric_history(run_id, "train/loss")) == [2, 4]


# --------------------------------------------------------------------------- signals


def test_sigterm_saves_a_checkpoint_marks_the_run_killed_and_exits_143(isolated_runs, capsys):
    args = [
        *TINY,
        "--gin_param",
        "train.steps = 100000",
        "--gin_param",
        "train.checkpoint_every = 5",
        "--gin_param",
        "train.run_dir = 'runs/t'",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "matchzoo.run", *args],
        cwd=isolated_runs,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ckpt = isolated_runs / "runs" / "t" / checkpoint.FILENAME
    deadline = time.time() + 300
    while not ckpt.is_file() and time.time() < deadline:
        assert process.poll() is None, process.stderr.read()[-2000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 143
    stderr = process.stderr.read().strip().splitlines()
    assert len(stderr) == 1 and stderr[0].startswith("matchzoo: interrupted at step"), stderr
    payload = checkpoint.load(ckpt)
    assert payload["step"] >= 5
    assert mlflow_run(payload["mlflow_run_id"]).info.status == "KILLED"

    resumed = run_main(
        [
            *TINY,
            "--gin_param",
            "train.checkpoint_every = 5",
            "--gin_param",
            f"train.steps = {payload['step'] + 2}",
            "--resume",
            "runs/t",
        ]
    )
    assert resumed == 0
    assert mlflow_run(payload["mlflow_run_id"]).info.status == "FINISHED"


def test_guarded_maps_signals_to_128_plus_signum(capsys):
    from matchzoo.cli import guarded
    from matchzoo.signals import Interrupted

    def stopped(signum):
        def command():
            raise Interrupted(signum)

        return command

    assert guarded(stopped(signal.SIGTERM)) == 143
    assert guarded(stopped(signal.SIGINT)) == 130
    assert capsys.readouterr().err.splitlines() == ["matchzoo: interrupted (SIGTERM)", "matchzoo: interrupted (SIGINT)"]


# --------------------------------------------------------------------------- a failing store or disk


def test_failing_mlflow_store_still_saves_the_checkpoint(isolated_runs, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    original = MlflowClient.log_batch

    def log_batch(self, run_id, metrics=(), *args, **kwargs):
        if metrics:
            raise OSError(28, "No space left on device")
        return original(self, run_id, metrics, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", log_batch)
    code = run_main(
        [
            *TINY,
            "--gin_param",
            "train.steps = 4",
            "--gin_param",
            "train.checkpoint_every = 2",
            "--gin_param",
            "train.log_every = 1",
            "--gin_param",
            "train.run_dir = 'runs/s'",
        ]
    )
    errors = errors_of(capsys)
    assert code == 2 and len(errors) == 1, errors
    assert "No space left on device" in errors[0] and "checkpoint saved in runs/s" in errors[0]
    payload = checkpoint.load("runs/s")
    assert payload["step"] == 2
    assert mlflow_run(payload["mlflow_run_id"]).info.status == "FAILED"


def test_full_sqlite_store_keeps_the_metrics_buffered(tmp_path, monkeypatch):
    from matchzoo.train import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracker = tracking.Tracker("full", "r", {})
    tracker.log_metrics({"train/loss": 1.0}, step=1)

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(tracker.client, "log_batch", full)
    with pytest.raises(tracking.TrackingError, match=r"logging metrics failed: database or disk is full$"):
        tracker.flush()
    monkeypatch.undo()
    tracker.finish()  # space is back: nothing was dropped
    assert [m.step for m in tracker.client.get_metric_history(tracker.run_id, "train/loss")] == [1]


def half_write_then_fail(payload, name):
    Path(name).write_bytes(b"PK\x03\x04 half a checkpoint")
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    from matchzoo.errors import MatchzooError

    path = tmp_path / checkpoint.FILENAME
    checkpoint.save_atomic({"step": 1}, path)
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", half_write_then_fail)
    expected = r"cannot write checkpoint .*the write failed .*previous checkpoint is kept"
    with pytest.raises(MatchzooError, match=expected):
        checkpoint.save_atomic({"step": 2}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [checkpoint.FILENAME]


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 256 KiB tmpfs (needs root and mount rights; skipped elsewhere)."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)]
    if subprocess.run(mount, capture_output=True, check=False).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_full_disk_while_checkpointing_is_one_line(tiny_filesystem):
    from matchzoo.errors import MatchzooError

    path = tiny_filesystem / checkpoint.FILENAME
    checkpoint.save_atomic({"step": 1, "weights": torch.zeros(1000)}, path)
    before = path.read_bytes()
    with pytest.raises(MatchzooError, match="no space left on device; the previous checkpoint is kept"):
        checkpoint.save_atomic({"step": 2, "weights": torch.zeros(200_000)}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tiny_filesystem.iterdir()] == [checkpoint.FILENAME]


RACE = """
import sys, time
from pathlib import Path
from matchzoo.train.tracking import Tracker
Path('ready-' + sys.argv[1]).touch()
while not Path('go').exists():
    time.sleep(0.01)
Tracker('race', sys.argv[1], {})
"""


def test_first_runs_started_together_share_one_new_store(isolated_runs):
    """Without the store lock both create and migrate the schema at once and one dies ("table ... already
    exists", "duplicate column name")."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    names = ["r0", "r1"]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, name], cwd=isolated_runs, env=env, stderr=subprocess.PIPE, text=True
        )
        for name in names
    ]
    deadline = time.time() + 300
    while not all((isolated_runs / f"ready-{name}").exists() for name in names) and time.time() < deadline:
        assert all(process.poll() is None for process in processes)
        time.sleep(0.05)
    (isolated_runs / "go").touch()  # every process past its imports: the store creations overlap
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()[-2000:]
    from matchzoo.train.tracking import client, search_all_runs

    mlflow_client = client()
    experiment = mlflow_client.get_experiment_by_name("race")
    assert len(search_all_runs(mlflow_client, [experiment.experiment_id])) == len(names)


def test_read_only_store_is_one_line(isolated_runs, capsys, monkeypatch):
    """Root writes through chmod 444, so the permission check itself is what is simulated here."""
    from matchzoo.train import tracking

    tracking.client()  # an existing store
    db = (isolated_runs / "runs" / "mlflow.db").resolve()
    real_access = os.access

    def access(path, mode):
        return False if Path(path) == db and mode & os.W_OK else real_access(path, mode)

    monkeypatch.setattr(tracking.os, "access", access)
    code = run_main([*TINY, "--gin_param", "train.run_dir = 'runs/b'"])
    errors = errors_of(capsys)
    assert code == 2 and len(errors) == 1 and "is read-only" in errors[0], errors
    assert not (isolated_runs / "runs" / "b" / checkpoint.FILENAME).exists()


def test_unreachable_tracking_server_fails_fast(isolated_runs, capsys, monkeypatch):
    with socket.socket() as probe:  # a port that was just free: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    started = time.time()
    code = run_main(TINY)
    errors = errors_of(capsys)
    assert code == 2 and len(errors) == 1 and "is not reachable" in errors[0], errors
    assert time.time() - started < 60


# --------------------------------------------------------------------------- messages


def test_bogus_device_names_the_binding(isolated_runs, capsys):
    code = run_main([*TINY, "--gin_param", "train.device = 'tpu9'"])
    errors = errors_of(capsys)
    assert code == 2 and len(errors) == 1 and "train.device" in errors[0] and "'tpu9'" in errors[0], errors
    from matchzoo.errors import MatchzooError
    from matchzoo.train.trainer import resolve_device

    with pytest.raises(MatchzooError, match="train.device = 'tpu9' is not a device"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(MatchzooError, match="train.device = 'cuda:1' but CUDA is not available"):
            resolve_device("cuda:1")


def test_nonfinite_loss_without_checkpoint_says_so(isolated_runs, capsys):
    import matchzoo

    name = "test_trust_nan"
    if name not in matchzoo.list_objectives():

        @matchzoo.register_objective(name)
        class NanObjective(matchzoo.Objective):
            def forward(self, fake, real):
                return matchzoo.LossOutput(fake.sum() * float("nan"), {})

    code = run_main([*TINY, "--gin_param", f"ssl/term.objective = @{name}()"])
    errors = errors_of(capsys)
    assert code == 2 and len(errors) == 1 and errors[0].endswith("no checkpoint was written yet"), errors
    assert not list((isolated_runs / "runs" / "quickstart").iterdir())  # no empty run folder left behind
