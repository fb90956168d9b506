"""Datasets (bundled offline data, image folders, npz), their class labels, and the reference-feature cache."""

from matchzoo.data.datasets import (  # noqa: F401  (registers datasets)
    ImageDataset,
    images_to_tensor,
    labels_to_tensor,
    load_npz,
    load_npz_images,
)

__all__ = ["ImageDataset", "images_to_tensor", "labels_to_tensor", "load_npz", "load_npz_images"]
