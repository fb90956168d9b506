"""Train the two shipped digits encoders: ``python scripts/train_digits_encoders.py`` (from a clone).

A maintenance script, outside the runtime package: it rebuilds ``matchzoo/spaces/weights/``.

Both use the digits *train* split only (``make_dataset('digits').split('train')``) and a fixed seed, on
one CPU thread so the run is bit-reproducible on a given machine (a few minutes: 100 classifier epochs
and 200 VICReg epochs; 77 s + 453 s measured on a shared, heavily loaded core).

* ``digits_classifier``: cross-entropy, logits = linear(gelu(embedding)), light augmentation.
* ``digits_ssl``: VICReg (Bardes et al. 2022) on two augmented views z, z' = projector(encoder(view)):
  L = λ·mean‖z − z'‖² + μ·[v(z) + v(z')] + ν·[c(z) + c(z')], with the hinge on the std
  v(z) = mean_j max(0, 1 − sqrt(Var z_j + ε)) and the off-diagonal covariance
  c(z) = Σ_{i≠j} Cov(z)_{ij}² / d; λ = μ = 25, ν = 1.

Augmentation (:func:`augment`): random rotation ±15°, scale 0.9–1.1, shift ±1 px (bilinear resampling,
background −1), then Gaussian pixel noise σ = 0.1, clipped to [−1, 1].

Afterwards the script measures held-out accuracy (classifier) and linear-probe held-out accuracy
(logistic regression on frozen features; also for raw pixels as a baseline) and writes
``matchzoo/spaces/weights/<name>.pt`` + ``<name>.json`` (SHA-256, command, seed, metrics).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from matchzoo.data.datasets import Digits
from matchzoo.spaces.digits_encoders import TRAIN_COMMAND, WEIGHTS_DIR, DigitsEncoderNet, file_sha256


def augment(images: torch.Tensor, generator: torch.Generator, noise: float = 0.1) -> torch.Tensor:
    """Random small affine warp + pixel noise of images (N, 1, H, W) in [-1, 1]."""
    n = images.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(15)
    scale = 0.9 + 0.2 * torch.rand(n, generator=generator)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (2.0 / images.shape[-1])  # ±1 px in [-1, 1] coords
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )  # (N, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    warped = F.grid_sample(images + 1.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1.0
    return (warped + noise * torch.randn(warped.shape, generator=generator)).clamp(-1.0, 1.0)


def vicreg_loss(
    z1: torch.Tensor, z2: torch.Tensor, sim: float = 25.0, var: float = 25.0, cov: float = 1.0
) -> torch.Tensor:
    """VICReg on projections z1, z2 (B, d); see the module docstring."""

    def variance(z: torch.Tensor) -> torch.Tensor:
        return F.relu(1.0 - torch.sqrt(z.var(dim=0) + 1e-4)).mean()

    def covariance(z: torch.Tensor) -> torch.Tensor:
        zc = z - z.mean(dim=0)
        c = zc.T @ zc / (z.shape[0] - 1)  # (d, d)
        return (c.pow(2).sum() - c.diagonal().pow(2).sum()) / z.shape[1]

    return sim * F.mse_loss(z1, z2) + var * (variance(z1) + variance(z2)) + cov * (covariance(z1) + covariance(z2))


def batches(n: int, batch_size: int, generator: torch.Generator):
    order = torch.randperm(n, generator=generator)
    for start in range(0, n - batch_size + 1, batch_size):  # drop the ragged tail (VICReg needs full batches)
        yield order[start : start + batch_size]


def train_classifier(images, labels, epochs, seed) -> tuple[DigitsEncoderNet, nn.Module]:
    torch.manual_seed(seed)
    encoder, head = DigitsEncoderNet(), nn.Sequential(nn.GELU(), nn.Linear(64, 10))
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        for index in batches(len(images), 128, generator):
            views = augment(images[index], generator, noise=0.05)
            loss = F.cross_entropy(head(encoder(views)), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
    return encoder, head  # the head only measures accuracy; it is not shipped


def train_ssl(images, epochs, seed) -> DigitsEncoderNet:
    torch.manual_seed(seed)
    encoder = DigitsEncoderNet()
    projector = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 256))
    optimizer = torch.optim.AdamW(list(encoder.parameters()) + list(projector.parameters()), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    generator = torch.Generator().manual_seed(seed + 1)
    for epoch in range(epochs):
        for index in batches(len(images), 256, generator):
            batch = images[index]
            z1 = projector(encoder(augment(batch, generator)))
            z2 = projector(encoder(augment(batch, generator)))
            loss = vicreg_loss(z1, z2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
    return encoder


def linear_probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """Held-out accuracy of a logistic regression on standardised frozen features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=1.0))
    with threadpool_limits(1):  # 1438 x 64 needs no BLAS threads; oversubscribed threads made it 100x slower
        probe.fit(train_x, train_y)
        return float((probe.predict(test_x) == test_y).mean())


