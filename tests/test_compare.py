"""compare on a small synthetic MLflow store: final/mean metrics, statuses, table, CSV, plots, summary run."""

from __future__ import annotations

import csv

import pytest

from matchzoo import compare as cmp
from matchzoo import keys
from matchzoo.errors import MatchzooError

SPACES = ("pixels", "random_conv")


def history(start: float, rate: float, steps=(0, 100, 200)) -> list[tuple[int, float]]:
    return [(s, start * rate**i) for i, s in enumerate(steps)]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Four finished runs (2 objectives x 2 spaces), one RUNNING, one FAILED, one from another sweep."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("store")
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    experiment_id = client.create_experiment("zoo", artifact_location=(root / "artifacts").as_uri())
    expected = {}

    def make(objective, space, status, fdrk=None, stab=None, sweep="s1"):
        run = client.create_run(
            experiment_id,
            run_name=f"{objective}-{space}",
            tags={"objective": objective, "train_space": space, "sweep": sweep, keys.KEY_SCHEMA_TAG: keys.KEY_SCHEMA},
        )  # as the trainer tags them
        metrics = []
        for key, values in ((cmp.FDRK, fdrk), (cmp.STABILITY + space, stab)):
            for step, value in values or []:
                metrics.append(Metric(key, value, 0, step))
        if fdrk:
            for other in SPACES:  # FD in every eval space, final only
                metrics.append(Metric(cmp.FD + other, 10.0 * fdrk[-1][1] + len(other), 0, fdrk[-1][0]))
            # stability in the other space too: must not be used as the run's stability
            other_space = [s for s in SPACES if s != space][0]
            metrics.append(Metric(cmp.STABILITY + other_space, -0.5, 0, fdrk[-1][0]))
        if metrics:
            client.log_batch(run.info.run_id, metrics=metrics)
        if status != "RUNNING":
            client.set_terminated(run.info.run_id, status)
        expected[(objective, space, sweep)] = (run.info.run_id, fdrk, stab)

    rates = {
        ("fd", "pixels"): 0.5,
        ("fd", "random_conv"): 0.6,
        ("sinkhorn", "pixels"): 0.7,
        ("sinkhorn", "random_conv"): 0.8,
    }
    for (objective, space), rate in rates.items():
        make(objective, space, "FINISHED", history(8.0, rate), history(0.9, rate**0.1))
    make("mmd", "pixels", "RUNNING", history(8.0, 0.9, steps=(0, 100)), None)
    make("bures", "random_conv", "FAILED")
    make("fd", "pixels", "FINISHED", history(1.0, 1.0), history(0.1, 1.0), sweep="other")
    return client, expected


def test_collect_reads_final_and_mean_over_training(store):
    client, expected = store
    runs = cmp.collect_runs(client, sweep="s1")
    assert len(runs) == 6
    by_key = {(r.objective, r.train_space): r for r in runs}
    for (objective, space, sweep), (run_id, fdrk, stab) in expected.items():
        if sweep != "s1":
            continue
        run = by_key[(objective, space)]
        assert run.run_id == run_id
        if fdrk:
            assert run.final[cmp.FDRK] == pytest.approx(fdrk[-1][1])
            assert run.mean[cmp.FDRK] == pytest.approx(sum(v for _, v in fdrk) / len(fdrk))
            assert run.fdrk_history == [(s, pytest.approx(v)) for s, v in fdrk]
            assert run.last_step == fdrk[-1][0]
        if stab:
            assert run.stability("final") == pytest.approx(stab[-1][1])  # the train space, not the other one
            assert run.stability("mean") == pytest.approx(sum(v for _, v in stab) / len(stab))
    assert by_key[("mmd", "pixels")].status == "RUNNING" and by_key[("mmd", "pixels")].stability() is None
    assert by_key[("bures", "random_conv")].status == "FAILED" and not by_key[("bures", "random_conv")].final


