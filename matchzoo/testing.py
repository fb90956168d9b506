"""The contract every registered objective and feature space must keep, as plain check functions, and a
pytest plugin that runs them over the registry -- the package's components and yours.

Check your own objectives and spaces (``my_losses.py`` importable from the current folder)::

    pytest -p matchzoo.testing --matchzoo-import my_losses                       # everything registered
    pytest -p matchzoo.testing --matchzoo-import my_losses --matchzoo-only mean_gap_readme

The plugin adds its contract tests to the session only when ``--matchzoo-import`` or ``--matchzoo-only``
is given, so ``-p matchzoo.testing`` alone changes nothing. Each ``check_*`` function raises
``AssertionError`` with the numbers that broke the contract; call them from your own tests as well.

Objectives (``objective(fake, real) -> LossOutput``, see :mod:`matchzoo.objectives.base`):

* finite and differentiable in float32 and float64, with batch < dimension and batch > dimension;
* permutation invariant in both arguments;
* divergences (``is_divergence = True``): about 0 (or minimal) on identical inputs, positive and
  decreasing as a shift and scale change shrinks; surrogate losses (no critic): the gradient moves the
  generated batch toward the real one;
* ``state_dict()`` round trip after a step (the checkpoint contract).

Feature spaces: frozen (eval mode even after ``.train()``, no parameter gradients), ``(N, dim)`` finite
features, gradients reach the input images, a fingerprint that is the same for two equal instances.
"""

from __future__ import annotations

import difflib
import importlib
import math
import os
import sys
from pathlib import Path
from typing import Optional

import torch

SHAPES = [(6, 16), (48, 4)]  # (batch, dim): batch < dim and batch > dim
DIVERGENCE_SHAPES = [(24, 8), (64, 4)]
DTYPES = [torch.float32, torch.float64]


def _registries():
    import matchzoo  # noqa: F401  (registers the package's components)
    from matchzoo.registry import FEATURE_SPACES, OBJECTIVES

    return OBJECTIVES, FEATURE_SPACES


# ----------------------------------------------------------------------------- objectives


def make_objective(name: str, seed: int = 0):
    """A fresh objective with its default settings, built under a fixed seed (critics, random directions)."""
    objectives = _registries()[0]
    torch.manual_seed(seed)
    return objectives.make(name)


