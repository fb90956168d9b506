"""Parallel and Slurm sweeps (issue 15) and seeds (issue 14): launch settings, GPU and thread budgets, cells in
their own processes (crashes recorded, reruns retry them, the same metrics as one at a time), SIGTERM to the
sweep stopping its cells, a submitit job per cell through submitit's local executor, and the store check."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from matchzoo import keys, launchers, sweep, tracking
from matchzoo.errors import MatchzooError
from matchzoo.launchers import LaunchSettings

REPO = Path(__file__).resolve().parent.parent
QUICK = str(REPO / "gin" / "quickstart.gin")
# two cells of a few steps, evaluated in pixels only: seconds each
TINY = [
    "train.steps = 4",
    "train.batch_size = 16",
    "train.eval_every = 2",
    "train.eval_spaces = [@pixels]",
    "train.progress = False",
]
AXIS = {"ssl/term.objective": ["@fd()", "@kernel_bures()"]}
CRASH = """import hashlib
import json
import os
import signal

import gin


@gin.configurable
def sweep_test_crash():
    os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer does: no exception, no answer


@gin.configurable
def sweep_test_refuse():
    raise ValueError("refused on purpose")
"""


def tiny_spec(name: str, **launch) -> sweep.SweepSpec:
    settings = LaunchSettings()
    for key, value in launch.items():
        launchers.apply_setting(settings, key, value, f"--{key}")
    return sweep.SweepSpec([QUICK], dict(AXIS), list(TINY), name=name, launch=settings)


def histories(client, run_id: str) -> dict[str, list[tuple[int, float]]]:
    run = client.get_run(run_id)
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key)) for key in run.data.metrics}


def runs_by_cell(client, name: str) -> dict[str, object]:
    return {run.data.tags[keys.CELL_TAG]: run for run in sweep._sweep_runs(client, name)}


@pytest.fixture
def importable(monkeypatch):
    """Cell processes import this checkout (the sweep also puts it first on their PYTHONPATH)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


# ----------------------------------------------------------------------------- resources and settings


def test_gpu_slots_are_disjoint_and_cover_what_is_asked():
    devices = [str(i) for i in range(8)]
    slots = launchers.gpu_slots(devices, jobs=4, per_cell=2)
    assert slots == [["0", "1"], ["2", "3"], ["4", "5"], ["6", "7"]]
    flat = [d for slot in launchers.gpu_slots(devices, jobs=3, per_cell=2) for d in slot]
    assert len(flat) == len(set(flat)) == 6
    uuids = ["GPU-a", "GPU-b", "GPU-c"]  # CUDA_VISIBLE_DEVICES may hold UUIDs: handed on as written
    assert launchers.gpu_slots(uuids, jobs=3, per_cell=1) == [["GPU-a"], ["GPU-b"], ["GPU-c"]]
    assert launchers.gpu_slots([], jobs=2, per_cell=0) == [[], []]
    with pytest.raises(MatchzooError, match="needs 6 GPUs, this machine shows 4") as error:
        launchers.gpu_slots(devices[:4], jobs=3, per_cell=2)
    assert "\n" not in str(error.value)


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5, 7")
    assert launchers.visible_gpus() == ["3", "5", "7"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert launchers.visible_gpus() == []


def test_processes_launcher_hands_each_cell_its_own_gpus(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    launcher = launchers.make_launcher(LaunchSettings(gpus_per_cell=2), tmp_path)
    assert launcher.name == "processes" and launcher.slots == 2  # every GPU busy: 4 // 2 cells at once
    assert launcher.free == [["0", "1"], ["2", "3"]] and launcher.threads is None


def test_thread_budget_splits_the_cores():
    assert [launchers.thread_budget(jobs, available=16) for jobs in (1, 2, 3, 16, 40)] == [16, 8, 5, 1, 1]
    assert launchers.make_launcher(LaunchSettings(jobs=2), Path("x")).threads == launchers.thread_budget(2)


def test_cell_commands_run_torchrun_only_for_several_processes():
    spec = Path("/s/c.json")
    assert launchers.cell_command(spec) == [sys.executable, "-m", "matchzoo.launchers", str(spec)]
    local = launchers.cell_command(spec, nproc=4)
    assert local[1:3] == ["-m", "torch.distributed.run"] and "--standalone" in local and "--nproc_per_node=4" in local
    multi = launchers.cell_command(spec, nproc=8, nnodes=2, rendezvous="node0:29400")
    assert "--nnodes=2" in multi and "--rdzv_endpoint=node0:29400" in multi and "--standalone" not in multi


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("launcher", "slrum", "unknown launcher 'slrum' (did you mean 'slurm'?)"),
        ("jobs", 0, "must be >= 1"),
        ("time", "four hours", "minutes or [D-]HH:MM[:SS]"),
        ("gpus_per_cell", -1, "must be >= 0"),
        ("allow_shared_sqlite", "yes", "True or False"),
    ],
)
def test_bad_launch_settings_are_one_line(name, value, message):
    with pytest.raises(MatchzooError) as error:
        launchers.apply_setting(LaunchSettings(), name, value, f"--{name}")
    assert message in str(error.value) and f"--{name}" in str(error.value) and "\n" not in str(error.value)


