"""``module``: any ``nn.Module`` used as a generator, named by import path or loaded from a TorchScript file, with
its calling convention declared in gin -- how a released one-step generator is post-trained.

::

    module.target = 'my_models:OneStepGenerator'   # 'package.module:Attribute', a class or a function returning one
    module.kwargs = {'depth': 12}                   # its constructor arguments (or module.torchscript = 'g.pt')
    module.noise_shape = (4, 32, 32)                # what it is fed, per sample
    module.image_shape = (4, 32, 32)                # what it returns, per sample
    module.num_classes = 1000                       # > 0: it takes class labels, passed as module.label_arg = 'y'
    module.constants = {'t': 1.0, 'r': 0.0}         # extra inputs of a one-step flow map
    module.output = 'latent'                        # 'minus_one_one' | 'zero_one' | 'latent' (inside latent.inner)

The call is ``module(noise, **constants, **{label_arg: labels})``: the noise positionally, everything else by
keyword. A number in ``constants`` becomes a per-sample tensor ``(N,)`` (an int a ``long`` one, a float one of the
noise's dtype), the convention of DiT-style ``forward(x, t, y)``; ``scalar_constants = True`` passes plain Python
numbers instead (a TorchScript signature typed ``t: float``). Booleans, strings and None pass as they are. A tuple
or list result gives its first element. ``output = 'zero_one'`` maps [0, 1] to [-1, 1] (``2x - 1``);
``'latent'`` leaves the values as they are, for ``latent.inner = @module`` to decode.

The wrapped module's parameters are the generator's parameters (trained); ``train.init_from`` loads into it
(:meth:`ModuleGenerator.weights_module`), so a released state dict loads with its own key names. Building this
generator imports and runs code: a checkpoint that names it is rebuilt only when the user trusts that code
(:func:`matchzoo.stored_config.load_generator`, ``MATCHZOO_TRUST_MODULES``); :meth:`code_sources` says what it
would run.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from matchzoo import validate as check
from matchzoo.errors import MatchzooError
from matchzoo.generators.base import Generator, check_labels, image_shape_of
from matchzoo.registry import register_generator

OUTPUTS = ("minus_one_one", "zero_one", "latent")


@register_generator("module")
class ModuleGenerator(Generator):
    """Any ``nn.Module`` as a generator, by import path (``target`` + ``kwargs``) or a ``torchscript`` file, with a
    declared calling convention (for post-training a user's generator). Its parameters are the wrapped module's."""

    def __init__(
        self,
        target: Optional[str] = None,
        kwargs: Optional[dict] = None,
        torchscript: Optional[str] = None,
        noise_shape: Any = None,
        image_shape: Any = None,
        num_classes: int = 0,
        label_arg: str = "y",
        null_label: Optional[int] = None,
        constants: Optional[dict] = None,
        scalar_constants: bool = False,
        output: str = "minus_one_one",
    ):
        super().__init__()
        if noise_shape is None or image_shape is None:
            raise MatchzooError(
                "module.noise_shape and module.image_shape must be declared (per-sample shapes, e.g. "
                "module.noise_shape = (4, 32, 32)); the wrapped module's convention cannot be guessed"
            )
        self._noise_shape = _shape("module.noise_shape", noise_shape)
        self.noise_dim = math.prod(self._noise_shape)
        self.image_shape = image_shape_of("module.image_shape", image_shape)
        self.num_classes = check.non_negative_int("module.num_classes", num_classes)
        self.null_label = _null_label(null_label, self.num_classes)
        if self.num_classes and not (isinstance(label_arg, str) and label_arg.isidentifier()):
            raise MatchzooError(
                f"module.label_arg must be the keyword that takes the labels (e.g. 'y'), got {label_arg!r}"
            )
        self.label_arg = label_arg
        self.constants = _constants(constants, label_arg if self.num_classes else None)
        self.scalar_constants = bool(scalar_constants)
        self.output = check.choice("module.output", output, OUTPUTS)
        self.source = describe_source(target, torchscript)
        self.module = load_module(target, kwargs, torchscript)

    @classmethod
    def code_sources(cls, kwargs: dict) -> list[tuple[str, str]]:
        """What building with ``kwargs`` imports or loads and runs: ``('module', name)`` for the target's Python
        module, ``('file', path)`` for a TorchScript file. Read before a generator is rebuilt from a checkpoint
        (:func:`matchzoo.stored_config.refuse_untrusted`), so only code the user trusts is run."""
        sources = []
        if kwargs.get("target") is not None:
            sources.append(("module", str(kwargs["target"]).split(":")[0]))
        if kwargs.get("torchscript") is not None:
            sources.append(("file", str(kwargs["torchscript"])))
        return sources

    @property
    def noise_shape(self) -> tuple[int, ...]:
        return self._noise_shape

    def forward(self, noise: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        labels = check_labels(labels, self.num_classes, "module", self.null_label)
        inputs: dict[str, Any] = {name: self._constant(value, noise) for name, value in self.constants.items()}
        if labels is not None:
            inputs[self.label_arg] = labels.to(noise.device)
        result = self.module(noise, **inputs)
        if isinstance(result, (tuple, list)) and result:
            result = result[0]
        if not isinstance(result, torch.Tensor):
            raise MatchzooError(f"module {self.source} returned {type(result).__name__}, not a tensor of images")
        if tuple(result.shape) != (noise.shape[0], *self.image_shape):
            raise MatchzooError(
                f"module {self.source} returned shape {tuple(result.shape)} for {noise.shape[0]} samples; "
                f"module.image_shape = {self.image_shape} declares ({noise.shape[0]}, "
                f"{', '.join(map(str, self.image_shape))}): declare what it returns"
            )
        return result * 2.0 - 1.0 if self.output == "zero_one" else result

    def _constant(self, value: Any, noise: torch.Tensor) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or self.scalar_constants:
            return value
        dtype = torch.long if isinstance(value, int) else noise.dtype
        return torch.full((noise.shape[0],), value, dtype=dtype, device=noise.device)  # (N,)

    @property
    def outputs_images(self) -> bool:
        """False for latents (``output = 'latent'``): they are decoded by ``latent`` before any range check."""
        return self.output != "latent"

    def weights_module(self) -> nn.Module:
        return self.module

    @classmethod
    def small_kwargs(cls) -> dict:
        mlp = {"image_shape": (1, 8, 8), "noise_dim": 8, "width": 32, "depth": 1, "num_classes": 3}
        return {
            "target": "matchzoo.generators.mlp:MLPGenerator",  # any importable nn.Module; this one ships with matchzoo
            "kwargs": mlp,
            "noise_shape": (8,),
            "image_shape": (1, 8, 8),
            "num_classes": 3,
            "label_arg": "labels",
        }

    def extra_repr(self) -> str:
        return f"source={self.source}, output={self.output}, constants={self.constants}"


def describe_source(target: Optional[str], torchscript: Optional[str]) -> str:
    if (target is None) == (torchscript is None):
        raise MatchzooError(
            "module: give exactly one of module.target = 'package.module:Class' (with module.kwargs) and "
            f"module.torchscript = 'file.pt'; got target={target!r}, torchscript={torchscript!r}"
        )
    return repr(target) if target is not None else f"torchscript {torchscript!r}"


def load_module(target: Optional[str], kwargs: Optional[dict], torchscript: Optional[str]) -> nn.Module:
    if kwargs is not None and not isinstance(kwargs, dict):
        raise MatchzooError(f"module.kwargs must be a dict of constructor arguments, got {kwargs!r}")
    if torchscript is not None:
        if kwargs:
            raise MatchzooError("module.kwargs applies to module.target only; a TorchScript file is built already")
        return load_torchscript(torchscript)
    factory = import_target(target)
    try:
        module = factory(**(kwargs or {}))
    except TypeError as error:
        reason = str(error).splitlines()[0]
        raise MatchzooError(f"module.kwargs = {kwargs!r} do not fit module.target = {target!r}: {reason}") from None
    if not isinstance(module, nn.Module):
        raise MatchzooError(
            f"module.target = {target!r} returned {type(module).__name__}, not a torch.nn.Module; name an nn.Module "
            f"class or a function returning one"
        )
    return module


def import_target(target: Any) -> Any:
    """The class or function ``'package.module:Attribute'`` names (imported now), or a one-line error."""
    if not isinstance(target, str) or target.count(":") != 1 or not all(target.split(":")):
        raise MatchzooError(
            f"module.target must be 'package.module:Attribute' such as 'my_models:Generator', got {target!r}"
        )
    module_name, attribute = target.split(":")
    try:
        with torch.random.fork_rng(devices=[]):  # import-time random draws must not shift the seeded initialisation
            owner = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and (module_name == error.name or module_name.startswith(f"{error.name}.")):
            raise MatchzooError(
                f"module.target = {target!r}: no module named {error.name!r} (run from the folder that holds it, add "
                f"it to PYTHONPATH or pip install it)"
            ) from None
        raise MatchzooError(f"module.target = {target!r}: importing {module_name!r} failed: {error}") from None
    value: Any = owner
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise MatchzooError(f"module.target = {target!r}: {module_name!r} has no attribute {attribute!r}")
        value = getattr(value, part)
    if isinstance(value, type) and not issubclass(value, nn.Module):
        raise MatchzooError(
            f"module.target = {target!r} is the class {value.__name__}, which is not a torch.nn.Module subclass"
        )
    if not callable(value) or isinstance(value, nn.Module):
        raise MatchzooError(
            f"module.target = {target!r} is a {type(value).__name__}; name an nn.Module class or a function "
            f"returning one (it is built with module.kwargs)"
        )
    return value


def load_torchscript(path: str) -> nn.Module:
    file = Path(path).expanduser()
    if not file.is_file():
        raise MatchzooError(f"module.torchscript file not found: {path}; give a file written by torch.jit.save")
    try:
        return torch.jit.load(str(file), map_location="cpu")
    except Exception as error:  # torch.jit raises RuntimeError and others for a file that is not TorchScript
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise MatchzooError(f"module.torchscript = {path!r} is not a TorchScript file ({reason})") from None


def _shape(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list)) or not value:
        raise MatchzooError(f"{name} must be a per-sample shape such as (128,) or (4, 32, 32), got {value!r}")
    return tuple(check.positive_int(f"{name}[{index}]", size) for index, size in enumerate(value))


def _null_label(value: Any, num_classes: int) -> Optional[int]:
    if value is None:
        return None
    if not num_classes:
        raise MatchzooError("module.null_label needs a class-conditional module (module.num_classes > 0)")
    value = check.integer("module.null_label", value, minimum=0)
    if value < num_classes:
        raise MatchzooError(
            f"module.null_label = {value} is a real class (labels are 0..{num_classes - 1}); the null class is the "
            f"extra index the module was trained with for label dropout, usually {num_classes}"
        )
    return value


def _constants(value: Any, label_arg: Optional[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and k.isidentifier() for k in value):
        raise MatchzooError(f"module.constants must map keyword names to values, e.g. {{'t': 1.0}}, got {value!r}")
    if label_arg in value:
        raise MatchzooError(
            f"module.constants sets {label_arg!r}, the keyword that takes the labels (module.label_arg)"
        )
    bad = [k for k, v in value.items() if not (v is None or isinstance(v, (bool, int, float, str)))]
    if bad:
        raise MatchzooError(
            f"module.constants[{bad[0]!r}] = {value[bad[0]]!r}: constants are numbers, booleans, strings or None"
        )
    return dict(value)
