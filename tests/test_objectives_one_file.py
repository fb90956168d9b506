"""A loss is one file: a new objective (forward + weighted form + decorator) in a module of its own, imported by a
gin file, trains (with evaluation), evaluates from its checkpoint, sweeps, probes and passes the registry-driven
checks with no other file of the package touched."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import torch

import matchzoo
from matchzoo import testing
from matchzoo.probes.weighted import weighted_loss_for
from matchzoo.registry import OBJECTIVES

TINY = ["train.steps = 2", "train.batch_size = 8", "train.eval_spaces = []", "train.progress = False"]

LOSS_MODULE = '''
import torch

from matchzoo.objectives.base import LossOutput, Objective
from matchzoo.registry import register_objective


@register_objective("{name}")
class MeanAndScaleGap(Objective):
    """Squared gaps between the feature means and between the mean squared norms."""

    def forward(self, fake, real):
        self.check_features(fake, real)
        real = real.detach()
        scale_gap = fake.square().sum(1).mean() - real.square().sum(1).mean()
        value = (fake.mean(0) - real.mean(0)).square().sum() + scale_gap**2
        return LossOutput(value, {{"gap": float(value.detach())}})

    def weighted_loss(self, candidates, weights, reference):
        p = weights.to(torch.float64) / weights.sum()
        x, y = candidates.to(torch.float64), reference.to(torch.float64)
        return (p @ x - y.mean(0)).square().sum() + (p @ x.square().sum(1) - y.square().sum(1).mean()) ** 2
'''


@pytest.fixture
def one_file_objective(tmp_path, monkeypatch):
    """``(name, gin file)``: the module and an experiment importing it, in a folder outside the package."""
    suffix = uuid.uuid4().hex[:8]  # gin keeps configurables for the process: a fresh name per test run
    name, module = f"one_file_gap_{suffix}", f"one_file_loss_{suffix}"
    (tmp_path / f"{module}.py").write_text(LOSS_MODULE.format(name=name))
    experiment = tmp_path / "experiment.gin"
    experiment.write_text(f"import {module}\ninclude 'offline/base.gin'\nterm.objective = @{name}()\n")
    monkeypatch.setattr(OBJECTIVES, "_entries", dict(OBJECTIVES._entries))  # the registry forgets it afterwards
    return name, experiment


def noisy_digits(path):
    images = matchzoo.make_dataset("digits").images.numpy()[:120]
    noise = np.random.default_rng(0).normal(0, 0.5, images.shape)
    np.savez(path, images=np.clip(images + noise, -1, 1).astype(np.float32))
    return path


def test_a_new_objective_in_one_file_trains_probes_and_is_checked(one_file_objective, isolated_runs, capsys):
    from matchzoo.__main__ import main as cli
    from matchzoo.run import main as run

    name, experiment = one_file_objective
    assert name not in OBJECTIVES
    trained = [*TINY[:-2], "train.eval_spaces = [@pixels]", "train.progress = False", "train.run_dir = 'runs/one'"]
    assert run(["--gin", str(experiment), *(f"--gin_param={p}" for p in trained)]) == 0, capsys.readouterr().err
    out, err = capsys.readouterr()
    assert name in OBJECTIVES and "never used" not in err and "eval/fdr_k" in out

    evaluate = ["evaluate", "--samples", "runs/one", "--reference", "digits", "--spaces", "pixels"]
    assert cli([*evaluate, "--num_samples", "60", "--no_prdc", "--kid_subset_size", "50", "--no_progress"]) == 0
    assert "FDr^k" in capsys.readouterr().out

    grid = ["--grid", "train.lr=[0.001, 0.002]", "--name", "one_file", *(f"--gin_param={p}" for p in TINY)]
    assert cli(["sweep", "--gin", str(experiment), *grid]) == 0, capsys.readouterr().err
    assert "2 run, 0 skipped, 0 failed" in capsys.readouterr().out

    candidates = noisy_digits(isolated_runs / "candidates.npz")
    code = cli(
        [
            "probe",
            "resample",
            "--candidates",
            str(candidates),
            "--spaces",
            "pixels",
            "--attack",
            "pixels",
            "--objective",
            name,
            "--steps",
            "3",
            "--draws",
            "1",
            "--sample_size",
            "80",
            "--reference_size",
            "100",
            "--no_progress",
        ]
    )
    assert code == 0 and f"minimise weighted {name} in pixels" in capsys.readouterr().out

    testing.check_finite_and_differentiable(name, torch.float32, 8, 16)
    testing.check_finite_and_differentiable(name, torch.float64, 32, 4)
    testing.check_permutation_invariant(name, 16, 4)
    testing.check_divergence_zero_on_identical_and_decreasing_with_shift(name, 32, 4)
    testing.check_state_dict_round_trip(name)
    check_weighted_form(name)


def check_weighted_form(name: str) -> None:
    """The probe's contract: uniform weights give the objective, integer weights the duplicated set."""
    fake, real = testing.clouds(12, 3)
    objective = testing.make_objective(name)
    form = weighted_loss_for(objective, real)
    counts = torch.randint(1, 4, (12,), generator=torch.Generator().manual_seed(1)).to(torch.float64)
    duplicated = fake.repeat_interleave(counts.long(), dim=0)
    assert float(form(fake, torch.ones(12))) == pytest.approx(float(objective(fake, real).loss), rel=1e-9)
    assert float(form(fake, counts)) == pytest.approx(float(objective(duplicated, real).loss), rel=1e-9)
