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
from typing import Any, Callable, Optional

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


def real(name: str, value: Any, minimum: Optional[float] = None, maximum: Optional[float] = None,
         strict_minimum: bool = False, strict_maximum: bool = False) -> float:
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


def positive_real(name: str, value: Any) -> float:
    return real(name, value, 0.0, strict_minimum=True)


def fraction(name: str, value: Any, open_low: bool = False, open_high: bool = False) -> float:
    """A number in [0, 1] (``open_*`` excludes 0 or 1)."""
    return real(name, value, 0.0, 1.0, strict_minimum=open_low, strict_maximum=open_high)


def choice(name: str, value: Any, allowed: tuple) -> Any:
    if value not in allowed:
        raise MatchzooError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def instance(name: str, value: Any, kind: type, what: str) -> Any:
    """``value`` is a ``kind``; ``what`` says what was expected, e.g. ``'a dataset such as @digits()'``."""
    if not isinstance(value, kind):
        raise MatchzooError(f"{name} must be {what}, got {_describe(value)}")
    return value


def _describe(value: Any) -> str:
    registered = getattr(value, "name", None)
    if isinstance(registered, str):
        return f"{type(value).__name__} {registered!r}"
    return f"{type(value).__name__} {value!r}"[:200]


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
