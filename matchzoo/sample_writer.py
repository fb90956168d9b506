"""Samples of a checkpoint written in the ADM sample format: an uncompressed ``.npz`` with ``arr_0`` (N, H, W, C)
uint8 images and, for a class-conditional generator, ``arr_1`` (N,) int64 labels — what the ADM evaluation suite
(guided-diffusion's ``evaluator.py``), ``matchzoo evaluate`` and most papers' code read.

Images are generated in chunks and streamed into the archive (:func:`matchzoo.data.npzfile.atomic_npz`); pixels
map from [-1, 1] to ``round((x + 1) * 127.5)`` clipped to [0, 255], which
:func:`~matchzoo.data.datasets.images_to_tensor` inverts to within half a grey level. The file appears at
``out`` only when complete.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from matchzoo.errors import MatchzooError
from matchzoo.samples import CheckpointSamples

_HEADROOM = 1 << 20  # bytes beyond the arrays: zip and .npy headers


def to_uint8_nhwc(images: torch.Tensor) -> np.ndarray:
    """Float images ``(N, C, H, W)`` in [-1, 1] -> uint8 ``(N, H, W, C)``."""
    pixels = ((images.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous().numpy()


def check_out(out: str, count: int, image_shape: tuple[int, int, int], option: str = "--out") -> Path:
    """``out`` ends in ``.npz``, its folder exists and has room for ``count`` images — before any generation."""
    target = Path(out)
    if target.suffix.lower() != ".npz":
        raise MatchzooError(f"{option} {out!r} must end in .npz (the ADM sample format is an .npz archive)")
    if target.is_dir():
        raise MatchzooError(f"{option} {out!r} is a folder; give a file name such as {target / 'samples.npz'}")
    if not target.parent.is_dir():
        raise MatchzooError(f"{option} {out!r}: folder {str(target.parent)!r} does not exist; create it first")
    needed = count * int(np.prod(image_shape)) + count * 8 + _HEADROOM
    free = shutil.disk_usage(target.parent).free
    if needed > free:
        raise MatchzooError(
            f"{option} {out!r}: {count} images need {needed / 2**30:.2f} GiB, {free / 2**30:.2f} GiB are free there; "
            f"free space, choose another folder or lower --num"
        )
    return target


def write_samples(samples: CheckpointSamples, out: str, batch_size: int = 256, progress: bool = True) -> dict:
    """Every image of ``samples`` (and its labels, when conditional) into ``out``; returns a summary record."""
    count = len(samples)
    first, _ = samples.chunk(0, min(1, count))
    channels, height, width = first.shape[1:]
    target = check_out(out, count, (channels, height, width))
    from matchzoo.data.npzfile import atomic_npz

    labels = np.empty(count, np.int64) if samples.num_classes else None
    with atomic_npz(target) as archive:
        with archive.stream("arr_0", (count, height, width, channels), np.uint8) as rows:
            with tqdm(total=count, desc=f"sampling {target.name}", disable=not progress, unit="img") as bar:
                for start in range(0, count, batch_size):
                    stop = min(start + batch_size, count)
                    images, chunk_labels = samples.chunk(start, stop)
                    rows.append(to_uint8_nhwc(images))
                    if labels is not None:
                        labels[start:stop] = chunk_labels.numpy()
                    bar.update(stop - start)
        if labels is not None:
            archive.write("arr_1", labels)
    return {
        "out": str(target),
        "num": count,
        "shape": [count, height, width, channels],
        "num_classes": samples.num_classes,
        "labels": samples.label_mode if samples.num_classes else None,
        "cfg_scale": samples.cfg_scale,
        "seed": samples.seed,
    }