def test_time_limits_in_slurm_formats():
    settings = LaunchSettings()
    for text, minutes in [(90, 90), ("90", 90), ("4:00:00", 240), ("1:30", 90), ("1-00:00:00", 1440), ("0:0:30", 1)]:
        launchers.apply_setting(settings, "time", text, "--time")
        assert settings.time_min == minutes, text


def test_sweep_file_binds_launch_settings_and_seeds(tmp_path):
    (tmp_path / "exp.gin").write_text("train.steps = 5\n")
    sweep_file = tmp_path / "s.gin"
    sweep_file.write_text(
        "sweep.experiments = ['exp.gin']\nsweep.jobs = 3\nsweep.launcher = 'slurm'\nsweep.partition = 'gpu'\n"
        "sweep.time = '2:00:00'\nsweep.nodes_per_cell = 2\nsweep.gpus_per_cell = 8\nsweep.seeds = [0, 1]\n"
    )
    spec = sweep.build_spec([str(sweep_file)], [], [], None, None)
    launch = spec.launch
    assert (launch.launcher, launch.jobs, launch.partition, launch.time_min) == ("slurm", 3, "gpu", 120)
    assert (launch.nodes_per_cell, launch.gpus_per_cell, spec.seeds) == (2, 8, [0, 1])
    sweep_file.write_text("sweep.experiments = ['exp.gin']\nsweep.jobs = 0\n")
    with pytest.raises(MatchzooError, match=r"sweep.jobs in .*s.gin must be >= 1"):
        sweep.build_spec([str(sweep_file)], [], [], None, None)


