"""Finding pretrained weights without surprises: explicit file -> library caches -> download (if allowed).

Order for every pretrained space:

1. ``weights=PATH`` given explicitly: that file, or a :class:`MissingWeightsError` if it does not exist;
2. the libraries' own caches, probed without network: the Hugging Face hub cache
   (``huggingface_hub.try_to_load_from_cache``) and the torch hub checkpoint directory (plus open_clip's
   ``~/.cache/clip`` for OpenAI CLIP URLs);
3. a download through the owning library, only when ``MATCHZOO_OFFLINE`` is not ``1``.

When nothing is found and downloading is not allowed, one line names the model, every place looked in,
and how to provide the file. ``HF_HUB_OFFLINE=1`` is set while constructing models from local files so
timm/open_clip fail in milliseconds instead of retrying the network for ~50 s.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from matchzoo.errors import MissingWeightsError


def downloads_allowed() -> bool:
    return os.environ.get("MATCHZOO_OFFLINE", "").strip().lower() not in ("1", "true", "yes")


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Temporarily set ``HF_HUB_OFFLINE=1`` (and huggingface_hub's cached constant) so no request is made."""
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = None
    with contextlib.suppress(ImportError):
        from huggingface_hub import constants
    old_constant = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous
        if constants is not None:
            constants.HF_HUB_OFFLINE = old_constant


def torch_hub_checkpoints() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


@dataclass(frozen=True)
class WeightsLocation:
    """Where the weights of one model may be found. ``hf_files`` are (repo_id, filename) pairs."""

    model: str
    hf_files: tuple[tuple[str, str], ...] = ()
    local_files: tuple[Path, ...] = ()  # e.g. torch hub checkpoints/<file>, ~/.cache/clip/<file>
    how_to: str = ""

    def candidates(self) -> list[str]:
        hub = [f"HF cache {repo}/{name}" for repo, name in self.hf_files]
        return hub + [str(p) for p in self.local_files]


@dataclass
class ResolvedWeights:
    """The outcome: a local ``path`` to load, or ``download=True`` (let the library fetch it), or random."""

    path: Optional[Path] = None
    download: bool = False
    source: str = ""
    looked_in: list[str] = field(default_factory=list)


def find_cached(location: WeightsLocation) -> Optional[Path]:
    """First existing file among the HF hub cache entries and local files; never touches the network."""
    if location.hf_files:
        with contextlib.suppress(ImportError):
            from huggingface_hub import try_to_load_from_cache

            for repo_id, filename in location.hf_files:
                hit = try_to_load_from_cache(repo_id, filename)
                if isinstance(hit, str) and Path(hit).is_file():
                    return Path(hit)
    for path in location.local_files:
        if path.is_file():
            return path
    return None


def resolve_weights(location: WeightsLocation, weights: Optional[str], pretrained: bool) -> ResolvedWeights:
    """Apply the order in the module docstring. Raises :class:`MissingWeightsError` (one line)."""
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise MissingWeightsError(f"{location.model}: weights file not found: {weights}; pass an existing file as weights=")
        return ResolvedWeights(path=path, source=f"file {path}")
    if not pretrained:
        return ResolvedWeights(source="random init (pretrained=False)")
    cached = find_cached(location)
    if cached is not None:
        return ResolvedWeights(path=cached, source=f"cache {cached}")
    looked_in = location.candidates()
    if downloads_allowed():
        return ResolvedWeights(download=True, source="download", looked_in=looked_in)
    raise MissingWeightsError(
        f"no weights for {location.model} and MATCHZOO_OFFLINE=1 forbids downloading; looked in: "
        f"{'; '.join(looked_in) or '(nothing to look in)'}; provide them with weights='/path/to/file' "
        f"{location.how_to}(or pretrained=False for random weights)"
    )


def download_failed(model: str, error: BaseException, looked_in: list[str]) -> MissingWeightsError:
    """The one-line error when an allowed download did not work (e.g. no network)."""
    reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
    return MissingWeightsError(
        f"could not download weights for {model} ({type(error).__name__}: {reason}); looked in: "
        f"{'; '.join(looked_in)}; provide them with weights='/path/to/file' or put them in one of those caches"
    )
