"""``python -m matchzoo server``: an MLflow tracking server over the run store that many writers share (issue 15).

Two first runs on an empty sqlite store both succeed:
``tests/test_trust_runs.py::test_first_runs_started_together_share_one_new_store``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from matchzoo.__main__ import main
from matchzoo.mlflow_ui import group_members

REPO = Path(__file__).resolve().parent.parent
WRITERS, STEPS, KEYS = 8, 60, 5
# one cell's tracking, as a run does it: matchzoo's Tracker (buffered log_batch, final status), started together
WRITER = """import sys, time
from pathlib import Path
name = sys.argv[1]
from matchzoo.tracking import Tracker
Path('ready-' + name).touch()
while not Path('go').exists():
    time.sleep(0.01)
tracker = Tracker('writers', name, {'writer': name})
for step in range(%d):
    tracker.log_metrics({'m%%d' %% k: step * 10 + k for k in range(%d)}, step)
    if step %% 6 == 5:
        tracker.flush()
tracker.finish()
""" % (STEPS, KEYS)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_dry_run_serves_the_store_matchzoo_uses(isolated_runs, capsys):
    assert main(["server", "--dry_run"]) == 0
    command = capsys.readouterr().out.split()
    assert command[1] == "server"
    assert command[command.index("--backend-store-uri") + 1] == f"sqlite:///{isolated_runs / 'runs' / 'mlflow.db'}"
    assert command[command.index("--artifacts-destination") + 1] == (isolated_runs / "runs" / "artifacts").as_uri()
    assert (
        main(["server", "--dry_run", "--store", "postgresql://u@db/mlflow", "--host", "0.0.0.0", "--port", "6000"]) == 0
    )
    command = capsys.readouterr().out.split()
    assert "postgresql://u@db/mlflow" in command and command[-7:-2] == ["0.0.0.0", "--port", "6000", "--workers", "4"]
    allowed = command[command.index("--allowed-hosts") + 1].split(",")
    # the cells are told http://<this machine's name>:port, which mlflow's default guard refuses (403)
    assert {socket.gethostname(), f"{socket.gethostname()}:*", "localhost:*", "10.*"} <= set(allowed)
    assert main(["server", "--dry_run", "--host", "login01", "--allowed_hosts", "mlflow.lab.org, x:1"]) == 0
    command = capsys.readouterr().out.split()
    allowed = command[command.index("--allowed-hosts") + 1].split(",")
    assert {"login01", "login01:*", "mlflow.lab.org", "x:1"} <= set(allowed)


def test_busy_port_and_bad_store_are_one_line(isolated_runs, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["server", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"matchzoo: error: port {port} is in use on 127.0.0.1; pass --port N with a free port"]
    assert main(["server", "--store", "s3://bucket/x", "--dry_run"]) == 2
    assert "--store 's3://bucket/x'" in capsys.readouterr().err


@pytest.mark.slow
def test_eight_concurrent_writers_lose_no_metric_and_sigterm_stops_the_server(isolated_runs):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    server = subprocess.Popen(
        # two server processes: the writes still meet in one sqlite file from several processes
        [sys.executable, "-m", "matchzoo", "server", "--store", "store", "--port", str(port), "--server_workers", "2"],
        cwd=isolated_runs,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    uri = f"http://127.0.0.1:{port}"
    writer_env = {**env, "MLFLOW_TRACKING_URI": uri}
    names = [f"w{i}" for i in range(WRITERS)]
    writers = [  # they import while the server starts
        subprocess.Popen(
            [sys.executable, "-c", WRITER, name], cwd=isolated_runs, env=writer_env, stderr=subprocess.PIPE
        )
        for name in names
    ]
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            assert server.poll() is None, server.stderr.read()[-2000:]
            try:
                if urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        while not all((isolated_runs / f"ready-{name}").exists() for name in names) and time.time() < deadline:
            assert all(w.poll() is None for w in writers), [w.stderr.read()[-2000:] for w in writers if w.poll()]
            time.sleep(0.1)
        # the name `server` prints for the cells (this machine's) is accepted, not refused as DNS rebinding (403)
        search = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"  # /health skips the guard, the API does not
        named = urllib.request.Request(search, headers={"Host": f"{socket.gethostname()}:{port}"})
        assert urllib.request.urlopen(named, timeout=10).status == 200
        (isolated_runs / "go").touch()  # every writer past its imports: the writes overlap
        for writer in writers:
            assert writer.wait(timeout=180) == 0, writer.stderr.read()[-2000:]

        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name("writers")  # created once although all eight asked at once
        runs = client.search_runs([experiment.experiment_id], max_results=100)
        assert sorted(run.data.tags["writer"] for run in runs) == sorted(names)
        for run in runs:
            assert run.info.status == "FINISHED"
            for k in range(KEYS):
                history = client.get_metric_history(run.info.run_id, f"m{k}")
                assert sorted((m.step, m.value) for m in history) == [(s, s * 10.0 + k) for s in range(STEPS)]
        assert (isolated_runs / "store" / "mlflow.db").is_file()  # the server wrote the store it was given
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
        server.send_signal(signal.SIGTERM)
        status = server.wait(timeout=60)
    assert status == 143
    assert not group_members(server.pid)  # uvicorn and its workers went with it
