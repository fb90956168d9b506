"""Datasets of real images in [-1, 1], shape ``(C, H, W)`` per item, with ``train`` and ``heldout`` splits.

* ``digits``: scikit-learn's bundled handwritten digits (1,797 real 8x8 grayscale scans; no download),
  split deterministically into train / held-out by a fixed permutation.
* ``image_folder``: every PNG/JPEG under a directory, resized (shorter side) and centre-cropped.
* ``npz``: an array of images in a ``.npz`` file (uint8 in [0, 255] or float in [-1, 1]; NCHW or NHWC).

Each dataset has a ``fingerprint`` (source, split rule, preprocessing, content hash where cheap) so
cached reference features are keyed by exactly the data they came from.
"""

from __future__ import annotations

import hashlib
import json
import warnings
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from matchzoo import validate as check
from matchzoo.errors import MatchzooError
from matchzoo.registry import register_dataset

SPLITS = ("train", "heldout")
CHANNELS = (1, 3)
MAX_SIZE = 8192  # side of a dataset image after resizing; beyond it one batch no longer fits in memory
# Pixels of one source file (width x height) decoded before resizing: 8192 x 8192. PIL's own guard only
# warns at ~89 M pixels and raises at twice that, so a PNG of a few KB could still ask for gigabytes.
MAX_IMAGE_PIXELS = 2**26


