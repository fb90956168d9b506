"""Checkpoints: atomic writes (temp file + rename), ``torch.load(weights_only=True)``, generator rebuild.

A checkpoint holds the generator, its EMA, the optimisers, every objective's state (population,
potentials, critic), the step, all RNG states, the MLflow run id, the operative gin config and a
``generator_spec`` (registered generator name + plain keyword arguments), so a killed run resumes where
it stopped and :func:`load_generator` can rebuild the generator alone.

Checkpoints are data, never code: someone else's checkpoint may be handed to ``evaluate`` or ``probe``.
The stored operative config is therefore never given to gin (whose ``import`` statements and dynamic
registration import and call anything); it is read with gin's parser as plain bindings
(:func:`stored_bindings`), and the generator is rebuilt from a name in matchzoo's generator registry with
literal arguments.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch

from matchzoo import config
from matchzoo.errors import MatchzooError

FORMAT = "matchzoo-checkpoint-v1"
FILENAME = "checkpoint.pt"
LOCKNAME = ".lock"
_NEARLY_FULL = 1 << 20  # bytes; torch reports a full disk only as a failed or short write


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """Write ``payload`` to ``path`` so that a crash leaves either the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        torch.save({"format": FORMAT, **payload}, temp_name)
        os.replace(temp_name, path)
    except OSError as error:
        Path(temp_name).unlink(missing_ok=True)
        raise MatchzooError(f"cannot write checkpoint {path}: {error.strerror or error}; the previous checkpoint is kept") from None
    except RuntimeError as error:  # torch's stream writer: "[enforce fail ...] unexpected pos", "file write failed"
        reason = _write_failure(path.parent, error)
        Path(temp_name).unlink(missing_ok=True)
        raise MatchzooError(f"cannot write checkpoint {path}: {reason}; the previous checkpoint is kept") from None
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _write_failure(folder: Path, error: RuntimeError) -> str:
    """torch's writer carries no errno; a (nearly) full file system, measured before the partial temp file
    is removed, is the usual cause."""
    if shutil.disk_usage(folder).free < _NEARLY_FULL:
        return "no space left on device"
    return f"the write failed ({str(error).strip().splitlines()[-1][:200]})"


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint; a missing, truncated or foreign file is a one-line error."""
    file = Path(path)
    if file.is_dir():
        file = file / FILENAME
    if not file.is_file():
        raise MatchzooError(f"checkpoint not found: {file}")
    try:
        payload = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises RuntimeError/UnpicklingError/EOFError/... on corrupt files
        raise MatchzooError(f"checkpoint {file} is corrupt or unreadable ({type(error).__name__}); "
                            f"delete it to start fresh or point to another one") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise MatchzooError(f"{file} is not a matchzoo checkpoint (expected format {FORMAT})")
    return payload


# --------------------------------------------------------------------------- stored configs as data


def config_entries(text: str, source: str) -> dict[str, Any]:
    """Every statement of a stored config as ``{key: value}`` read as data (references and macros stay
    names, nothing is imported): bindings under ``'scope/selector.param'``, imports and includes under
    their own text (``'import os'``), so two configs compare key by key."""
    from gin import config_parser

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
    from gin import config_parser

    known = set(config.configurable_names())
    bindings: dict[str, Any] = {}
    for statement in config.statements(text, source):
        if not isinstance(statement, config_parser.BindingStatement):
            raise MatchzooError(f"{source}: its stored config {_describe_statement(statement)}; stored configs are data and "
                                f"are never executed, so this checkpoint cannot be read (only plain bindings are accepted)")
        named = [statement.selector] if statement.arg_name else []  # no argument: a macro definition
        for name in named + [reference.name for reference in _references(statement.value)]:
            if name.split("/")[-1].split(".")[-1] not in known:
                raise MatchzooError(f"{source}: its stored config refers to {name!r}, which matchzoo has not registered; "
                                    f"stored configs are data and are never executed")
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
        raise MatchzooError(f"{source}: its stored config binds no generator (train.generator = @name())")
    scope, _, name = reference.name.rpartition("/")
    prefix = f"{scope}/{name}." if scope else f"{name}."
    kwargs = {key[len(prefix):]: value for key, value in bindings.items() if key.startswith(prefix)}
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
    from matchzoo.registry import GENERATORS

    if not (isinstance(spec, dict) and isinstance(spec.get("name"), str) and isinstance(spec.get("kwargs"), dict)):
        raise MatchzooError(f"{source}: its generator_spec is not {{'name': str, 'kwargs': dict}}")
    if spec["name"] not in GENERATORS:
        raise MatchzooError(f"{source}: {GENERATORS.unknown_message(spec['name'])}; import the module that registers it")
    bad = [key for key, value in spec["kwargs"].items() if not (isinstance(key, str) and _is_plain(value))]
    if bad:
        raise MatchzooError(f"{source}: generator {spec['name']!r} argument(s) {', '.join(map(str, bad))} are not plain "
                            f"values (numbers, strings, lists); it cannot be rebuilt from the checkpoint alone")
    try:
        return GENERATORS.get(spec["name"])(**spec["kwargs"])
    except (TypeError, ValueError) as error:
        raise MatchzooError(f"{source}: cannot build generator {spec['name']!r}: {str(error).splitlines()[0]}") from None


def load_generator(path: str | Path, device: str | torch.device = "cpu", ema: bool = True):
    """Rebuild the generator of a checkpoint from its ``generator_spec`` (or, for checkpoints written before
    it existed, from the plain bindings of its stored config) and load the (EMA) weights."""
    payload = load(path)
    source = f"checkpoint {path}"
    config.parse([], [])  # registers every component; clears bindings that would leak into the build
    spec = payload.get("generator_spec") or generator_spec(stored_bindings(str(payload.get("operative_config", "")), source), source)
    generator = build_generator(spec, source)
    try:
        generator.load_state_dict(payload["generator_ema" if ema else "generator"])
    except (KeyError, RuntimeError) as error:
        raise MatchzooError(f"{source}: its weights do not fit generator {spec['name']!r}: {str(error).splitlines()[0]}") from None
    return generator.to(device).eval()


# --------------------------------------------------------------------------- one process per run folder


class RunLock:
    """An exclusive ``flock`` on ``<run_dir>/.lock`` for the whole run: a second process training the same
    run (two ``--resume`` of one folder) would log every metric twice and overwrite the checkpoint. The
    kernel drops the lock when the holder dies, even by SIGKILL, so a stale lock file never blocks."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCKNAME
        self._file: Optional[Any] = None

    def acquire(self) -> "RunLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+")
        except OSError as error:
            raise MatchzooError(f"cannot lock the run folder {self.path.parent}: {error.strerror or error}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise MatchzooError(f"run folder {self.path.parent} is in use by {holder}; wait for it to finish or stop "
                                f"it (resuming the same run twice would log every step twice)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        """Drop the lock; a run that stopped before writing anything leaves no folder behind."""
        if self._file is None:
            return
        if [p.name for p in self.path.parent.iterdir()] == [LOCKNAME]:
            self.path.unlink()
            self.path.parent.rmdir()
        self._file.close()  # closing drops the flock
        self._file = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
