"""Datasets (bundled offline data, image folders, npz) and the reference-feature cache."""

from matchzoo.data.datasets import ImageDataset, images_to_tensor, load_npz_images  # noqa: F401  (registers datasets)

__all__ = ["ImageDataset", "images_to_tensor", "load_npz_images"]
