"""Datasets of real images in [-1, 1], shape ``(C, H, W)`` per item, with ``train`` and ``heldout`` splits.

* ``digits``: scikit-learn's bundled handwritten digits (1,797 real 8x8 grayscale scans; no download),
  split deterministically into train / held-out by a fixed permutation; 10 classes (the digit).
* ``image_folder``: every PNG/JPEG under a directory, resized (shorter side) and centre-cropped; one class per
  immediate sub-folder (sorted names, as torchvision's ImageFolder) when all images lie in sub-folders.
* ``npz``: an array of images in a ``.npz`` file (uint8 in [0, 255] or float in [-1, 1]; NCHW or NHWC) and,
  optionally, an integer ``labels`` array ``(N,)``.

Labels: ``num_classes`` (0 = unlabelled), ``class_names`` and ``labels(split)``, a ``torch.long`` tensor whose
item i is the class of item i of ``split(split)`` (split items stay plain image tensors).

Each dataset has a ``fingerprint`` (source, split rule, preprocessing, content hash where cheap, and the labels
when it has them) so cached reference features are keyed by exactly the data they came from.
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
DEFAULT_LABELS_KEY = "labels"  # npz.labels_key: optional under this name, required under any other
MAX_CLASSES = 2**20  # a larger class index is a wrong array (e.g. pixel values or ids), not a class


class ImageDataset:
    """Base class: ``split(name)`` returns a torch ``Dataset`` whose items are image tensors ``(C, H, W)``;
    ``labels(name)`` their classes, aligned item by item, or None for an unlabelled dataset."""

    channels: int
    size: int
    class_names: Optional[list[str]] = None  # None = unlabelled

    def split(self, name: str) -> Dataset:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else 0

    def labels(self, name: str) -> Optional[torch.Tensor]:
        """``(len(split(name)),)`` class indices in ``[0, num_classes)``, or None when unlabelled."""
        self.check_split(name)
        return None

    def label_frequencies(self, name: str) -> torch.Tensor:
        """``(num_classes,)`` float64 share of each class in split ``name`` (sums to 1)."""
        labels = self.labels(name)
        if labels is None:
            raise MatchzooError(
                f"dataset {self.name!r} has no labels; use a labelled dataset (digits, class sub-folders, "
                f"an npz with a labels array) or an unconditional generator"
            )
        counts = torch.bincount(labels, minlength=self.num_classes).to(torch.float64)
        return counts / counts.sum()

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

    def __init__(
        self,
        images: torch.Tensor,
        heldout_fraction: float,
        split_seed: int,
        targets: Optional[torch.Tensor] = None,
        class_names: Optional[list[str]] = None,
    ):
        self.targets, self.class_names = targets, class_names  # targets: (N,) long, the class of images[i]
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

    def labels(self, name: str) -> Optional[torch.Tensor]:
        self.check_split(name)
        return None if self.targets is None else self.targets[self._indices[name]]

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
        targets = torch.from_numpy(bunch.target.astype(np.int64))  # (1797,) the digit shown
        super().__init__(images, heldout_fraction, split_seed, targets, [str(int(t)) for t in bunch.target_names])

    def describe(self) -> dict:  # the labels are fixed by the source: no labels entry, the fingerprint is unchanged
        return {
            "source": "sklearn.datasets.load_digits",
            "scale": "x/8-1",
            "heldout_fraction": self.heldout_fraction,
            "split_seed": self.split_seed,
            "content": self.content_digest(),
        }


@register_dataset("npz")
class NpzImages(InMemoryDataset):
    """Images from a ``.npz`` file: key ``key`` (default: ``images``, else the first array that is not the labels),
    NCHW or NHWC; class labels from the integer array ``labels_key`` (``(N,)``, optional under the default name
    ``labels``; ``labels_key = None`` ignores labels)."""

    def __init__(
        self,
        path: str = "",
        key: Optional[str] = None,
        heldout_fraction: float = 0.1,
        split_seed: int = 0,
        labels_key: Optional[str] = DEFAULT_LABELS_KEY,
    ):
        if labels_key is not None and not isinstance(labels_key, str):
            raise MatchzooError(f"npz.labels_key must be an array name such as 'labels' or None, got {labels_key!r}")
        self.path, self.key, self.labels_key = path, key, labels_key
        images, targets = load_npz(path, key, labels_key)
        class_names = None if targets is None else [str(c) for c in range(int(targets.max()) + 1)]
        super().__init__(images, heldout_fraction, split_seed, targets, class_names)

    def describe(self) -> dict:
        description = {
            "source": str(Path(self.path).resolve()),
            "key": self.key,
            "heldout_fraction": self.heldout_fraction,
            "split_seed": self.split_seed,
            "content": self.content_digest(),
        }
        if self.targets is not None:  # only labelled files gain entries: an unlabelled file keeps its fingerprint
            description["labels_key"] = self.labels_key
            description["labels"] = hashlib.sha256(self.targets.numpy().tobytes()).hexdigest()[:16]
        return description


def load_npz_images(path: str, key: Optional[str] = None) -> torch.Tensor:
    """Read images from ``path`` into float32 ``(N, C, H, W)`` in [-1, 1], with one-line errors."""
    return load_npz(path, key, labels_key=None)[0]


def load_npz(
    path: str, key: Optional[str] = None, labels_key: Optional[str] = DEFAULT_LABELS_KEY
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(images (N, C, H, W) float32 in [-1, 1], labels (N,) long or None)`` from ``path``, with one-line errors.
    The labels array ``labels_key`` may be missing only under the default name."""
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
    with archive:
        keys = list(archive.keys())
        image_key = _npz_key(keys, path, key, labels_key)
        if labels_key is not None and labels_key not in keys and labels_key != DEFAULT_LABELS_KEY:
            raise MatchzooError(
                f"{path}: no labels array {labels_key!r} (npz.labels_key); it has {', '.join(keys)}; "
                f"name the labels array or set npz.labels_key = None"
            )
        label_key = labels_key if labels_key in keys and labels_key != image_key else None
        try:
            array = archive[image_key]
            label_array = None if label_key is None else archive[label_key]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # a damaged member shows only when read
            raise MatchzooError(f"{path}: not a readable .npz file ({error})") from None
    images = images_to_tensor(array, source=path)
    if label_array is None:
        return images, None
    return images, labels_to_tensor(label_array, images.shape[0], f"{path}: labels {label_key!r}")