def save(name: str, encoder: DigitsEncoderNet, record: dict, out_dir: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.pt"
    state = {k: v.detach().clone().contiguous() for k, v in encoder.state_dict().items()}
    torch.save(state, path)
    record = {
        "name": name,
        "file": path.name,
        "sha256": file_sha256(path),
        "bytes": path.stat().st_size,
        "parameters": sum(v.numel() for v in state.values()),
        "dim": encoder.dim,
        **record,
    }
    (out_dir / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classifier_epochs", type=int, default=100)
    parser.add_argument("--ssl_epochs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    args = parser.parse_args(argv)
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        train_and_save(args)
    finally:  # leave the process as it was (matters when called from Python, e.g. in tests)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    return 0


def train_and_save(args: argparse.Namespace) -> None:
    dataset = Digits()
    train_idx, heldout_idx = dataset.split_indices("train"), dataset.split_indices("heldout")
    images, labels = dataset.images, dataset.targets
    train_x, train_y, test_x, test_y = images[train_idx], labels[train_idx], images[heldout_idx], labels[heldout_idx]
    common = {
        "command": TRAIN_COMMAND + (f" --seed {args.seed}" if args.seed else ""),
        "seed": args.seed,
        "data": f"digits train split ({len(train_x)} images, dataset fingerprint {dataset.fingerprint})",
        "evaluated_on": f"digits heldout split ({len(test_x)} images)",
        "torch": torch.__version__,
        "threads": 1,
    }
    pixel_probe = linear_probe_accuracy(
        train_x.flatten(1).numpy(), train_y.numpy(), test_x.flatten(1).numpy(), test_y.numpy()
    )

    started = time.perf_counter()
    classifier, head = train_classifier(train_x, train_y, args.classifier_epochs, args.seed)
    with torch.no_grad():
        accuracy = float((head(classifier(test_x)).argmax(1) == test_y).float().mean())
        feats_train, feats_test = classifier(train_x).numpy(), classifier(test_x).numpy()
    record = save(
        "digits_classifier",
        classifier,
        {
            **common,
            "objective": "cross-entropy",
            "epochs": args.classifier_epochs,
            "heldout_accuracy": round(accuracy, 4),
            "linear_probe_heldout_accuracy": round(
                linear_probe_accuracy(feats_train, train_y.numpy(), feats_test, test_y.numpy()), 4
            ),
            "pixels_linear_probe_heldout_accuracy": round(pixel_probe, 4),
            "train_seconds": round(time.perf_counter() - started, 1),
        },
        args.out,
    )
    print(json.dumps(record, indent=2))

    started = time.perf_counter()
    ssl = train_ssl(train_x, args.ssl_epochs, args.seed)
    with torch.no_grad():
        feats_train, feats_test = ssl(train_x).numpy(), ssl(test_x).numpy()
    record = save(
        "digits_ssl",
        ssl,
        {
            **common,
            "objective": "VICReg (25, 25, 1), two augmented views",
            "epochs": args.ssl_epochs,
            "linear_probe_heldout_accuracy": round(
                linear_probe_accuracy(feats_train, train_y.numpy(), feats_test, test_y.numpy()), 4
            ),
            "pixels_linear_probe_heldout_accuracy": round(pixel_probe, 4),
            "train_seconds": round(time.perf_counter() - started, 1),
        },
        args.out,
    )
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
