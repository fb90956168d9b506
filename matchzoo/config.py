"""Every gin call of the project lives here: parsing with include search paths, one-line errors, the
operative config, flattened bindings for MLflow params, and the report of bindings that were never used.

Include resolution: ``include 'x.gin'`` is looked up relative to the including file, then in the
project's ``gin/`` folder (the current directory's ``gin/`` first, then the one next to the package).
"""
from __future__ import annotations

import difflib
import logging
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import gin

from matchzoo.errors import MatchzooError

_INCLUDE = re.compile(r"""^\s*include\s+['"]([^'"]+)['"]""", re.MULTILINE)
_LOCATION = re.compile(r'In (?:file "(?P<file>[^"]+)"|bindings string), line (?P<line>\d+)\s*\n\s*(?P<content>.*)')


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
    raise MatchzooError(f"gin file not found: {name} (looked in the current directory and {', '.join(map(str, gin_roots())) or 'no gin/ folder'})")


def _search_dirs(files: Iterable[Path]) -> list[Path]:
    """Folders of every file reachable through includes (so nested includes resolve relative to their file)."""
    dirs: list[Path] = []
    pending = list(files)
    seen: set[Path] = set()
    while pending:
        file = pending.pop()
        if file in seen or not file.is_file():
            continue
        seen.add(file)
        if file.parent not in dirs:
            dirs.append(file.parent)
        for included in _INCLUDE.findall(file.read_text()):
            for base in [file.parent, *gin_roots()]:
                if (base / included).is_file():
                    pending.append((base / included).resolve())
                    break
    return dirs


def parse(gin_files: Sequence[str], gin_params: Sequence[str] = ()) -> list[Path]:
    """Clear gin, register every component, parse files then bindings; user errors become one line."""
    import matchzoo  # noqa: F401  (registers all configurables)
    import matchzoo.train  # noqa: F401

    gin.clear_config()
    _silence_search_misses()
    files = [resolve_config_file(f) for f in gin_files]
    for directory in [*_search_dirs(files), *gin_roots()]:
        gin.add_config_file_search_path(str(directory))
    try:
        gin.parse_config_files_and_bindings([str(f) for f in files], list(gin_params), finalize_config=False)
    except (SyntaxError, ValueError, KeyError, TypeError, IOError) as error:
        raise MatchzooError(describe_gin_error(error)) from None
    return files


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


def unused_bindings() -> list[str]:
    """Bindings set in the config that never reached a call (gin ignores them silently).

    A binding in scope ``a`` (or unscoped) counts as used when the parameter was used by the same
    configurable in any scope stack that contains ``a`` (gin applies it there).
    """
    operative = gin.config._OPERATIVE_CONFIG  # pylint: disable=protected-access
    unused = []
    for (scope, selector), params in gin.config._CONFIG.items():  # pylint: disable=protected-access
        wanted = set(filter(None, scope.split("/")))
        used = set()
        for (used_scope, used_selector), used_params in operative.items():
            if used_selector == selector and wanted <= set(filter(None, used_scope.split("/"))):
                used.update(used_params)
        for param in params:
            if param not in used:
                prefix = f"{scope}/" if scope else ""
                unused.append(f"{prefix}{_short(selector)}.{param}")
    return sorted(unused)


def query(binding: str, default: Any = None) -> Any:
    try:
        return gin.query_parameter(binding)
    except ValueError:
        return default