def _npz_key(keys: list[str], path: str, key: Optional[str], labels_key: Optional[str]) -> str:
    if not keys:
        raise MatchzooError(f"{path}: the .npz holds no arrays")
    candidates = [name for name in keys if name != labels_key] or keys
    chosen = key if key is not None else ("images" if "images" in keys else candidates[0])
    if chosen not in keys:
        raise MatchzooError(f"{path}: no array {chosen!r}; it has {', '.join(keys)}")
    return chosen


def labels_to_tensor(array: np.ndarray, count: int, source: str) -> torch.Tensor:
    """Integer class indices ``(count,)`` in ``[0, MAX_CLASSES)`` -> ``torch.long``, with one-line errors."""
    fix = "store integer class indices 0..K-1, one per image, or set npz.labels_key = None"
    if not np.issubdtype(array.dtype, np.integer):
        raise MatchzooError(f"{source} has dtype {array.dtype}; {fix}")
    if array.ndim != 1:
        raise MatchzooError(f"{source} has shape {array.shape}, expected ({count},); {fix}")
    if array.shape[0] != count:
        raise MatchzooError(f"{source} holds {array.shape[0]} labels for {count} images; {fix}")
    low, high = int(array.min()), int(array.max())
    if low < 0:
        raise MatchzooError(f"{source} holds the negative label {low}; {fix}")
    if high >= MAX_CLASSES:
        raise MatchzooError(f"{source} holds the label {high}, more than {MAX_CLASSES:,} classes; {fix}")
    return torch.from_numpy(array.astype(np.int64))


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
    """PNG/JPEG files under ``root`` (recursively), resized so the shorter side is ``size``, centre-cropped.

    Labels: when every image lies inside an immediate sub-folder, each sub-folder is a class (sorted by name,
    as torchvision's ImageFolder: ``root/cat/1.png`` and ``root/dog/x/2.png`` are classes 0 and 1); images
    directly under ``root`` alone mean an unlabelled folder; both at once is an error. ``labels = False``
    ignores the sub-folders (one unlabelled pool, the same fingerprint as an unlabelled folder)."""

    EXTENSIONS = (".png", ".jpg", ".jpeg")

    def __init__(
        self,
        root: str = "",
        size: int = 64,
        channels: int = 3,
        heldout_fraction: float = 0.1,
        split_seed: int = 0,
        labels: bool = True,
    ):
        if not isinstance(labels, bool):
            raise MatchzooError(f"image_folder.labels must be True or False, got {labels!r}")
        self.size = check.positive_int("image_folder.size", size, MAX_SIZE)
        self.channels = check.choice("image_folder.channels", channels, CHANNELS)
        self.heldout_fraction = check.fraction("image_folder.heldout_fraction", heldout_fraction, True, True)
        self.split_seed = check.seed("image_folder.split_seed", split_seed)
        directory = Path(root)
        if not root or not directory.is_dir():
            raise MatchzooError(
                f"image folder not found: {root!r}; set image_folder.root to a directory of PNG/JPEG files"
            )
        directory = directory.resolve()  # a relative root: files and the listing are relative to the same folder
        self.root = str(directory)
        self.files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in self.EXTENSIONS)
        if len(self.files) < 2:
            raise MatchzooError(f"{root}: found {len(self.files)} PNG/JPEG files; need at least 2")
        self.targets: Optional[torch.Tensor] = None  # (N,) long: the class of files[i]
        if labels:
            self.class_names, self.targets = _folder_classes(directory, self.files)
        order = torch.randperm(len(self.files), generator=torch.Generator().manual_seed(self.split_seed))
        n_heldout = min(len(self.files) - 1, max(1, int(round(self.heldout_fraction * len(self.files)))))
        self._indices = {"heldout": order[:n_heldout].tolist(), "train": order[n_heldout:].tolist()}

    def split(self, name: str) -> Dataset:
        self.check_split(name)
        return _FileImages([self.files[i] for i in self._indices[name]], self.size, self.channels)

    def labels(self, name: str) -> Optional[torch.Tensor]:
        self.check_split(name)
        return None if self.targets is None else self.targets[torch.tensor(self._indices[name], dtype=torch.long)]

    def describe(self) -> dict:
        listing = hashlib.sha256("\n".join(str(p.relative_to(self.root)) for p in self.files).encode()).hexdigest()[:16]
        description = {
            "source": self.root,
            "files": len(self.files),
            "listing": listing,
            "size": self.size,
            "channels": self.channels,
            "heldout_fraction": self.heldout_fraction,
            "split_seed": self.split_seed,
        }
        if self.class_names is not None:  # only labelled folders gain entries: unlabelled ones keep their fingerprint
            description["labels"] = "sub-folders"
            description["classes"] = self.num_classes
            description["class_names"] = hashlib.sha256("\n".join(self.class_names).encode()).hexdigest()[:16]
        return description


def _folder_classes(root: Path, files: list[Path]) -> tuple[Optional[list[str]], Optional[torch.Tensor]]:
    """``(class names, (N,) labels)`` from the immediate sub-folders of ``root``; ``(None, None)`` for a flat one."""
    tops = [file.relative_to(root).parts[0] if file.parent != root else None for file in files]
    at_root = sum(top is None for top in tops)
    if at_root == len(files):
        return None, None
    names = sorted(entry.name for entry in root.iterdir() if entry.is_dir())
    if at_root:
        raise MatchzooError(
            f"{root}: {at_root} PNG/JPEG file(s) lie directly under the root beside {len(names)} class sub-folder(s); "
            f"move them into a class folder, or set image_folder.labels = False to ignore the classes"
        )
    empty = sorted(set(names) - set(tops))
    if empty:
        raise MatchzooError(
            f"{root}: {len(empty)} class sub-folder(s) hold no PNG/JPEG files ({', '.join(empty[:3])}"
            f"{', ...' if len(empty) > 3 else ''}); remove them (class indices follow the sorted sub-folders) "
            f"or set image_folder.labels = False"
        )
    index = {name: position for position, name in enumerate(names)}
    return names, torch.tensor([index[top] for top in tops], dtype=torch.long)


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
