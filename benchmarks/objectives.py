"""Forward + backward time of every registered objective, and FD-loss population modes vs recomputing.

    python benchmarks/objectives.py                                  # batch 1024, D = 768 and 2048, CPU
    python benchmarks/objectives.py --device cuda --repeats 5
    python benchmarks/objectives.py --dims 768 --objectives fd,sinkhorn --population 10000
    python benchmarks/objectives.py --fd-check                       # the 50k / 1024 / 2048 FD-loss check

Table 1: seconds per ``objective(fake, real)`` + ``backward`` (median of ``--repeats`` after one warm-up),
default constructor settings, reference prepared from ``--reference`` real-like features with a decaying
spectrum, and the ratio against the baseline row ``fd`` with ``population='batch'`` measured in the same run.

Table 2: FD-loss step time with a full population of ``--population`` samples: ``queue`` (running float64
sums, O(B·D²) per step) and ``ema`` vs the naive baseline that recomputes the population covariance from
all ``P`` stored features every step (O(P·D²)); printed as baseline / mode.

``--fd-check``: with population 50,000, batch 1,024 and D = 2,048 in float64, one FD-loss training step must
give a finite loss and gradient, and the gradient must match the closed form 2w·[f − (μ_r + T(f − μ))]
(T computed independently by eigendecomposition here) to 1e-6 relative. Prints the numbers; the only
assertions are the correctness ones, never a time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import matchzoo.objectives  # noqa: F401  (registers every objective)
from matchzoo.objectives.frechet import FrechetDistance, frechet_from_moments
from matchzoo.objectives.population import PopulationMoments
from matchzoo.registry import OBJECTIVES


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int) -> float:
    fn()  # warm-up
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def features(n: int, dim: int, shift: float, seed: int, device: str, dtype=torch.float32) -> torch.Tensor:
    """Real-like features: independent coordinates with scales decaying from 1 to 0.05."""
    generator = torch.Generator().manual_seed(seed)
    scales = torch.linspace(1.0, 0.05, dim)
    x = torch.randn(n, dim, generator=generator) * scales + shift
    return x.to(device=device, dtype=dtype)


def objective_step(objective, fake_source: torch.Tensor, real: torch.Tensor):
    def step():
        fake = fake_source.clone().requires_grad_()
        objective(fake, real).loss.backward()

    return step


def objectives_table(dims, names, batch, reference, repeats, device) -> None:
    print(f"\n## forward+backward per objective (batch {batch}, reference {reference} samples, {device})")
    print("| objective | D | seconds | ratio vs fd(batch) |\n|---|---|---|---|")
    for dim in dims:
        real_pool = features(reference, dim, 0.0, 0, device)
        real = real_pool[:batch]
        fake = features(batch, dim, 0.3, 1, device)
        rows = [("fd(batch)", FrechetDistance(population="batch"))]
        rows += [(name, OBJECTIVES.make(name)) for name in names]
        baseline = None
        for label, objective in rows:
            objective.to(device)
            objective.prepare_reference(real_pool)
            seconds = timed(objective_step(objective, fake, real), device, repeats)
            baseline = baseline or seconds
            print(f"| {label} | {dim} | {seconds:.3f} | {seconds / baseline:.2f} |", flush=True)


def filled_population(mode: str, population: int, batch: int, dim: int, device: str, dtype=torch.float32):
    objective = FrechetDistance(population=mode, population_size=population, beta=1.0 - batch / population)
    objective.to(device)
    with torch.no_grad():
        for k in range(0, population, batch):
            objective.population.advance(features(batch, dim, 0.3, 100 + k, device, dtype))
    return objective


def recompute_step(queue: torch.Tensor, live_source: torch.Tensor, reference):
    """Naive baseline: population moments recomputed from all stored features + the live batch."""
    mu_ref, cov_ref, sqrt_ref = reference

    def step():
        live = live_source.clone().requires_grad_()
        samples = torch.cat([queue[live.shape[0] :].to(torch.float64), live.to(torch.float64)])  # (P, D)
        mean = samples.mean(0)
        centered = samples - mean
        cov = centered.T @ centered / samples.shape[0]
        moments = PopulationMoments(mean, cov, samples.shape[0], 1.0 / samples.shape[0])
        frechet_from_moments(moments, mu_ref, cov_ref, sqrt_ref).backward()

    return step


def population_table(dims, population, batch, reference, repeats, device) -> None:
    print(f"\n## FD-loss step with a full population of {population} (batch {batch}, {device})")
    print("| D | recompute s | queue s | ema s | recompute/queue | recompute/ema |\n|---|---|---|---|---|---|")
    for dim in dims:
        real_pool = features(reference, dim, 0.0, 0, device)
        live = features(batch, dim, 0.3, 1, device)
        seconds = {}
        for mode in ("queue", "ema"):
            objective = filled_population(mode, population, batch, dim, device).eval()  # eval: state stays fixed
            objective.prepare_reference(real_pool)
            seconds[mode] = timed(objective_step(objective, live, real_pool[:batch]), device, repeats)
            if mode == "queue":
                queue, reference_stats = objective.population.features, objective.reference(real_pool)
                seconds["recompute"] = timed(recompute_step(queue, live, reference_stats), device, repeats)
            del objective
        print(
            f"| {dim} | {seconds['recompute']:.3f} | {seconds['queue']:.3f} | {seconds['ema']:.3f} | "
            f"{seconds['recompute'] / seconds['queue']:.1f} | {seconds['recompute'] / seconds['ema']:.1f} |",
            flush=True,
        )


def fd_check(population: int, batch: int, dim: int, device: str) -> None:
    """The issue's done-when: a 50k / 1024 / 2048 FD-loss step is finite and matches the closed form."""
    print(f"\n## FD-loss check: population {population}, batch {batch}, D {dim}, float64, {device}")
    start = time.perf_counter()
    objective = filled_population("queue", population, batch, dim, device, torch.float64)
    objective.prepare_reference(features(4 * dim, dim, 0.0, 0, device, torch.float64))
    print(f"fill population + reference: {time.perf_counter() - start:.1f} s")
    live = features(batch, dim, 0.3, 1, device, torch.float64).requires_grad_()
    start = time.perf_counter()
    out = objective.eval()(live, live.detach())
    (grad,) = torch.autograd.grad(out.loss, live)
    print(f"one training step (forward + backward): {time.perf_counter() - start:.1f} s; FD = {out.logs['fd']:.6g}")
    assert torch.isfinite(out.loss) and torch.isfinite(grad).all(), "non-finite FD-loss step"

    with torch.no_grad():
        moments = objective.population_moments(live)
        mu_ref, cov_ref, _ = objective.reference(live)
        evals, evecs = torch.linalg.eigh(cov_ref)
        ref_half = (evecs * evals.clamp_min(0).sqrt()) @ evecs.T
        m_evals, m_evecs = torch.linalg.eigh(ref_half @ moments.cov @ ref_half)
        inv_half = (m_evecs * m_evals.clamp_min(1e-300).rsqrt()) @ m_evecs.T
        transport = ref_half @ inv_half @ ref_half  # Gaussian OT map T
        f = live.detach()
        closed_form = 2 * moments.sample_weight * (f - (mu_ref + (f - moments.mean) @ transport.T))
        relative = float((grad - closed_form).norm() / closed_form.norm())
    print(f"gradient vs closed form: relative error {relative:.2e} (required <= 1e-6)")
    assert relative <= 1e-6, "FD-loss gradient does not match the closed form"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[768, 2048])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--reference", type=int, default=10_000, help="real-like reference features per space")
    parser.add_argument("--population", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--objectives", default=",".join(OBJECTIVES.names()))
    parser.add_argument("--skip-objectives", action="store_true", help="only the population table")
    parser.add_argument("--skip-population", action="store_true", help="only the objectives table")
    parser.add_argument("--fd-check", action="store_true", help="run only the 50k/1024/2048 FD-loss check")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.fd_check:
        fd_check(args.population, args.batch, max(args.dims), args.device)
        return
    names = [n for n in args.objectives.split(",") if n]
    if not args.skip_objectives:
        objectives_table(args.dims, names, args.batch, args.reference, args.repeats, args.device)
    if not args.skip_population:
        population_table(args.dims, args.population, args.batch, args.reference, args.repeats, args.device)


if __name__ == "__main__":
    main()
