"""The images ``matchzoo evaluate`` scores, streamed: a ``.npz`` of images, an image folder, or a checkpoint (or
its run folder) sampled, as a torch ``Dataset`` of ``(C, H, W)`` tensors in [-1, 1] that is never held whole.

* ``.npz``: the images array (``images``, else ADM's ``arr_0``, else the first) is read by rows through
  :class:`matchzoo.data.npzfile.NpzArray` (memory-mapped when stored, stream-decompressed when compressed); each
  batch is converted to float32 on its own (``__getitems__``), so 50,000 uint8 images at 256 px never become
  39 GB of floats. ADM's optional ``arr_1`` (or ``labels``) class labels are read into ``.labels``.
* a folder: PNG/JPEG files decoded per item, in DataLoader workers when ``extract_features(workers=...)``.
* a checkpoint: its generator draws images when a batch is requested, in fixed blocks of
  :data:`SAMPLE_BLOCK` samples, block ``b`` from a CPU ``torch.Generator`` seeded by ``(seed, b)``: sample ``i`` is
  the same whatever the batch size, the order of requests, or the torchrun shard that asks for it.
  Conditional generators get class-balanced labels (``i % num_classes``, :meth:`Generator.balanced_labels`) or
  uniform ones drawn from the block's generator.

Subsampling (``num_samples``) picks a seeded random subset, kept in file order so reads stay sequential.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Subset

from matchzoo.errors import MatchzooError

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
CHECKPOINT_IN_RUN_DIR = "checkpoint.pt"  # what the trainer writes in its run folder
DEFAULT_CHECKPOINT_SAMPLES = 5000
SAMPLE_BLOCK = 256  # samples per generator call; fixed, so that a seed names the same samples at every batch size
LABEL_MODES = ("balanced", "uniform")
IMAGE_KEYS = ("images", "arr_0")  # matchzoo's name, then the ADM sample format's
LABEL_KEYS = {"images": "labels", "arr_0": "arr_1"}
_SCAN_ROWS = 1024  # float npz: rows checked per chunk before any work


def load_samples(
    path: str,
    reference,
    num_samples: Optional[int],
    seed: int,
    device: str,
    *,
    labels: str = "balanced",
    cfg_scale: float = 1.0,
) -> Dataset:
    """The images to evaluate, as a Dataset of ``(C, H, W)`` tensors in [-1, 1]: a ``.npz``, an image folder
    (resized to the ``reference`` dataset's size and channels), or a checkpoint (or its run folder) sampled lazily
    (``num_samples`` images, default 5000; ``labels`` and ``cfg_scale`` for conditional generators)."""
    from matchzoo.data.datasets import ImageFolder

    source = Path(path)
    count = num_samples or DEFAULT_CHECKPOINT_SAMPLES
    if source.is_dir() and (source / CHECKPOINT_IN_RUN_DIR).is_file():  # a training run folder
        return _at_least_two(
            CheckpointSamples.load(source / CHECKPOINT_IN_RUN_DIR, count, seed, device, labels, cfg_scale), path
        )
    if source.is_dir():
        folder = ImageFolder(str(source), size=reference.size, channels=reference.channels)
        images: Dataset = ConcatDataset([folder.split("train"), folder.split("heldout")])
    elif source.suffix.lower() == ".npz":
        images = NpzSamples(str(source))
    elif source.suffix.lower() in CHECKPOINT_SUFFIXES and source.is_file():
        return _at_least_two(CheckpointSamples.load(source, count, seed, device, labels, cfg_scale), path)
    elif not source.exists():
        raise MatchzooError(f"--samples {path!r} does not exist; pass a .npz file, an image folder or a checkpoint .pt")
    else:
        raise MatchzooError(
            f"--samples {path!r}: expected a .npz file, a folder of PNG/JPEG files "
            f"or a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)})"
        )
    return _at_least_two(subsample(images, num_samples, seed), path)


def checkpoint_seen_spaces(path: str) -> Optional[list[str]]:
    """The spaces the generator of a checkpoint (or run folder) ``path`` was optimised in -- its terms' and those
    its ``train.init_from`` checkpoint had (:func:`matchzoo.train.init_from.seen_spaces_of`) -- for ``fdr_unseen``;
    None when ``path`` is not a readable checkpoint (loading it for samples reports why)."""
    from matchzoo.train.init_from import seen_spaces_of

    source = Path(path)
    if source.is_dir():
        source = source / CHECKPOINT_IN_RUN_DIR
    if source.suffix.lower() not in CHECKPOINT_SUFFIXES or not source.is_file():
        return None
    try:  # memory-mapped: the weights are not read, only the small fields
        payload = torch.load(source, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip checkpoint, corrupt, foreign: load_samples/load_generator give the one-line error
        return None
    return seen_spaces_of(payload) if isinstance(payload, dict) else None


def subsample(images: Dataset, num_samples: Optional[int], seed: int) -> Dataset:
    """A seeded random subset of ``num_samples`` items, in their original order (nothing is read here)."""
    if num_samples is None or num_samples >= len(images):
        return images
    chosen = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:num_samples]
    return Subset(images, chosen.sort().values.tolist())


def _at_least_two(images: Dataset, path: str) -> Dataset:
    if len(images) < 2:
        raise MatchzooError(f"--samples {path!r} holds {len(images)} image(s); need at least 2")
    return images


class NpzSamples(Dataset):
    """Images of an ``.npz`` read by rows; a batch is converted to float32 ``(N, C, H, W)`` in [-1, 1] on its own."""

    def __init__(self, path: str, key: Optional[str] = None):
        from matchzoo.data.npzfile import NpzArray, member_names

        if not Path(path).is_file():
            raise MatchzooError(f"npz file not found: {path!r}; pass an existing .npz (e.g. --samples /data/x.npz)")
        names = member_names(path)
        if not names:
            raise MatchzooError(f"{path}: the .npz holds no arrays")
        self.key = key or next((name for name in IMAGE_KEYS if name in names), names[0])
        self.path, self.array = path, NpzArray(path, self.key)
        _check_layout(self.array.shape, self.array.dtype, path)
        if self.array.dtype != np.uint8:
            for start in range(0, len(self.array), _SCAN_ROWS):  # NaN or out-of-range floats: one line, before work
                self._convert(self.array.rows(start, min(start + _SCAN_ROWS, len(self.array))))
        label_key = LABEL_KEYS.get(self.key)
        self.labels = _labels(NpzArray(path, label_key), len(self), path) if label_key in names else None

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        return list(self._convert(self.array.take(indices)).unbind(0))

    def _convert(self, rows: np.ndarray) -> torch.Tensor:
        """``rows`` -> float32 NCHW in [-1, 1]; uint8 through one float buffer converted in place (the same
        float32 operations as :func:`~matchzoo.data.datasets.images_to_tensor`, which checks float rows)."""
        from matchzoo.data.datasets import _channels_first, images_to_tensor

        if rows.dtype != np.uint8:
            return images_to_tensor(rows, source=self.path)
        nchw = _channels_first(rows[:, None] if rows.ndim == 3 else rows, self.path)  # a view
        return torch.empty(nchw.shape, dtype=torch.float32).copy_(torch.from_numpy(nchw)).div_(127.5).sub_(1.0)


def _check_layout(shape: tuple, dtype: np.dtype, path: str) -> None:
    """The checks :func:`matchzoo.data.datasets.images_to_tensor` makes, from the header alone (same words)."""
    from matchzoo.data.datasets import _channels_first

    if len(shape) not in (3, 4):
        raise MatchzooError(f"{path}: expected images (N, C, H, W) or (N, H, W, C), got shape {shape}")
    if shape[0] == 0:
        raise MatchzooError(f"{path}: holds 0 images (shape {shape})")
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise MatchzooError(
            f"{path}: images of dtype {dtype} are not supported; store uint8 in [0, 255] or float in [-1, 1]"
        )
    if len(shape) == 4:  # NCHW or NHWC with 1 or 3 channels, decided as for a loaded array (no memory: 0 strides)
        _channels_first(np.lib.stride_tricks.as_strided(np.zeros(1, dtype), shape=shape, strides=(0,) * 4), path)


def _labels(array, count: int, path: str) -> torch.Tensor:
    if array.shape != (count,) or not np.issubdtype(array.dtype, np.integer):
        raise MatchzooError(
            f"{path}: labels {array.key!r} must be integers of shape ({count},), one per image, "
            f"got {array.dtype} {array.shape}"
        )
    return torch.from_numpy(array.read_all().astype(np.int64))


class CheckpointSamples(Dataset):
    """``count`` images from ``generator``, drawn when asked for, block by block (see the module docstring)."""

    workers_allowed = False  # the generator lives in this process (possibly on a GPU)

    def __init__(self, generator, count: int, seed: int, labels: str = "balanced", cfg_scale: float = 1.0):
        if labels not in LABEL_MODES:
            raise MatchzooError(f"labels must be one of {', '.join(LABEL_MODES)}, got {labels!r}")
        self.generator, self.count, self.seed = generator, count, seed
        self.label_mode, self.cfg_scale = labels, cfg_scale
        self.num_classes = int(getattr(generator, "num_classes", 0) or 0)
        self._block: tuple[int, torch.Tensor, Optional[torch.Tensor]] | None = None

    @classmethod
    def load(cls, path: Path, count: int, seed: int, device: str, labels: str, cfg_scale: float) -> "CheckpointSamples":
        from matchzoo.stored_config import load_generator

        return cls(load_generator(path, device=device).eval(), count, seed, labels, cfg_scale)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        return list(self.images(indices).unbind(0))

    def images(self, indices) -> torch.Tensor:
        """Images ``(len(indices), C, H, W)`` (float32, CPU) of samples ``indices``."""
        return self._rows(indices)[0]

    def chunk(self, start: int, stop: int) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Images and labels (None when unconditional) of samples ``start:stop``."""
        return self._rows(range(start, stop))

    def _rows(self, indices) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        indices = torch.as_tensor(list(indices), dtype=torch.long)
        if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= self.count):
            raise IndexError(f"samples {int(indices.min())}..{int(indices.max())} outside {self.count}")
        blocks = indices // SAMPLE_BLOCK
        images = labels = None
        for block in torch.unique(blocks).tolist():
            block_images, block_labels = self.block(block)
            wanted = blocks == block
            rows = indices[wanted] - block * SAMPLE_BLOCK
            if images is None:
                images = torch.empty((len(indices), *block_images.shape[1:]), dtype=block_images.dtype)
                labels = None if block_labels is None else torch.empty(len(indices), dtype=torch.long)
            images[wanted] = block_images[rows]
            if labels is not None:
                labels[wanted] = block_labels[rows]
        return (torch.empty(0) if images is None else images), labels

    def block(self, block: int) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """All samples of block ``block`` (the last one may be short), generated once and kept until the next."""
        if self._block is not None and self._block[0] == block:
            return self._block[1], self._block[2]
        start = block * SAMPLE_BLOCK
        n = min(SAMPLE_BLOCK, self.count - start)
        rng = torch.Generator().manual_seed(block_seed(self.seed, block))
        labels = None
        if self.num_classes:
            if self.label_mode == "balanced":
                labels = self.generator.balanced_labels(start + n)[start:]
            else:
                labels = self.generator.sample_labels(n, generator=rng)
        with torch.no_grad():
            if self.num_classes or self.cfg_scale != 1.0:
                images = self.generator.sample(n, labels=labels, generator=rng, cfg_scale=self.cfg_scale)
            else:
                images = self.generator.sample(n, generator=rng)
        images = images.float().cpu()
        labels = None if labels is None else labels.cpu()
        self._block = (block, images, labels)
        return images, labels


def block_seed(seed: int, block: int) -> int:
    """A 63-bit seed for block ``block`` of a run seeded ``seed``: distinct streams for distinct pairs."""
    return int(np.random.SeedSequence([seed, block]).generate_state(1, np.uint64)[0] >> np.uint64(1))
