"""Feature spaces. Importing this package registers every space."""
from matchzoo.spaces.base import FeatureSpace, Preprocessing, preprocess
from matchzoo.spaces import offline  # noqa: F401  (registers "pixels", "random_conv")

__all__ = ["FeatureSpace", "Preprocessing", "preprocess"]
