"""Sweeps: grid parsing, cartesian expansion, stable cell ids, skip-finished resume, failed cells recorded."""

from __future__ import annotations

import pytest

from matchzoo import sweep
from matchzoo.errors import MatchzooError


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    return MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")


@pytest.fixture
def experiment_file(tmp_path):
    path = tmp_path / "exp.gin"
    path.write_text("train.steps = 5\n")
    return path


def fake_runner(client, fail_on=(), fail_after_creating=()):
    """Creates a FINISHED run with the given tags (like run_experiment), or raises for chosen objectives."""
    calls = []

    def run(gin_files, gin_params, tags):
        calls.append((gin_files, gin_params, tags))
        joined = " ".join(gin_params)
        if any(bad in joined for bad in fail_on):
            raise ValueError("boom before any run")
        experiment = client.get_experiment_by_name("fake") or None
        experiment_id = experiment.experiment_id if experiment else client.create_experiment("fake")
        objective = gin_params[-1].split("@")[-1].strip("()")
        run_id = client.create_run(
            experiment_id, tags={**tags, "objective": objective, "train_space": "pixels"}
        ).info.run_id
        if any(bad in joined for bad in fail_after_creating):
            raise RuntimeError("boom inside the run")
        client.set_terminated(run_id, "FINISHED")
        return run_id

    run.calls = calls
    return run


def test_grid_arg_is_parsed_with_gin_syntax():
    key, values = sweep.parse_grid_arg("term.objective=[@fd(), @a/sinkhorn(), @mmd]")
    assert key == "term.objective"
    assert values == ["@fd()", "@a/sinkhorn()", "@mmd"]
    key, values = sweep.parse_grid_arg("b/train.lr = [1e-3, 0.01, 'x', (1, 2), %RATE]")
    assert key == "b/train.lr"
    assert values == ["0.001", "0.01", "'x'", "(1, 2)", "%RATE"]


@pytest.mark.parametrize("bad", ["term.objective=@fd()", "term.objective=[]", "term.objective=[@fd(),", "nonsense"])
def test_bad_grid_arg_is_one_line_error(bad):
    with pytest.raises(MatchzooError) as error:
        sweep.parse_grid_arg(bad)
    assert "\n" not in str(error.value)


def test_expand_is_cartesian_with_stable_distinct_ids(experiment_file, tmp_path):
    other = tmp_path / "other.gin"
    other.write_text("train.steps = 7\n")
    spec = sweep.SweepSpec(
        experiments=[str(experiment_file), str(other)],
        grid={"term.objective": ["@fd()", "@sinkhorn()", "@mmd()"], "term.space": ["@pixels()", "@random_conv()"]},
        gin_params=["train.steps = 3"],
    )
    cells = sweep.expand(spec)
    assert len(cells) == 2 * 3 * 2
    assert len({c.cell_id for c in cells}) == len(cells)
    assert [c.cell_id for c in sweep.expand(spec)] == [c.cell_id for c in cells]
    first = cells[0]
    assert first.gin_params == ("train.steps = 3", "term.objective = @fd()", "term.space = @pixels()")
    assert first.tag_values() == {"objective": "fd", "train_space": "pixels"}
    # editing an experiment file gives its cells new ids (so they are run again), the others keep theirs
    other.write_text("train.steps = 8\n")
    changed = sweep.expand(spec)
    assert [c.cell_id for c in changed[:6]] == [c.cell_id for c in cells[:6]]
    assert not {c.cell_id for c in changed[6:]} & {c.cell_id for c in cells[6:]}


def test_sweep_file_and_command_line_build_the_same_spec(experiment_file, tmp_path):
    sweep_file = tmp_path / "s.gin"
    sweep_file.write_text(
        "# a sweep\n"
        "sweep.name = 'zoo'\n"
        "sweep.experiments = ['exp.gin']\n"
        "sweep.gin_params = ['train.steps = 3']\n"
        "sweep.grid = {'term.objective': [@fd(), @sinkhorn()],\n"
        "              'term.space': [@pixels()]}\n"
    )
    from_file = sweep.build_spec([str(sweep_file)], [], [], None, None)
    from_args = sweep.build_spec(
        [str(experiment_file)],
        ["term.objective=[@fd(), @sinkhorn()]", "term.space=[@pixels()]"],
        ["train.steps = 3"],
        "zoo",
        None,
    )
    assert from_file.experiments == [str(experiment_file.resolve())]
    assert [c.cell_id for c in sweep.expand(from_file)] == [c.cell_id for c in sweep.expand(from_args)]
    assert sweep.sweep_name(from_file, sweep.expand(from_file)) == "zoo"


