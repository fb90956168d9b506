"""`evaluate` at the papers' protocol: against exported statistics files (FD equal to the dataset's own
reference), and under torchrun (2 gloo processes give the numbers of 1 process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from matchzoo.__main__ import main as cli_main

SPACE = "random_conv"


@pytest.fixture
def samples(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "samples.npz"
    np.savez(path, images=rng.integers(0, 256, size=(300, 1, 8, 8), dtype=np.uint8))
    return path


def evaluate_json(tmp_path, samples, *extra) -> dict:
    out = tmp_path / f"result{len(list(tmp_path.glob('result*.json')))}.json"
    command = ["evaluate", "--samples", str(samples), "--reference", "digits", "--spaces", f"{SPACE},pixels"]
    command += ["--cache_dir", str(tmp_path / "cache"), "--no_progress", "--no_prdc", "--json", str(out), *extra]
    assert cli_main(command) == 0
    return json.loads(out.read_text())


def test_exported_statistics_give_the_datasets_own_fd(tmp_path, samples, capsys):
    """The export holds the train split's statistics, so FD against it equals FD against the dataset to 1e-12;
    the result names the files (path and SHA-256) it compared against."""
    export = tmp_path / "stats"
    command = ["stats", "--dataset", "digits", "--spaces", f"{SPACE},pixels", "--export", str(export)]
    assert cli_main([*command, "--cache_dir", str(tmp_path / "cache"), "--no_progress"]) == 0
    plain = evaluate_json(tmp_path, samples)
    from_files = evaluate_json(tmp_path, samples, "--reference_stats", str(export))
    for space in (SPACE, "pixels"):
        assert from_files["spaces"][space]["fd"] == pytest.approx(plain["spaces"][space]["fd"], rel=1e-12)
        assert from_files["reference_stats"][space]["path"].endswith(f"{space}.npz")
        assert len(from_files["reference_stats"][space]["sha256"]) == 64
    single = evaluate_json(tmp_path, samples, "--reference_stats", str(export / "pixels.npz"), "--spaces", "pixels")
    assert single["spaces"]["pixels"]["fd"] == pytest.approx(plain["spaces"]["pixels"]["fd"], rel=1e-12)
    capsys.readouterr()
    assert cli_main(["evaluate", "--samples", str(samples), "--reference", "digits", "--spaces", SPACE,
                     "--reference_stats", str(tmp_path / "nope")]) == 2  # fmt: skip
    assert "--reference_stats" in capsys.readouterr().err


def test_evaluate_under_torchrun_equals_one_process(tmp_path, samples):
    """Every rank extracts its shard of the samples (and of the reference when uncached); rank 0 prints."""
    base = ["evaluate", "--samples", str(samples), "--reference", "digits", "--spaces", SPACE, "--no_prdc"]
    base += ["--no_progress", "--json", "-", "--interval_draws", "20"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    results = []
    for launcher, cache in (([sys.executable], "c1"), ([sys.executable, "-m", "torch.distributed.run",
                                                        "--standalone", "--nproc_per_node=2"], "c2")):  # fmt: skip
        done = subprocess.run(
            [*launcher, "-m", "matchzoo", *base, "--cache_dir", str(tmp_path / cache)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        results.append(json.loads(done.stdout))  # one JSON document: rank 1 printed nothing
    one, two = results
    for key in ("fd", "fd_low", "fd_high", "fdr", "fd_to_heldout"):
        assert two["spaces"][SPACE][key] == pytest.approx(one["spaces"][SPACE][key], rel=1e-9), key
