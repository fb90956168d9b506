"""Every gin call of the project lives here: parsing with include search paths, one-line errors, the
operative config, flattened bindings for MLflow params, and the report of bindings that never took effect.

Include resolution: ``include 'x.gin'`` is looked up relative to the including file, then in the
project's ``gin/`` folder (the current directory's ``gin/`` first, then the one next to the package).
``import my_module`` in a gin file finds ``my_module.py`` next to that file (the folders of every parsed
file go to the front of ``sys.path`` while its imports run), then on ``sys.path``.

Scopes follow gin's rule: a binding ``a/x.p`` applies wherever ``x`` is called with a scope stack that
*starts* with ``a``, and the longest such scope wins. A reference ``@a/x()`` calls ``x`` in scope ``a``
(whatever the caller's scope); ``@x()`` calls it in the caller's scope. :func:`dead_bindings` uses that
rule before anything is built to refuse overrides that every call site shadows with a more specific
binding (``term.objective`` when the experiment sets ``ssl/term.objective`` and ``px/term.objective``).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import logging
import re
import sys
import tokenize
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import gin
from gin import config_parser

from matchzoo.errors import MatchzooError

_LOCATION = re.compile(r'In (?:file "(?P<file>[^"]+)"|bindings string), line (?P<line>\d+)\s*\n\s*(?P<content>.*)')
Scope = tuple[str, ...]


def gin_roots() -> list[Path]:
    """The ``gin/`` folders searched for includes: ``./gin`` then the repository's ``gin/``."""
    roots = [Path.cwd() / "gin", Path(__file__).resolve().parent.parent / "gin"]
    unique: list[Path] = []
    for root in roots:
        if root.is_dir() and root.resolve() not in [u.resolve() for u in unique]:
            unique.append(root)
    return unique


def resolve_config_file(name: str) -> Path:
    """A config path as given, else relative to a ``gin/`` root; one-line error when missing."""
    path = Path(name)
    if path.is_file():
        return path.resolve()
    for root in gin_roots():
        candidate = root / name
        if candidate.is_file():
            return candidate.resolve()
    roots = ", ".join(map(str, gin_roots())) or "no gin/ folder"
    raise MatchzooError(f"gin file not found: {name} (looked in the current directory and {roots})")


# ----------------------------------------------------------------------------- gin text as data


@dataclass(frozen=True)
class GinReference:
    """``@name()`` (evaluate=True) or ``@name`` as written in gin; kept as text, never resolved."""

    name: str
    evaluate: bool

    def __str__(self) -> str:
        return f"@{self.name}{'()' if self.evaluate else ''}"


@dataclass(frozen=True)
class GinMacro:
    name: str

    def __str__(self) -> str:
        return f"%{self.name}"


class TextDelegate(config_parser.ParserDelegate):
    """Parses references and macros into placeholders instead of resolving them (no global gin state)."""

    def configurable_reference(self, scoped_configurable_name, evaluate):
        return GinReference(scoped_configurable_name, evaluate)

    def macro(self, macro_name):
        return GinMacro(macro_name)


