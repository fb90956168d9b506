"""Shared command-line plumbing: user errors become one line on stderr and exit status 2."""
from __future__ import annotations

import sys
from typing import Callable

from matchzoo.errors import MatchzooError


def fail(message: str) -> int:
    print(f"matchzoo: error: {message}", file=sys.stderr)
    return 2


def guarded(main: Callable[[], int]) -> int:
    """Run ``main``; a :class:`MatchzooError` (or Ctrl-C) is reported in one line instead of a traceback."""
    try:
        return main()
    except MatchzooError as error:
        # gin appends "In call to configurable ..." on new lines; the first line is the user's message
        text = str(error).strip()
        return fail(text.splitlines()[0] if text else type(error).__name__)
    except KeyboardInterrupt:
        print("matchzoo: interrupted", file=sys.stderr)
        return 130
