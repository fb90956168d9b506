"""Generators. Importing this package registers every generator."""
from matchzoo.generators.base import Generator, check_generator_output
from matchzoo.generators import mlp  # noqa: F401  (registers "mlp")

__all__ = ["Generator", "check_generator_output"]
