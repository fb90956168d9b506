"""Processes and waits (issue 11, items 6-8): the MLflow UI stops every process it started, a busy port or a
failing server is an error, probe options are checked, missing weights are reported at once and all together."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from matchzoo import mlflow_ui as ui
from matchzoo.__main__ import main

REPO = Path(__file__).resolve().parent.parent


def error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def exit_code(argv: list[str]) -> int:
    """``main(argv)``; a usage error raises SystemExit from argparse, which counts as its code."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


# ----------------------------------------------------------------------------- probe options


@pytest.fixture
def candidates(tmp_path):
    path = tmp_path / "candidates.npz"
    images = np.random.default_rng(0).uniform(-1, 1, (40, 1, 8, 8)).astype(np.float32)  # digits-shaped
    np.savez(path, images=images)
    return str(path)


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("--draws", "0", "must be >= 1, got 0"),
        ("--num_candidates", "0", "must be >= 1, got 0"),
        ("--num_candidates", "-3", "must be >= 1, got -3"),  # used to keep 397 of 400 candidates
        ("--lr", "nan", "must be a finite number"),
        ("--lr", "-0.1", "must be > 0.0"),
        ("--reference_size", "0", "must be >= 2, got 0"),
        ("--steps", "-5", "must be >= 0, got -5"),  # used to exit 0 reporting "nan -> nan"
        ("--sample_size", "0", "must be >= 2, got 0"),
        ("--seed", "-1", "must be >= 0, got -1"),
        ("--seed", "1e30", "must be <= 9223372036854775807"),
        ("--seed", "abc", "expected a number, got 'abc'"),
    ],
)
def test_bad_probe_option_is_one_line_naming_it(candidates, capsys, option, value, expected):
    code = exit_code(
        ["probe", "resample", "--candidates", candidates, "--spaces", "pixels", "--attack", "pixels", option, value]
    )
    errors = error_lines(capsys)
    assert code == 2 and len(errors) == 1, errors
    assert errors[0].startswith("matchzoo: error:") and option in errors[0] and expected in errors[0], errors


@pytest.mark.parametrize(
    "value, expected",
    [
        ("0,abc", "must be >= 1, got 0"),
        ("1,abc", "expected a number, got 'abc'"),
        (",", "comma-separated positive integers"),
    ],
)
def test_bad_top_n_is_one_line(candidates, capsys, value, expected):
    code = exit_code(
        ["probe", "topn", "--candidates", candidates, "--spaces", "pixels", "--classifier", "pixels", "--top_n", value]
    )
    errors = error_lines(capsys)
    assert code == 2 and len(errors) == 1 and "--top_n" in errors[0] and expected in errors[0], errors


def test_probe_library_refuses_negative_steps_and_counts(candidates):
    import torch

    from matchzoo.errors import MatchzooError
    from matchzoo.probes import inputs, resample

    with pytest.raises(MatchzooError, match="num_candidates must be >= 1, got -3"):
        inputs.load_candidates(candidates, -3)
    features = {"x": resample.SpaceFeatures(torch.randn(20, 2), torch.randn(30, 2), torch.randn(10, 2))}
    with pytest.raises(MatchzooError, match="steps must be >= 0, got -5"):
        resample.resample_probe(features, "x", lambda x, w: (w * x.sum(1)).sum(), steps=-5)


