"""Training-step time: where a step's time goes, and eager vs ``train.compile_spaces = True``.

**Breakdown** (the default; CPU, small shapes unless told otherwise)::

    python benchmarks/train_step.py                                      # gin/offline/fd.gin, batch 64, CPU
    python benchmarks/train_step.py --gin gin/offline/sinkhorn.gin --batch 256 --steps 20
    python benchmarks/train_step.py --gin gin/sinkhorn_dino.gin --device cuda --batch 256 --synthetic 2048 \
        --size 256 --classes 10 --gin_param "dinov2_vitb14.pretrained = False" --gin_param "latent.pretrained = False"

One step is replayed stage by stage, each stage timed with device synchronisation: generator forward (and the
decoder's share of it, for a generator with a ``decoder`` such as ``latent``), feature-space forward, objective
forward+backward (critic updates included), feature-space backward, generator backward (a decoder's backward
included), optimiser (gradient norm/clipping, step, schedule, EMA). The backward is split with
``torch.autograd.grad`` at the features and at the images, which computes the same gradients as one
``backward()``. Beside the parts it times ``Trainer.train_step`` itself, and as the baseline the training spaces'
forward+backward alone (images -> features -> ``sum().backward()``): the part of a step no objective can avoid.
The step is then printed as a multiple of that baseline. ``--synthetic N`` replaces the dataset by N random
``--size`` px RGB images (with ``--classes K`` random labels for a class-conditional generator).

**Eager vs compiled** (the real-scale configs, positional arguments as before)::

    python benchmarks/train_step.py IMAGES STEPS BATCH CONFIGS [MODES]
    python benchmarks/train_step.py 4096 20 256 sinkhorn_dino,fd_inception,kernel_bures_dino,san_dino,bures_clip 0
    python benchmarks/train_step.py 4096 20 256 sinkhorn_dino,fd_inception 1       # compiled encoders

Backbones get random weights (``<space>.pretrained = False``, set explicitly here: step time does not
depend on the weight values, and no download is possible); the data are IMAGES random 64x64 RGB images
in a temporary ``.npz``. Times the training step only (no evaluation, no tracking) after 3 warm-up steps,
and prints the one-time ``prepare`` (real features of the dataset) and peak GPU memory. MODES: ``0``
eager, ``1`` compiled, ``0,1`` both (default). Nothing is asserted.
"""

import argparse
import contextlib
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from matchzoo import config
from matchzoo.errors import MatchzooError
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


def compare_compiled() -> None:
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


# --------------------------------------------------------------------------- breakdown of one step


class Stopwatch:
    """Seconds per named stage, summed over the timed steps; every stop synchronises the device."""

    def __init__(self):
        self.total: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def stage(self, name: str):
        sync()
        start = time.perf_counter()
        yield
        sync()
        self.total[name] += time.perf_counter() - start


@contextlib.contextmanager
def decoder_timed(generator, watch: Stopwatch):
    """Time the calls of ``generator.decoder`` (``decode`` and ``forward``; nested calls counted once)."""
    decoder = getattr(generator, "decoder", None)
    if decoder is None:
        yield
        return
    depth = [0]
    originals = {name: getattr(decoder, name) for name in ("decode", "forward") if hasattr(decoder, name)}

    def wrap(method):
        def timed(*args, **kwargs):
            if depth[0]:
                return method(*args, **kwargs)
            depth[0] += 1
            try:
                with watch.stage("decoder forward"):
                    return method(*args, **kwargs)
            finally:
                depth[0] -= 1

        return timed

    for name, method in originals.items():
        setattr(decoder, name, wrap(method))
    try:
        yield
    finally:
        for name in originals:
            delattr(decoder, name)  # the instance attribute goes, the class method is back


def staged_step(trainer: Trainer, watch: Stopwatch) -> None:
    """One training step, stage by stage (the same computation as ``Trainer.train_step``)."""
    with watch.stage("generator forward"), decoder_timed(trainer.generator, watch):
        noise, labels = trainer.sample_inputs()
        images = trainer.generate(noise, labels)
    fakes, total = [], torch.zeros((), device=trainer.device)
    for term, critic_optimizer in zip(trainer.terms, trainer.critic_optimizers):
        with watch.stage("feature space forward"):
            fake = trainer.features(term, images)
        fakes.append(fake)
        with watch.stage("objective forward+backward"):
            if critic_optimizer is not None:
                trainer.critic_update(term, critic_optimizer, fake.detach(), labels)
            total = total + term.weight * term.objective(fake, trainer.sample_real(term, labels)).loss.float()
    trainer.optimizer.zero_grad(set_to_none=True)
    with watch.stage("objective forward+backward"):
        feature_grads = torch.autograd.grad(total, fakes, retain_graph=True)
    with watch.stage("feature space backward"):
        image_grad = torch.autograd.grad(fakes, images, feature_grads)[0]
    with watch.stage("generator backward"):
        images.backward(image_grad)
    with watch.stage("optimiser + EMA"):
        trainer._clip_gradients()
        trainer.optimizer.step()
        trainer.schedule.step()
        for ema in trainer.emas:
            ema.update(trainer.generator)
    trainer.step += 1


