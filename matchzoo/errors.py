"""User-facing errors.

A :class:`MatchzooError` is a mistake the user can fix (bad config, unknown name, missing file). The
command-line entry points print it as one line and exit with status 2, without a traceback; anything
else is a bug and keeps its traceback.
"""


class MatchzooError(Exception):
    """A user error: printed as one line by the CLI, exit status 2."""


class UnknownNameError(MatchzooError, KeyError):
    """An unknown registry or gin name. Also a ``KeyError`` so ``dict``-style callers can catch it."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MissingWeightsError(MatchzooError):
    """Pretrained weights were not found locally and downloading is not allowed."""
