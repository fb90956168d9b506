"""Throughput of feature spaces (images/s), as ratios against a baseline measured in the same run.

    python benchmarks/spaces.py                                   # CPU, small spaces
    python benchmarks/spaces.py --device cuda --spaces inception,dinov2_vitl14,clip_vitl14 --batch 64

Random weights (``pretrained=False``; throughput does not depend on the weight values). Per space it
prints images/s of the forward pass (inference mode) and of forward+backward w.r.t. the images (the
training path), and on CUDA the speed-up of the bf16/channels_last path over float32. The baseline
row is the first space listed (default ``random_conv``). Also times the exact reference resizers
against ``F.interpolate`` on the same tensors. No assertion: these are measurements to read.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import matchzoo
from matchzoo.spaces.pil_resize import pil_bicubic_resize
from matchzoo.spaces.tf_resize import tf1_bilinear_resize


def timed(fn, device: str, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def make(name: str, device: str, fast: bool):
    kwargs = {"pretrained": False}
    cls = matchzoo.FEATURE_SPACES.get(name)
    if name in ("pixels", "random_conv"):
        kwargs = {}
    elif getattr(cls, "allows_bf16", False):
        kwargs.update(bf16=fast, channels_last=fast)
    return matchzoo.make_feature_space(name, **kwargs).to(device)


def space_rates(name: str, images: torch.Tensor, device: str, repeats: int) -> dict[str, float]:
    space = make(name, device, fast=False)

    def forward():
        with torch.inference_mode():
            space(images)

    def forward_backward():
        x = images.clone().requires_grad_(True)
        space(x).square().mean().backward()

    n = images.shape[0]
    rates = {"forward": n / timed(forward, device, repeats), "train": n / timed(forward_backward, device, repeats)}
    if device.startswith("cuda") and getattr(type(space), "allows_bf16", False):
        fast = make(name, device, fast=True)
        rates["bf16_speedup"] = timed(forward, device, repeats) / timed(lambda: fast(images), device, repeats)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--spaces", default="random_conv,pixels,digits_classifier,digits_ssl,inception,dinov2_vits14,clip_vitb32"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=32, help="input image side (spaces resize themselves)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    images = torch.rand(args.batch, 3, args.size, args.size, device=args.device) * 2 - 1
    device_name = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu x{torch.get_num_threads()} threads"
    )
    print(f"device: {device_name}; batch {args.batch} of {args.size}px RGB; median of {args.repeats}")
    names = [n.strip() for n in args.spaces.split(",") if n.strip()]
    baseline = None
    print(f"{'space':<18} {'fwd img/s':>10} {'fwd+bwd img/s':>14} {'fwd vs ' + names[0]:>20} {'bf16 speed-up':>14}")
    for name in names:
        rates = space_rates(name, images, args.device, args.repeats)
        baseline = baseline or rates["forward"]
        speedup = f"{rates['bf16_speedup']:.2f}x" if "bf16_speedup" in rates else "-"
        print(
            f"{name:<18} {rates['forward']:>10.1f} {rates['train']:>14.1f} "
            f"{rates['forward'] / baseline:>19.4f}x {speedup:>14}"
        )

    x = torch.rand(args.batch, 3, args.size, args.size, device=args.device)
    for label, exact, approx in [
        (
            "tf1_bilinear->299",
            lambda: tf1_bilinear_resize(x, 299, 299),
            lambda: F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False),
        ),
        (
            "pil_bicubic->224",
            lambda: pil_bicubic_resize(x, 224, 224),
            lambda: F.interpolate(x, size=(224, 224), mode="bicubic", antialias=True, align_corners=False),
        ),
    ]:
        ratio = timed(exact, args.device, args.repeats) / timed(approx, args.device, args.repeats)
        print(f"resize {label}: exact-reference matmul resize takes {ratio:.2f}x the time of F.interpolate")


if __name__ == "__main__":
    main()
