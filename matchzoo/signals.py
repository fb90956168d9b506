"""One interrupt path for SIGINT (Ctrl-C) and SIGTERM (what ``kill``, ``timeout`` and job schedulers send).

Inside :func:`interrupts_raise`, either signal raises :class:`Interrupted` -- a ``KeyboardInterrupt``, so
every ``except KeyboardInterrupt`` cleanup (checkpoint, MLflow status, child processes) runs for SIGTERM
too -- and :func:`matchzoo.cli.guarded` exits with the shell's convention ``128 + signal number``
(130 for SIGINT, 143 for SIGTERM). A repeated signal while that cleanup runs is ignored, so a second
Ctrl-C or a scheduler's follow-up SIGTERM cannot cut a checkpoint write short (SIGKILL still can, and
the atomic write then keeps the previous checkpoint). Inside :func:`deferred` (one training step) a
signal waits for the block to end.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator, Optional

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``message`` (set by whoever cleaned up) is the one line to print."""

    def __init__(self, signum: int, message: Optional[str] = None):
        super().__init__(signum)
        self.signum, self.message = signum, message

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """128 + signal number; a plain ``KeyboardInterrupt`` (raised by Python itself) counts as SIGINT."""
    return interrupt.exit_status if isinstance(interrupt, Interrupted) else 128 + signal.SIGINT


class _State:
    installed = False
    deferring = 0  # depth of deferred() blocks
    pending: Optional[int] = None  # a signal that arrived inside one
    fired = False  # Interrupted was raised; its cleanup is running


def _handler(signum, frame) -> None:
    if _State.fired:  # cleanup of the first signal is running: let it finish
        return
    if _State.deferring:
        _State.pending = signum
        return
    _State.fired = True
    raise Interrupted(signum)


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`Interrupted` for the duration; previous handlers come back after.

    Python only lets the main thread install handlers; elsewhere (or when already installed) this is a no-op."""
    if threading.current_thread() is not threading.main_thread() or _State.installed:
        yield
        return
    previous = {signum: signal.signal(signum, _handler) for signum in HANDLED}
    _State.installed, _State.fired, _State.pending = True, False, None
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        _State.installed = False


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold a signal until the block is done, so what it interrupts is never left half-updated (a training
    step: parameters, optimiser, EMA and step counter change together or not at all)."""
    _State.deferring += 1
    try:
        yield
    finally:
        _State.deferring -= 1
    if not _State.deferring and _State.pending is not None:
        signum, _State.pending = _State.pending, None
        _State.fired = True
        raise Interrupted(signum)
