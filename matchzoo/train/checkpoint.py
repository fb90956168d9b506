"""Checkpoints: atomic writes (temp file + rename), ``torch.load(weights_only=True)``, generator rebuild.

A checkpoint holds the generator, its EMA, the optimisers, every objective's state (population,
potentials, critic), the step, all RNG states, the MLflow run id, the operative gin config and a
``generator_spec`` (registered generator name + plain keyword arguments), so a killed run resumes where
it stopped and :func:`matchzoo.stored_config.load_generator` can rebuild the generator alone.

Checkpoints are data, never code; reading the stored config as data is :mod:`matchzoo.stored_config`'s
job (outside ``train/``, next to the gin layer it needs). This module only writes and reads the file.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any, Optional

import torch

from matchzoo.atomic import WriteFailed, torch_save_atomic
from matchzoo.errors import MatchzooError

FORMAT = "matchzoo-checkpoint-v1"
FILENAME = "checkpoint.pt"
LOCKNAME = ".lock"


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """Write ``payload`` to ``path`` so that a crash leaves either the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch_save_atomic({"format": FORMAT, **payload}, path)
    except WriteFailed as failure:
        raise MatchzooError(f"cannot write checkpoint {path}: {failure}; the previous checkpoint is kept") from None


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint; a missing, truncated or foreign file is a one-line error."""
    file = Path(path)
    if file.is_dir():
        file = file / FILENAME
    if not file.is_file():
        raise MatchzooError(f"checkpoint not found: {file}")
    try:
        payload = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises RuntimeError/UnpicklingError/EOFError/... on corrupt files
        raise MatchzooError(
            f"checkpoint {file} is corrupt or unreadable ({type(error).__name__}); "
            f"delete it to start fresh or point to another one"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise MatchzooError(f"{file} is not a matchzoo checkpoint (expected format {FORMAT})")
    return payload


# --------------------------------------------------------------------------- one process per run folder


class RunLock:
    """An exclusive ``flock`` on ``<run_dir>/.lock`` for the whole run: a second process training the same
    run (two ``--resume`` of one folder) would log every metric twice and overwrite the checkpoint. The
    kernel drops the lock when the holder dies, even by SIGKILL, so a stale lock file never blocks."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCKNAME
        self._file: Optional[Any] = None

    def acquire(self) -> "RunLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+")
        except OSError as error:
            raise MatchzooError(f"cannot lock the run folder {self.path.parent}: {error.strerror or error}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise MatchzooError(
                f"run folder {self.path.parent} is in use by {holder}; wait for it to finish or stop "
                f"it (resuming the same run twice would log every step twice)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        """Drop the lock; a run that stopped before writing anything leaves no folder behind."""
        if self._file is None:
            return
        if [p.name for p in self.path.parent.iterdir()] == [LOCKNAME]:
            self.path.unlink()
            self.path.parent.rmdir()
        self._file.close()  # closing drops the flock
        self._file = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