def gin_text(value: Any) -> str:
    """Gin source text for a parsed value (inverse of the parser for the literals gin accepts)."""
    if isinstance(value, (GinReference, GinMacro)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(gin_text(v) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(gin_text(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{gin_text(k)}: {gin_text(v)}" for k, v in value.items()) + "}"
    return repr(value)


def statements(text: str, source: str) -> list:
    """Every statement of gin ``text`` (bindings, includes, imports) without executing anything;
    syntax errors become one line naming ``source``."""
    try:
        return list(config_parser.ConfigParser(text, TextDelegate()))
    except SyntaxError as error:
        raise MatchzooError(
            f"{source}: gin syntax error: {error.msg} (line {error.lineno}: {str(error.text).strip()!r})"
        ) from None
    except tokenize.TokenError as error:  # unbalanced brackets reach the tokenizer first
        raise MatchzooError(f"{source}: gin syntax error: {error.args[0]}") from None


def binding_key(statement: config_parser.BindingStatement) -> str:
    scope = f"{statement.scope}/" if statement.scope else ""
    return f"{scope}{statement.selector}.{statement.arg_name}"


def read_gin_text(path: Path) -> str:
    """A gin file's text; a file that is not UTF-8 is one line naming the first bad byte."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise MatchzooError(f"cannot read gin file {path}: {error.strerror or error}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MatchzooError(
            f"{path}: not UTF-8 text (byte 0x{data[error.start]:02x} at byte offset {error.start}); "
            f"save the file as UTF-8"
        ) from None


# ----------------------------------------------------------------------------- the include tree


@dataclass
class ConfigTree:
    """Every file reachable from the given ones through includes, and the modules they import."""

    files: list[Path] = field(default_factory=list)
    imports: list[tuple[config_parser.ImportStatement, Path]] = field(default_factory=list)

    def folders(self) -> list[Path]:
        return list(dict.fromkeys(file.parent for file in self.files))


def _statements_until_error(text: str) -> Iterator:
    """Statements up to the first syntax error: gin itself reports that error, with its location."""
    parser = iter(config_parser.ConfigParser(text, TextDelegate()))
    while True:
        try:
            yield next(parser)
        except StopIteration:
            return
        except (SyntaxError, tokenize.TokenError, ValueError):
            return


def _resolve_include(name: str, including: Path) -> Optional[Path]:
    for base in [including.parent, *gin_roots(), Path.cwd()]:
        if (base / name).is_file():
            return (base / name).resolve()
    return None


def config_tree(files: Sequence[Path]) -> ConfigTree:
    """Walk the includes depth-first; an include cycle is one line naming it (gin itself would recurse
    until Python's stack overflows)."""
    tree = ConfigTree()

    def visit(file: Path, chain: tuple[Path, ...]) -> None:
        if file in chain:
            cycle = " -> ".join(str(f) for f in (*chain[chain.index(file) :], file))
            raise MatchzooError(f"include cycle: {cycle}; remove one of these includes")
        if file not in tree.files:
            tree.files.append(file)
        for statement in _statements_until_error(read_gin_text(file)):
            if isinstance(statement, config_parser.IncludeStatement):
                included = _resolve_include(statement.filename, file)
                if included is not None:  # a missing one is reported by gin with its file:line
                    visit(included, (*chain, file))
            elif isinstance(statement, config_parser.ImportStatement):
                tree.imports.append((statement, file))

    for file in files:
        visit(Path(file).resolve(), ())
    return tree


@contextlib.contextmanager
def _modules_next_to(folders: Sequence[Path]) -> Iterator[None]:
    """Put ``folders`` at the front of ``sys.path`` while importing; the modules stay imported afterwards."""
    saved = list(sys.path)
    sys.path[:0] = [str(folder) for folder in folders]
    try:
        yield
    finally:
        sys.path[:] = saved


def _import_modules(tree: ConfigTree) -> None:
    """Import what the gin files import, so a failure is one line with the file and line of the import."""
    for statement, file in tree.imports:
        if statement.module.startswith("__gin__"):
            continue
        try:
            importlib.import_module(statement.module)
        except ImportError as error:
            where = f"{file}:{statement.location.line_num}"
            raise MatchzooError(
                f"{where}: cannot import {statement.module!r}: {type(error).__name__}: {error} "
                f"(looked next to {file} and on sys.path)"
            ) from None
        except MatchzooError as error:  # e.g. the module registers a name that is already taken
            where = f"{file}:{statement.location.line_num}"
            raise MatchzooError(f"{where}: importing {statement.module!r}: {error}") from None
        except SyntaxError as error:
            raise MatchzooError(
                f"{file}:{statement.location.line_num}: cannot import {statement.module!r}: "
                f"syntax error in {error.filename}:{error.lineno}: {error.msg}"
            ) from None


# ----------------------------------------------------------------------------- parsing


def parse(gin_files: Sequence[str], gin_params: Sequence[str] = (), check_overrides: bool = True) -> list[Path]:
    """Clear gin, register every component, parse files then bindings; user errors become one line.

    With ``check_overrides``, a ``--gin_param`` that cannot change anything because every place its
    configurable is called from binds it in a more specific scope is refused (see :func:`dead_bindings`).
    """
    import matchzoo  # noqa: F401  (registers all configurables)
    import matchzoo.train  # noqa: F401

    gin.clear_config()
    _silence_search_misses()
    files = [resolve_config_file(f) for f in gin_files]
    tree = config_tree(files)
    _reset_search_path([*tree.folders(), *gin_roots()])
    with _modules_next_to(tree.folders()):
        _import_modules(tree)
    # gin's own import of those modules is now a cache hit; the folders must be off sys.path while it
    # resolves includes, or it reads 'objectives/fd.gin' as a file in a namespace package 'objectives'
    _parse_with_gin(files, gin_params)
    if check_overrides:
        for param in gin_params:
            refuse_dead(param, f"--gin_param {param!r}", lambda key, value: f"--gin_param '{key}={value}'")
    return files


def _reset_search_path(folders: Sequence[Path]) -> None:
    """gin keeps include search paths across parses; a folder from an earlier parse must not win."""
    gin.config._LOCATION_PREFIXES[:] = [""]  # pylint: disable=protected-access
    for folder in dict.fromkeys(folders):
        gin.add_config_file_search_path(str(folder))


def _parse_with_gin(files: Sequence[Path], gin_params: Sequence[str]) -> None:
    try:
        gin.parse_config_files_and_bindings([str(f) for f in files], list(gin_params), finalize_config=False)
    except ImportError as error:  # an `import` in a --gin_param (the files' imports ran before, in one line)
        raise MatchzooError(f"{describe_gin_error(error)} (looked on sys.path)") from None
    except RecursionError:
        raise MatchzooError(
            f"include cycle while parsing {', '.join(map(str, files))} (a file includes itself, "
            f"directly or through others); remove one of the includes"
        ) from None
    except (SyntaxError, ValueError, KeyError, TypeError, IOError) as error:
        raise MatchzooError(describe_gin_error(error)) from None


class _SearchMissFilter(logging.Filter):
    """gin logs an ERROR for every search path that does not hold an included file; only the final
    failure matters, and that one is raised (and reported by us) anyway."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Path not found")


def _silence_search_misses() -> None:
    root = logging.getLogger()
    if not any(isinstance(f, _SearchMissFilter) for f in root.filters):
        root.addFilter(_SearchMissFilter())


def describe_gin_error(error: BaseException) -> str:
    """One line ``file:line: what went wrong (hint)`` from gin's multi-line messages."""
    if isinstance(error, SyntaxError) and len(error.args) >= 2 and hasattr(error.args[1], "filename"):
        where = error.args[1]
        origin = where.filename or "--gin_param"
        return f"{origin}:{where.line_num}: gin syntax error: {error.args[0]} in {where.line_content.strip()!r}"
    text = str(error)
    headline = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    match = _LOCATION.search(text)
    location = ""
    if match:
        location = f"{match.group('file') or '--gin_param'}:{match.group('line')}: "
    unknown = re.search(r"No configurable matching (?:reference )?'@?([\w./]+?)(?:\(\))?'", headline)
    if unknown:
        headline += _closest_configurable(unknown.group(1).split("/")[-1])
    if "has denylisted kwarg" in headline:  # a value its caller passes, e.g. an optimiser's lr (train.lr)
        headline += " Its caller passes it: an optimiser's learning rate and betas are train.lr and train.betas."
    called = re.match(r"(\w+)\(\) missing \d+ required positional argument", headline)
    if called:  # `@adam()` calls a factory that code should call with its arguments
        headline += f" (if @{called.group(1)}() is a factory such as train.optimizer's, write @{called.group(1)})"
    return f"{location}{headline}"


def configurable_names() -> list[str]:
    names = set()
    for selector, _ in gin.config._REGISTRY.items():  # pylint: disable=protected-access
        names.add(selector.split(".")[-1])
    return sorted(names)


def _closest_configurable(name: str) -> str:
    known = configurable_names()
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"{hint} Known: {', '.join(known)}"


def operative_config() -> str:
    return gin.operative_config_str()


def _format_value(value: Any) -> str:
    text = str(value) if isinstance(value, gin.config.ConfigurableReference) else repr(value)
    return text if len(text) <= 500 else text[:497] + "..."


def _short(selector: str) -> str:
    return selector.split(".")[-1]


def flattened_bindings() -> dict[str, str]:
    """Operative bindings as ``{'scope/name.param': 'value'}`` (MLflow params)."""
    flat = {}
    for (scope, selector), params in gin.config._OPERATIVE_CONFIG.items():  # pylint: disable=protected-access
        prefix = f"{scope}/" if scope else ""
        for param, value in params.items():
            flat[f"{prefix}{_short(selector)}.{param}"] = _format_value(value)
    return dict(sorted(flat.items()))


# ----------------------------------------------------------------------------- which bindings take effect


def _scope(text: str) -> Scope:
    return tuple(filter(None, text.split("/")))


def _scope_text(scope: Scope) -> str:
    return "/".join(scope)


def _starts_with(scope: Scope, prefix: Scope) -> bool:
    return scope[: len(prefix)] == prefix


def _winning_scope(selector: str, param: str, call: Scope) -> Optional[Scope]:
    """The scope of the binding gin uses for ``selector.param`` when called in scope ``call``."""
    applicable = [
        _scope(scope)
        for (scope, bound), params in gin.config._CONFIG.items()  # pylint: disable=protected-access
        if bound == selector and param in params and _starts_with(call, _scope(scope))
    ]
    return max(applicable, key=len, default=None)


def _binding_name(scope: Scope, selector: str, param: str) -> str:
    prefix = f"{_scope_text(scope)}/" if scope else ""
    return f"{prefix}{_short(selector)}.{param}"


def unused_bindings() -> list[str]:
    """Bindings set in the config that never reached a call (gin ignores them silently).

    A binding in scope ``s`` is used when some call of its configurable ran in a scope that starts with
    ``s`` and no binding of the same parameter in a longer scope won there. One that lost everywhere is
    reported with the bindings that shadowed it.
    """
    calls = defaultdict(list)
    for (scope, selector), params in gin.config._OPERATIVE_CONFIG.items():  # pylint: disable=protected-access
        calls[selector].append((_scope(scope), set(params)))
    unused = []
    for (scope_text, selector), params in gin.config._CONFIG.items():  # pylint: disable=protected-access
        scope = _scope(scope_text)
        for param in params:
            reached = [call for call, used in calls[selector] if param in used and _starts_with(call, scope)]
            winners = {_winning_scope(selector, param, call) for call in reached}
            if scope in winners:
                continue
            name = _binding_name(scope, selector, param)
            shadows = sorted(_binding_name(w, selector, param) for w in winners if w is not None)
            unused.append(f"{name} (shadowed by {', '.join(shadows)})" if shadows else name)
    return sorted(unused)


# ----------------------------------------------------------------------------- static check of overrides


def _references(value: Any) -> Iterator[Any]:
    if isinstance(value, gin.config.ConfigurableReference):
        yield value
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _references(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _references(key)
            yield from _references(item)


def _reference_index() -> dict[str, list[tuple[Scope, str, str, Any]]]:
    """configurable -> every ``(scope, caller, param, reference)`` whose bound value references it."""
    index = defaultdict(list)
    for (scope, selector), params in gin.config._CONFIG.items():  # pylint: disable=protected-access
        for param, value in params.items():
            for reference in _references(value):
                index[reference.configurable.selector].append((_scope(scope), selector, param, reference))
    return index


def call_scopes() -> dict[str, set[Scope]]:
    """The scopes each configurable will be called in, predicted from the parsed bindings.

    A configurable no binding references is called by code, unscoped. ``@a/x()`` calls ``x`` in scope
    ``a``; ``@x()`` in every scope its caller is called in where that binding of the caller wins; ``@x``
    (a callable handed to code) also unscoped, ``@a/x`` in scope ``a`` whenever code calls it. References
    inside shadowed bindings still count when scoped: the prediction errs towards "used", so a refused
    override is really dead.
    """
    index = _reference_index()
    sites: dict[str, set[Scope]] = defaultdict(set)
    for _, selector in gin.config._CONFIG:  # pylint: disable=protected-access
        if selector not in index:
            sites[selector].add(())
    changed = True
    while changed:  # a fixed point: scopes only propagate, and there are finitely many of them
        changed = False
        for target, references in index.items():
            for scope, caller, param, reference in references:
                found = (
                    {tuple(reference.scopes)}
                    if reference.scopes
                    else {call for call in sites[caller] if _winning_scope(caller, param, call) == scope}
                )
                if not reference.evaluate and not reference.scopes:  # `@x` hands over a callable: code may
                    found.add(())  # call it later, unscoped (`@a/x` enters scope a whenever it is called)
                if not found <= sites[target]:
                    sites[target] |= found
                    changed = True
    return sites


def referenced_configurables() -> list[tuple[str, str]]:
    """``(scope, name)`` of every configurable a binding references, in each scope it will be called in."""
    sites = call_scopes()
    return [
        ("/".join(scope), selector.split(".")[-1])
        for selector in _reference_index()
        for scope in sorted(sites[selector])
    ]


@dataclass
class DeadBinding:
    """A binding that cannot change the run: every call of its configurable takes another binding."""

    key: str
    value: str
    shadowed_by: list[str]
    called_in: list[str]

    def reason(self) -> str:
        if self.shadowed_by:
            return f"it is shadowed by {', '.join(self.shadowed_by)}"
        scopes = ", ".join(s or "(unscoped)" for s in self.called_in)
        plural = "s" if len(self.called_in) > 1 else ""
        return f"{self.key.split('.')[0].split('/')[-1]} is only called in scope{plural} {scopes} here"

    def advice(self) -> str:
        if not self.shadowed_by:
            return "bind it in one of those scopes instead"
        return f"set {'those' if len(self.shadowed_by) > 1 else 'that'} instead"

    def suggestion(self) -> str:
        if self.shadowed_by:
            return self.shadowed_by[0]
        scope = self.called_in[0]
        return f"{scope}/{self.key.split('/')[-1]}" if scope else self.key.split("/")[-1]


def _dead(statement: config_parser.BindingStatement, sites: dict[str, set[Scope]]) -> Optional[DeadBinding]:
    if not statement.arg_name:
        return None  # a macro is not a parameter of a call
    try:
        configurable = gin.config._REGISTRY.get_match(statement.selector)  # pylint: disable=protected-access
    except KeyError:
        return None  # ambiguous names are gin's error, reported while parsing
    if configurable is None:
        return None
    selector, scope, param = configurable.selector, _scope(statement.scope), statement.arg_name
    calls = sites.get(selector, set())
    reached = [call for call in calls if _starts_with(call, scope)]
    if not calls or scope in {_winning_scope(selector, param, call) for call in reached}:
        return None
    return DeadBinding(
        binding_key(statement),
        gin_text(statement.value),
        _in_config_order([(_winning_scope(selector, param, c), selector) for c in reached], param),
        [_scope_text(scope) for scope, _ in _in_config_order([(c, selector) for c in calls])],
    )


def _in_config_order(keys: list[tuple[Scope, str]], param: Optional[str] = None) -> list:
    """``keys`` without repeats, in the order their bindings appear in the config (the order users wrote)."""
    order = {(_scope(scope), selector): i for i, (scope, selector) in enumerate(gin.config._CONFIG)}  # pylint: disable=protected-access
    unique = sorted(set(keys), key=lambda key: (order.get(key, len(order)), key))
    return [_binding_name(scope, selector, param) for scope, selector in unique] if param else unique


def dead_bindings(text: str, source: str = "--gin_param") -> list[DeadBinding]:
    """The bindings of gin ``text`` that cannot take effect in the parsed config (call after parsing)."""
    found = [s for s in statements(text, source) if isinstance(s, config_parser.BindingStatement)]
    if not found:
        return []
    sites = call_scopes()
    return [dead for dead in (_dead(s, sites) for s in found) if dead is not None]


def refuse_dead(text: str, label: str, example) -> None:
    """One-line error for the first binding of ``text`` that changes nothing; ``example(key, value)``
    writes the fix in the syntax the user typed (``--gin_param 'k=v'``, ``--grid 'k=[...]'``)."""
    for dead in dead_bindings(text, label):
        fix = example(dead.suggestion(), dead.value)
        raise MatchzooError(f"{label} changes nothing: {dead.reason()} ({dead.advice()}, e.g. {fix})")


def query(binding: str, default: Any = None) -> Any:
    try:
        return gin.query_parameter(binding)
    except ValueError:
        return default


# ----------------------------------------------------------------------------- building and recording a run


def build(configurable):
    """Call a gin configurable (``configurable()``); what gin raises while building is one line with its location."""
    try:
        return configurable()
    except MatchzooError:
        raise
    except (ValueError, TypeError) as error:
        raise MatchzooError(describe_gin_error(error)) from None


@dataclass(frozen=True)
class Record:
    """What a built run records of its config: the operative text (artifact, checkpoint, resume check), the
    flattened bindings (MLflow params) and the bindings that never took effect (a warning and a tag)."""

    operative: str
    bindings: dict[str, str]
    unused: list[str]


def record() -> Record:
    """Call after everything is built: gin knows only then which bindings were used."""
    return Record(operative_config(), flattened_bindings(), unused_bindings())
