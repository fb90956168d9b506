"""Checkpoints: atomic writes (temp file + rename), ``torch.load(weights_only=True)``, generator rebuild.

A checkpoint holds the generator, its EMA, the optimisers, every objective's state (population,
potentials, critic), the step, all RNG states, the MLflow run id and the operative gin config, so a
killed run resumes where it stopped and :func:`load_generator` can rebuild the generator alone.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from matchzoo.errors import MatchzooError

FORMAT = "matchzoo-checkpoint-v1"
FILENAME = "checkpoint.pt"


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """Write ``payload`` to ``path`` so that a crash leaves either the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        torch.save({"format": FORMAT, **payload}, temp_name)
        os.replace(temp_name, path)
    except OSError as error:
        Path(temp_name).unlink(missing_ok=True)
        raise MatchzooError(f"cannot write checkpoint {path}: {error.strerror or error}; the previous checkpoint is kept") from None
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


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
        raise MatchzooError(f"checkpoint {file} is corrupt or unreadable ({type(error).__name__}); "
                            f"delete it to start fresh or point to another one") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise MatchzooError(f"{file} is not a matchzoo checkpoint (expected format {FORMAT})")
    return payload


def load_generator(path: str | Path, device: str | torch.device = "cpu", ema: bool = True):
    """Rebuild the generator of a checkpoint from its operative gin config and load (EMA) weights."""
    import gin

    from matchzoo import config

    payload = load(path)
    config.parse([], [])
    try:
        gin.parse_config(payload["operative_config"])
        generator = gin.query_parameter("train.generator").scoped_configurable_fn()
    except (ValueError, KeyError) as error:
        raise MatchzooError(f"cannot rebuild the generator of {path}: {config.describe_gin_error(error)}") from None
    generator.load_state_dict(payload["generator_ema" if ema else "generator"])
    return generator.to(device).eval()