def test_sweep_file_rejects_other_bindings(tmp_path):
    sweep_file = tmp_path / "s.gin"
    sweep_file.write_text("sweep.experiments = ['x.gin']\ntrain.steps = 3\n")
    with pytest.raises(MatchzooError, match="unexpected binding 'train.steps'"):
        sweep.load_sweep_file(sweep_file)


def test_rerun_skips_finished_cells_and_failures_do_not_stop(client, experiment_file):
    spec = sweep.SweepSpec(
        experiments=[str(experiment_file)],
        grid={"term.objective": ["@fd()", "@bad()", "@worse()", "@mmd()"]},
        name="resume-test",
    )
    runner = fake_runner(client, fail_on=["@bad()"], fail_after_creating=["@worse()"])
    first = sweep.run_sweep(spec, runner=runner, client=client, log=lambda _: None)
    assert len(first.finished) == 2 and len(first.failed) == 2 and not first.skipped
    assert [call[1][-1] for call in runner.calls] == [f"term.objective = {v}" for v in spec.grid["term.objective"]]

    runs = sweep._sweep_runs(client, "resume-test")
    by_status = {}
    for run in runs:
        by_status.setdefault(run.info.status, []).append(run)
    assert len(by_status["FINISHED"]) == 2 and len(by_status["FAILED"]) == 2
    errors = sorted(r.data.tags[sweep.ERROR_TAG] for r in by_status["FAILED"])
    assert errors == ["RuntimeError: boom inside the run", "ValueError: boom before any run"]
    created = [r for r in by_status["FAILED"] if "before" in r.data.tags[sweep.ERROR_TAG]][0]
    assert created.data.tags["objective"] == "bad" and created.data.tags[sweep.SWEEP_TAG] == "resume-test"

    finished = client.get_run(first.finished[0])
    assert finished.info.run_name == "resume-test: fd@pixels"
    assert finished.data.params == {"1 objective": "fd", "2 train_space": "pixels"}

    second_runner = fake_runner(client)  # now nothing fails
    second = sweep.run_sweep(spec, runner=second_runner, client=client, log=lambda _: None)
    assert sorted(second.skipped) == sorted(first.finished)
    assert [call[1][-1] for call in second_runner.calls] == ["term.objective = @bad()", "term.objective = @worse()"]
    assert len(second.finished) == 2 and not second.failed

    third_runner = fake_runner(client)
    third = sweep.run_sweep(spec, runner=third_runner, client=client, log=lambda _: None)
    assert not third_runner.calls and len(third.skipped) == 4


def test_cli_dry_run_lists_cells(experiment_file, tmp_path, monkeypatch, capsys):
    from matchzoo.__main__ import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/m.db")
    code = main(
        [
            "sweep",
            "--gin",
            str(experiment_file),
            "--grid",
            "term.objective=[@fd(), @mmd()]",
            "--name",
            "dry",
            "--dry_run",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "2 cells" in out and "term.objective=@mmd()" in out and out.count("[to run]") == 2


def test_cli_bad_name_is_one_line_error(experiment_file, capsys):
    from matchzoo.__main__ import main

    code = main(
        ["sweep", "--gin", str(experiment_file), "--grid", "term.objective=[@fd()]", "--name", "a b'", "--dry_run"]
    )
    assert code == 2
    assert "sweep name" in capsys.readouterr().err


def test_shipped_sweep_files_expand():
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parent.parent / "gin" / "sweeps").glob("*.gin"))
    assert files, "gin/sweeps/ ships at least one sweep file"
    for file in files:
        spec = sweep.build_spec([str(file)], [], [], None, None)
        cells = sweep.expand(spec)
        assert cells and all(Path(c.experiment_file).is_file() for c in cells)
        assert sweep.sweep_name(spec, cells) == file.stem
        sweep.refuse_no_op_cells(spec, cells)  # no axis is shadowed by an experiment's scoped bindings
