"""``python -m matchzoo list``: every registry, one line per entry."""
from __future__ import annotations

import argparse
import inspect

from matchzoo.registry import ALL_REGISTRIES

HELP = "list registered objectives, feature spaces, generators and datasets"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for key in ALL_REGISTRIES:
        parser.add_argument(f"--{key}", action="store_true", help=f"show only {key}")


def summary(cls: type) -> str:
    describe = getattr(cls, "list_summary", None)
    if callable(describe):
        return describe()
    doc = inspect.getdoc(cls) or ""
    return doc.splitlines()[0] if doc else ""


def run(args: argparse.Namespace) -> int:
    import matchzoo  # noqa: F401  (imports register everything)

    chosen = [key for key in ALL_REGISTRIES if getattr(args, key)] or list(ALL_REGISTRIES)
    for key in chosen:
        registry = ALL_REGISTRIES[key]
        print(f"{key} ({len(registry)}):")
        width = max((len(n) for n in registry.names()), default=0)
        for name, cls in registry.items():
            print(f"  {name:<{width}}  {summary(cls)}")
    return 0
