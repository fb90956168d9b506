"""Training-step time of the real-scale gin configs, eager vs ``train.compile_spaces = True`` (same run).

    python benchmarks/train_step.py IMAGES STEPS BATCH CONFIGS [MODES]
    python benchmarks/train_step.py 4096 20 256 sinkhorn_dino,fd_inception,kernel_bures_dino,san_dino,bures_clip 0
    python benchmarks/train_step.py 4096 20 256 sinkhorn_dino,fd_inception 1       # compiled encoders

Backbones get random weights (``<space>.pretrained = False``, set explicitly here: step time does not
depend on the weight values, and no download is possible); the data are IMAGES random 64x64 RGB images
in a temporary ``.npz``. Times the training step only (no evaluation, no tracking) after 3 warm-up steps,
and prints the one-time ``prepare`` (real features of the dataset) and peak GPU memory. MODES: ``0``
eager, ``1`` compiled, ``0,1`` both (default). Nothing is asserted.
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from matchzoo import config
from matchzoo.run import build_settings
from matchzoo.train.trainer import Trainer


def fail(message: str) -> None:
    """Bad input: one line on stderr, exit status 2 (the project's convention)."""
    print(f"{Path(__file__).name}: error: {message}", file=sys.stderr)
    sys.exit(2)


SPACES = {  # the pretrained spaces each config trains in
    "fd_inception": ["inception"],
    "sinkhorn_dino": ["dinov2_vitb14"],
    "kernel_bures_dino": ["dinov2_vitb14"],
    "san_dino": ["dinov2_vitb14"],
    "bures_clip": ["clip_vitb32"],
}


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def seconds(fn, repeats: int) -> float:
    """Wall seconds of ``repeats`` calls of ``fn``, device work included."""
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return time.perf_counter() - start


def measure(name: str, compiled: bool, data: Path, images: int, steps: int, batch: int) -> None:
    params = [
        "train.dataset = @npz()",
        f"npz.path = '{data}'",
        "train.eval_spaces = []",
        "train.progress = False",
        f"train.compile_spaces = {compiled}",
        f"train.batch_size = {batch}",
    ]
    params += [f"{space}.pretrained = False" for space in SPACES[name]]
    config.parse([f"gin/{name}.gin"], params)
    trainer = Trainer(build_settings())
    prepare = seconds(trainer.prepare, 1)
    warm = seconds(trainer.train_step, 3)
    per_step = seconds(trainer.train_step, steps) / steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    print(
        f"{name:18s} compile={str(compiled):5s} batch {batch}: "
        f"{per_step * 1e3:7.1f} ms/step ({1 / per_step:6.2f} steps/s, "
        f"{batch / per_step:7.0f} img/s); prepare (real features of {images} images) {prepare:5.1f} s; "
        f"3 warm-up steps {warm:5.1f} s; peak GPU memory {peak:.1f} GiB",
        flush=True,
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def main() -> None:
    if len(sys.argv) not in (5, 6) or not all(a.isdigit() for a in sys.argv[1:4]):
        fail(
            "usage: python benchmarks/train_step.py IMAGES STEPS BATCH CONFIG[,CONFIG...] [0|1|0,1]  "
            "(e.g. 4096 20 256 sinkhorn_dino 0)"
        )
    images, steps, batch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    configs = sys.argv[4].split(",")
    modes = [m == "1" for m in (sys.argv[5] if len(sys.argv) > 5 else "0,1").split(",")]
    unknown = [name for name in configs if name not in SPACES]
    if unknown:
        fail(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(SPACES)}")
    data = Path(tempfile.mkdtemp()) / "images.npz"
    pixels = np.random.default_rng(0).integers(0, 256, size=(images, 64, 64, 3), dtype=np.uint8)
    np.savez(data, images=pixels)
    for name in configs:
        for compiled in modes:
            measure(name, compiled, data, images, steps, batch)


if __name__ == "__main__":
    main()
