"""Every registered generator under DDP and through a checkpoint: two gloo processes on the global batch give the
gradients of one process on the concatenated batch, and a trainer resumed from its state continues exactly as an
uninterrupted one. Registry-driven: a new generator is covered the moment it is registered."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

WORLD, N = 2, 8


def names() -> list[str]:
    """matchzoo's own generators: the spawned processes import matchzoo afresh and know only those (other tests
    register throwaway generators in this process)."""
    from matchzoo.registry import GENERATORS

    return sorted(name for name in GENERATORS.names() if GENERATORS.get(name).__module__.startswith("matchzoo."))


def build(name: str):
    from matchzoo.registry import GENERATORS

    torch.manual_seed(0)
    cls = GENERATORS.get(name)
    return cls(**cls.small_kwargs()).eval()  # eval: no label dropout, so both sides draw no random numbers


def problem(generator):
    rng = torch.Generator().manual_seed(1)
    noise = generator.sample_noise(N, generator=rng)
    return noise, generator.sample_labels(N, generator=rng)


def loss_of(images: torch.Tensor) -> torch.Tensor:
    """A loss of the whole (global) batch, as a distribution-matching objective is: its mean and spread."""
    flat = images.flatten(1)
    return (flat.mean(0) - 0.1).square().sum() + flat.var(0).sum()


def forward(model, noise, labels):
    return model(noise) if labels is None else model(noise, labels)


def single(name: str) -> dict[str, torch.Tensor]:
    generator = build(name)
    noise, labels = problem(generator)
    loss_of(forward(generator, noise, labels)).backward()
    return {key: p.grad.clone() for key, p in generator.named_parameters() if p.grad is not None}


def worker(rank: int, store: str, out_dir: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from matchzoo.train import distributed

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    shard = slice(rank * N // WORLD, (rank + 1) * N // WORLD)
    results = {}
    for name in names():
        generator = build(name)
        noise, labels = problem(generator)
        model = DistributedDataParallel(generator)
        local = forward(model, noise[shard], None if labels is None else labels[shard])
        loss_of(distributed.gather_with_grad(local)).backward()
        results[name] = {key: p.grad.clone() for key, p in generator.named_parameters() if p.grad is not None}
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()
    # leave without C++ static destructors: gloo's threads sometimes outlive the group and abort the exit
    # ("terminate called without an active exception", SIGABRT) after the results are already on disk
    os._exit(0)


def test_two_processes_give_the_gradients_of_one_for_every_generator(tmp_path):
    mp.spawn(worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        results = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name in names():
            expected = single(name)
            assert set(results[name]) == set(expected) and expected, name
            for key, grad in expected.items():
                # float32 round-off of a different summation order (a shard, one thread): 1e-5 of the largest entry
                scale = float(grad.abs().max())
                error = float((results[name][key] - grad).abs().max())
                assert error <= 1e-5 * scale + 1e-7, f"{name}: {key}: max error {error:.3g} of {scale:.3g}"


def trainer_for(name: str, tmp_path: Path, steps: int):
    """A real trainer of the tiny generator on a tiny labelled npz of its image shape (MMD in pixels; class-
    matched real batches for conditional generators; two EMAs, warm-up + cosine: every piece of state)."""
    import gin
    import numpy as np

    from matchzoo import config
    from matchzoo.registry import GENERATORS
    from matchzoo.run import build_settings
    from matchzoo.train.trainer import Trainer

    cls = GENERATORS.get(name)
    generator = cls(**cls.small_kwargs())
    channels, height, width = generator.image_shape
    path = tmp_path / "tiny.npz"
    if not path.exists():
        images = np.random.default_rng(0).integers(0, 256, size=(40, channels, height, width), dtype=np.uint8)
        np.savez(path, images=images, labels=np.arange(40) % max(generator.num_classes, 1))
    gin.clear_config()
    config.parse(
        [],
        [
            "train.dataset = @npz()",
            f"npz.path = '{path}'",
            "npz.key = 'images'",
            "train.terms = [@term]",
            "term.space = @pixels()",
            f"pixels.size = {height}",
            f"pixels.channels = {1 if channels == 1 else 3}",
            "term.objective = @mmd()",
            f"train.class_matched_real = {generator.num_classes > 0}",
            f"train.steps = {steps}",
            "train.batch_size = 8",
            "train.ema_decay = (0.9, 0.5)",
            "train.lr_schedule = @warmup_cosine",
            "warmup_cosine.warmup_steps = 1",
            "train.eval_spaces = []",
            "train.progress = False",
            "train.device = 'cpu'",
        ],
    )
    gin.bind_parameter("train.generator", lambda: cls(**cls.small_kwargs()))  # a factory, built after the seed
    trainer = Trainer(build_settings())
    trainer.prepare()
    return trainer


@pytest.mark.parametrize("name", names())
def test_a_resumed_trainer_continues_exactly_for_every_generator(name, tmp_path):
    """2 steps, the trainer's state through a file, 2 more steps == 4 steps straight (labels, EMAs, RNGs,
    schedule): what kill-and-resume relies on, for every registered generator."""
    straight = trainer_for(name, tmp_path, steps=4)
    expected = [straight.train_step() for _ in range(4)]
    first = trainer_for(name, tmp_path, steps=4)
    losses = [first.train_step() for _ in range(2)]
    torch.save(first.state_dict(), tmp_path / "state.pt")
    resumed = trainer_for(name, tmp_path, steps=4)
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    losses += [resumed.train_step() for _ in range(2)]
    for got, want in zip(losses, expected):
        assert got["train/loss"] == want["train/loss"], name
    for (key, value), reference in zip(
        resumed.generator.state_dict().items(), straight.generator.state_dict().values()
    ):
        assert torch.equal(value, reference), f"{name}: {key}"
    for ema, reference in zip(resumed.emas, straight.emas):
        for value, expected_value in zip(ema.model.state_dict().values(), reference.model.state_dict().values()):
            assert torch.equal(value, expected_value), f"{name}: EMA {ema.decay}"


def test_extracting_features_leaves_the_global_random_state_alone():
    """A cache miss extracts features; it must not shift the run's later random draws (label dropout, sliced
    directions), or a cold cache would give another run than a warm one (found by the resume test above)."""
    import matchzoo
    from matchzoo.data.features import extract_features

    images = matchzoo.make_dataset("digits").split("heldout")
    torch.manual_seed(0)
    extract_features(matchzoo.make_feature_space("pixels"), images, batch_size=64, progress=False)
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))
