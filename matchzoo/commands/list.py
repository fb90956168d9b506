"""``python -m matchzoo list``: every registry, one line per entry."""

from __future__ import annotations

import argparse
import inspect

from matchzoo.metrics.registry import METRICS
from matchzoo.registry import ALL_REGISTRIES as _COMPONENTS

HELP = "list registered objectives, feature spaces, generators, datasets and metrics"
ALL_REGISTRIES = {**_COMPONENTS, "metrics": METRICS}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for key in ALL_REGISTRIES:
        parser.add_argument(f"--{key}", action="store_true", help=f"show only {key}")


def summary(cls: type) -> str:
    """``cls.list_summary()`` if it has one, else the first sentence of its docstring, as one line (a sentence
    wrapped over several docstring lines is joined; later sentences are left for ``help()``)."""
    describe = getattr(cls, "list_summary", None)
    if callable(describe):
        return describe()
    paragraph = (inspect.getdoc(cls) or "").split("\n\n")[0]
    text = " ".join(line.strip() for line in paragraph.splitlines())
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def space_details(cls: type) -> list[str]:
    """Indented lines: dim, preprocessing (size, filter, channels, mean/std), layer/token, weights source, family."""
    entry = cls.catalog()
    spec = entry["preprocessing"]
    size = (
        "native size" if spec.size is None else f"{spec.size}px {spec.resize}{' antialias' if spec.antialias else ''}"
    )
    mean = ",".join(f"{m:.4g}" for m in spec.mean)
    std = ",".join(f"{s:.4g}" for s in spec.std)
    channels = "RGB (grayscale repeated)" if spec.channels == 3 else "gray (RGB averaged)"
    return [
        f"      dim {entry['dim']}; input {size}, {channels}, mean=({mean}) std=({std})",
        f"      layer/token: {spec.layer}",
        f"      weights: {entry['weights']}",
        f"      family (fdr_unseen): {getattr(cls, 'family', None) or cls.registry_name}",
    ]


def run(args: argparse.Namespace) -> int:
    import matchzoo  # noqa: F401  (imports register everything)

    chosen = [key for key in ALL_REGISTRIES if getattr(args, key)] or list(ALL_REGISTRIES)
    detailed = chosen == ["spaces"]  # `list --spaces` alone shows the full description of each space
    for key in chosen:
        registry = ALL_REGISTRIES[key]
        print(f"{key} ({len(registry)}):")
        if detailed:
            for name, cls in registry.items():
                print(f"  {name}  {summary(cls)}")
                for line in space_details(cls):
                    print(line)
            continue
        width = max((len(n) for n in registry.names()), default=0)
        for name, cls in registry.items():
            print(f"  {name:<{width}}  {summary(cls)}")
    return 0
