"""Images/s of reference-feature extraction from a JPEG folder with 0 vs N DataLoader workers decoding.

    python benchmarks/extract.py                          # 2,000 JPEGs of 64x64 under /tmp, workers 0 and 2
    python benchmarks/extract.py --num 5000 --workers 0,2,4 --space random_conv

Generates the folder (deleted afterwards), then times :func:`matchzoo.data.features.extract_features` over the
``image_folder`` dataset's train split — what ``stats`` does — in a cheap space (default ``pixels``), so decoding
and resizing dominate. Runs alternate between the worker counts (``--repeats`` rounds) and the median is
reported, as images/s and as the ratio to the first worker count; worker start-up is included. No assertion: a
measurement to read beside the load average it prints (the machine may be shared).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def write_jpegs(folder: Path, num: int, size: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size)
    for index in range(num):  # smooth colour gradients plus noise: JPEGs of a realistic size, not pure noise
        base = rng.uniform(0.3, 1.0, size=3) * (ramp[:, None, None] * 0.5 + ramp[None, :, None] * 0.5)
        pixels = np.clip(base + rng.normal(0, 20, size=(size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:05d}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", default="0,2")
    parser.add_argument("--space", default="pixels")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default="/tmp")
    args = parser.parse_args()

    import matchzoo
    from matchzoo.data.features import extract_features

    counts = [int(w) for w in args.workers.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="matchzoo-extract-", dir=args.dir))
    try:
        write_jpegs(folder, args.num, args.size)
        dataset = matchzoo.make_dataset("image_folder", root=str(folder), size=args.size, heldout_fraction=0.01)
        images = dataset.split("train")
        space = matchzoo.make_feature_space(args.space, **({"channels": 3} if args.space == "pixels" else {}))
        load = Path("/proc/loadavg").read_text().split()[:3]
        seconds: dict[int, list[float]] = {count: [] for count in counts}
        reference = None
        for _ in range(args.repeats):
            for count in counts:
                start = time.perf_counter()
                features = extract_features(space, images, args.batch_size, progress=False, workers=count)
                seconds[count].append(time.perf_counter() - start)
                if reference is None:
                    reference = features
                elif not bool((features == reference).all()):
                    raise SystemExit(f"workers={count} gave different features")
        load_after = Path("/proc/loadavg").read_text().split()[:3]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"{len(images)} JPEGs {args.size}x{args.size} (train split), space {args.space}, batch {args.batch_size}, "
        f"median of {args.repeats}; load average before {' '.join(load)}, after {' '.join(load_after)}"
    )
    base = len(images) / statistics.median(seconds[counts[0]])
    for count in counts:
        rate = len(images) / statistics.median(seconds[count])
        print(f"  workers={count}: {rate:8.0f} images/s  ratio {rate / base:5.2f} x workers={counts[0]}")


if __name__ == "__main__":
    main()
