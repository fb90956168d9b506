"""Peak memory of ``matchzoo evaluate`` on a 50,000 x 64 x 64 x 3 uint8 ``.npz``, against the array's float32 size.

    python benchmarks/evaluate_memory.py                       # 50,000 images, random_conv, files under /tmp
    python benchmarks/evaluate_memory.py --baseline            # also the whole-array loader, for comparison
    python benchmarks/evaluate_memory.py --evaluate_args=--no_prdc   # without precision/recall/density/coverage

Writes the samples (streamed, so this process never holds them) under ``--dir``, then runs ``evaluate`` in a
fresh process that records its resident memory after importing matchzoo and torch, after every module ``evaluate``
imports lazily (metrics, scikit-learn, SciPy), and again after a warm-up
``evaluate`` of 64 images (lazy imports such as scikit-learn, the digits reference and its cached features: costs
that do not grow with N), resets the peak (``/proc/self/clear_refs``), evaluates the 50,000 images and reads the
peak (``VmHWM``). Prints the peak above each baseline as a fraction of the float32 size of the array (the issue's
target: < 10%).
``--baseline`` measures, in another fresh process, ``load_npz_images`` (what ``evaluate`` did before it
streamed). The files are deleted afterwards. No assertion: a measurement to read, beside ``uptime``'s load.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, sys, time

def rss(field):
    for line in open('/proc/self/status'):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
import matchzoo, torch  # noqa: E401
from matchzoo.__main__ import main
from matchzoo.data import load_npz_images
after_imports = rss('VmRSS')
# every module evaluate imports lazily (metrics, scikit-learn's neighbours, SciPy, the space): imports, not work
import matchzoo.evaluation, matchzoo.metrics, matchzoo.samples, matchzoo.data.cache, matchzoo.commands.evaluate  # noqa
import sklearn.neighbors, sklearn.linear_model, scipy.linalg, scipy.stats  # noqa: E401
after_all_imports = rss('VmRSS')
mode, samples, warmup, space, out, cache = sys.argv[1:7]
extra = sys.argv[7:]
evaluate = ['evaluate', '--reference', 'digits', '--spaces', space, '--no_progress', '--cache_dir', cache]
evaluate += ['--json', out, *extra]
if mode == 'evaluate':  # lazy imports, the reference dataset and its cached features: costs that do not grow with N
    assert main([*evaluate, '--samples', warmup]) == 0
if mode == 'extract':  # the streamed input alone: extract_features over the samples, no metrics
    from matchzoo.data.features import extract_features
    from matchzoo.samples import load_samples
    reference, feature_space = matchzoo.make_dataset('digits'), matchzoo.make_feature_space(space)
    extract_features(feature_space, load_samples(warmup, reference, None, 0, 'cpu'), progress=False)
warm = rss('VmRSS')
open('/proc/self/clear_refs', 'w').write('5')  # resets VmHWM (the peak) to the current RSS
start = time.perf_counter()
if mode == 'evaluate':
    code = main([*evaluate, '--samples', samples])
elif mode == 'extract':
    images = load_samples(samples, reference, None, 0, 'cpu')
    code = 0 if extract_features(feature_space, images, progress=False).shape[0] == len(images) else 1
else:
    code = 0 if load_npz_images(samples).shape[0] else 1
print(json.dumps({'code': code, 'after_imports': after_imports, 'after_all_imports': after_all_imports,
                  'warm': warm, 'peak': rss('VmHWM'),
                  'seconds': time.perf_counter() - start}))
"""


def write_samples(path: Path, num: int, size: int, chunk: int = 1000) -> None:
    from matchzoo.data.npzfile import atomic_npz

    rng = np.random.default_rng(0)
    with atomic_npz(path) as archive, archive.stream("arr_0", (num, size, size, 3), np.uint8) as rows:
        for start in range(0, num, chunk):
            rows.append(rng.integers(0, 256, size=(min(chunk, num - start), size, size, 3), dtype=np.uint8))


def measure(mode: str, samples: Path, space: str, folder: Path, extra: list[str]) -> dict:
    files = [str(samples), str(folder / "warmup.npz"), space, str(folder / "result.json"), str(folder / "cache")]
    result = subprocess.run(
        [sys.executable, "-c", CHILD, mode, *files, *extra],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--space", default="random_conv")
    parser.add_argument("--dir", default="/tmp")
    parser.add_argument("--baseline", action="store_true", help="also measure the whole-array loader")
    parser.add_argument("--evaluate_args", default="", help="extra evaluate options, e.g. '--no_prdc'")
    parser.add_argument("--extract", action="store_true", help="also measure extract_features alone (no metrics)")
    parser.add_argument("--no_evaluate", action="store_true", help="skip the evaluate measurement")
    args = parser.parse_args()

    array_bytes = args.num * args.size * args.size * 3
    float_bytes = 4 * array_bytes
    free = shutil.disk_usage(args.dir).free
    if free < 2 * array_bytes:
        raise SystemExit(f"{args.dir}: {free / 1e9:.1f} GB free, need {2 * array_bytes / 1e9:.1f} GB")
    load = Path("/proc/loadavg").read_text().split()[:3]
    folder = Path(tempfile.mkdtemp(prefix="matchzoo-evaluate-memory-", dir=args.dir))
    try:
        samples = folder / "samples.npz"
        start = time.perf_counter()
        write_samples(samples, args.num, args.size)
        write_samples(folder / "warmup.npz", 64, args.size)
        print(f"wrote {samples} ({samples.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - start:.1f} s")
        extra = args.evaluate_args.split()
        rows = []
        if not args.no_evaluate:
            rows.append(
                (f"evaluate {' '.join(extra)} (streamed)", measure("evaluate", samples, args.space, folder, extra))
            )
        if args.extract:
            rows.append(("extract_features alone (streamed)", measure("extract", samples, args.space, folder, [])))
        if args.baseline:
            rows.append(("load_npz_images (whole array)", measure("load", samples, args.space, folder, [])))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"{args.num} x {args.size} x {args.size} x 3 uint8 = {array_bytes / 1e9:.2f} GB on disk; "
        f"float32 size {float_bytes / 1e9:.2f} GB; space {args.space}; load average before: {' '.join(load)}"
    )
    for name, record in rows:
        print(f"{name}: {record['seconds']:.0f} s")
        for base, label in (
            ("after_imports", "after importing matchzoo and torch"),
            ("after_all_imports", "after every import evaluate makes"),
            ("warm", "after a warm-up run on 64 images"),
        ):
            above = record["peak"] - record[base]
            print(
                f"  peak {record['peak'] / 1e6:6.0f} MB - RSS {label} {record[base] / 1e6:6.0f} MB = "
                f"{above / 1e6:6.0f} MB = {above / float_bytes:6.1%} of the float32 size"
            )


if __name__ == "__main__":
    main()
