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
        return fail(str(error).replace("\n", " "))
    except KeyboardInterrupt:
        print("matchzoo: interrupted", file=sys.stderr)
        return 130
