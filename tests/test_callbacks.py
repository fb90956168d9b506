"""Callbacks own their cadence (``evaluator.*``, ``checkpointer.every``, ``metric_logger.every``, falling back to
the ``train.*`` cadence) and know the run from what they were given, never from the trainer's settings."""

import ast
import re
from pathlib import Path

import pytest
import torch

from matchzoo import config, keys
from matchzoo.errors import MatchzooError
from matchzoo.run import build_settings, main, plan_callbacks, resume_changes, run_context

REPO = Path(__file__).resolve().parent.parent
QUICK = str(REPO / "gin" / "quickstart.gin")
TINY = ["train.steps = 2", "train.batch_size = 8", "train.eval_spaces = []", "train.progress = False"]
CALLBACK_SECTIONS = re.compile(r"# Parameters for (evaluator|checkpointer|metric_logger):\n(#.*\n)?([^\n]+\n)*\n?")


def built(*params: str):
    """The settings and the three callbacks as ``run`` builds them (no tracker: nothing is logged)."""
    config.parse([QUICK], [*TINY, *params])
    settings = build_settings()
    plans, context = plan_callbacks(settings.schedule), run_context(settings)
    evaluator = plans.evaluator(tracker=None, seed=0, context=context)
    checkpointer = plans.checkpointer(path=Path("unused"), steps=context.steps, extra={})
    return settings, evaluator, checkpointer, plans.metric_logger(tracker=None, steps=context.steps)


def test_callbacks_never_read_the_trainers_settings():
    tree = ast.parse((REPO / "matchzoo" / "train" / "callbacks.py").read_text())
    reads = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "settings"]
    assert reads == [], f"callbacks.py reads .settings at lines {reads}"


def test_the_train_cadence_still_sets_every_callback():
    _, evaluator, checkpointer, logger = built(
        "train.eval_every = 3",
        "train.eval_samples = 40",
        "train.stability_resamples = 3",
        "train.checkpoint_every = 5",
        "train.log_every = 7",
    )
    assert (evaluator.every, evaluator.samples, evaluator.stability_every) == (3, 40, 3)
    assert evaluator.stability_resamples == 3
    assert (checkpointer.every, logger.every) == (5, 7)
    assert evaluator.context.steps == checkpointer.steps == logger.steps == 2


def test_a_callbacks_own_binding_wins_over_train():
    _, evaluator, checkpointer, logger = built(
        "train.eval_every = 3",
        "evaluator.every = 4",
        "evaluator.samples = 30",
        "evaluator.stability_resamples = 5",
        "train.checkpoint_every = 5",
        "checkpointer.every = 6",
        "metric_logger.every = 9",
    )
    # stability follows the evaluator's own cadence unless a stability binding says otherwise
    assert (evaluator.every, evaluator.samples, evaluator.stability_every) == (4, 30, 4)
    assert evaluator.stability_resamples == 5
    assert (checkpointer.every, logger.every) == (6, 9)
    _, evaluator, _, _ = built("evaluator.every = 4", "train.stability_every = 0")
    assert evaluator.stability_every == 0
    _, evaluator, _, _ = built("train.stability_every = 8", "evaluator.stability_every = 2")
    assert evaluator.stability_every == 2


def test_evaluator_metrics_chooses_what_runs_in_training():
    _, default, _, _ = built()
    assert [type(m).registry_name for m in default.metrics] == [
        "fd_reference",
        "fd_to_heldout",
        "fdr",
        "inception_score",  # runs only in inception_logits (Metric.spaces)
        "intervals",
    ]
    _, chosen, _, _ = built("evaluator.metrics = ['fdr', 'kid', 'fd_reference']", "kid.subsets = 3")
    assert [type(m).registry_name for m in chosen.metrics] == ["fd_reference", "fdr", "kid"]
    assert chosen.metrics[-1].subsets == 3
    # built before the operative config is recorded: the metric's bindings count as used
    record = config.record()
    assert "kid.subsets" not in " ".join(record.unused) and record.bindings["kid.subsets"] == "3"
    assert record.bindings["evaluator.metrics"] == "['fdr', 'kid', 'fd_reference']"


