"""scripts/attack_table.py: the README's attack table recomputes FDr^k, fdr_unseen and the schema-2 summary from a
probe's per-draw FDr, and says which fell below their before-interval."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from matchzoo.probes import resample, weighted

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "attack_table.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("attack_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gaussian(n: int, d: int, shift: float, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + shift


@pytest.fixture(scope="module")
def record():
    """A real probe on four Gaussian 'spaces' named like the offline ones: random_conv attacked, digits_ssl seen."""
    import matchzoo

    names = ["pixels", "random_conv", "digits_classifier", "digits_ssl"]
    features = {
        name: resample.SpaceFeatures(
            gaussian(300, 3, 0.4 + 0.2 * i, 10 * i),
            gaussian(400, 3, 0.0, 10 * i + 1),
            gaussian(120, 3, 0.0, 10 * i + 2),
        )
        for i, name in enumerate(names)
    }
    form = weighted.weighted_loss_for(
        matchzoo.make_objective("fd", population="batch"), features["random_conv"].reference
    )
    result = resample.resample_probe(
        features, "random_conv", form, sample_size=100, steps=60, lr=0.1, draws=30, seed=0, seen=["digits_ssl"]
    )
    return resample.result_record(result)


def test_summaries_match_the_probe_and_the_definitions(script, record):
    found = script.summaries(record, "random_conv", ["digits_ssl"])
    spaces = record["spaces"]
    assert found["fdr_unseen"]["spaces"] == ["digits_classifier"]  # pixels is random_conv's family
    assert found["fdr_unseen"]["after"] == pytest.approx(record["fdr_unseen_after"], rel=1e-12)
    assert found["v2"]["spaces"] == ["pixels", "digits_classifier"]
    v2_after = (spaces["pixels"]["fdr_after"] + spaces["digits_classifier"]["fdr_after"]) / 2
    assert found["v2"]["after"] == pytest.approx(v2_after, rel=1e-12)
    assert found["fdr_k"]["after"] == pytest.approx(record["fdr_k_after"], rel=1e-12)
    assert found["fdr_k"]["before_interval"] == pytest.approx(record["fdr_k_before_interval"], rel=1e-12)
    for row in found.values():
        assert row["fell"] == (row["after"] < row["before_interval"][0])


def test_table_counts_what_fell_and_which_spaces_moved(script, record):
    lowered = {**record, "spaces": {k: dict(v) for k, v in record["spaces"].items()}}
    classifier = lowered["spaces"]["digits_classifier"]
    classifier["fdr_after"] = classifier["fdr_before_interval"][0] / 2  # beyond its own interval, downwards
    classifier["fdr_after_draws"] = [v / 1e3 for v in classifier["fdr_after_draws"]]
    lowered["fdr_unseen_after"] = classifier["fdr_after"]
    assert script.moved(lowered, ["digits_classifier"]) == "1↓ 0↑ of 1"
    text = script.table([("fd", "0", "random_conv", lowered)], ["digits_ssl"])
    row = text.splitlines()[2]
    assert row.startswith("| fd | 0 | random_conv |") and "1↓ 0↑ of 1" in row and "**yes**" in row
    assert "fdr_unseen 1 of 1" in text.splitlines()[-1]


def test_a_run_folder_without_a_checkpoint_is_one_line_and_exit_2(script, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["attack_table.py", "--runs", str(tmp_path), "--out", str(tmp_path / "out")])
    assert script.main() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"attack_table: error: --runs {tmp_path}: checkpoint not found")
