"""``train.init_from``: start training from a weights file instead of the seeded initialisation (post-training).

The file is read as data, never code: ``.safetensors`` with the ``safetensors`` library, ``.pt``/``.pth``/``.bin``
with ``torch.load(weights_only=True)``. It holds a state dict (parameter name -> tensor) or a matchzoo checkpoint,
whose EMA generator (``generator_ema``, the weights a run evaluates) is taken. The weights load *strictly* into
``generator.weights_module()``: a missing or unexpected name, or a shape that differs, is one line naming up to
five of them with the counts, never a partial load.

The trainer applies it once, after the seeded build and before step 0 (so the EMA starts from the same
weights); a resumed run takes its weights from its checkpoint and does not read the file again. The file's
SHA-256 goes into the run (tag ``init_from_sha256``), so a run names exactly what it started from. A matchzoo
checkpoint also says which spaces its weights were optimised in; the new run counts them as seen (``fdr_unseen``
leaves their families out, tag ``seen_spaces``) and passes them on in its own checkpoints.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from matchzoo.digest import file_sha256
from matchzoo.errors import MatchzooError
from matchzoo.train.checkpoint import FORMAT as CHECKPOINT_FORMAT

SAFETENSORS = (".safetensors",)
TORCH_FILES = (".pt", ".pth", ".bin")
SHOWN = 5


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict stored in ``path`` (on the CPU), or a one-line error naming the file and the fix."""
    return state_dict_of(read_payload(path), str(path))


def read_payload(path: str | Path):
    """What ``path`` holds (a state dict, or a matchzoo checkpoint), read as data; one-line errors."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in SAFETENSORS + TORCH_FILES:
        raise MatchzooError(
            f"train.init_from = {str(path)!r}: unknown weights format {suffix or '(no suffix)'!r}; "
            f"give a .safetensors or a .pt file (torch.save of a state dict)"
        )
    if not file.is_file():
        raise MatchzooError(f"train.init_from = {str(path)!r}: no such file; give the path of the generator's weights")
    if suffix in SAFETENSORS:
        payload = _read_safetensors(file)
    else:
        try:
            payload = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises RuntimeError/UnpicklingError/EOFError/... on corrupt files
            raise MatchzooError(
                f"train.init_from = {str(path)!r} is corrupt or not a weights-only torch file "
                f"({type(error).__name__}); save the generator with torch.save(model.state_dict(), path)"
            ) from None
    return payload


def _read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(file), device="cpu")
    except Exception as error:  # SafetensorError, OSError, ... on a truncated or foreign file
        raise MatchzooError(
            f"train.init_from = {str(file)!r} is corrupt or not a safetensors file "
            f"({type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''})"
        ) from None


def state_dict_of(payload, source: str) -> dict[str, torch.Tensor]:
    """A plain state dict, or the EMA generator of a matchzoo checkpoint."""
    if isinstance(payload, Mapping) and payload.get("format") == CHECKPOINT_FORMAT:
        if not isinstance(payload.get("generator_ema"), Mapping):
            raise MatchzooError(f"train.init_from = {source!r}: this matchzoo checkpoint has no generator_ema")
        payload = payload["generator_ema"]
    if not isinstance(payload, Mapping) or not payload:
        raise MatchzooError(
            f"train.init_from = {source!r} holds {type(payload).__name__}, not a state dict (name -> tensor); "
            f"save it with torch.save(model.state_dict(), path)"
        )
    nested = [str(key) for key, value in payload.items() if not isinstance(value, torch.Tensor)]
    if nested:
        raise MatchzooError(
            f"train.init_from = {source!r} is not a flat state dict: {_names(nested)} hold no tensor "
            f"({len(nested)} entries); save the generator's own state_dict()"
        )
    return dict(payload)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f", ... ({len(names) - SHOWN} more)" if len(names) > SHOWN else "")


def check_matches(module: nn.Module, weights: Mapping[str, torch.Tensor], source: str) -> None:
    """Every name of ``module``'s state dict present with its shape, and nothing else; else one line."""
    expected = module.state_dict()
    missing = [name for name in expected if name not in weights]
    unexpected = [name for name in weights if name not in expected]
    reshaped = [
        f"{name} {tuple(weights[name].shape)} vs {tuple(tensor.shape)}"
        for name, tensor in expected.items()
        if name in weights and tuple(weights[name].shape) != tuple(tensor.shape)
    ]
    problems = [
        f"{len(found)} {what} ({_names(found)})"
        for what, found in (("missing", missing), ("unexpected", unexpected), ("with another shape", reshaped))
        if found
    ]
    if problems:
        raise MatchzooError(
            f"train.init_from = {source!r} does not fit the configured generator ({type(module).__name__}, "
            f"{len(expected)} tensors): {'; '.join(problems)}; configure the generator the weights were saved from"
        )


# An older checkpoint (before SEEN_SPACES_KEY) names its terms' spaces only in its operative config.
_TERM_SPACE = re.compile(r"^(?:[\w.]+/)*term\.space = @(\w+)\(\)$", re.MULTILINE)
SEEN_SPACES_KEY = "seen_spaces"  # in a checkpoint: every space the generator's weights were optimised in


def seen_spaces_of(payload) -> list[str]:
    """The spaces the weights in a matchzoo checkpoint were optimised in (its own terms' and those it inherited
    through its own ``init_from``); an older checkpoint's ``term.space`` bindings; [] for a plain state dict
    (nothing is known about how those weights were trained)."""
    if not (isinstance(payload, Mapping) and payload.get("format") == CHECKPOINT_FORMAT):
        return []
    stored = payload.get(SEEN_SPACES_KEY)
    if isinstance(stored, (list, tuple)) and all(isinstance(name, str) for name in stored):
        return list(stored)
    return list(dict.fromkeys(_TERM_SPACE.findall(str(payload.get("operative_config", "")))))


def load_into(generator, path: str) -> tuple[str, list[str]]:
    """Load ``path`` strictly into ``generator.weights_module()``; returns the file's SHA-256 and the spaces the
    weights were already optimised in (:func:`seen_spaces_of`)."""
    payload = read_payload(path)
    weights = state_dict_of(payload, str(path))
    module = generator.weights_module() if hasattr(generator, "weights_module") else generator
    check_matches(module, weights, path)
    with torch.no_grad():
        module.load_state_dict(weights, strict=True)
    return file_sha256(path), seen_spaces_of(payload)