@pytest.mark.filterwarnings("ignore:Fréchet distance from n=")  # n < D keeps it fast
def test_probe_resample_shows_progress(candidates, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MATCHZOO_CACHE_DIR", str(tmp_path / "cache"))
    code = main(
        [
            "probe",
            "resample",
            "--candidates",
            candidates,
            "--spaces",
            "pixels",
            "--attack",
            "pixels",
            "--reference",
            "digits",
            "--steps",
            "3",
            "--draws",
            "2",
            "--sample_size",
            "10",
            "--reference_size",
            "50",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    for stage in ("features", "candidates in pixels", "digits/train in pixels", "weights", "objective=", "draws"):
        assert stage in err, err
    main(
        [
            "probe",
            "resample",
            "--candidates",
            candidates,
            "--spaces",
            "pixels",
            "--attack",
            "pixels",
            "--steps",
            "3",
            "--draws",
            "2",
            "--sample_size",
            "10",
            "--reference_size",
            "50",
            "--no_progress",
        ]
    )
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------- ui


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    try:
        ui.check_port_free(port)
    except Exception:  # noqa: BLE001 - any refusal means busy
        return False
    return True


def test_ui_on_a_busy_port_is_one_line(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        code = main(["ui", "--port", str(port)])
    errors = error_lines(capsys)
    assert code == 2 and errors == [
        f"matchzoo: error: port {port} is in use on 127.0.0.1; pass --port N with a free port"
    ]
    assert time.monotonic() - started < 5


def test_ui_server_failure_is_not_exit_0(capsys, monkeypatch):
    monkeypatch.setattr(ui, "command", lambda port: [sys.executable, "-c", "import sys; sys.exit(3)"])
    assert main(["ui", "--port", str(free_port())]) == 2
    assert "the MLflow UI server exited with status 3" in error_lines(capsys)[-1]


# A stand-in for the server tree: the leader starts a worker that ignores SIGTERM (as a stuck worker would).
FAKE_SERVER = textwrap.dedent("""
    import signal, subprocess, sys, time
    worker = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); open(%r, 'w').close(); time.sleep(600)"])
    open(%r, "w").write(str(worker.pid))
    time.sleep(600)
""")


def test_ui_sigterm_stops_the_whole_server_group_even_stragglers(tmp_path, capsys, monkeypatch):
    ready, pid_file = tmp_path / "ready", tmp_path / "worker.pid"
    monkeypatch.setattr(ui, "command", lambda port: [sys.executable, "-c", FAKE_SERVER % (str(ready), str(pid_file))])
    monkeypatch.setattr(ui, "GRACE_SECONDS", 1.0)

    def terminate_when_ready():
        deadline = time.monotonic() + 30
        while not (ready.exists() and pid_file.exists()) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)  # what a scheduler or `timeout` sends to the command

    threading.Thread(target=terminate_when_ready, daemon=True).start()
    assert main(["ui", "--port", str(free_port())]) == 128 + signal.SIGTERM
    worker = int(pid_file.read_text())
    assert not alive(worker), f"worker {worker} survived"
    assert "MLflow UI stopped (SIGTERM)" in error_lines(capsys)[-1]


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    if stat.parent.parent.joinpath("self").exists():
        return stat.is_file() and ui._stat_fields(stat)[:1] not in (["Z"], ["X"], [])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def server_processes(port: int) -> list[int]:
    """Processes whose command line names the port (the mlflow CLI and uvicorn carry ``--port P``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"--port" in cmdline and str(port).encode() in cmdline and alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def wait_until_serving(port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"ui exited early with {process.returncode}"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return
        except OSError:
            time.sleep(1)
    pytest.fail(f"the MLflow UI did not answer on port {port} within {timeout:.0f} s")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_ui_sigterm_leaves_no_mlflow_process_serving(tmp_path):
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    with open(tmp_path / "ui.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "matchzoo", "ui", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    groups: set[int] = set()
    try:
        wait_until_serving(port, process, timeout=120)
        groups = {os.getpgid(pid) for pid in server_processes(port) if pid != process.pid}
        members = [pid for group in groups for pid in ui.group_members(group)]
        assert groups and process.pid not in groups and len(members) > 1  # a tree in a group of its own
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
        assert [pid for pid in members if alive(pid)] == [] and server_processes(port) == []
        assert port_is_free(port)
    finally:
        if process.poll() is None:
            process.kill()
        for group in groups | {process.pid}:
            ui.signal_group(group, signal.SIGKILL)  # only what this test started


# ----------------------------------------------------------------------------- pretrained weights


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """No weights anywhere: empty Hugging Face and torch hub caches."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    return tmp_path


SINKHORN_DINO_SPACES = ("inception", "dinov2_vitb14", "clip_vitb32")  # gin/sinkhorn_dino.gin: train + eval spaces


def test_every_missing_weight_is_in_one_line(empty_caches, monkeypatch):
    import matchzoo
    from matchzoo.errors import MissingWeightsError
    from matchzoo.spaces.resolve import WeightsRequest, check_weights

    monkeypatch.setenv("MATCHZOO_OFFLINE", "1")
    requests = [WeightsRequest(name) for name in ("pixels", *SINKHORN_DINO_SPACES, "dinov2_vitb14")]
    with pytest.raises(MissingWeightsError) as info:
        check_weights(requests)
    message = str(info.value)
    assert "\n" not in message and message.startswith("no pretrained weights for 3 spaces and MATCHZOO_OFFLINE=1")
    for name in SINKHORN_DINO_SPACES:
        assert message.count(f"{name}.weights = '/path/to/file'") == 1, name
        for place in matchzoo.FEATURE_SPACES.get(name).weights_location().candidates():
            assert place in message
    weights = empty_caches / "dino.pth"
    weights.write_bytes(b"")
    resolved = check_weights(
        [WeightsRequest("dinov2_vitb14", str(weights)), WeightsRequest("inception", pretrained=False)]
    )
    assert resolved["dinov2_vitb14"].path == weights and resolved["inception"].path is None


def test_unreachable_hub_fails_at_once_instead_of_retrying(empty_caches, monkeypatch):
    import matchzoo
    from matchzoo.errors import MissingWeightsError

    monkeypatch.delenv("MATCHZOO_OFFLINE", raising=False)
    for name in ("HF_HUB_OFFLINE", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    port = free_port()  # nothing listens there: the hub is "down"
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(
        MissingWeightsError, match=rf"dinov2_vits14 .* the download host 127.0.0.1:{port} is unreachable"
    ):
        matchzoo.make_feature_space("dinov2_vits14")
    assert time.monotonic() - started < 10


def test_download_check_connects_to_the_configured_proxy(monkeypatch):
    """Where the hub is reachable only through a proxy, the check must test the proxy, not the hub itself."""
    from matchzoo.spaces.resolve import connect_target

    for name in ("https_proxy", "NO_PROXY", "no_proxy"):  # the lower-case forms win over the upper-case ones
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert connect_target("https://huggingface.co")[:2] == ("proxy.example", 3128)
    monkeypatch.setenv("NO_PROXY", "huggingface.co")
    assert connect_target("https://huggingface.co") == ("huggingface.co", 443, "")


def test_weights_requests_follow_gin_scoping():
    from matchzoo.spaces.resolve import WeightsRequest, configured_requests

    bindings = {
        "dinov2_vitb14.weights": "/w/dino.pth",
        "ssl/dinov2_vitb14.weights": "/w/ssl.pth",
        "px/inception.pretrained": False,
    }
    references = [
        ("", "dinov2_vitb14"),
        ("ssl/deep", "dinov2_vitb14"),
        ("px", "inception"),
        ("", "inception"),
        ("", "pixels"),
        ("", "mlp"),
    ]
    requests = configured_requests(references, lambda binding, default: bindings.get(binding, default))
    assert requests == [
        WeightsRequest("dinov2_vitb14", "/w/dino.pth"),
        WeightsRequest("dinov2_vitb14", "/w/ssl.pth"),
        WeightsRequest("inception", pretrained=False),
        WeightsRequest("inception"),
    ]
    assert [r.setting for r in requests] == [
        "dinov2_vitb14.weights = '/path/to/file'",
        "ssl/dinov2_vitb14.weights = '/path/to/file'",
        "inception.weights = '/path/to/file'",
        "inception.weights = '/path/to/file'",
    ]
    from matchzoo.spaces.resolve import option_requests  # evaluate/stats: --space_param SPACE.KEY=VALUE

    requests = option_requests({"dinov2_vitb14": {"weights": "/w/dino.pth"}, "inception": {"pretrained": False}})
    assert requests == [WeightsRequest("dinov2_vitb14", "/w/dino.pth"), WeightsRequest("inception", pretrained=False)]
    assert requests[0].setting == "--space_param dinov2_vitb14.weights=/path/to/file"


def test_probe_reports_missing_weights_before_any_work(empty_caches, candidates, capsys, monkeypatch):
    monkeypatch.setenv("MATCHZOO_OFFLINE", "1")
    code = main(
        [
            "probe",
            "resample",
            "--candidates",
            candidates,
            "--spaces",
            "pixels,dinov2_vits14,clip_vitb32",
            "--attack",
            "pixels",
        ]
    )
    errors = error_lines(capsys)
    assert code == 2 and len(errors) == 1 and "no pretrained weights for 2 spaces" in errors[0], errors
    assert "dinov2_vits14 (timm" in errors[0] and "clip_vitb32 (open_clip" in errors[0]


def test_readme_offline_example_shows_the_weights_line(empty_caches, capsys, monkeypatch):
    """README: `MATCHZOO_OFFLINE=1 python -m matchzoo.run --gin gin/sinkhorn_dino.gin` stops on the weights of
    every space, not on the placeholder image folder (needs the check before datasets in matchzoo/run.py)."""
    from matchzoo.run import main as run_main

    monkeypatch.setenv("MATCHZOO_OFFLINE", "1")
    monkeypatch.chdir(empty_caches)
    code = run_main(["--gin", str(REPO / "gin" / "sinkhorn_dino.gin")])
    errors = error_lines(capsys)
    assert code == 2 and len(errors) == 1 and "no pretrained weights for 4 models" in errors[0], errors
    assert all(f"{name}.weights" in errors[0] for name in SINKHORN_DINO_SPACES)
    assert "latent.vae_weights" in errors[0]  # the SD-VAE decoder of the latent generator
