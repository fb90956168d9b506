"""matchzoo: a gin-configured zoo of distribution-matching objectives in frozen feature spaces.

Public API (stable names)::

    register_objective, register_feature_space, register_generator, register_dataset
    make_objective, make_feature_space, make_generator, make_dataset
    list_objectives, list_feature_spaces, list_generators, list_datasets
    frechet_distance, frechet_distance_from_stats
"""

from __future__ import annotations

from typing import Any

from matchzoo.data import ImageDataset
from matchzoo.generators import Generator
from matchzoo.linalg import frechet_distance, frechet_distance_from_stats
from matchzoo.objectives import LossOutput, Objective
from matchzoo.registry import (
    DATASETS,
    FEATURE_SPACES,
    GENERATORS,
    OBJECTIVES,
    register_dataset,
    register_feature_space,
    register_generator,
    register_objective,
)
from matchzoo.spaces import FeatureSpace, Preprocessing

__version__ = "0.1.0"


def make_objective(name: str, **kwargs: Any) -> Objective:
    return OBJECTIVES.make(name, **kwargs)


def make_feature_space(name: str, **kwargs: Any) -> FeatureSpace:
    return FEATURE_SPACES.make(name, **kwargs)


def make_generator(name: str, **kwargs: Any) -> Generator:
    return GENERATORS.make(name, **kwargs)


def make_dataset(name: str, **kwargs: Any) -> ImageDataset:
    return DATASETS.make(name, **kwargs)


def list_objectives() -> list[str]:
    return OBJECTIVES.names()


def list_feature_spaces() -> list[str]:
    return FEATURE_SPACES.names()


def list_generators() -> list[str]:
    return GENERATORS.names()


def list_datasets() -> list[str]:
    return DATASETS.names()


__all__ = [
    "register_objective",
    "register_feature_space",
    "register_generator",
    "register_dataset",
    "make_objective",
    "make_feature_space",
    "make_generator",
    "make_dataset",
    "list_objectives",
    "list_feature_spaces",
    "list_generators",
    "list_datasets",
    "frechet_distance",
    "frechet_distance_from_stats",
    "LossOutput",
    "Objective",
    "FeatureSpace",
    "Preprocessing",
    "Generator",
    "ImageDataset",
]
