"""FD evaluation on the GPU vs the CPU (same run): float64 streaming moments of 2 x 50k x D features and the
FD with the reference cached, and the relative agreement of the two values.

    python benchmarks/frechet_device.py [D ...]        # default 768 2048; needs CUDA
"""

import sys
import time
from pathlib import Path

import torch

from matchzoo.metrics.frechet import FrechetReference, StreamingMoments


def fail(message: str) -> None:
    """Bad input: one line on stderr, exit status 2 (the project's convention)."""
    print(f"{Path(__file__).name}: error: {message}", file=sys.stderr)
    sys.exit(2)


def stats(x, batch=4096):
    m = StreamingMoments()
    for s in range(0, x.shape[0], batch):
        m.update(x[s : s + batch])
    return m.stats()


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


if not torch.cuda.is_available():
    fail("no CUDA device is visible here; this benchmark compares CUDA with the CPU")
if not all(a.isdigit() for a in sys.argv[1:]):
    fail("usage: python benchmarks/frechet_device.py [D ...]  (feature dimensions, e.g. 768 2048)")
dims = [int(a) for a in sys.argv[1:]] or [768, 2048]
for dim in dims:
    g = torch.Generator().manual_seed(0)
    scales = torch.linspace(1.0, 0.05, dim)
    mix = torch.linalg.qr(torch.randn(dim, dim, generator=g))[0]
    real = (torch.randn(50_000, dim, generator=g) * scales) @ mix
    fake = (torch.randn(50_000, dim, generator=g) * scales * 1.1) @ mix + 0.05
    values = {}
    for device in ("cpu", "cuda"):
        r, f = real.to(device), fake.to(device)
        sync(device)
        t0 = time.perf_counter()
        sr, sf = stats(r), stats(f)
        sync(device)
        t_stats = time.perf_counter() - t0
        ref = FrechetReference(sr)
        _ = ref.factor
        ref.distance_to_stats(sf)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(3):
            values[device] = ref.distance_to_stats(sf)
        sync(device)
        t_fd = (time.perf_counter() - t0) / 3
        print(
            f"D={dim} {device:4s} threads={torch.get_num_threads():2d}: "
            f"moments of 2 x 50k features {t_stats * 1e3:8.1f} ms, "
            f"FD (reference cached) {t_fd * 1e3:7.1f} ms, FD = {values[device]:.10g}",
            flush=True,
        )
    print(f"D={dim} relative |cuda - cpu| = {abs(values['cuda'] - values['cpu']) / values['cpu']:.2e}", flush=True)
