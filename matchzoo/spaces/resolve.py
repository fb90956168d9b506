"""Finding pretrained weights without surprises: explicit file -> library caches -> download (if allowed).

Order for every pretrained space:

1. ``weights=PATH`` given explicitly: that file, or a :class:`MissingWeightsError` if it does not exist;
2. the libraries' own caches, probed without network: the Hugging Face hub cache
   (``huggingface_hub.try_to_load_from_cache``) and the torch hub checkpoint directory (plus open_clip's
   ``~/.cache/clip`` for OpenAI CLIP URLs);
3. a download through the owning library, only when ``MATCHZOO_OFFLINE`` is not ``1`` and the download
   host answers: one TCP connect of at most 3 s (``HF_HUB_OFFLINE=1`` counts as unreachable for the hub),
   instead of the libraries' ~50 s of retries without a network.

When nothing is found and downloading is not possible, one line names the model, every place looked in,
and how to provide the file. :func:`check_weights` does that for every space of a run before anything is
built or loaded, so all missing weights are reported in one message. ``HF_HUB_OFFLINE=1`` is set while
constructing models from local files so timm/open_clip never touch the network.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional
from urllib.parse import urlsplit

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
    download_url: str = ""  # where the library downloads from when not on the Hugging Face hub

    def candidates(self) -> list[str]:
        hub = [f"HF cache {repo}/{name}" for repo, name in self.hf_files]
        return hub + [str(p) for p in self.local_files]


@dataclass
class ResolvedWeights:
    """The outcome: a local ``path`` to load, ``download=True`` (let the library fetch it), random init, or
    ``missing`` (nothing usable)."""

    path: Optional[Path] = None
    download: bool = False
    source: str = ""
    looked_in: list[str] = field(default_factory=list)
    missing: str = ""  # why nothing can be loaded (file not found, downloads forbidden, host unreachable)


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
    resolved = lookup_weights(location, weights, pretrained)
    if resolved.missing and weights:
        raise MissingWeightsError(f"{location.model}: {resolved.missing}")
    if resolved.missing:
        raise MissingWeightsError(
            f"no weights for {location.model} and {resolved.missing}; looked in: "
            f"{'; '.join(resolved.looked_in) or '(nothing to look in)'}; provide them with weights='/path/to/file' "
            f"{location.how_to}(or pretrained=False for random weights)"
        )
    return resolved


def lookup_weights(location: WeightsLocation, weights: Optional[str], pretrained: bool) -> ResolvedWeights:
    """Like :func:`resolve_weights`, but a miss is returned (``missing`` says why) instead of raised."""
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            return ResolvedWeights(missing=f"weights file not found: {weights}; pass an existing file as weights=")
        return ResolvedWeights(path=path, source=f"file {path}")
    if not pretrained:
        return ResolvedWeights(source="random init (pretrained=False)")
    cached = find_cached(location)
    if cached is not None:
        return ResolvedWeights(path=cached, source=f"cache {cached}")
    looked_in = location.candidates()
    blocked = download_blocked(location)
    if blocked is None:
        return ResolvedWeights(download=True, source="download", looked_in=looked_in)
    return ResolvedWeights(looked_in=looked_in, missing=blocked)


def download_failed(model: str, error: BaseException, looked_in: list[str]) -> MissingWeightsError:
    """The one-line error when an allowed download did not work (e.g. no network)."""
    reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
    return MissingWeightsError(
        f"could not download weights for {model} ({type(error).__name__}: {reason}); looked in: "
        f"{'; '.join(looked_in)}; provide them with weights='/path/to/file' or put them in one of those caches"
    )


def hub_endpoint() -> str:
    endpoint = os.environ.get("HF_ENDPOINT", "")
    if not endpoint:
        with contextlib.suppress(ImportError):
            from huggingface_hub import constants

            endpoint = constants.ENDPOINT
    return endpoint or "https://huggingface.co"


def hub_disabled() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def download_blocked(location: WeightsLocation) -> Optional[str]:
    """Why these weights cannot be downloaded now (``None`` when they can): a phrase for the error message."""
    if not downloads_allowed():
        return "MATCHZOO_OFFLINE=1 forbids downloading"
    url = hub_endpoint() if location.hf_files else location.download_url
    if location.hf_files and hub_disabled():
        return "HF_HUB_OFFLINE=1 forbids downloading from the Hugging Face hub"
    if not url:
        return "there is no download source for it"
    host, port, via = connect_target(url)
    if not host_reachable(host, port):
        return f"the download host {host}:{port}{via} is unreachable (no network?)"
    return None


def connect_target(url: str) -> tuple[str, int, str]:
    """``(host, port, note)`` a download of ``url`` connects to first: the proxy when one is configured for it
    (``HTTPS_PROXY``, ...; clusters often reach the hub only through one), else the URL's own host."""
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    via = ""
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        parts, via = (
            urlsplit(proxy if "://" in proxy else f"http://{proxy}"),
            f" (the {parts.scheme} proxy for {parts.hostname})",
        )
    return parts.hostname or "", parts.port or (80 if parts.scheme == "http" else 443), via