@pytest.mark.parametrize(
    "binding, expected",
    [
        ("evaluator.every = 0", "evaluator.every must be >= 1, got 0"),
        ("evaluator.samples = 1", "evaluator.samples must be >= 2, got 1"),
        ("evaluator.stability_every = -1", "evaluator.stability_every must be >= 0, got -1"),
        ("evaluator.stability_resamples = 1", "evaluator.stability_resamples must be >= 2, got 1"),
        ("checkpointer.every = 0", "checkpointer.every must be >= 1, got 0"),
        ("metric_logger.every = 2.5", "metric_logger.every must be an integer, got 2.5"),
        ("evaluator.metrics = 'kid'", "evaluator.metrics must be a list of metric names such as"),
        ("evaluator.metrics = ['fdx']", "evaluator.metrics: unknown metric 'fdx' (did you mean 'fdr'?)"),
    ],
)
def test_a_bad_callback_value_is_one_line_naming_the_binding(isolated_runs, capsys, binding, expected):
    code = main(["--gin", QUICK, *[f"--gin_param={p}" for p in (*TINY, binding)]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"matchzoo: error: {expected}"), err
    assert not (isolated_runs / "runs" / "mlflow.db").exists()  # refused before any run was recorded


def operative(*params: str) -> str:
    built(*params)
    return config.record().operative


def test_resume_accepts_the_callbacks_cadence_like_trains():
    started = operative()
    assert "evaluator.every = None" in started
    before_configurables = CALLBACK_SECTIONS.sub("", started)  # a checkpoint written before this change
    assert "evaluator" not in before_configurables and "metric_logger" not in before_configurables
    assert resume_changes({"operative_config": before_configurables}, started, Path("run")) == {}
    cadence = [
        "evaluator.every = 5",
        "evaluator.stability_every = 0",
        "checkpointer.every = 4",
        "metric_logger.every = 3",
    ]
    changes = resume_changes({"operative_config": before_configurables}, operative(*cadence), Path("run"))
    assert changes == {
        "checkpointer.every": ("(unset)", "4"),
        "evaluator.every": ("(unset)", "5"),
        "evaluator.stability_every": ("(unset)", "0"),
        "metric_logger.every": ("(unset)", "3"),
    }
    for changes_numbers in ("evaluator.samples = 30", "evaluator.metrics = ['kid']"):
        with pytest.raises(MatchzooError, match=re.escape(changes_numbers.split(" =")[0])):
            resume_changes({"operative_config": started}, operative(changes_numbers), Path("run"))


def test_kid_in_training_logs_and_a_resume_changes_the_cadence(isolated_runs, capsys):
    from mlflow.tracking import MlflowClient

    run = [
        "--gin",
        QUICK,
        *[f"--gin_param={p}" for p in (*TINY, "train.eval_spaces = [@pixels]", "train.run_dir = 'runs/kid'")],
        "--gin_param=evaluator.metrics = ['fd_reference', 'fdr', 'kid']",
        "--gin_param=kid.subsets = 2",
        "--gin_param=evaluator.stability_every = 0",
    ]
    assert main(run) == 0, capsys.readouterr().err
    assert main([*run, "--gin_param=train.steps = 4", "--gin_param=evaluator.every = 1"]) == 0
    assert "evaluator.every: None -> 1" in capsys.readouterr().err
    payload = torch.load(isolated_runs / "runs" / "kid" / "checkpoint.pt", weights_only=True)
    client = MlflowClient(tracking_uri=f"sqlite:///{isolated_runs / 'runs' / 'mlflow.db'}")
    history = client.get_metric_history(payload["mlflow_run_id"], keys.eval_key("kid", "pixels"))
    # at the start and end of the first run (train.eval_every = 250), then every step of the resumed one
    assert [m.step for m in history] == [0, 2, 3, 4]
    assert keys.eval_key("fd_to_heldout", "pixels") not in client.get_run(payload["mlflow_run_id"]).data.metrics


def test_an_override_of_a_train_cadence_the_callback_shadows_is_refused(isolated_runs, tmp_path, capsys):
    """evaluator.every wins over train.eval_every, so a --gin_param (or sweep axis) on the latter would be a no-op."""
    from matchzoo.run import main

    experiment = tmp_path / "shadowed.gin"
    quickstart = Path(__file__).resolve().parent.parent / "gin" / "quickstart.gin"
    experiment.write_text(f"include '{quickstart}'\nevaluator.every = 5\n")
    code = main(["--gin", str(experiment), "--gin_param", "train.eval_every=7", "--gin_param", "train.steps=2"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("matchzoo: error")]
    assert code == 2 and len(errors) == 1
    assert "'train.eval_every=7' changes nothing: evaluator.every = 5 is bound" in errors[0]
    assert not (isolated_runs / "runs" / "mlflow.db").exists()
