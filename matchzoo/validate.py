"""One validation layer for gin values and command-line options.

A value is checked where it is declared, and the message names the binding or option it came from, e.g.
``check.positive_int('train.steps', steps)`` raises ``MatchzooError('train.steps must be a positive
integer, got -5')``. The same checks back argparse options through :func:`option`, so
``--draws 0`` and ``probe.draws = 0`` are refused with the same words.
"""

from __future__ import annotations

import argparse
import math
import numbers
import os
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional, Sequence

from matchzoo.errors import MatchzooError


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def integer(name: str, value: Any, minimum: Optional[int] = None, maximum: Optional[int] = None) -> int:
    """An integer in ``[minimum, maximum]`` (a float with an integral value, e.g. ``1e3``, is accepted)."""
    if _is_real(value) and not _is_int(value) and math.isfinite(float(value)) and float(value).is_integer():
        value = int(value)
    if not _is_int(value):
        raise MatchzooError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise MatchzooError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise MatchzooError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


def positive_int(name: str, value: Any, maximum: Optional[int] = None) -> int:
    return integer(name, value, 1, maximum)


def non_negative_int(name: str, value: Any, maximum: Optional[int] = None) -> int:
    return integer(name, value, 0, maximum)


def real(
    name: str,
    value: Any,
    minimum: Optional[float] = None,
    maximum: Optional[float] = None,
    strict_minimum: bool = False,
    strict_maximum: bool = False,
) -> float:
    """A finite real number in the given range (``strict_*`` excludes the bound itself)."""
    if not _is_real(value):
        raise MatchzooError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise MatchzooError(f"{name} must be a finite number, got {value}")
    if minimum is not None and (value <= minimum if strict_minimum else value < minimum):
        raise MatchzooError(f"{name} must be {'>' if strict_minimum else '>='} {minimum}, got {value}")
    if maximum is not None and (value >= maximum if strict_maximum else value > maximum):
        raise MatchzooError(f"{name} must be {'<' if strict_maximum else '<='} {maximum}, got {value}")
    return value


MAX_SEED = 2**63 - 1  # torch.manual_seed and numpy take 64-bit seeds; larger ones overflow deep inside


def seed(name: str, value: Any) -> int:
    return integer(name, value, 0, MAX_SEED)


def positive_real(name: str, value: Any) -> float:
    return real(name, value, 0.0, strict_minimum=True)


def fraction(name: str, value: Any, open_low: bool = False, open_high: bool = False) -> float:
    """A number in [0, 1] (``open_*`` excludes 0 or 1); the message states the interval."""
    interval = f"{'(' if open_low else '['}0, 1{')' if open_high else ']'}"
    number = real(name, value)
    if number < 0 or number > 1 or (open_low and number == 0) or (open_high and number == 1):
        raise MatchzooError(f"{name} must be in {interval}, got {number}")
    return number


def pair(name: str, value: Any, check: Callable[..., Any], *args: Any) -> tuple:
    """A two-element tuple/list whose items each pass ``check`` (named ``name[0]``, ``name[1]``)."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise MatchzooError(f"{name} must be a pair such as (0.5, 0.999), got {value!r}")
    return tuple(check(f"{name}[{index}]", item, *args) for index, item in enumerate(value))


def choice(name: str, value: Any, allowed: tuple) -> Any:
    if value not in allowed:
        raise MatchzooError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def instance(name: str, value: Any, kind: type, what: str) -> Any:
    """``value`` is a ``kind``; ``what`` says what was expected, e.g. ``'a dataset such as @digits()'``."""
    if not isinstance(value, kind):
        raise MatchzooError(f"{name} must be {what}, got {_describe(value)}")
    return value


def instances(name: str, values: Any, kind: type, what: str, example: str) -> list:
    """A list/tuple of ``kind``; a bare string item gets the hint to write ``example`` (a gin reference)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise MatchzooError(f"{name} must be a list of {what} such as {example}, got {_describe(values)}")
    for item in values:
        if isinstance(item, str):
            raise MatchzooError(
                f"{name} must be a list of {what} written as gin references such as {example}, "
                f"got the string {item!r} (write @{item}() instead of '{item}')"
            )
        if not isinstance(item, kind):
            raise MatchzooError(f"{name} must be a list of {what} such as {example}, got {_describe(item)} in it")
    return list(values)


def device(name: str, value: Any, allow_auto: bool = False) -> str:
    """A torch device string that exists on this machine (``'auto'`` too when ``allow_auto``)."""
    import torch

    if allow_auto and value == "auto":
        return value
    examples = "'auto', 'cpu' or 'cuda'" if allow_auto else "'cpu' or 'cuda'"
    try:
        if not isinstance(value, str):
            raise TypeError(value)
        parsed = torch.device(value)
    except (RuntimeError, TypeError):
        raise MatchzooError(f"{name} must be a torch device such as {examples}, got {value!r}") from None
    missing = _missing_accelerator(parsed)
    if missing:
        raise MatchzooError(f"{name} must be a device this machine has, got {value!r} ({missing}; use 'cpu')")
    return value


def _missing_accelerator(parsed) -> Optional[str]:
    import torch

    if parsed.type == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available"
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        return f"there are {torch.cuda.device_count()} CUDA device(s)"
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        return "MPS is not available"
    if parsed.type not in ("cpu", "cuda", "mps"):
        return f"matchzoo runs on cpu, cuda or mps, not {parsed.type}"
    return None


def folder(name: str, value: Any) -> Path:
    """A folder path that may not exist yet; an existing file there is refused (and left alone)."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise MatchzooError(f"{name} must be a folder, got the existing file {str(path)!r}; pick a folder path")
    return path


def memory_bytes() -> Optional[int]:
    """Physical memory of this machine, or ``None`` where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


# base classes of registered components, as the words a message uses for them
_KINDS = {
    "FeatureSpace": "the feature space",
    "ImageDataset": "the dataset",
    "Generator": "the generator",
    "Objective": "the objective",
    "Term": "the term",
}


def _describe(value: Any) -> str:
    registered = getattr(value, "name", None)
    if isinstance(registered, str):
        kind = next((_KINDS[c.__name__] for c in type(value).__mro__ if c.__name__ in _KINDS), type(value).__name__)
        return f"{kind} {registered!r}"
    return f"{type(value).__name__} {value!r}"[:200]


class ArgumentParser(argparse.ArgumentParser):
    """argparse with usage errors as the one line every matchzoo error uses (no usage block), exit 2."""

    def error(self, message: str) -> NoReturn:
        print(f"matchzoo: error: {self.prog}: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def text_option(check: Callable[..., Any], *args: Any) -> Callable[[str], Any]:
    """An argparse ``type=`` applying ``check`` to the option's text as given (e.g. :func:`device`)."""

    def parse(text: str) -> Any:
        try:
            return check("the value", text, *args)
        except MatchzooError as error:
            raise argparse.ArgumentTypeError(str(error).replace("the value ", "", 1)) from None

    parse.__name__ = check.__name__
    return parse


def option(check: Callable[..., Any], *args: Any) -> Callable[[str], Any]:
    """An argparse ``type=`` from a check: ``type=option(positive_int)`` parses the text as an integer (or
    float for real-valued checks) and applies ``check`` under the option's name."""

    def parse(text: str) -> Any:
        number: Any
        try:
            number = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        try:
            return check("the value", number, *args)
        except MatchzooError as error:
            raise argparse.ArgumentTypeError(str(error).replace("the value ", "", 1)) from None

    parse.__name__ = check.__name__
    return parse
