"""Batched, gradient-free feature extraction of a dataset split in one feature space (tqdm progress)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from matchzoo.spaces.base import FeatureSpace


def extract_features(
    space: FeatureSpace,
    images: Dataset,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    desc: str | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Features ``(N, space.dim)`` (float32, on CPU) of every image in ``images``, in dataset order."""
    loader = DataLoader(
        images, batch_size=batch_size, shuffle=False, num_workers=0, pin_memory=torch.device(device).type == "cuda"
    )
    space = space.to(device)
    chunks = []
    with torch.inference_mode():
        for batch in tqdm(loader, desc=desc or f"features[{space.name}]", disable=not progress, leave=False):
            chunks.append(space(batch.to(device, non_blocking=True)).float().cpu())
    if not chunks:
        return torch.empty(0, space.dim)
    return torch.cat(chunks)
