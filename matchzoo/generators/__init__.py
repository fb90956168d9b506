"""Generators. Importing this package registers every generator."""

from matchzoo.generators import conv, dit, latent, mlp, module  # noqa: F401  (registers each generator)
from matchzoo.generators.base import Generator, check_generator_output

__all__ = ["Generator", "check_generator_output"]
