"""The frozen decoder of the ``latent`` generator: diffusers' ``AutoencoderKL`` with the Stable Diffusion VAE's
configuration (``stabilityai/sd-vae-ft-ema`` and ``-mse`` share it), written here rather than fetched.

SD-VAE conventions: 4 latent channels, 8x down-sampling (four resolution levels, three up-samplings), and latents
multiplied by ``scaling_factor = 0.18215`` so they have roughly unit variance; the decoder therefore receives
``latents / 0.18215``. Only the decoder half is kept (``post_quant_conv`` + ``decoder``, 49.5 M parameters at the
SD size); the encoder is dropped after construction.

Weights are found like a feature space's (:mod:`matchzoo.spaces.resolve`): an explicit file
(``latent.vae_weights = '/path/diffusion_pytorch_model.safetensors'``, or a ``.bin``/``.pt`` state dict), then
the Hugging Face cache of ``latent.vae_repo``, then a download only when allowed; ``MATCHZOO_OFFLINE=1`` with
nothing found is one line naming where it looked. ``architecture = 'small'`` is a decoder with few channels for
tests (random with ``pretrained = False``, or from a file the test writes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from matchzoo.errors import MatchzooError, MissingWeightsError
from matchzoo.spaces.resolve import (
    WeightsLocation,
    WeightsRequest,
    download_failed,
    lookup_weights,
    missing_weights_message,
)

SD_VAE_REPO = "stabilityai/sd-vae-ft-ema"
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
SCALING_FACTOR = 0.18215
LATENT_CHANNELS = 4
DOWNSAMPLING = 8  # 2 ** (number of levels - 1)
WEIGHTS_SETTING = "latent.vae_weights = '/path/to/file'"

# AutoencoderKL arguments shared by every architecture: RGB in/out, four levels (8x), SiLU, 4 latent channels
COMMON_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "act_fn": "silu",
    "latent_channels": LATENT_CHANNELS,
    "sample_size": 256,
    "scaling_factor": SCALING_FACTOR,
}
ARCHITECTURES: dict[str, dict[str, Any]] = {
    # config.json of stabilityai/sd-vae-ft-ema (and -mse)
    "sd": {"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "norm_num_groups": 32},
    # a random decoder that runs in milliseconds on a CPU (tests); never pretrained
    "small": {"block_out_channels": (16, 16, 32, 32), "layers_per_block": 1, "norm_num_groups": 8},
}
DROPPED_PREFIXES = ("encoder.", "quant_conv.")  # the encoder half of a full AutoencoderKL state dict


def weights_location(repo: Optional[str] = None) -> WeightsLocation:
    """Where SD-VAE weights may be: the diffusers weight files of ``repo`` in the Hugging Face cache."""
    repo = repo or SD_VAE_REPO
    return WeightsLocation(
        model=f"latent VAE decoder ({repo})",
        hf_files=tuple((repo, name) for name in WEIGHT_FILES),
        how_to=f"or put {repo}'s {WEIGHT_FILES[0]} in the Hugging Face cache ",
    )


def build_decoder(
    architecture: str, pretrained: bool, weights: Optional[str], repo: Optional[str], seed: int = 0
) -> tuple[nn.Module, str]:
    """``(AutoencoderKL without its encoder, frozen, eval; where its weights came from)``.

    Raises one line (:class:`~matchzoo.errors.MissingWeightsError`) when weights were asked for and none are
    found; random weights only with ``pretrained = False`` and no file.
    """
    if architecture not in ARCHITECTURES:
        raise MatchzooError(f"latent.vae_architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")
    location = weights_location(repo)
    resolved = lookup_weights(location, weights, pretrained)
    if resolved.missing:  # the same line as the run's upfront check (matchzoo.spaces.resolve.check_weights)
        request = WeightsRequest("latent", weights, pretrained, setting=WEIGHTS_SETTING, location=location)
        raise MissingWeightsError(missing_weights_message([(request, location, resolved)]))
    path = resolved.path
    if resolved.download:
        path = _download(repo or SD_VAE_REPO, resolved.looked_in)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # a random decoder (pretrained = False) is the same in every process and run
        vae = _autoencoder(architecture)
    if path is not None:
        load_decoder_weights(vae, path)
    source = f"downloaded from {repo or SD_VAE_REPO}" if resolved.download else resolved.source
    return vae.eval().requires_grad_(False), source


def _autoencoder(architecture: str) -> nn.Module:
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL  # ~4 s import: only when a VAE is built

    vae = AutoencoderKL(**COMMON_CONFIG, **ARCHITECTURES[architecture])
    vae.encoder, vae.quant_conv = None, None  # decode() uses post_quant_conv + decoder only
    return vae


def _download(repo: str, looked_in: list[str]) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, WEIGHT_FILES[0]))
    except Exception as error:  # network errors come in many types
        raise download_failed(f"latent VAE decoder ({repo})", error, looked_in) from None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a ``torch.save`` file, read as data (``weights_only=True``)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # safetensors, pickle and zip errors have many types
        first = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise MatchzooError(f"latent.vae_weights: cannot read {path} ({type(error).__name__}: {first})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MatchzooError(f"latent.vae_weights: {path} is not a state dict (a mapping of names to tensors)")
    return state


def load_decoder_weights(vae: nn.Module, path: Path) -> None:
    """Load the decoder half of a diffusers AutoencoderKL state dict; the encoder's keys are ignored, any other
    mismatch is one line naming the keys."""
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(DROPPED_PREFIXES)}
    expected = vae.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong_shape:
        problems = [
            f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} ({len(keys)})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
            if keys
        ]
        raise MatchzooError(
            f"latent.vae_weights: {path} does not fit the SD-VAE decoder: {'; '.join(problems)}; expected a diffusers "
            f"AutoencoderKL state dict ({WEIGHT_FILES[0]}; an original Stable Diffusion .ckpt converts with "
            f"diffusers' AutoencoderKL.from_single_file(...).save_pretrained(DIR)), or check latent.vae_architecture"
        )
    vae.load_state_dict(state)
