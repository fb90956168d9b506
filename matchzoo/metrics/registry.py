"""The metric registry: ``@register_metric("name")`` on a :class:`Metric` subclass makes it a per-space
evaluation number of both paths -- the training evaluator (``eval/<key>/<space>`` in MLflow) and
``matchzoo evaluate`` (a column of its table, JSON and CSV) -- and a gin configurable (gin module
``metrics``), so ``kid.subsets = 20`` in a .gin file sets it for training.

A metric sees the generated features of one space and that space's real side, a
:class:`matchzoo.metrics.frechet.SpaceReference` (``reference``: the train split, ``heldout``: the
held-out split, and Gaussian fits of both, computed once and shared by every metric), and returns the
numbers named in :attr:`Metric.keys`. Adding one is a new module in ``matchzoo/metrics/`` with a
decorated class, imported in ``matchzoo/metrics/__init__.py``; ``tests/test_metric_registry.py`` then
covers it.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from matchzoo.registry import Registry

METRICS = Registry("metric", "metrics")
register_metric = METRICS.register


class Metric:
    """One or more numbers for one feature space, from generated features and the real side of the space."""

    keys: tuple[str, ...] = ()  # the quantities it returns, in column order (eval/<key>/<space> in MLflow)
    headers: Optional[dict[str, str]] = None  # key -> header in evaluate's printed table; None: every key, as is
    during_training: bool = True  # False for metrics too slow to run at every training evaluation
    spaces: Optional[tuple[str, ...]] = None  # the only spaces it applies to (e.g. class logits); None: every space

    @classmethod
    def applies_to(cls, space: Optional[str]) -> bool:
        """Whether it runs in the space called ``space`` (an unnamed space runs every metric)."""
        return cls.spaces is None or space is None or space in cls.spaces

    def __call__(self, generated: torch.Tensor, real, seed: int) -> dict[str, float]:
        """``generated`` ``(n, D)``; ``real`` the space's :class:`~matchzoo.metrics.frechet.SpaceReference`."""
        raise NotImplementedError

    @classmethod
    def table_headers(cls) -> dict[str, str]:
        return {key: key for key in cls.keys} if cls.headers is None else dict(cls.headers)

    @classmethod
    def from_suite(cls, settings) -> "Metric":
        """The instance ``matchzoo evaluate`` uses, configured from its options (a
        :class:`~matchzoo.metrics.suite.SuiteSettings`); metrics without options ignore them."""
        return cls()


def metric_names(during_training: bool = False) -> list[str]:
    """Every registered metric (sorted by name: the column order), or those that run during training."""
    return [name for name, cls in METRICS.items() if cls.during_training or not during_training]


def make_metrics(names: Sequence[str], suite_settings=None) -> list[Metric]:
    """Instances of the named metrics in registry order (unknown names fail with the known ones): built by
    gin in training, from ``suite_settings`` (``matchzoo evaluate``'s options) when given."""
    classes = [METRICS.get(name) for name in names]
    ordered = sorted(set(classes), key=lambda cls: cls.registry_name)
    return [cls() if suite_settings is None else cls.from_suite(suite_settings) for cls in ordered]