class ImageDataset:
    """Base class: ``split(name)`` returns a torch ``Dataset`` whose items are image tensors ``(C, H, W)``."""

    channels: int
    size: int

    def split(self, name: str) -> Dataset:
        raise NotImplementedError

    def describe(self) -> dict:
        raise NotImplementedError

    @property
    def name(self) -> str:
        return getattr(type(self), "registry_name", type(self).__name__)

    @property
    def fingerprint(self) -> str:
        payload = json.dumps({"dataset": self.name, **self.describe()}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @staticmethod
    def check_split(name: str) -> None:
        if name not in SPLITS:
            raise MatchzooError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")


class TensorImages(Dataset):
    """A torch ``Dataset`` over an image tensor ``(N, C, H, W)``: item ``i`` is ``images[i]``."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


class InMemoryDataset(ImageDataset):
    """A dataset held as one float tensor ``(N, C, H, W)`` in [-1, 1], split by a seeded permutation."""

    def __init__(self, images: torch.Tensor, heldout_fraction: float, split_seed: int):
        self.heldout_fraction = check.fraction(f"{self.name}.heldout_fraction", heldout_fraction, True, True)
        self.split_seed = check.seed(f"{self.name}.split_seed", split_seed)
        self.images = images
        self.channels, self.size = images.shape[1], images.shape[-1]
        order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(self.split_seed))
        n_heldout = max(2, int(round(self.heldout_fraction * images.shape[0])))
        if images.shape[0] - n_heldout < 2:
            raise MatchzooError(
                f"{self.name}: {images.shape[0]} images leave {images.shape[0] - n_heldout} for training "
                f"after holding out {n_heldout}; need at least 2 in each split (lower heldout_fraction or add images)"
            )
        self._indices = {"heldout": order[:n_heldout], "train": order[n_heldout:]}

    def split(self, name: str) -> Dataset:
        self.check_split(name)
        return TensorImages(self.images[self._indices[name]])

    def split_indices(self, name: str) -> torch.Tensor:
        self.check_split(name)
        return self._indices[name]

    def content_digest(self) -> str:
        return hashlib.sha256(self.images.numpy().tobytes()).hexdigest()[:16]


@register_dataset("digits")
class Digits(InMemoryDataset):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 real scans, values 0..16) scaled to [-1, 1]."""

    def __init__(self, heldout_fraction: float = 0.2, split_seed: int = 0):
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = torch.from_numpy(bunch.images.astype(np.float32) / 8.0 - 1.0).unsqueeze(1)  # (1797, 1, 8, 8)
        self.labels = torch.from_numpy(bunch.target.astype(np.int64))
        super().__init__(images, heldout_fraction, split_seed)

    def describe(self) -> dict:
        return {
            "source": "sklearn.datasets.load_digits",
            "scale": "x/8-1",
            "heldout_fraction": self.heldout_fraction,
            "split_seed": self.split_seed,
            "content": self.content_digest(),
        }


@register_dataset("npz")
class NpzImages(InMemoryDataset):
    """Images from a ``.npz`` file: key ``key`` (default: the only/first array), NCHW or NHWC."""

    def __init__(self, path: str = "", key: Optional[str] = None, heldout_fraction: float = 0.1, split_seed: int = 0):
        self.path, self.key = path, key
        super().__init__(load_npz_images(path, key), heldout_fraction, split_seed)

    def describe(self) -> dict:
        return {
            "source": str(Path(self.path).resolve()),
            "key": self.key,
            "heldout_fraction": self.heldout_fraction,
            "split_seed": self.split_seed,
            "content": self.content_digest(),
        }


def load_npz_images(path: str, key: Optional[str] = None) -> torch.Tensor:
    """Read images from ``path`` into float32 ``(N, C, H, W)`` in [-1, 1], with one-line errors."""
    file = Path(path)
    if not path or not file.is_file():
        raise MatchzooError(f"npz file not found: {path!r}; pass an existing .npz (e.g. npz.path = '/data/x.npz')")
    try:
        archive = np.load(file, allow_pickle=False)  # pickled object arrays would run code: refused
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise MatchzooError(f"{path}: not a readable .npz file ({error})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise MatchzooError(
            f"{path}: holds a single .npy array, not a .npz archive; save it with np.savez({file.name!r}, images=array)"
        )
    try:
        with archive:
            array = archive[_npz_key(archive, path, key)]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # a damaged member surfaces only when read
        raise MatchzooError(f"{path}: not a readable .npz file ({error})") from None
    return images_to_tensor(array, source=path)


def _npz_key(archive, path: str, key: Optional[str]) -> str:
    keys = list(archive.keys())
    if not keys:
        raise MatchzooError(f"{path}: the .npz holds no arrays")
    chosen = key if key is not None else ("images" if "images" in keys else keys[0])
    if chosen not in keys:
        raise MatchzooError(f"{path}: no array {chosen!r}; it has {', '.join(keys)}")
    return chosen


def images_to_tensor(array: np.ndarray, source: str = "array") -> torch.Tensor:
    """uint8 [0, 255] or float [-1, 1] images, NCHW or NHWC (C in 1, 3) -> float32 NCHW in [-1, 1]."""
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4:
        raise MatchzooError(f"{source}: expected images (N, C, H, W) or (N, H, W, C), got shape {array.shape}")
    if array.shape[0] == 0:
        raise MatchzooError(f"{source}: holds 0 images (shape {array.shape})")
    array = _channels_first(array, source)
    if array.dtype == np.uint8:
        return torch.from_numpy(array.astype(np.float32) / 127.5 - 1.0).contiguous()
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise MatchzooError(
            f"{source}: images of dtype {array.dtype} are not supported; store uint8 in [0, 255] or float in [-1, 1]"
        )
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if not torch.isfinite(tensor).all():
        raise MatchzooError(
            f"{source}: {int((~torch.isfinite(tensor)).sum())} pixel values are NaN or infinite; images must be finite"
        )
    if tensor.min() < -1.001 or tensor.max() > 1.001:
        raise MatchzooError(
            f"{source}: float images must lie in [-1, 1] (got [{tensor.min():.3g}, {tensor.max():.3g}]); "
            f"store uint8 in [0, 255] or rescale"
        )
    return tensor.contiguous()


def _channels_first(array: np.ndarray, source: str) -> np.ndarray:
    """NCHW as is, NHWC transposed; the layout is decided only when exactly one of dims 1 and 3 can be channels."""
    first, last = array.shape[1] in CHANNELS, array.shape[3] in CHANNELS
    if first and not last:
        return array
    if last and not first:
        return array.transpose(0, 3, 1, 2)
    problem = "the layout is ambiguous" if first else "images need 1 or 3 channels"
    raise MatchzooError(
        f"{source}: {problem} in shape {array.shape}; store NCHW or NHWC arrays with 1 or 3 channels "
        f"(and height/width other than 1 or 3)"
    )


@register_dataset("image_folder")
class ImageFolder(ImageDataset):
    """PNG/JPEG files under ``root`` (recursively), resized so the shorter side is ``size``, centre-cropped."""

    EXTENSIONS = (".png", ".jpg", ".jpeg")

    def __init__(
        self, root: str = "", size: int = 64, channels: int = 3, heldout_fraction: float = 0.1, split_seed: int = 0
    ):
        self.size = check.positive_int("image_folder.size", size, MAX_SIZE)
        self.channels = check.choice("image_folder.channels", channels, CHANNELS)
        self.heldout_fraction = check.fraction("image_folder.heldout_fraction", heldout_fraction, True, True)
        self.split_seed = check.seed("image_folder.split_seed", split_seed)
        directory = Path(root)
        if not root or not directory.is_dir():
            raise MatchzooError(
                f"image folder not found: {root!r}; set image_folder.root to a directory of PNG/JPEG files"
            )
        self.root = str(directory.resolve())
        self.files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in self.EXTENSIONS)
        if len(self.files) < 2:
            raise MatchzooError(f"{root}: found {len(self.files)} PNG/JPEG files; need at least 2")
        order = torch.randperm(len(self.files), generator=torch.Generator().manual_seed(self.split_seed))
        n_heldout = min(len(self.files) - 1, max(1, int(round(self.heldout_fraction * len(self.files)))))
        self._indices = {"heldout": order[:n_heldout].tolist(), "train": order[n_heldout:].tolist()}

    def split(self, name: str) -> Dataset:
        self.check_split(name)
        return _FileImages([self.files[i] for i in self._indices[name]], self.size, self.channels)

    def describe(self) -> dict:
        listing = hashlib.sha256("\n".join(str(p.relative_to(self.root)) for p in self.files).encode()).hexdigest()[:16]
        return {
            "source": self.root,
            "files": len(self.files),
            "listing": listing,
            "size": self.size,
            "channels": self.channels,
            "heldout_fraction": self.heldout_fraction,
            "split_seed": self.split_seed,
        }


