"""One generic registry for objectives, feature spaces, generators and datasets.

``@register_objective("sinkhorn")`` records the class under that name *and* makes it a gin configurable
with the same name (gin module ``objectives``), so ``trainer.objective = @sinkhorn()`` works in a .gin
file as soon as the module defining the class is imported.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Iterator, TypeVar

import gin

from matchzoo.errors import MatchzooError, UnknownNameError

T = TypeVar("T")


class RegistrationError(MatchzooError, ValueError):
    """A name that cannot be registered (taken, or not an identifier): a user error, one line from the CLI
    (e.g. when a module imported by a gin file registers a taken name). Also a ``ValueError``."""


class Registry:
    """Name -> class mapping for one kind of component (``objective``, ``feature space``, ...)."""

    def __init__(self, kind: str, gin_module: str):
        self.kind = kind
        self.gin_module = gin_module
        self._entries: dict[str, type] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        if not isinstance(name, str) or not name.isidentifier():
            raise RegistrationError(f"{self.kind} name must be a Python identifier (gin needs one), got {name!r}")

        def decorator(cls: type[T]) -> type[T]:
            if name in self._entries:
                raise RegistrationError(
                    f"{self.kind} {name!r} is already registered (by {_qualname(self._entries[name])}); "
                    f"choose another name"
                )
            cls = gin.configurable(name, module=self.gin_module)(cls)
            cls.registry_name = name
            self._entries[name] = cls
            return cls

        return decorator

    def get(self, name: str) -> type:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        known = sorted(self._entries)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; known: {', '.join(known) or '(none)'}"

    def make(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, type]]:
        for name in self.names():
            yield name, self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


OBJECTIVES = Registry("objective", "objectives")
FEATURE_SPACES = Registry("feature space", "spaces")
GENERATORS = Registry("generator", "generators")
DATASETS = Registry("dataset", "datasets")

register_objective = OBJECTIVES.register
register_feature_space = FEATURE_SPACES.register
register_generator = GENERATORS.register
register_dataset = DATASETS.register

ALL_REGISTRIES = {"objectives": OBJECTIVES, "spaces": FEATURE_SPACES, "generators": GENERATORS, "datasets": DATASETS}
