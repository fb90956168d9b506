"""Benchmark: matchzoo's Fréchet distance vs the two common implementations, same inputs, same run.

Baselines (implemented inline, as those libraries compute the trace term):

* ``sqrtm``  -- ``scipy.linalg.sqrtm(σ1 @ σ2)`` (pytorch-fid / clean-fid), with their ``eps * I`` retry
  when the product's square root is not finite;
* ``eigvals`` -- ``torch.linalg.eigvals(σ1 @ σ2)`` square roots summed (torchmetrics' formulation).

Ours: :class:`matchzoo.metrics.frechet.FrechetReference` -- the reference factor (Cholesky of Σ_ref) is
computed once and cached, as in training/evaluation where the reference statistics never change; each
FD is then two products and one symmetric ``eigvalsh``. The one-time reference cost and the uncached
call (``frechet_distance_from_stats``) are printed too. Inputs are float64 statistics of random features
with a decaying spectrum (well conditioned enough for ``sqrtm`` to be accurate).

Run: ``python benchmarks/frechet.py [--dims 768 2048] [--repeats 3] [--threads 1 2]``. Prints ratios
(baseline / ours, median of repeats) and relative agreement; it asserts nothing about time. Each thread
count is one pass, in a fresh process, in which every library (torch's MKL, SciPy's OpenBLAS) gets that
many threads; the default runs single-threaded (the algorithms alone) and with every CPU (how a user runs
it). Run it on an idle machine: with other processes on the cores, threaded LAPACK timings become
meaningless.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
from threadpoolctl import threadpool_limits

from matchzoo import linalg
from matchzoo.metrics.frechet import FrechetReference, GaussianStats


def sqrtm_method(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray, eps: float = 1e-6) -> float:
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    covmean = covmean.real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def eigvals_method(mu1: torch.Tensor, s1: torch.Tensor, mu2: torch.Tensor, s2: torch.Tensor) -> float:
    trace_term = torch.linalg.eigvals(s1 @ s2).sqrt().real.sum()
    return float((mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2.0 * trace_term)


def random_stats(dim: int, samples: int, shift: float, seed: int) -> GaussianStats:
    """Statistics of ``samples`` features whose scales decay like a real network's spectrum."""
    generator = torch.Generator().manual_seed(seed)
    scales = torch.linspace(1.0, 0.05, dim, dtype=torch.float64)
    mixing = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))[0]
    features = (torch.randn(samples, dim, generator=generator, dtype=torch.float64) * scales) @ mixing + shift
    return GaussianStats.from_features(features)