class _FileImages(Dataset):
    def __init__(self, files: list[Path], size: int, channels: int):
        self.files, self.size, self.channels = files, size, channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        path = self.files[index]
        try:
            array = _read_image(path, self.size, self.channels)  # (H, W) or (H, W, 3) uint8
        except OSError as error:
            raise MatchzooError(f"cannot read image {path}: {error}") from None
        pixels = torch.from_numpy(array.astype(np.float32) / 127.5 - 1.0)
        return pixels[None] if pixels.ndim == 2 else pixels.permute(2, 0, 1).contiguous()


def _read_image(path: Path, size: int, channels: int) -> np.ndarray:
    """Decode, resize the shorter side to ``size`` (bicubic) and centre-crop; huge images are refused unread."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise MatchzooError(
                f"{path}: image too large to decode safely (possible decompression bomb); "
                f"remove it or shrink it below {MAX_IMAGE_PIXELS:,} pixels"
            ) from None
    with image:
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise MatchzooError(
                f"{path}: {image.width}x{image.height} pixels is more than the {MAX_IMAGE_PIXELS:,} "
                f"read safely (possible decompression bomb); remove it or shrink it"
            )
        image = image.convert("L" if channels == 1 else "RGB")
        scale = size / min(image.size)
        new = (max(size, round(image.size[0] * scale)), max(size, round(image.size[1] * scale)))
        image = image.resize(new, Image.BICUBIC)
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)