def test_filters_and_errors(store):
    client, _ = store
    assert len(cmp.collect_runs(client, experiment="zoo")) == 7
    assert len(cmp.collect_runs(client, experiment="zoo", sweep="other")) == 1
    with pytest.raises(MatchzooError, match="no MLflow experiment named 'nope'; known: .*zoo"):
        cmp.collect_runs(client, experiment="nope")
    with pytest.raises(MatchzooError, match="no runs found for sweep 'missing'"):
        cmp.collect_runs(client, sweep="missing")


def test_table_csv_plots_and_summary_run(store, tmp_path):
    client, expected = store
    report = cmp.compare(client, sweep="s1", out_dir=tmp_path / "out")
    pivot, every_run = report.markdown.split("Every run:")
    _, fdrk, stab = expected[("fd", "pixels", "s1")]
    assert f"| fd | {fdrk[-1][1]:.4g} ({stab[-1][1]:.4g}) |" in pivot  # pixels column, then random_conv
    assert "mmd" not in pivot and "bures" not in pivot  # RUNNING / FAILED runs stay out of the pivot
    lines = every_run.strip().splitlines()
    assert len(lines) == 2 + 6
    assert "FDr^k (mean)" in lines[0] and "stability (mean)" in lines[0] and "FD pixels" in lines[0]
    assert any("| mmd | pixels | RUNNING |" in line for line in lines)
    assert any("| bures | random_conv | FAILED |" in line and "–" in line for line in lines)

    with open(report.files["csv"]) as handle:
        rows = {(r["objective"], r["train_space"]): r for r in csv.DictReader(handle)}
    _, fdrk, stab = expected[("fd", "pixels", "s1")]
    assert float(rows[("fd", "pixels")]["fdr_k"]) == pytest.approx(fdrk[-1][1])
    assert float(rows[("fd", "pixels")]["stability/pixels"]) == pytest.approx(stab[-1][1])
    assert float(rows[("fd", "pixels")]["stability/random_conv"]) == pytest.approx(-0.5)
    assert rows[("bures", "random_conv")]["fdr_k"] == ""

    for kind in ("scatter", "curves"):
        data = report.files[kind].read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert cmp.plot_stability_vs_fdrk(report.runs, tmp_path / "a.png", "t") == 4  # RUNNING has no stability
    assert cmp.plot_fdrk_over_steps(report.runs, tmp_path / "b.png", "t") == 5  # RUNNING has a curve

    summary = client.get_run(report.summary_run_id)
    assert summary.info.status == "FINISHED" and summary.data.tags[cmp.ROLE_TAG] == cmp.SUMMARY_ROLE
    artifacts = {a.path for a in client.list_artifacts(report.summary_run_id, "comparison")}
    assert artifacts == {f"comparison/{p.name}" for p in report.files.values()}
    # the summary run is never compared with the runs it summarises
    assert len(cmp.collect_runs(client, experiment="zoo")) == 7


def test_cli_prints_table_and_paths(store, tmp_path, monkeypatch, capsys):
    from matchzoo.__main__ import main

    client, _ = store
    monkeypatch.setenv(
        "MLFLOW_TRACKING_URI",
        client.tracking_uri if hasattr(client, "tracking_uri") else client._tracking_client.tracking_uri,
    )
    assert main(["compare", "--sweep", "other", "--out", str(tmp_path / "cli"), "--no_log"]) == 0
    out = capsys.readouterr().out
    assert "| fd | pixels | FINISHED | 200 | 1 | 1 | 0.1 | 0.1 |" in out
    assert (tmp_path / "cli" / "stability_vs_fdrk.png").is_file()
    assert main(["compare", "--experiment", "nope", "--no_log"]) == 2
    assert "no MLflow experiment named 'nope'" in capsys.readouterr().err


