"""`stats` under torchrun: two processes build the cache and the exported statistics that one process builds
(features bit for bit at one thread per process, float64 mean/covariance to 1e-12 against NumPy and against one
process), rank 0 alone prints and writes, a cache written by two ranks is reused by one; inside ``all_ranks`` the
cache is a collective (reused only when every rank can, rebuilt together, rank 0's errors raised on every rank)."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

import matchzoo
from matchzoo.__main__ import main as cli_main
from matchzoo.data.cache import CacheRebuildWarning, cache_path, load_or_build
from matchzoo.errors import MatchzooError
from matchzoo.torchrun import rank_device

WORLD = 2
SPACE, BATCH = "random_conv", 100  # shards of 8 and 7 batches (train), a short last batch
SPLITS = ("train", "heldout")


def relative_error(value, expected) -> float:
    value, expected = torch.as_tensor(value), torch.as_tensor(expected)
    return float(torch.linalg.norm(value - expected) / torch.linalg.norm(expected))


def one_process(split: str, cache_dir: Path) -> tuple[dict, bool]:
    """What one process builds, at one thread as each rank (a convolution's float sums depend on the threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        space, digits = matchzoo.make_feature_space(SPACE), matchzoo.make_dataset("digits")
        return load_or_build(space, digits, split, batch_size=BATCH, cache_dir=cache_dir, progress=False)
    finally:
        torch.set_num_threads(threads)


def test_torchrun_stats_equals_one_process_and_its_cache_is_reused(tmp_path):
    cache, export = tmp_path / "cache2", tmp_path / "export2"
    command = ["stats", "--dataset", "digits", "--spaces", SPACE, "--batch_size", str(BATCH), "--no_progress"]
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}"]
        + ["-m", "matchzoo", *command, "--cache_dir", str(cache), "--export", str(export), "--workers", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count(" built ") == 2 and result.stdout.count("exported") == 2  # rank 0 alone prints
    space, digits = matchzoo.make_feature_space(SPACE), matchzoo.make_dataset("digits")
    for split in SPLITS:
        expected, _ = one_process(split, tmp_path / "cache1")
        stored = torch.load(cache_path(space, digits, split, cache), weights_only=True)
        assert torch.equal(stored["features"], expected["features"]), split
        rows = stored["features"].double().numpy()
        assert relative_error(stored["mean"], rows.mean(axis=0)) < 1e-12  # NumPy: an independent oracle
        assert relative_error(stored["cov"], np.cov(rows, rowvar=False)) < 1e-12
        assert relative_error(stored["mean"], expected["mean"]) < 1e-12
        assert relative_error(stored["cov"], expected["cov"]) < 1e-12
        name = f"{SPACE}.npz" if split == "train" else f"{SPACE}.{split}.npz"
        with np.load(export / name) as exported:
            assert int(exported["n"]) == rows.shape[0]
            assert np.array_equal(exported["mu"], stored["mean"].numpy())
            assert np.array_equal(exported["sigma"], stored["cov"].numpy())
        with warnings.catch_warnings():
            warnings.simplefilter("error", CacheRebuildWarning)
            reused, built = one_process(split, cache)  # one process reads what two wrote
        assert not built and torch.equal(reused["cov"], stored["cov"])


def _worker(rank, store, out_dir):
    import torch.distributed as dist

    from matchzoo.data import sharding

    torch.set_num_threads(1)
    timeout = datetime.timedelta(seconds=120)  # a rank left waiting fails the test instead of hanging it
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD, timeout=timeout)
    out = Path(out_dir)
    space, digits = matchzoo.make_feature_space(SPACE), matchzoo.make_dataset("digits")
    report: dict = {"built": [], "warnings": []}
    try:
        with sharding.all_ranks(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CacheRebuildWarning)

            def build(cache_dir):
                record, built = load_or_build(space, digits, "heldout", BATCH, cache_dir=cache_dir, progress=False)
                report["built"].append(built)
                return record

            report["record"] = build(out / "shared")  # built: every rank extracts its shard
            report["again"] = build(out / "shared")  # reused: every rank found it
            report["rank_zero_only"] = build(out / f"alone{rank}")  # built again: rank 1 had no file
            if rank == 0:  # now rank 0's folder has the file and rank 1's has not
                report["disagreement"] = build(out / "alone0")
            else:
                report["disagreement"] = build(out / "alone1-empty")
            try:
                build(out / "blocker" / "cache")  # a file where rank 0 must create a folder
            except MatchzooError as error:
                report["error"] = str(error)
            report["warnings"] = [str(w.message) for w in caught]
        torch.save(report, out / f"rank{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_cache_is_one_collective_inside_all_ranks(tmp_path):
    (tmp_path / "blocker").write_text("a file, not a folder")
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True)
    expected, _ = one_process("heldout", tmp_path / "one")
    reports = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD)]
    for rank, report in enumerate(reports):
        assert report["built"] == [True, False, True, True], rank
        assert torch.equal(report["record"]["features"], expected["features"])
        assert relative_error(report["record"]["cov"], expected["cov"]) < 1e-12
        assert report["error"].startswith("cannot create the reference cache folder"), report["error"]
    first, second = reports
    for name in ("record", "again", "rank_zero_only", "disagreement"):  # the same bytes on every rank
        assert all(torch.equal(first[name][key], second[name][key]) for key in ("features", "mean", "cov")), name
        assert first[name]["features_sha256"] == second[name]["features_sha256"]
    assert first["error"] == second["error"] and "\n" not in first["error"]
    assert (tmp_path / "alone0").is_dir() and not (tmp_path / "alone1").exists()  # rank 0 alone writes
    assert not list((tmp_path / "shared").glob("*.tmp*"))
    # one warning, on rank 0, for the file rank 1 could not see
    assert second["warnings"] == []
    assert len(first["warnings"]) == 1 and "another rank" in first["warnings"][0]


def test_workers_must_be_a_non_negative_integer(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["stats", "--dataset", "digits", "--spaces", "pixels", "--workers", "-1"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["matchzoo: error: python -m matchzoo stats: argument --workers: must be >= 0, got -1 (see --help)"]


def test_a_fixed_gpu_under_torchrun_is_refused_in_one_line():
    with pytest.raises(MatchzooError, match=r"^--device cuda:1 under torchrun would put every rank on one GPU") as info:
        rank_device("cuda:1")
    assert "\n" not in str(info.value)
    assert rank_device("cpu") == "cpu"
