"""How each objective's cost grows with batch size B and feature dimension D, and trainer throughput.

    python benchmarks/scaling.py                       # B in 256..4096 (D=256), D in 64..2048 (B=1024)
    python benchmarks/scaling.py --objectives fd,mmd --batches 256,1024 --dims 64,512 --repeats 3
    python benchmarks/scaling.py --device cuda

Table 1: seconds per forward + backward of ``objective(fake, real)`` (median of ``--repeats`` after a
warm-up) on a B x D problem, default settings, reference prepared from 4B real-like samples.
Table 2: the fitted log-log slope per axis (time ~ B^a at fixed D, time ~ D^b at fixed B): 1 = linear,
2 = quadratic. An objective whose cell exceeds ``--budget`` seconds is not timed at larger sizes on that
axis (printed as '-'). Table 3: trainer steps/s on the quickstart config (no evaluation, no tracking).
Numbers are measurements on the machine that runs the script; nothing is asserted.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from objectives import features, objective_step, timed  # benchmarks/objectives.py (this script's folder)

import matchzoo
from matchzoo.registry import OBJECTIVES


def time_objective(name: str, batch: int, dim: int, device: str, repeats: int) -> float:
    torch.manual_seed(0)
    objective = matchzoo.make_objective(name).to(device)
    objective.prepare_reference(features(4 * batch, dim, 0.0, 1, device))
    step = objective_step(objective, features(batch, dim, 0.3, 3, device), features(batch, dim, 0.0, 2, device))
    return timed(step, device, repeats)


def slope(sizes: list[int], times: list[float]) -> float:
    points = [(math.log(s), math.log(t)) for s, t in zip(sizes, times) if t == t and t > 0]
    if len(points) < 2:
        return float("nan")
    mean_x = sum(p[0] for p in points) / len(points)
    mean_y = sum(p[1] for p in points) / len(points)
    var = sum((p[0] - mean_x) ** 2 for p in points)
    return sum((p[0] - mean_x) * (p[1] - mean_y) for p in points) / var


def sweep_axis(name, sizes, fixed, axis, device, repeats, budget) -> list[float]:
    times: list[float] = []
    for size in sizes:
        if times and not times[-1] <= budget:  # over budget, or already skipped (NaN): stop growing
            times.append(float("nan"))
            continue
        batch, dim = (size, fixed) if axis == "batch" else (fixed, size)
        times.append(time_objective(name, batch, dim, device, repeats))
    return times


def trainer_throughput(steps: int) -> float:
    from matchzoo import config
    from matchzoo.run import build_settings
    from matchzoo.train.trainer import Trainer

    config.parse(["gin/quickstart.gin"], ["train.progress = False"])
    trainer = Trainer(build_settings())
    trainer.prepare()
    trainer.train_step()  # warm-up (also checks the generator output)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    return steps / (time.perf_counter() - start)


def fmt(t: float) -> str:
    return "-" if t != t else f"{t:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objectives", default=",".join(OBJECTIVES.names()))
    parser.add_argument("--batches", default="256,512,1024,2048,4096")
    parser.add_argument("--dims", default="64,256,1024,2048")
    parser.add_argument("--fixed-dim", type=int, default=256)
    parser.add_argument("--fixed-batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds; stop growing an axis past this")
    parser.add_argument("--trainer-steps", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    dims = [int(d) for d in args.dims.split(",")]
    names = [n for n in args.objectives.split(",") if n]
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()}")

    results = {}
    for name in names:
        by_batch = sweep_axis(name, batches, args.fixed_dim, "batch", args.device, args.repeats, args.budget)
        by_dim = sweep_axis(name, dims, args.fixed_batch, "dim", args.device, args.repeats, args.budget)
        results[name] = (by_batch, by_dim)
        print(f"  measured {name}", flush=True)

    print(f"\nTable 1a: seconds per forward+backward, D = {args.fixed_dim}")
    print("| objective | " + " | ".join(f"B={b}" for b in batches) + " |")
    print("|---|" + "---|" * len(batches))
    for name, (by_batch, _) in results.items():
        print(f"| {name} | " + " | ".join(fmt(t) for t in by_batch) + " |")
    print(f"\nTable 1b: seconds per forward+backward, B = {args.fixed_batch}")
    print("| objective | " + " | ".join(f"D={d}" for d in dims) + " |")
    print("|---|" + "---|" * len(dims))
    for name, (_, by_dim) in results.items():
        print(f"| {name} | " + " | ".join(fmt(t) for t in by_dim) + " |")
    print("\nTable 2: fitted log-log slopes (time ~ size^slope)")
    print("| objective | slope in B | slope in D |")
    print("|---|---|---|")
    for name, (by_batch, by_dim) in results.items():
        print(f"| {name} | {slope(batches, by_batch):.2f} | {slope(dims, by_dim):.2f} |")
    if args.trainer_steps > 0:
        print(
            f"\nTable 3: quickstart trainer throughput: {trainer_throughput(args.trainer_steps):.2f} steps/s "
            f"(batch from gin/quickstart.gin, {args.trainer_steps} steps, no evaluation/tracking)"
        )


if __name__ == "__main__":
    main()