def test_runs_logged_before_key_schema_2_are_read_with_the_new_names(tmp_path):
    """``eval/fd/<space>`` once meant FD to the held-out split; read from an old store it must not land in the
    ``fd/<space>`` column (now FD to the reference)."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = client.create_experiment("old", artifact_location=(tmp_path / "artifacts").as_uri())

    def make(name, tags, metrics):
        run_id = client.create_run(
            experiment_id, run_name=name, tags={"objective": name, "train_space": "pixels", **tags}
        ).info.run_id
        client.log_batch(run_id, metrics=[Metric(k, v, 0, 10) for k, v in metrics.items()])
        client.set_terminated(run_id, "FINISHED")

    make("old", {}, {"eval/fd/pixels": 3.0, cmp.FDRK: 2.0})
    make("resumed", {}, {"eval/fd/pixels": 5.0, "eval/fd_to_heldout/pixels": 6.0, cmp.FDRK: 2.0})
    make(
        "new",
        {keys.KEY_SCHEMA_TAG: keys.KEY_SCHEMA},
        {"eval/fd/pixels": 7.0, "eval/fd_to_heldout/pixels": 8.0, cmp.FDRK: 2.0},
    )
    rows = {row["objective"]: row for row in cmp.table_rows(cmp.collect_runs(client, experiment="old"))}
    assert (rows["old"]["fd/pixels"], rows["old"]["fd_to_heldout/pixels"]) == (None, 3.0)
    assert (rows["resumed"]["fd/pixels"], rows["resumed"]["fd_to_heldout/pixels"]) == (5.0, 6.0)
    assert (rows["new"]["fd/pixels"], rows["new"]["fd_to_heldout/pixels"]) == (7.0, 8.0)
    assert "FD pixels" in cmp.markdown_table(cmp.collect_runs(client, experiment="old")).splitlines()[0]


def test_fdr_unseen_of_schema_2_runs_is_recomputed_under_the_schema_3_definition(tmp_path):
    """Schema 2 logged eval/fdr_unseen as an arithmetic mean over the spaces not trained in; compare drops it (and
    its interval) and recomputes the geometric mean over the spaces of unseen families; schema 3 values stay."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = client.create_experiment("schema", artifact_location=(tmp_path / "artifacts").as_uri())
    fdr = {"pixels": 60.0, "random_conv": 20.0, "digits_classifier": 9.0, "digits_ssl": 1.2}

    def make(name, schema, logged, **extra):
        tags = {"objective": name, "train_space": "random_conv", keys.KEY_SCHEMA_TAG: schema, **extra}
        run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
        metrics = {f"eval/fdr/{space}": value for space, value in fdr.items()}
        metrics.update({cmp.FDRK: sum(fdr.values()) / 4, **logged})
        client.log_batch(run_id, metrics=[Metric(k, v, 0, 10) for k, v in metrics.items()])
        client.set_terminated(run_id, "FINISHED")

    old = {keys.FDR_UNSEEN: 23.4, keys.FDR_UNSEEN_LOW: 20.0, keys.FDR_UNSEEN_HIGH: 25.0}
    make("two", "2", {**old, keys.ema_key(0.999, keys.FDR_UNSEEN): 23.0})
    make("three", "3", {keys.FDR_UNSEEN: 3.5, keys.FDR_UNSEEN_LOW: 3.0, keys.FDR_UNSEEN_HIGH: 4.0})
    make("post", "2", old, **{keys.SEEN_SPACES_TAG: "digits_ssl,random_conv"})  # init_from a digits_ssl run
    runs = {run.objective: run for run in cmp.collect_runs(client, experiment="schema")}
    assert runs["post"].fdr_unseen() == pytest.approx(9.0, rel=1e-12)  # the classifier alone
    two = runs["two"]
    assert two.fdr_unseen() == pytest.approx((9.0 * 1.2) ** 0.5, rel=1e-12)  # pixels left out with random_conv
    assert two.interval(keys.FDR_UNSEEN) is None and not any(k.endswith("fdr_unseen") for k in two.final)
    assert runs["three"].fdr_unseen() == 3.5 and runs["three"].interval(keys.FDR_UNSEEN) == (3.0, 4.0)
    assert keys.upgrade_metrics({keys.FDR_UNSEEN: 1.0}, {}) == {}  # schema 1 (no tag) too


