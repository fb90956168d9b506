"""A stored operative config (the gin text inside a checkpoint) read as data, and the generator it describes.

Checkpoints are data, never code: someone else's checkpoint may be handed to ``evaluate`` or ``probe``.
The stored config is therefore never given to gin (whose ``import`` statements and dynamic registration
import and call anything); it is read with gin's parser as plain bindings (:func:`stored_bindings`), and
the generator is rebuilt from a name in matchzoo's generator registry with literal arguments
(:func:`load_generator`). Generators that would import or load code (``module``: a Python import target or a
TorchScript file) are built only when the user names that code as trusted (``MATCHZOO_TRUST_MODULES`` or
``trust_modules``). This lives outside ``train/`` because it needs the gin layer (:mod:`matchzoo.config`),
which the trainer never imports.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Optional, Sequence

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
    """``{'name': generator, 'kwargs': {...}}`` from the bindings of an operative config. A generator given to
    another as an argument (``latent.inner = @dit``) is a nested spec under ``'generators'``:
    ``{'name': 'latent', 'kwargs': {...}, 'generators': {'inner': {'name': 'dit', 'kwargs': {...}}}}``."""
    reference = bindings.get("train.generator")
    if not isinstance(reference, config.GinReference):
        raise MatchzooError(f"{source}: its stored config binds no generator (train.generator = @name)")
    return _spec_of(reference, bindings, source, depth=0)


MAX_NESTING = 4  # latent.inner = @module is 2 levels; deeper is a config that refers to itself


def _spec_of(reference: Any, bindings: dict[str, Any], source: str, depth: int) -> dict[str, Any]:
    if depth > MAX_NESTING:
        raise MatchzooError(
            f"{source}: its generators are nested more than {MAX_NESTING} deep (a generator inside itself?)"
        )
    scope, _, name = reference.name.rpartition("/")
    prefix = f"{scope}/{name}." if scope else f"{name}."
    kwargs = {key[len(prefix) :]: value for key, value in bindings.items() if key.startswith(prefix)}
    kwargs = {key: _resolve_macros(value, bindings) for key, value in kwargs.items()}
    nested = {key: value for key, value in kwargs.items() if _is_generator_reference(value)}
    spec: dict[str, Any] = {
        "name": name.split(".")[-1],
        "kwargs": {key: value for key, value in kwargs.items() if key not in nested},
    }
    if nested:
        spec["generators"] = {key: _spec_of(value, bindings, source, depth + 1) for key, value in nested.items()}
    return spec


def _is_generator_reference(value: Any) -> bool:
    return isinstance(value, config.GinReference) and value.name.split("/")[-1].split(".")[-1] in GENERATORS


def plain_generator_spec(operative_config: str) -> Optional[dict[str, Any]]:
    """The spec stored in new checkpoints, so reading them never needs their config; ``None`` when the
    generator takes a configurable other than a generator as an argument (then only resuming the run can
    rebuild it)."""
    try:  # an operative config can print values gin cannot read back (inf, object reprs)
        spec = generator_spec(config_entries(operative_config, "this run's config"), "this run's config")
    except MatchzooError:
        return None
    return spec if _is_plain_spec(spec) else None


def _is_plain_spec(spec: dict[str, Any]) -> bool:
    return all(_is_plain(value) for value in spec["kwargs"].values()) and all(
        _is_plain_spec(inner) for inner in spec.get("generators", {}).values()
    )


def _resolve_macros(value: Any, bindings: dict[str, Any], depth: int = 0) -> Any:
    if isinstance(value, config.GinMacro) and value.name in bindings and depth < 20:  # depth: a macro defined by itself
        return _resolve_macros(bindings[value.name], bindings, depth + 1)
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve_macros(item, bindings, depth) for item in value)
    return value


def build_generator(spec: Any, source: str, trust_modules: Sequence[str] = ()):
    """A generator from its spec: a name in matchzoo's generator registry, literal keyword arguments, and nested
    specs for generator arguments (built by the outer generator through a factory). A generator that would
    import or load code (``module``) is built only when all that code is trusted (:func:`refuse_untrusted`)."""
    if not (isinstance(spec, dict) and isinstance(spec.get("name"), str) and isinstance(spec.get("kwargs"), dict)):
        raise MatchzooError(f"{source}: its generator_spec is not {{'name': str, 'kwargs': dict}}")
    nested = spec.get("generators", {})
    if not (isinstance(nested, dict) and all(isinstance(key, str) for key in nested)):
        raise MatchzooError(f"{source}: its generator_spec's 'generators' is not {{argument: spec}}")
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
    cls = GENERATORS.get(spec["name"])
    refuse_untrusted(spec["name"], cls, spec["kwargs"], source, trust_modules)
    factories = {
        key: functools.partial(build_generator, inner, f"{source} ({spec['name']}.{key})", trust_modules)
        for key, inner in nested.items()
    }
    for inner in nested.values():  # every level is checked before anything is built
        _check_trust_everywhere(inner, source, trust_modules)
    try:
        return cls(**spec["kwargs"], **factories)
    except (TypeError, ValueError) as error:
        reason = str(error).splitlines()[0]
        raise MatchzooError(f"{source}: cannot build generator {spec['name']!r}: {reason}") from None


def _check_trust_everywhere(spec: Any, source: str, trust_modules: Sequence[str]) -> None:
    if isinstance(spec, dict) and spec.get("name") in GENERATORS and isinstance(spec.get("kwargs"), dict):
        refuse_untrusted(spec["name"], GENERATORS.get(spec["name"]), spec["kwargs"], source, trust_modules)
        for inner in (spec.get("generators") or {}).values():
            _check_trust_everywhere(inner, source, trust_modules)


TRUST_ENV = "MATCHZOO_TRUST_MODULES"


def trusted_sources(trust_modules: Sequence[str] = ()) -> list[str]:
    """Code the user trusts a checkpoint to run: ``trust_modules`` plus the comma-separated ``MATCHZOO_TRUST_MODULES``
    (Python modules, e.g. ``my_models`` -- a package trusts its sub-modules -- or TorchScript file paths)."""
    from_env = [item.strip() for item in os.environ.get(TRUST_ENV, "").split(",") if item.strip()]
    given = [trust_modules] if isinstance(trust_modules, str) else list(trust_modules)  # one name, not its letters
    return [str(item) for item in given] + from_env


def _is_trusted(kind: str, code: str, trusted: Sequence[str]) -> bool:
    """A module is trusted by its own name or a package above it; a file by a path to the same file."""
    if kind == "module":
        return any(code == entry or code.startswith(f"{entry}.") for entry in trusted)
    where = os.path.abspath(os.path.expanduser(code))
    return any(where == os.path.abspath(os.path.expanduser(entry)) for entry in trusted)


def refuse_untrusted(name: str, cls: type, kwargs: dict, source: str, trust_modules: Sequence[str]) -> None:
    """One line when building generator ``name`` with ``kwargs`` would import or load code (its class's
    ``code_sources(kwargs)``: ``[('module', 'pkg.mod') | ('file', 'model.pt'), ...]``) that the user has not named
    as trusted; nothing is imported before this passes."""
    code_sources = getattr(cls, "code_sources", None)
    if code_sources is None:
        return
    trusted = trusted_sources(trust_modules)
    untrusted = [code for kind, code in code_sources(kwargs) if not _is_trusted(kind, code, trusted)]
    if untrusted:
        what = ", ".join(repr(code) for code in untrusted)
        raise MatchzooError(
            f"{source}: its generator {name!r} would import and run code from {what}, and a checkpoint runs no code "
            f"you have not named; if you trust it, set {TRUST_ENV}={','.join(untrusted)} (or pass "
            f"trust_modules=[{what}] to load_generator)"
        )


def load_generator(
    path: str | Path, device: str | torch.device = "cpu", ema: bool = True, trust_modules: Sequence[str] = ()
):
    """Rebuild the generator of a checkpoint from its ``generator_spec`` (or, for checkpoints written before
    it existed, from the plain bindings of its stored config) and load the (EMA) weights.

    ``trust_modules`` (and ``MATCHZOO_TRUST_MODULES``): the code a ``module`` generator may import or load; any
    other is refused before it is imported. A ``latent`` generator's VAE decoder is found again from its weight
    file or cache (``MATCHZOO_OFFLINE`` applies); only the trained generator's weights are in the checkpoint."""
    payload = checkpoint.load(path)
    source = f"checkpoint {path}"
    config.parse([], [])  # registers every component; clears bindings that would leak into the build
    stored = str(payload.get("operative_config", ""))
    spec = payload.get("generator_spec") or generator_spec(stored_bindings(stored, source), source)
    generator = build_generator(spec, source, trust_modules)
    try:
        generator.load_state_dict(payload["generator_ema" if ema else "generator"])
    except (KeyError, RuntimeError) as error:
        reason = str(error).splitlines()[0]
        raise MatchzooError(f"{source}: its weights do not fit generator {spec['name']!r}: {reason}") from None
    return generator.to(device).eval()