def timed(function, repeats: int) -> tuple[float, float]:
    """(median seconds, last result) over ``repeats`` calls."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench(dim: int, repeats: int) -> dict[str, float]:
    reference, generated = random_stats(dim, 2 * dim, 0.0, seed=1), random_stats(dim, 2 * dim, 0.05, seed=2)
    mu1, s1, mu2, s2 = reference.mean, reference.cov, generated.mean, generated.cov
    np_args = [t.numpy() for t in (mu1, s1, mu2, s2)]

    cached = FrechetReference(reference)
    factor_time, _ = timed(lambda: linalg.psd_factor(s1), 1)
    _ = cached.factor  # one-time cost, paid once per (space, dataset)
    ours_time, ours = timed(lambda: cached.distance_to_stats(generated), max(repeats, 3))
    uncached_time, uncached = timed(lambda: linalg.frechet_distance_from_stats(mu1, s1, mu2, s2), repeats)
    eig_time, eig = timed(lambda: eigvals_method(mu1, s1, mu2, s2), repeats)
    sqrtm_time, sqrtm_value = timed(lambda: sqrtm_method(*np_args), 1 if dim > 1024 else repeats)

    print(f"\nD = {dim}  (FD ≈ {ours:.6g})")
    print(f"  ours, reference cached      {ours_time * 1e3:9.1f} ms")
    print(
        f"  ours, uncached              {uncached_time * 1e3:9.1f} ms   "
        f"(reference factor alone: {factor_time * 1e3:.1f} ms)"
    )
    print(
        f"  eigvals(σ1σ2) [torchmetrics] {eig_time * 1e3:8.1f} ms   "
        f"-> {eig_time / ours_time:5.1f}x slower than ours (cached), "
        f"{eig_time / uncached_time:4.1f}x (uncached)"
    )
    print(
        f"  sqrtm(σ1σ2)  [pytorch-fid]  {sqrtm_time * 1e3:9.1f} ms   "
        f"-> {sqrtm_time / ours_time:5.1f}x slower than ours (cached), "
        f"{sqrtm_time / uncached_time:4.1f}x (uncached)"
    )
    agreement = max(abs(ours - eig) / abs(eig), abs(ours - sqrtm_value) / abs(sqrtm_value))
    print(
        f"  agreement |ours - x| / x:   eigvals {abs(ours - eig) / abs(eig):.2e}   "
        f"sqrtm {abs(ours - sqrtm_value) / abs(sqrtm_value):.2e}"
        f"   uncached {abs(ours - uncached) / abs(uncached):.2e}"
    )
    return {"sqrtm": sqrtm_time / ours_time, "eigvals": eig_time / ours_time, "agreement": agreement}


def bench_few_samples(dim: int, samples: int, repeats: int) -> None:
    """FD from features with n < D per side (e.g. a quick in-training eval): ours uses the exact n x m cross form."""
    generator = torch.Generator().manual_seed(3)
    a = torch.randn(samples, dim, generator=generator, dtype=torch.float64)
    b = torch.randn(samples, dim, generator=generator, dtype=torch.float64) * 1.1 + 0.05

    def eigvals_from_features() -> float:
        mu1, s1 = linalg.mean_cov(a)
        mu2, s2 = linalg.mean_cov(b)
        return eigvals_method(mu1, s1, mu2, s2)

    ours_time, ours = timed(lambda: linalg.frechet_distance(a, b), max(repeats, 3))
    eig_time, eig = timed(eigvals_from_features, repeats)
    print(f"\nD = {dim}, n = {samples} features per side (inputs: features; both compute their statistics)")
    print(f"  ours (n x n cross form)     {ours_time * 1e3:9.1f} ms")
    print(f"  cov + eigvals(σ1σ2)         {eig_time * 1e3:9.1f} ms   -> {eig_time / ours_time:5.1f}x slower than ours")
    print(
        f"  agreement |ours - eigvals| / eigvals: {abs(ours - eig) / abs(eig):.2e}  (rank-deficient covariances: "
        f"eigvals' tiny complex/negative modes are its own round-off)"
    )


def run_pass(threads: int, args: argparse.Namespace) -> list[tuple[int, int, dict[str, float]]]:
    """Every measurement with ``threads`` threads for torch (MKL/OpenMP) and SciPy/NumPy (OpenBLAS)."""
    torch.set_num_threads(threads)
    results = []
    with threadpool_limits(limits=threads):
        print(
            f"\n=== {threads} thread(s): torch {torch.__version__} ({torch.get_num_threads()} threads), scipy "
            f"{scipy.__version__}, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        for dim in args.dims:
            results.append((threads, dim, bench(dim, args.repeats)))
        if args.few_samples:
            warnings.simplefilter("ignore", linalg.FewSamplesWarning)
            bench_few_samples(max(args.dims), args.few_samples, args.repeats)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[768, 2048])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--few_samples", type=int, default=512, help="also time n < D features per side (0: skip)")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=sorted({1, os.cpu_count() or 1}),
        help="BLAS/LAPACK thread counts to run, each for every library (default: 1 and all CPUs)",
    )
    parser.add_argument("--results_json", help=argparse.SUPPRESS)  # used by the per-thread-count child processes
    args = parser.parse_args()
    if len(args.threads) == 1:
        results = run_pass(args.threads[0], args)
        if args.results_json:
            Path(args.results_json).write_text(json.dumps(results))
    else:  # one fresh process per thread count: thread pools never carry over from the previous pass
        results = []
        with tempfile.TemporaryDirectory() as folder:
            for threads in args.threads:
                out = Path(folder) / f"{threads}.json"
                command = [
                    sys.executable,
                    __file__,
                    "--threads",
                    str(threads),
                    "--dims",
                    *map(str, args.dims),
                    "--repeats",
                    str(args.repeats),
                    "--few_samples",
                    str(args.few_samples),
                    "--results_json",
                    str(out),
                ]
                subprocess.run(command, check=True)
                results += [tuple(r) for r in json.loads(out.read_text())]
    print(
        "\nsummary (baseline time / ours with the reference cached; "
        "targets: sqrtm >= 10x, eigvals >= 5x, agreement < 1e-8)"
    )
    for threads, dim, result in results:
        print(
            f"  {threads} thread(s)  D = {dim:5d}:  sqrtm {result['sqrtm']:5.1f}x   "
            f"eigvals {result['eigvals']:4.1f}x   "
            f"agreement {result['agreement']:.1e}"
        )


if __name__ == "__main__":
    main()