@functools.lru_cache(maxsize=None)
def host_reachable(host: str, port: int, timeout: float = 3.0) -> bool:
    """One TCP connect, no request: without a network the libraries retry for ~50 s before failing."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:  # DNS failure, refused, timed out
        return False


@dataclass(frozen=True)
class WeightsRequest:
    """The weights a run needs for one space (or another registered component with pretrained weights, such as
    the ``latent`` generator's VAE decoder): its registry name, its ``weights``/``pretrained`` settings, and
    ``setting``, how the user names that space's ``weights`` (``None``: the gin binding
    ``<space>.weights = '/path/to/file'``; ``''``: no option, only the caches)."""

    space: str
    weights: Optional[str] = None
    pretrained: bool = True
    setting: Optional[str] = field(default=None, compare=False)  # the same weights asked twice are one request
    location: Optional[WeightsLocation] = None  # where its options point (the VAE's repo); None: the default place

    def how_to(self, location: WeightsLocation) -> str:
        give = self.setting if self.setting is not None else f"{self.space}.weights = '/path/to/file'"
        put = location.how_to.strip().removeprefix("or ").strip() or "put the file in one of those caches"
        return f"provide it with {give} or {put}" if give else f"provide it: {put}"


def check_weights(requests: Iterable[WeightsRequest]) -> dict[str, ResolvedWeights]:
    """Resolve the weights of every pretrained space in ``requests`` without building or loading anything.

    Returns ``{space: ResolvedWeights}`` for the pretrained ones; raises one :class:`MissingWeightsError`
    naming every space whose weights are neither given, nor cached, nor downloadable, with where each was
    looked for and how to provide it. Spaces without pretrained weights are skipped. A generator with
    pretrained weights (``latent``'s VAE decoder) is checked the same way, under its generator name.
    """
    from matchzoo.registry import FEATURE_SPACES

    resolved, missing = {}, []
    for request in dict.fromkeys(requests):  # a space used twice (train and eval) is reported once
        owner = weights_owner(request.space)
        if owner is None and not _is_generator(request.space):
            FEATURE_SPACES.get(request.space)  # an unknown space name: its one-line error (known names, closest)
        if owner is not None:
            location = request.location or owner.weights_location()
            resolved[request.space] = lookup_weights(location, request.weights, request.pretrained)
            if resolved[request.space].missing:
                missing.append((request, location, resolved[request.space]))
    if missing:
        raise MissingWeightsError(missing_weights_message(missing))
    return resolved


def missing_weights_message(missing: list[tuple[WeightsRequest, WeightsLocation, ResolvedWeights]]) -> str:
    """One line for every missing model; a reason they all share (e.g. MATCHZOO_OFFLINE=1) is said once."""
    reasons = {resolved.missing for request, _, resolved in missing if not request.weights}
    shared = reasons.pop() if len(reasons) == 1 else ""
    entries = []
    for request, location, resolved in missing:
        if request.weights:  # an explicit file that does not exist
            entries.append(f"{location.model}: {resolved.missing}")
            continue
        reason = "" if shared else f"{resolved.missing}; "
        looked_in = "; ".join(resolved.looked_in) or "(nothing to look in)"
        entries.append(f"{location.model}: {reason}looked in: {looked_in}; {request.how_to(location)}")
    noun = "space" if all(_is_space(request.space) for request, _, _ in missing) else "model"
    header = f"no pretrained weights for {len(missing)} {noun}{'s' if len(missing) > 1 else ''}"
    header += f" and {shared}" if shared else ""
    return f"{header} (pretrained=False gives random weights): {' | '.join(entries)}"


def configured_requests(
    references: Iterable[tuple[str, str]], query: Callable[[str, Any], Any]
) -> list[WeightsRequest]:
    """Weights requests of the feature spaces a parsed gin config calls, before anything is built.

    ``references``: ``(scope, name)`` of every ``@name()`` in the config (``config.referenced_configurables()``);
    ``query(binding, default)`` reads one binding (``config.query``).
    """
    requests = []
    for scope, name in references:
        owner = weights_owner(name)
        if owner is None:
            continue  # neither a feature space nor a generator with downloadable weights
        weights_param, pretrained_param, *location_params = getattr(owner, "weights_options", WEIGHTS_OPTIONS)
        weights, binding = _applied_binding(query, scope, name, weights_param, None)
        pretrained, _ = _applied_binding(query, scope, name, pretrained_param, True)
        options = {param: _applied_binding(query, scope, name, param, _UNSET)[0] for param in location_params}
        options = {param: value for param, value in options.items() if value is not _UNSET}
        # a macro or reference is only known once gin evaluates it
        if isinstance(weights, (str, type(None))) and all(isinstance(v, (str, type(None))) for v in options.values()):
            location = owner.weights_location(**options) if options else None
            setting = f"{binding} = '/path/to/file'"
            requests.append(WeightsRequest(name, weights, bool(pretrained), setting=setting, location=location))
    return requests


WEIGHTS_OPTIONS = ("weights", "pretrained")  # a space's (weights file, pretrained) parameters


def weights_owner(name: str) -> Any:
    """The registered class ``name`` whose pretrained weights a run must find (a feature space, or a generator
    such as ``latent``), or ``None``. Such a class has ``weights_location(**options)`` and, when its parameters
    are not named ``weights``/``pretrained``, ``weights_options = (weights, pretrained, *location options)``."""
    from matchzoo.registry import FEATURE_SPACES, GENERATORS

    for registry in (FEATURE_SPACES, GENERATORS):
        if name in registry and hasattr(registry.get(name), "weights_location"):
            return registry.get(name)
    return None


def _is_generator(name: str) -> bool:
    from matchzoo.registry import GENERATORS

    return name in GENERATORS


def _is_space(name: str) -> bool:
    from matchzoo.registry import FEATURE_SPACES

    return name in FEATURE_SPACES


def option_requests(per_space: Mapping[str, Mapping[str, Any]]) -> list[WeightsRequest]:
    """Weights requests of spaces named on the command line, ``{space: {--space_param KEY: value}}``."""
    requests = []
    for name, kwargs in per_space.items():
        weights = kwargs.get("weights")
        requests.append(
            WeightsRequest(
                name,
                None if weights is None else str(weights),
                bool(kwargs.get("pretrained", True)),
                setting=f"--space_param {name}.weights=/path/to/file",
            )
        )
    return requests


def _applied_binding(
    query: Callable[[str, Any], Any], scope: str, name: str, param: str, default: Any
) -> tuple[Any, str]:
    """``(value, binding)`` of ``name.param`` as gin applies it to a call in ``scope``: the longest scope prefix
    that binds it wins (``a/b/name.p``, then ``a/name.p``, then ``name.p``)."""
    parts = [part for part in scope.split("/") if part]
    for i in range(len(parts), -1, -1):
        binding = "/".join([*parts[:i], f"{name}.{param}"])
        value = query(binding, _UNSET)
        if value is not _UNSET:
            return value, binding
    return default, f"{name}.{param}"


_UNSET = object()
