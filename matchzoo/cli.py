"""Shared command-line plumbing: user errors become one line on stderr and exit status 2; SIGINT and
SIGTERM become one line and exit status 128 + signal number (see :mod:`matchzoo.signals`)."""

from __future__ import annotations

import os
import sys
from typing import Callable

from matchzoo import signals
from matchzoo.errors import MatchzooError


def fail(message: str) -> int:
    print(f"matchzoo: error: {message}", file=sys.stderr)
    return 2


def guarded(main: Callable[[], int]) -> int:
    """Run ``main``; a :class:`MatchzooError`, Ctrl-C or SIGTERM is reported in one line instead of a traceback."""
    try:
        with signals.interrupts_raise():
            return main()
    except MatchzooError as error:
        # gin appends "In call to configurable ..." on new lines; the first line is the user's message
        text = str(error).strip()
        return fail(text.splitlines()[0] if text else type(error).__name__)
    except KeyboardInterrupt as interrupt:
        print(f"matchzoo: {_interrupt_line(interrupt)}", file=sys.stderr)
        return signals.exit_status(interrupt)
    except BrokenPipeError:  # `... | head` closed stdout: not an error of ours; keep Python quiet at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _interrupt_line(interrupt: KeyboardInterrupt) -> str:
    if not isinstance(interrupt, signals.Interrupted):
        return "interrupted"
    return interrupt.message or f"interrupted ({interrupt.signal_name})"
