"""Generators. Importing this package registers every generator."""

from matchzoo.generators import mlp  # noqa: F401  (registers "mlp")
from matchzoo.generators.base import Generator, check_generator_output

__all__ = ["Generator", "check_generator_output"]
