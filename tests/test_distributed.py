"""Two gloo processes on the global batch == one process on the concatenated batch, for every objective."""

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

WORLD = 2
N, D, NOISE = 16, 6, 4


def _problem(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(N, NOISE, generator=generator)
    real = torch.randn(N, D, generator=generator) * 1.3 + 0.5
    reference = torch.randn(400, D, generator=generator) * 1.3 + 0.5
    return noise, real, reference


def _objective(name, reference):
    import matchzoo

    torch.manual_seed(123)  # objectives with random parts (directions, critics) start identical everywhere
    objective = matchzoo.make_objective(name)
    objective.prepare_reference(reference)
    return objective


def _step(name, model, noise, real, reference, gather):
    objective = _objective(name, reference)
    torch.manual_seed(7)
    fake = gather(model(noise))
    loss = objective(fake, real).loss
    loss.backward()
    return float(loss.detach())


def _single(name):
    noise, real, reference = _problem()
    torch.manual_seed(0)
    generator = torch.nn.Linear(NOISE, D)
    loss = _step(name, generator, noise, real, reference, lambda x: x)
    return loss, {k: p.grad.clone() for k, p in generator.named_parameters()}


def _worker(rank, names, store, out_dir):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from matchzoo.train import distributed

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    noise, real, reference = _problem()
    shard = slice(rank * N // WORLD, (rank + 1) * N // WORLD)
    results = {}
    for name in names:
        torch.manual_seed(0)
        model = DistributedDataParallel(torch.nn.Linear(NOISE, D))
        local_real = real[shard]
        loss = _step(name, model, noise[shard], distributed.gather(local_real), reference, distributed.gather_with_grad)
        results[name] = (loss, {k.removeprefix("module."): p.grad.clone() for k, p in model.named_parameters()})
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    # neither rank tears gloo down while the other may still be sending: a rank that destroyed its group early
    # once aborted its peer ("terminate called without an active exception", SIGABRT) in a full-suite run
    dist.barrier()
    dist.destroy_process_group()
    # leave without C++ static destructors: gloo's threads sometimes outlive the group and abort the exit
    # ("terminate called without an active exception", SIGABRT) after the results are already on disk
    os._exit(0)


def test_two_processes_match_one_process_for_every_objective(tmp_path):
    import matchzoo
    from matchzoo.registry import OBJECTIVES

    # matchzoo's own objectives: the spawned processes import matchzoo afresh (other tests register throwaway ones)
    names = [n for n in matchzoo.list_objectives() if OBJECTIVES.get(n).__module__.startswith("matchzoo.")]
    mp.spawn(_worker, args=(names, str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        results = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name in names:
            expected_loss, expected_grads = _single(name)
            loss, grads = results[name]
            assert loss == pytest.approx(expected_loss, rel=1e-5, abs=1e-7), name
            for key, grad in expected_grads.items():
                torch.testing.assert_close(grads[key], grad, rtol=1e-5, atol=1e-6, msg=f"{name}: {key}")


@pytest.mark.slow
def test_torchrun_two_processes_end_to_end(isolated_runs):
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node=2",
            "-m",
            "matchzoo.run",
            "--gin",
            str(repo / "gin" / "quickstart.gin"),
            "--gin_param",
            "train.steps = 10",
            "--gin_param",
            "train.eval_every = 10",
            "--gin_param",
            "train.progress = False",
            "--gin_param",
            "train.run_dir = 'runs/ddp'",
            "--gin_param",
            "mlp.num_classes = 10",
            "--gin_param",
            "train.class_matched_real = True",
        ],
        cwd=isolated_runs,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    payload = torch.load(isolated_runs / "runs" / "ddp" / "checkpoint.pt", weights_only=True)
    assert payload["step"] == 10 and payload["world_size"] == 2
    assert result.stdout.count("eval/fdr_k ") == 1  # only rank 0 reports


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run_rank(rank, ports, out_dir):
    """One torchrun-like rank: a finished run, then one refused after joining the group, each must leave it."""
    import torch.distributed as dist

    from matchzoo.run import main

    quick = str(Path(__file__).resolve().parent.parent / "gin" / "quickstart.gin")
    tiny = [
        f"--gin_param={p}"
        for p in (
            "train.steps = 2",
            "train.batch_size = 8",
            "train.eval_spaces = []",
            "train.progress = False",
            "train.device = 'cpu'",
            "train.run_dir = 'runs/ddp'",
        )
    ]
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1")
    outcome = []
    for port, extra in zip(ports, ([], ["--resume", "runs/missing"])):
        os.environ["MASTER_PORT"] = str(port)
        outcome.append((main(["--gin", quick, *tiny, *extra]), dist.is_initialized()))
    torch.save(outcome, Path(out_dir) / f"cleanup{rank}.pt")


def test_a_distributed_run_leaves_its_process_group_also_after_an_error(isolated_runs):
    mp.spawn(_run_rank, args=([_free_port(), _free_port()], str(isolated_runs)), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        assert torch.load(isolated_runs / f"cleanup{rank}.pt") == [(0, False), (2, False)]
