"""The SHA-256 of a file, read in blocks: what shipped weights are checked against, and what a run records of the
statistics and weight files it read (``init_from_sha256``, the reference statistics' checksum)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of the file at ``path``, read ``chunk`` bytes at a time (constant memory for any size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