def spaces_alone(trainer: Trainer) -> None:
    """The baseline: every training space's forward and backward on a batch of images, nothing else."""
    images = torch.rand(trainer.local_batch, *trainer.image_shape, device=trainer.device) * 2 - 1
    images.requires_grad_(True)
    for term in trainer.terms:
        trainer.features(term, images).sum().backward()


def synthetic_data(count: int, size: int, classes: int) -> Path:
    data = Path(tempfile.mkdtemp()) / "images.npz"
    rng = np.random.default_rng(0)
    arrays = {"images": rng.integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)}
    if classes:
        arrays["labels"] = np.arange(count) % classes
    np.savez(data, **arrays)
    return data


def breakdown(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="Where the time of one training step goes.")
    parser.add_argument("--gin", default="gin/offline/fd.gin", help="experiment file (default: gin/offline/fd.gin)")
    parser.add_argument("--gin_param", action="append", default=[], help="extra binding, repeatable")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    parser.add_argument("--batch", type=int, default=64, help="global batch (default 64)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--synthetic", type=int, default=0, help="N random RGB images instead of the dataset")
    parser.add_argument("--size", type=int, default=64, help="side of the synthetic images (default 64)")
    parser.add_argument("--classes", type=int, default=0, help="random labels for the synthetic images")
    args = parser.parse_args(argv)
    if min(args.batch, args.steps) < 1 or args.warmup < 0:
        fail("--batch and --steps must be positive, --warmup non-negative")
    params = [
        f"train.batch_size = {args.batch}",
        f"train.device = '{args.device}'",
        "train.eval_spaces = []",
        "train.progress = False",
        f"train.steps = {args.warmup + 2 * args.steps + 1}",
    ]
    if args.synthetic:
        data = synthetic_data(args.synthetic, args.size, args.classes)
        params += ["train.dataset = @npz()", f"npz.path = '{data}'"]
    config.parse([args.gin], params + args.gin_param)
    trainer = Trainer(build_settings())
    prepare = seconds(trainer.prepare, 1)
    for _ in range(args.warmup):
        trainer.train_step()
    watch = Stopwatch()
    for _ in range(args.steps):
        staged_step(trainer, watch)
    whole = seconds(trainer.train_step, args.steps) / args.steps
    spaces_alone(trainer)  # warm-up of the baseline's own graph
    baseline = seconds(lambda: spaces_alone(trainer), args.steps) / args.steps
    report(args, trainer, watch, whole, baseline, prepare)


def report(args, trainer: Trainer, watch: Stopwatch, whole: float, baseline: float, prepare: float) -> None:
    ms = {name: 1e3 * value / args.steps for name, value in watch.total.items()}
    generator = trainer.generator
    precision = trainer.settings.optimization.precision
    print(
        f"{args.gin}: {type(generator).__name__} ({sum(p.numel() for p in generator.parameters()):,} trained "
        f"parameters), terms {', '.join(t.name for t in trainer.terms)}; batch {args.batch}, {trainer.device}, "
        f"{precision}, {torch.get_num_threads()} CPU threads; mean of {args.steps} steps after {args.warmup} "
        f"warm-up; prepare (real features) {prepare:.1f} s"
    )
    order = [
        "generator forward",
        "decoder forward",
        "feature space forward",
        "objective forward+backward",
        "feature space backward",
        "generator backward",
        "optimiser + EMA",
    ]
    parts = sum(value for name, value in ms.items() if name != "decoder forward")
    for name in order:
        if name == "decoder forward" and name not in ms:
            continue
        value = ms.get(name, 0.0)
        share = "(part of generator forward)" if name == "decoder forward" else f"{100 * value / parts:5.1f}%"
        print(f"  {name:<30} {value:9.2f} ms  {share}")
    print(f"  {'sum of the stages':<30} {parts:9.2f} ms")
    print(f"  {'Trainer.train_step':<30} {1e3 * whole:9.2f} ms")
    print(f"  {'spaces forward+backward alone':<30} {1e3 * baseline:9.2f} ms  (baseline)")
    print(f"  step = {whole / baseline:.2f} x the training spaces' forward+backward alone")
    if torch.cuda.is_available() and trainer.device.type == "cuda":
        print(f"  peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].isdigit():
        compare_compiled()
    else:
        try:
            breakdown(sys.argv[1:])
        except MatchzooError as error:
            fail(str(error))


if __name__ == "__main__":
    main()
