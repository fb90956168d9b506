"""The images ``matchzoo evaluate`` scores: a ``.npz`` of images, an image folder, or a checkpoint (or its run
folder) sampled, as a torch ``Dataset`` of ``(C, H, W)`` tensors in [-1, 1]."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import ConcatDataset, Dataset

from matchzoo.data.datasets import TensorImages
from matchzoo.errors import MatchzooError

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
CHECKPOINT_IN_RUN_DIR = "checkpoint.pt"  # what the trainer writes in its run folder
DEFAULT_CHECKPOINT_SAMPLES = 5000


def load_samples(path: str, reference, num_samples: Optional[int], seed: int, device: str) -> Dataset:
    """The images to evaluate, as a Dataset of ``(C, H, W)`` tensors in [-1, 1]: a ``.npz``, an image folder
    (resized to the ``reference`` dataset's size and channels), or a checkpoint (or its run folder) sampled."""
    from matchzoo.data import load_npz_images
    from matchzoo.data.datasets import ImageFolder

    source = Path(path)
    count = num_samples or DEFAULT_CHECKPOINT_SAMPLES
    if source.is_dir() and (source / CHECKPOINT_IN_RUN_DIR).is_file():  # a training run folder
        images = TensorImages(_sample_checkpoint(source / CHECKPOINT_IN_RUN_DIR, count, seed, device))
    elif source.is_dir():
        folder = ImageFolder(str(source), size=reference.size, channels=reference.channels)
        images: Dataset = ConcatDataset([folder.split("train"), folder.split("heldout")])
    elif source.suffix.lower() == ".npz":
        images = TensorImages(load_npz_images(str(source)))
    elif source.suffix.lower() in CHECKPOINT_SUFFIXES and source.is_file():
        images = TensorImages(_sample_checkpoint(source, count, seed, device))
    elif not source.exists():
        raise MatchzooError(f"--samples {path!r} does not exist; pass a .npz file, an image folder or a checkpoint .pt")
    else:
        raise MatchzooError(
            f"--samples {path!r}: expected a .npz file, a folder of PNG/JPEG files "
            f"or a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)})"
        )
    if num_samples is not None and num_samples < len(images):
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:num_samples]
        images = torch.utils.data.Subset(images, order.tolist())
    if len(images) < 2:
        raise MatchzooError(f"--samples {path!r} holds {len(images)} image(s); need at least 2")
    return images


def _sample_checkpoint(path: Path, count: int, seed: int, device: str) -> torch.Tensor:
    from matchzoo.stored_config import load_generator

    generator = load_generator(path, device=device).eval()
    rng = torch.Generator().manual_seed(seed)
    chunks = []
    with torch.no_grad():
        for start in range(0, count, 256):
            chunks.append(generator.sample(min(256, count - start), generator=rng).float().cpu())
    return torch.cat(chunks)