def loss_of(name: str, fake: torch.Tensor, real: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """Loss of a fresh objective (FD's population starts empty; sliced draws seeded directions)."""
    objective = make_objective(name)
    torch.manual_seed(seed)
    return objective(fake, real).loss


def clouds(
    batch: int, dim: int, dtype: torch.dtype = torch.float64, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent standard-normal draws ``(fake, real)``, each ``(batch, dim)``."""
    generator = torch.Generator().manual_seed(seed)
    real = torch.randn(batch, dim, generator=generator, dtype=dtype)
    fake = torch.randn(batch, dim, generator=generator, dtype=dtype)
    return fake, real


def check_finite_and_differentiable(name: str, dtype: torch.dtype, batch: int, dim: int) -> None:
    fake, real = clouds(batch, dim, dtype)
    fake.requires_grad_()
    loss = loss_of(name, fake, real)
    assert loss.ndim == 0, f"{name}: loss must be a scalar, got shape {tuple(loss.shape)}"
    assert torch.isfinite(loss), f"{name}: loss is {loss.item()} for batch {batch}, dim {dim}, {dtype}"
    (grad,) = torch.autograd.grad(loss, fake)
    assert grad.dtype == dtype, f"{name}: gradient is {grad.dtype}, input was {dtype}"
    assert torch.isfinite(grad).all(), f"{name}: non-finite gradient for batch {batch}, dim {dim}, {dtype}"
    assert grad.abs().sum() > 0, f"{name}: the gradient with respect to fake is zero"


def check_permutation_invariant(name: str, batch: int, dim: int) -> None:
    fake, real = clouds(batch, dim)
    generator = torch.Generator().manual_seed(2)
    perm_fake, perm_real = torch.randperm(batch, generator=generator), torch.randperm(batch, generator=generator)
    before = loss_of(name, fake, real).item()
    after = loss_of(name, fake[perm_fake], real[perm_real]).item()
    assert math.isclose(after, before, rel_tol=1e-6, abs_tol=1e-9), (
        f"{name}: reordering the samples changed the loss from {before} to {after}"
    )


def check_divergence_zero_on_identical_and_decreasing_with_shift(name: str, batch: int, dim: int) -> None:
    sample, real = clouds(batch, dim)  # two independent draws of one distribution
    direction = torch.nn.functional.normalize(torch.ones(dim, dtype=torch.float64), dim=0)
    # a shift *and* a scale change: centred covariance objectives (bures) ignore pure translations
    values = [loss_of(name, sample * (1 + s / 3) + s * direction, real).item() for s in (3.0, 2.0, 1.0)]
    at_zero = loss_of(name, real.clone(), real).item()
    assert values[0] > values[1] > values[2] > max(at_zero, 0.0), (
        f"{name}: expected loss(shift 3) > loss(2) > loss(1) > loss(identical) >= 0, got {values} and {at_zero}"
    )
    # unbiased estimators (mmd's U-statistic) are slightly negative on identical samples: small and minimal
    assert abs(at_zero) < 0.25 * values[0], (
        f"{name}: loss on identical inputs {at_zero} is not small next to {values[0]}"
    )


def check_surrogate_gradient_moves_fake_toward_real(name: str) -> None:
    _, real = clouds(64, 4)
    shift = torch.tensor([2.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    noise = 0.1 * torch.randn(real.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    fake = (real + shift + noise).requires_grad_()
    (grad,) = torch.autograd.grad(loss_of(name, fake, real), fake)
    step = -grad.mean(0)
    cosine = torch.dot(step, -shift) / (step.norm() * shift.norm())
    assert cosine > 0.9, f"{name}: a gradient step moves the fake batch at cosine {cosine:.3f} to the real one"


def check_state_dict_round_trip(name: str) -> None:
    fake, real = clouds(16, 5, torch.float32)
    first = make_objective(name)
    first.prepare_reference(real)
    first(fake.requires_grad_(), real)
    second = make_objective(name)
    second.prepare_reference(real)
    second.load_state_dict(first.state_dict())
    loaded = second.state_dict()
    for key, value in first.state_dict().items():
        torch.testing.assert_close(loaded[key], value, msg=lambda message, key=key: f"{name}: state {key!r}: {message}")


def is_divergence(name: str) -> bool:
    return bool(_registries()[0].get(name).is_divergence)


def is_surrogate(name: str) -> bool:
    cls = _registries()[0].get(name)
    return not cls.is_divergence and not cls.has_critic


# ----------------------------------------------------------------------------- feature spaces


def make_space_or_skip(name: str):
    """The space with its default settings; pytest skips it when its pretrained weights are not here."""
    import pytest

    from matchzoo.errors import MissingWeightsError

    try:
        return _registries()[1].make(name)
    except MissingWeightsError as error:
        pytest.skip(str(error).strip().splitlines()[0])  # gin appends "In call to configurable ..." lines


def check_space_contract(space) -> None:
    name = space.name
    space.train()
    assert not space.training, f"{name}: .train() must leave a feature space in eval mode"
    assert not any(p.requires_grad for p in space.parameters()), f"{name}: parameters must be frozen"
    images = (torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1).requires_grad_(True)
    features = space(images)
    assert features.shape == (3, space.dim), f"{name}: features {tuple(features.shape)}, expected (3, {space.dim})"
    assert torch.isfinite(features).all(), f"{name}: non-finite features"
    (grad,) = torch.autograd.grad(features.square().sum(), images)
    assert grad.abs().sum() > 0, f"{name}: no gradient reaches the input images"
    assert isinstance(space.fingerprint, str) and space.fingerprint, f"{name}: empty fingerprint"


def check_space_fingerprint_is_stable(name: str) -> None:
    first, second = make_space_or_skip(name), make_space_or_skip(name)
    assert first.fingerprint == second.fingerprint, f"{name}: two default instances have different fingerprints"


# ----------------------------------------------------------------------------- the pytest plugin


def pytest_addoption(parser) -> None:
    group = parser.getgroup("matchzoo", "matchzoo contract tests")
    group.addoption(
        "--matchzoo-import",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE (it registers your objectives/spaces), then run the contract tests (repeatable)",
    )
    group.addoption(
        "--matchzoo-only",
        action="append",
        default=[],
        metavar="NAME",
        help="run the contract tests only for these registered objectives/spaces (repeatable)",
    )


def pytest_configure(config) -> None:
    import pytest

    if not _wanted(config):
        return
    # `pytest` (unlike `python -m pytest`) does not put the current folder on sys.path: my_losses.py is there
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in config.getoption("matchzoo_import", default=[]) or []:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise pytest.UsageError(f"--matchzoo-import {module}: {type(error).__name__}: {error}") from None
    _selected(config)  # unknown names are a usage error before anything runs


def _wanted(config) -> bool:
    return bool(config.getoption("matchzoo_import", default=None) or config.getoption("matchzoo_only", default=None))


def _selected(config) -> Optional[set[str]]:
    import pytest

    only = config.getoption("matchzoo_only", default=[]) or []
    if not only:
        return None
    objectives, spaces = _registries()
    known = set(objectives.names()) | set(spaces.names())
    for name in only:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise pytest.UsageError(f"--matchzoo-only {name}: not a registered objective or feature space{hint}")
    return set(only)


def selected_objectives(config=None) -> list[str]:
    chosen = _selected(config) if config is not None else None
    return [n for n in _registries()[0].names() if chosen is None or n in chosen]


def selected_spaces(config=None) -> list[str]:
    chosen = _selected(config) if config is not None else None
    return [n for n in _registries()[1].names() if chosen is None or n in chosen]


def pytest_generate_tests(metafunc) -> None:
    """Parametrise this module's contract tests (and only those) over the selected registered names."""
    # pytest calls this hook twice for this module: as the plugin's hook and as the collected module's own
    if metafunc.function.__module__ != __name__ or getattr(metafunc, "_matchzoo_parametrized", False):
        return
    metafunc._matchzoo_parametrized = True
    objectives, spaces = selected_objectives(metafunc.config), selected_spaces(metafunc.config)
    values = {
        "matchzoo_objective": (objectives, None),
        "matchzoo_divergence": ([n for n in objectives if is_divergence(n)], None),
        "matchzoo_surrogate": ([n for n in objectives if is_surrogate(n)], None),
        "matchzoo_space": (spaces, None),
        "dtype_shape": ([(d, b, n) for d in DTYPES for b, n in SHAPES], _shape_id),
        "shape": (SHAPES, _shape_id),
        "divergence_shape": (DIVERGENCE_SHAPES, _shape_id),
    }
    for argname, (params, ids) in values.items():
        if argname in metafunc.fixturenames:
            metafunc.parametrize(argname, params, ids=ids)


def _shape_id(value) -> str:
    *dtype, batch, dim = value
    return "-".join([str(d).split(".")[-1] for d in dtype] + [f"{batch}x{dim}"])


def pytest_collection_modifyitems(session, config, items) -> None:
    """Append this module's contract tests to whatever else was collected."""
    import pytest

    if not _wanted(config):
        return
    module = pytest.Module.from_parent(session, path=Path(__file__))
    items.extend(_leaves(module))


def _leaves(collector) -> list:
    import pytest

    found = []
    for node in collector.collect():
        found.extend([node] if isinstance(node, pytest.Item) else _leaves(node))
    return found


# the contract tests the plugin runs (pytest never collects this file by itself: it is not test_*.py)


def test_objective_finite_and_differentiable(matchzoo_objective, dtype_shape):
    check_finite_and_differentiable(matchzoo_objective, *dtype_shape)


def test_objective_permutation_invariant(matchzoo_objective, shape):
    check_permutation_invariant(matchzoo_objective, *shape)


def test_divergence_zero_on_identical_and_decreasing_with_shift(matchzoo_divergence, divergence_shape):
    check_divergence_zero_on_identical_and_decreasing_with_shift(matchzoo_divergence, *divergence_shape)


def test_surrogate_gradient_moves_fake_toward_real(matchzoo_surrogate):
    check_surrogate_gradient_moves_fake_toward_real(matchzoo_surrogate)


def test_objective_state_dict_round_trip(matchzoo_objective):
    check_state_dict_round_trip(matchzoo_objective)


def test_space_frozen_differentiable_and_fingerprinted(matchzoo_space):
    check_space_contract(make_space_or_skip(matchzoo_space))
    check_space_fingerprint_is_stable(matchzoo_space)
