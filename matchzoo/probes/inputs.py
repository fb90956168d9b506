"""Probe inputs: candidate images (npz or generator checkpoint) and their features in every evaluation space."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from tqdm.auto import tqdm

from matchzoo import validate
from matchzoo.errors import MatchzooError
from matchzoo.probes.resample import SpaceFeatures


def load_candidates(path: str, count: Optional[int] = None, seed: int = 0, progress: bool = False) -> torch.Tensor:
    """Candidate images ``(N, C, H, W)`` in [-1, 1]: an ``.npz`` of images, or ``count`` samples of a
    checkpoint's generator (class-balanced when it is class-conditional)."""
    if count is not None:  # a negative count used to slice from the end and keep N - |count| candidates
        validate.positive_int("num_candidates", count)
    source = Path(path)
    if source.suffix == ".npz":
        from matchzoo.data import load_npz_images

        images = load_npz_images(path)
        if count is not None and count < images.shape[0]:
            images = images[torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))[:count]]
        return images
    if not source.exists():
        raise MatchzooError(
            f"candidates not found: {path}; pass an .npz of images or a run's checkpoint (file or run folder)"
        )
    from matchzoo.stored_config import load_generator

    generator = load_generator(source)
    rng = torch.Generator().manual_seed(seed)
    total = count or 5000
    labels = generator.balanced_labels(total)  # class-balanced over all candidates (None: unconditional)
    chunks = []
    with torch.no_grad():
        for start in tqdm(range(0, total, 1000), desc="sampling candidates", unit="chunk", disable=not progress):
            chunk_labels = None if labels is None else labels[start : start + 1000]
            chunks.append(generator.sample(min(1000, total - start), chunk_labels, generator=rng).cpu())
    return torch.cat(chunks).clamp(-1.0, 1.0)


def images_features(space, images: torch.Tensor, progress: bool = False) -> torch.Tensor:
    from matchzoo.data.datasets import TensorImages
    from matchzoo.data.features import extract_features

    return extract_features(space, TensorImages(images), desc=f"candidates in {space.name}", progress=progress)


def evaluation_features(
    space_names: Sequence[str],
    dataset,
    candidates: torch.Tensor,
    progress: bool = False,
    make_space: Optional[Callable[[str], Any]] = None,
) -> tuple[dict, dict[str, SpaceFeatures]]:
    """``({name: space}, {name: SpaceFeatures})``: candidates, train (reference) and held-out features per space,
    each space built by ``make_space(name)`` (default: the registered space with its default arguments)."""
    from matchzoo import make_feature_space
    from matchzoo.data.cache import reference_features

    make_space = make_space or make_feature_space

    if candidates.ndim != 4 or candidates.shape[1] != dataset.channels:
        raise MatchzooError(
            f"candidates have shape {tuple(candidates.shape)}; "
            f"dataset {dataset.name!r} has {dataset.channels}-channel images"
        )
    spaces, features = {}, {}
    for name in tqdm(space_names, desc="features", unit="space", disable=not progress):
        space = make_space(name)
        spaces[name] = space
        features[name] = SpaceFeatures(
            candidates=images_features(space, candidates, progress),
            reference=reference_features(space, dataset, "train", progress=progress),
            heldout=reference_features(space, dataset, "heldout", progress=progress),
        )
    return spaces, features