def test_slurm_needs_sbatch_and_a_server_store(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    with pytest.raises(MatchzooError, match="sbatch is not on PATH"):
        launchers.make_launcher(LaunchSettings(launcher="slurm"), tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/m.db")
    with pytest.raises(MatchzooError, match="cannot share the sqlite store .*python -m matchzoo server") as error:
        tracking.check_concurrent_writers(remote=True, allow_shared_sqlite=False, what="--launcher slurm")
    assert "\n" not in str(error.value)
    assert tracking.check_concurrent_writers(remote=True, allow_shared_sqlite=True, what="x").startswith("sqlite")
    assert tracking.check_concurrent_writers(remote=False, allow_shared_sqlite=False, what="x").startswith("sqlite")
    monkeypatch.setattr(tracking, "filesystem_type", lambda path: "nfs4")
    with pytest.raises(MatchzooError, match=r"network filesystem \(nfs4\)"):
        tracking.check_concurrent_writers(remote=False, allow_shared_sqlite=False, what="--jobs 2")


def test_filesystem_type_reads_the_mount_table():
    assert tracking.filesystem_type(Path("/proc/self")) == "proc"


# ----------------------------------------------------------------------------- seeds


def test_seeds_make_one_cell_per_seed_and_leave_unseeded_ids_alone(tmp_path):
    (tmp_path / "exp.gin").write_text("train.steps = 5\n")
    plain = sweep.SweepSpec([str(tmp_path / "exp.gin")], {"term.objective": ["@fd()", "@mmd()"]})
    seeded = sweep.SweepSpec([str(tmp_path / "exp.gin")], {"term.objective": ["@fd()", "@mmd()"]}, seeds=[0, 7])
    base, cells = sweep.expand(plain), sweep.expand(seeded)
    # the id of a cell without seeds, as sweeps have always computed it (so they resume after this change)
    content = hashlib.sha256(b"train.steps = 5\n").hexdigest()
    payload = json.dumps({"file": "exp.gin", "content": content, "params": ["term.objective = @fd()"]}, sort_keys=True)
    assert base[0].cell_id == hashlib.sha256(payload.encode()).hexdigest()[:12]
    assert all(c.seed is None and c.group_id is None for c in base)
    assert set(base[0].tags("s")) == {keys.SWEEP_TAG, keys.CELL_TAG, keys.LABEL_TAG}  # exactly as before
    assert len(cells) == 4 and len({c.cell_id for c in cells}) == 4
    assert [c.group_id for c in cells] == [base[0].cell_id] * 2 + [base[1].cell_id] * 2
    assert not {c.cell_id for c in cells} & {c.cell_id for c in base}
    assert cells[1].gin_params == (*base[0].gin_params, "train.seed = 7") and cells[1].label.endswith("seed=7")
    tags = cells[1].tags("s")
    assert (
        tags[keys.GROUP_TAG] == base[0].cell_id
        and tags[keys.SEED_TAG] == "7"
        and tags[keys.CELL_TAG] == cells[1].cell_id
    )
    assert [c.cell_id for c in sweep.expand(seeded)] == [c.cell_id for c in cells]


@pytest.mark.parametrize("text, message", [("0,0", "appears more than once"), ("a,1", "integers"), ("", "non-empty")])
def test_bad_seeds_are_one_line(text, message):
    with pytest.raises(MatchzooError, match=message):
        sweep.parse_seeds(text, "--seeds")


def test_seeds_beside_another_train_seed_are_refused(tmp_path):
    (tmp_path / "exp.gin").write_text("train.steps = 5\n")
    spec = sweep.SweepSpec([str(tmp_path / "exp.gin")], {"train.seed": ["1", "2"]}, seeds=[0, 1])
    with pytest.raises(MatchzooError, match="--seeds and --grid 'train.seed=.*both set train.seed"):
        sweep.refuse_no_op_cells(spec, sweep.expand(spec))


def test_seeded_sweep_tags_its_runs(isolated_runs):
    from tests.test_sweep import fake_runner

    client = tracking.client()
    spec = sweep.SweepSpec([QUICK], {"ssl/term.objective": ["@fd()"]}, list(TINY), name="seeded", seeds=[3, 4])
    result = sweep.run_sweep(spec, runner=fake_runner(client), client=client, log=lambda _: None)
    runs = [client.get_run(run_id) for run_id in result.finished]
    assert sorted(r.data.tags[keys.SEED_TAG] for r in runs) == ["3", "4"]
    assert len({r.data.tags[keys.GROUP_TAG] for r in runs}) == 1
    assert all(r.info.run_name.endswith(f"seed={r.data.tags[keys.SEED_TAG]}") for r in runs)


# ----------------------------------------------------------------------------- cells in processes


@pytest.mark.slow
def test_jobs_2_gives_the_metrics_of_jobs_1(isolated_runs, importable):
    """The same cells, the same metric histories to the last bit (the offline configs pin train.num_threads = 1,
    so both ways compute with one thread), whether the cells run one after another here or two at once in
    processes of their own."""
    client = tracking.client()
    serial = sweep.run_sweep(tiny_spec("serial"), client=client, log=lambda _: None)
    parallel = sweep.run_sweep(tiny_spec("parallel", jobs=2), client=client, log=lambda _: None)
    assert len(serial.finished) == len(parallel.finished) == 2 and not serial.failed and not parallel.failed
    one, two = runs_by_cell(client, "serial"), runs_by_cell(client, "parallel")
    assert sorted(one) == sorted(two)
    for cell_id, run in one.items():
        first, second = histories(client, run.info.run_id), histories(client, two[cell_id].info.run_id)
        assert any(key.startswith("eval/") for key in first) and first == second, cell_id
        assert two[cell_id].info.run_name == run.info.run_name.replace("serial", "parallel")
    logs = list((isolated_runs / "runs" / "sweeps" / "parallel" / "logs").glob("*.log"))
    assert len(logs) == 2


@pytest.mark.slow
def test_crashed_and_failed_cells_are_recorded_and_retried(isolated_runs, importable, capsys):
    (isolated_runs / "sweep_test_cells.py").write_text(CRASH)
    experiment = isolated_runs / "crashing.gin"
    experiment.write_text(f"include '{QUICK}'\nimport sweep_test_cells\n")
    grid = {"train.generator": ["@sweep_test_crash", "@sweep_test_refuse"]}  # both die before training
    settings = LaunchSettings()
    launchers.apply_setting(settings, "jobs", 2, "--jobs")
    spec = sweep.SweepSpec([str(experiment)], grid, list(TINY), name="crashing", launch=settings)
    client = tracking.client()
    first = sweep.run_sweep(spec, client=client)
    assert not first.finished and len(first.failed) == 2
    runs = sweep._sweep_runs(client, "crashing")
    errors = sorted(r.data.tags.get(sweep.ERROR_TAG, "") for r in runs if r.info.status == "FAILED")
    assert len(errors) == 2
    assert errors[0].startswith("CellProcessError") and "killed by SIGKILL" in errors[0]
    assert "refused on purpose" in errors[1]
    out = capsys.readouterr().out
    assert out.count("FAILED (") == 2 and "; log: " in out  # each failure names the cell's log

    second = sweep.run_sweep(spec, client=client, log=lambda _: None)  # the rule: a rerun retries failed cells
    assert len(second.failed) == 2 and not second.skipped
    assert len(sweep._sweep_runs(client, "crashing")) == 4


@pytest.mark.slow
def test_sigterm_to_a_parallel_sweep_stops_its_cells_with_checkpoints(isolated_runs, importable):
    from matchzoo.train import checkpoint

    args = [sys.executable, "-m", "matchzoo", "sweep", "--gin", QUICK, "--name", "stopped", "--jobs", "2"]
    for param in [*TINY, "train.steps = 100000", "train.checkpoint_every = 5", "train.eval_every = 100000"]:
        args += ["--gin_param", param]
    args += ["--grid", "ssl/term.objective=[@fd(), @kernel_bures()]", "--no_progress"]
    process = subprocess.Popen(args, cwd=isolated_runs, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while len(list(isolated_runs.glob(f"runs/quickstart/*/{checkpoint.FILENAME}"))) < 2 and time.time() < deadline:
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 143, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("matchzoo: sweep 'stopped' interrupted (SIGTERM): stopped 2")
    client = tracking.client()
    runs = sweep._sweep_runs(client, "stopped")
    assert sorted(r.info.status for r in runs) == ["KILLED", "KILLED"]
    for run in runs:
        assert checkpoint.load(Path(run.data.tags[keys.RUN_DIR_TAG]) / checkpoint.FILENAME)["step"] >= 5


@pytest.mark.slow
def test_submitit_jobs_run_a_sweep_that_compare_reads(isolated_runs, importable):
    """The Slurm launcher end to end on submitit's local executor: the same pickled job per cell, the same
    result files and logs folder, no cluster."""
    from matchzoo.compare import compare

    name = "submitted"
    folder = sweep.sweep_folder(name)
    launcher = launchers.SlurmLauncher(LaunchSettings(launcher="slurm", time_min=10), folder, cluster="local")
    assert not launcher.remote  # a local executor shares this machine's sqlite store
    client = tracking.client()
    result = sweep.run_sweep(tiny_spec(name), client=client, launcher=launcher, log=lambda _: None)
    assert len(result.finished) == 2 and not result.failed
    assert list((folder / "slurm").glob("*_log.out")), "submitit keeps each job's log under the sweep folder"
    report = compare(client, sweep=name, out_dir=isolated_runs / "cmp", log_summary=False)
    assert sorted(r.status for r in report.runs) == ["FINISHED", "FINISHED"]
    assert all(r.final.get(keys.FDRK) is not None for r in report.runs)
    assert sorted(r.objective for r in report.runs) == ["fd,kernel_bures", "kernel_bures,kernel_bures"]
