"""A stored operative config (the gin text inside a checkpoint) read as data, and the generator it describes.

Checkpoints are data, never code: someone else's checkpoint may be handed to ``evaluate`` or ``probe``.
The stored config is therefore never given to gin (whose ``import`` statements and dynamic registration
import and call anything); it is read with gin's parser as plain bindings (:func:`stored_bindings`), and
the generator is rebuilt from a name in matchzoo's generator registry with literal arguments
(:func:`load_generator`). This lives outside ``train/`` because it needs the gin layer (:mod:`matchzoo.config`),
which the trainer never imports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from gin import config_parser

from matchzoo import config
from matchzoo.errors import MatchzooError
from matchzoo.registry import GENERATORS
from matchzoo.train import checkpoint


def config_entries(text: str, source: str) -> dict[str, Any]:
    """Every statement of a stored config as ``{key: value}`` read as data (references and macros stay
    names, nothing is imported): bindings under ``'scope/selector.param'``, imports and includes under
    their own text (``'import os'``), so two configs compare key by key."""
    entries: dict[str, Any] = {}
    for statement in config.statements(text, source):
        if isinstance(statement, config_parser.BindingStatement):
            entries[_binding_key(statement)] = statement.value
        else:
            entries[_describe_statement(statement)] = None
    return entries


def _binding_key(statement) -> str:
    scope = f"{statement.scope}/" if statement.scope else ""
    return f"{scope}{statement.selector}.{statement.arg_name}" if statement.arg_name else f"{scope}{statement.selector}"


def stored_bindings(text: str, source: str) -> dict[str, Any]:
    """``{'scope/selector.param': value}`` of a stored operative config; anything but a plain binding of a
    configurable this process has registered is refused with one line naming it."""
    known = set(config.configurable_names())
    bindings: dict[str, Any] = {}
    for statement in config.statements(text, source):
        if not isinstance(statement, config_parser.BindingStatement):
            raise MatchzooError(
                f"{source}: its stored config {_describe_statement(statement)}; stored configs are "
                f"data and are never executed, so this checkpoint cannot be read (only plain "
                f"bindings are accepted)"
            )
        named = [statement.selector] if statement.arg_name else []  # no argument: a macro definition
        for name in named + [reference.name for reference in _references(statement.value)]:
            if name.split("/")[-1].split(".")[-1] not in known:
                raise MatchzooError(
                    f"{source}: its stored config refers to {name!r}, which matchzoo has not "
                    f"registered; "
                    f"stored configs are data and are never executed"
                )
        bindings[_binding_key(statement)] = statement.value
    return bindings


def _describe_statement(statement) -> str:
    kind = type(statement).__name__
    if kind == "ImportStatement":
        return f"imports {statement.module!r}"
    if kind == "IncludeStatement":
        return f"includes {statement.filename!r}"
    return f"holds a {kind} (line {statement.location.line_num})"


def _references(value: Any) -> list:
    if isinstance(value, config.GinReference):
        return [value]
    if isinstance(value, (list, tuple)):
        return [r for item in value for r in _references(item)]
    if isinstance(value, dict):
        return [r for item in [*value.keys(), *value.values()] for r in _references(item)]
    return []


def _is_plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(map(_is_plain, value))
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return value is None or isinstance(value, (bool, int, float, str))


def generator_spec(bindings: dict[str, Any], source: str) -> dict[str, Any]:
    """``{'name': generator, 'kwargs': {...}}`` from the bindings of an operative config."""
    reference = bindings.get("train.generator")
    if not isinstance(reference, config.GinReference):
        raise MatchzooError(f"{source}: its stored config binds no generator (train.generator = @name)")
    scope, _, name = reference.name.rpartition("/")
    prefix = f"{scope}/{name}." if scope else f"{name}."
    kwargs = {key[len(prefix) :]: value for key, value in bindings.items() if key.startswith(prefix)}
    kwargs = {key: _resolve_macros(value, bindings) for key, value in kwargs.items()}
    return {"name": name.split(".")[-1], "kwargs": kwargs}


def plain_generator_spec(operative_config: str) -> Optional[dict[str, Any]]:
    """The spec stored in new checkpoints, so reading them never needs their config; ``None`` when the
    generator takes a configurable as an argument (then only resuming the run can rebuild it)."""
    try:  # an operative config can print values gin cannot read back (inf, object reprs)
        spec = generator_spec(config_entries(operative_config, "this run's config"), "this run's config")
    except MatchzooError:
        return None
    return spec if all(_is_plain(value) for value in spec["kwargs"].values()) else None


def _resolve_macros(value: Any, bindings: dict[str, Any], depth: int = 0) -> Any:
    if isinstance(value, config.GinMacro) and value.name in bindings and depth < 20:  # depth: a macro defined by itself
        return _resolve_macros(bindings[value.name], bindings, depth + 1)
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve_macros(item, bindings, depth) for item in value)
    return value


def build_generator(spec: Any, source: str):
    """A generator from its spec: a name in matchzoo's generator registry and literal keyword arguments."""
    if not (isinstance(spec, dict) and isinstance(spec.get("name"), str) and isinstance(spec.get("kwargs"), dict)):
        raise MatchzooError(f"{source}: its generator_spec is not {{'name': str, 'kwargs': dict}}")
    if spec["name"] not in GENERATORS:
        unknown = GENERATORS.unknown_message(spec["name"])
        raise MatchzooError(f"{source}: {unknown}; import the module that registers it")
    bad = [key for key, value in spec["kwargs"].items() if not (isinstance(key, str) and _is_plain(value))]
    if bad:
        raise MatchzooError(
            f"{source}: generator {spec['name']!r} argument(s) {', '.join(map(str, bad))} are not "
            f"plain "
            f"values (numbers, strings, lists); it cannot be rebuilt from the checkpoint alone"
        )
    try:
        return GENERATORS.get(spec["name"])(**spec["kwargs"])
    except (TypeError, ValueError) as error:
        reason = str(error).splitlines()[0]
        raise MatchzooError(f"{source}: cannot build generator {spec['name']!r}: {reason}") from None


def load_generator(path: str | Path, device: str | torch.device = "cpu", ema: bool = True):
    """Rebuild the generator of a checkpoint from its ``generator_spec`` (or, for checkpoints written before
    it existed, from the plain bindings of its stored config) and load the (EMA) weights."""
    payload = checkpoint.load(path)
    source = f"checkpoint {path}"
    config.parse([], [])  # registers every component; clears bindings that would leak into the build
    stored = str(payload.get("operative_config", ""))
    spec = payload.get("generator_spec") or generator_spec(stored_bindings(stored, source), source)
    generator = build_generator(spec, source)
    try:
        generator.load_state_dict(payload["generator_ema" if ema else "generator"])
    except (KeyError, RuntimeError) as error:
        reason = str(error).splitlines()[0]
        raise MatchzooError(f"{source}: its weights do not fit generator {spec['name']!r}: {reason}") from None
    return generator.to(device).eval()
