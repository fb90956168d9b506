"""The run path: parse -> build the experiment (seed, then the factories) -> run; the optimiser as a gin
factory; ``train.*`` split into parts; ``train/`` independent of the gin layer."""

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest
import torch

from matchzoo import config
from matchzoo.run import build_settings, main
from matchzoo.train import checkpoint
from matchzoo.train.settings import ExperimentSetup, Optimization, Runtime, Schedule, TrackingNames, TrainSettings

REPO = Path(__file__).resolve().parent.parent
QUICK = str(REPO / "gin" / "quickstart.gin")
TINY = ["train.steps = 2", "train.batch_size = 8", "train.eval_spaces = []", "train.progress = False"]


def settings(*params: str) -> TrainSettings:
    config.parse([QUICK], [*TINY, *params])
    return build_settings()


def weights(module: torch.nn.Module) -> list[torch.Tensor]:
    """Initialised weights (a SAN critic's first layer is lazy until it sees features)."""
    lazy = torch.nn.parameter.UninitializedParameter
    return [tensor.detach().clone() for tensor in module.state_dict().values() if not isinstance(tensor, lazy)]


def errors(capsys, *params: str, resume=None) -> tuple[int, list[str]]:
    argv = ["--gin", QUICK, *[f"--gin_param={p}" for p in (*TINY, *params)]]
    code = main(argv + (["--resume", resume] if resume else []))
    return code, [line for line in capsys.readouterr().err.splitlines() if line.startswith("matchzoo: error")]


def test_the_seed_alone_chooses_the_initial_generator():
    """Built after torch.manual_seed(train.seed): whatever ran before does not matter, and it is the same
    generator the quickstart always started from (seed, then mlp, nothing in between)."""
    from matchzoo.generators.mlp import MLPGenerator

    torch.manual_seed(12345)
    first = weights(settings().generator)
    torch.rand(1000)  # the global RNG somewhere else entirely
    second = weights(settings().generator)
    torch.manual_seed(0)
    expected = weights(MLPGenerator(image_shape=(1, 8, 8)))
    for a, b, c in zip(first, second, expected):
        assert torch.equal(a, b) and torch.equal(a, c)
    other = weights(settings("train.seed = 1").generator)
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_critics_built_from_factories_follow_the_seed():
    """A SAN critic is initialised when its term is built, after the seed: same seed, same critic."""
    critic = ["train.terms = [@term]", "term.space = @pixels()", "term.objective = @san()", "san.hidden = (8,)"]
    torch.manual_seed(1)
    first = weights(settings(*critic).terms[0].objective)
    torch.manual_seed(2)
    assert all(torch.equal(a, b) for a, b in zip(first, weights(settings(*critic).terms[0].objective)))
    reseeded = weights(settings(*critic, "train.seed = 3").terms[0].objective)
    assert not all(torch.equal(a, b) for a, b in zip(first, reseeded))


@pytest.mark.parametrize(
    "params, words",
    [
        (
            ["train.generator = @mlp()"],
            "train.generator = @mlp() builds the generator before train.seed is applied; "
            "write train.generator = @mlp (no parentheses)",
        ),
        (
            ["train.terms = [@term()]", "term.space = @pixels()", "term.objective = @san()"],
            "train.terms: term 'pixels.san' was built before train.seed is applied",
        ),
        (
            ["train.optimizer = 'adam'"],
            "train.optimizer must be an optimiser factory such as @adam or @adamw (no "
            "parentheses), got the string 'adam'",
        ),
        (
            ["train.optimizer = @pixels"],
            "train.optimizer = @pixels cannot build an optimiser from (parameters, lr, betas)",
        ),
        (
            ["train.optimizer = @adam()"],
            "adam() missing 3 required positional arguments: 'parameters', 'lr', and 'betas' "
            "(if @adam() is a factory such as train.optimizer's, write @adam)",
        ),
        (["adamw.weight_decay = -1", "train.optimizer = @adamw"], "adamw.weight_decay must be >= 0.0, got -1.0"),
        (
            ["adam.lr = 0.1"],
            "'adam' has denylisted kwarg 'lr'. Its caller passes it: an optimiser's learning rate "
            "and betas are train.lr",
        ),
    ],
)
def test_wrong_factories_are_one_line(isolated_runs, capsys, params, words):
    code, lines = errors(capsys, *params)
    assert code == 2 and len(lines) == 1 and words in lines[0], lines


def test_the_default_optimiser_is_adam_with_train_lr_and_betas():
    built = settings("train.lr = 0.002", "train.betas = (0.3, 0.9)")
    optimizer = built.optimization.build_optimizer(built.generator.parameters())
    assert type(optimizer) is torch.optim.Adam
    group = optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (0.002, (0.3, 0.9), 0.0)
    built = settings("train.optimizer = @adamw", "adamw.weight_decay = 0.05")
    optimizer = built.optimization.build_optimizer(built.generator.parameters())
    assert type(optimizer) is torch.optim.AdamW and optimizer.param_groups[0]["weight_decay"] == 0.05


def test_every_train_binding_lands_in_exactly_one_part():
    parameters = set(inspect.signature(TrainSettings.__init__).parameters) - {"self"}
    parts = [ExperimentSetup, Optimization, Schedule, Runtime, TrackingNames]
    fields = [field.name for part in parts for field in dataclasses.fields(part)]
    assert sorted(fields) == sorted(parameters)
    built = settings("train.log_every = 7")
    assert built.schedule.log_every == 7 and built.optimization.steps == 2 and built.runtime.progress is False
    assert built.steps == 2  # flat reads stay for callers that take the whole settings


def test_the_train_package_never_imports_the_gin_layer():
    """train/ is the library the run layer drives; reading stored configs (gin text) lives outside it."""
    offenders = []
    for path in sorted((REPO / "matchzoo" / "train").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [f"{node.module}.{alias.name}" for alias in node.names]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [
                f"{path.name}: {name}"
                for name in names
                if name.startswith(("matchzoo.config", "matchzoo.stored_config", "matchzoo.run"))
            ]
    assert offenders == [], offenders


def test_checkpoints_from_before_the_factories_resume(isolated_runs, capsys):
    """A run started with `train.generator = @mlp()` and no optimiser binding resumes: same experiment."""
    assert errors(capsys, "train.run_dir = 'runs/old'") == (0, [])
    path = isolated_runs / "runs" / "old" / checkpoint.FILENAME
    payload = checkpoint.load(path)
    text = payload["operative_config"]
    assert "train.generator = @mlp\n" in text and "adam.weight_decay = 0.0\n" in text
    payload["operative_config"] = text.replace("train.generator = @mlp\n", "train.generator = @mlp()\n").replace(
        "adam.weight_decay = 0.0\n", ""
    )
    checkpoint.save_atomic({k: v for k, v in payload.items() if k != "format"}, path)
    assert errors(capsys, "train.steps = 3", resume="runs/old")[0] == 0
    assert checkpoint.load(path)["step"] == 3
