"""One progress line for a whole sweep: cells done / running / failed of the total, and the time left.

A tqdm bar over cells (its ETA: the cells still to run at the rate cells have ended so far) with the counts as
its postfix. In a terminal it redraws often; in a log file (no TTY) at most every 30 s, like the trainer's. Every
other sweep message goes through :meth:`SweepProgress.write`, above the bar.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

from tqdm import tqdm


class SweepProgress:
    def __init__(self, total: int, already_done: int, enabled: bool, log: Callable[[str], None] = print):
        self.total, self.done, self.running, self.failed = total, already_done, 0, 0
        self.log = log
        self.interval = 0.5 if sys.stderr.isatty() else 30.0
        self.bar = (
            tqdm(
                total=total,
                initial=already_done,
                desc="sweep",
                unit="cell",
                dynamic_ncols=True,
                mininterval=self.interval,
                file=sys.stderr,
            )
            if enabled
            else None
        )
        self.last_refresh = time.monotonic()
        self._postfix()

    def __enter__(self) -> "SweepProgress":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self._postfix()
            self.bar.close()  # draws the final counts once

    def counts(self) -> str:
        return f"done {self.done}, running {self.running}, failed {self.failed}, total {self.total}"

    def _postfix(self, refresh: bool = False) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(self.counts(), refresh=refresh)

    def write(self, message: str) -> None:
        """A message above the bar (or through ``log`` when there is none)."""
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            self.log(message)

    def started(self) -> None:
        self.running += 1
        self.tick()

    def settled(self, failed: bool) -> None:
        """A cell ended, finished or failed (both move the bar, so the ETA counts them)."""
        self.running -= 1
        self.done += not failed
        self.failed += failed
        self._postfix()
        if self.bar is not None:
            self.bar.update(1)

    def tick(self) -> None:
        """Redraw (elapsed time, counts) at most once per interval while nothing ends."""
        now = time.monotonic()
        if self.bar is not None and now - self.last_refresh >= self.interval:
            self.last_refresh = now
            self._postfix(refresh=True)