def test_seed_groups_are_aggregated_as_mean_and_t_interval_and_intervals_are_shown(tmp_path):
    """Three seeds of one cell (tag sweep_group) give mean ± t(0.975, 2) s / sqrt(3); a one-seed group gives no
    interval; a run's logged intervals and flags appear in its row."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient
    from scipy import stats

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = client.create_experiment("seeds", artifact_location=(tmp_path / "artifacts").as_uri())
    values = {"0": 2.0, "1": 2.6, "2": 2.3}

    def make(group, seed, fdrk, extra=None):
        tags = {"objective": "fd", "train_space": "digits_ssl", keys.GROUP_TAG: group, keys.SEED_TAG: seed}
        tags[keys.KEY_SCHEMA_TAG] = keys.KEY_SCHEMA
        run_id = client.create_run(experiment_id, run_name=f"{group}-{seed}", tags={**tags, "sweep": "s"}).info.run_id
        metrics = {cmp.FDRK: fdrk, "eval/fdr/digits_ssl": 0.5, "eval/fdr/pixels": fdrk, **(extra or {})}
        client.log_batch(run_id, metrics=[Metric(k, v, 0, 10) for k, v in metrics.items()])
        client.set_terminated(run_id, "FINISHED")

    for seed, value in values.items():
        make("cell_a", seed, value)
    logged = {
        keys.FDRK_LOW: 4.0,
        keys.FDRK_HIGH: 6.0,
        "eval/fd/pixels": 3.0,
        "eval/fd_low/pixels": 2.5,
        "eval/fd_high/pixels": 3.5,
        "eval/fdr_below_one/digits_ssl": 1.0,
    }
    make("cell_b", "0", 5.0, logged)
    runs = cmp.collect_runs(client, experiment="seeds")
    groups = {row["sweep_group"]: row for row in cmp.group_rows(runs)}
    sample = list(values.values())
    half = stats.t.ppf(0.975, 2) * stats.tstd(sample) / 3**0.5
    assert groups["cell_a"]["n"] == 3 and groups["cell_a"]["fdr_k"] == pytest.approx(sum(sample) / 3)
    assert groups["cell_a"]["fdr_k_half_width"] == pytest.approx(half, rel=1e-9)
    assert groups["cell_a"]["fdr_unseen"] == pytest.approx(sum(sample) / 3)  # pixels: the one unseen space
    assert groups["cell_b"]["n"] == 1 and groups["cell_b"]["fdr_k_half_width"] is None
    report = cmp.compare(client, experiment="seeds", out_dir=tmp_path / "out", log_summary=False)
    assert f"| cell_a | fd | digits_ssl | 0,1,2 (3) | {sum(sample) / 3:.4g} ± {half:.4g} |" in report.markdown
    assert "| cell_b | fd | digits_ssl | 0 (1) | 5 | 5 |" in report.markdown
    row = next(line for line in report.markdown.splitlines() if line.endswith("| cell_b-0 |"))
    assert "| 5 [4, 6] |" in row and "| digits_ssl* |" in row and "| 3 [2.5, 3.5] |" in row
    assert f"{sum(sample + [5.0]) / 4:.4g} ± " in report.markdown.split("Seed groups")[0]  # the pivot cell: 4 runs
    with open(report.files["csv"]) as handle:
        csv_rows = {r["run_name"]: r for r in csv.DictReader(handle)}
    assert csv_rows["cell_b-0"]["fdr_k_low"] == "4.0" and csv_rows["cell_a-1"]["sweep_seed"] == "1"
