"""One atomic ``torch.save``: a temporary file in the target folder, then a rename, so a crash or a full
disk leaves either the previous file or the new one, never half of one. Checkpoints and the reference
feature cache both write through it."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

_NEARLY_FULL = 1 << 20  # bytes; torch reports a full disk only as a failed or short write


class WriteFailed(Exception):
    """The write did not happen (the previous file, if any, is untouched); ``str()`` is the reason."""


def torch_save_atomic(payload: Any, path: Path) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        torch.save(payload, temporary)
        os.replace(temporary, path)
    except OSError as error:
        raise WriteFailed(error.strerror or str(error)) from None
    except RuntimeError as error:  # torch's stream writer: "[enforce fail ...] unexpected pos", "file write failed"
        raise WriteFailed(_write_failure(path.parent, error)) from None
    finally:
        Path(temporary).unlink(missing_ok=True)  # after a successful rename there is nothing left to remove


def _write_failure(folder: Path, error: RuntimeError) -> str:
    """torch's writer carries no errno; a (nearly) full file system, measured while the partial temporary file
    still exists, is the usual cause."""
    if shutil.disk_usage(folder).free < _NEARLY_FULL:
        return "no space left on device"
    return f"the write failed ({str(error).strip().splitlines()[-1][:200]})"
