"""``latent``: a generator that emits SD-VAE latents, decoded by a frozen VAE decoder into images in [-1, 1].

::

    noise --inner generator--> latents (N, 4, h, w) --/ 0.18215--> SD-VAE decoder --clamp--> images (N, 3, 8h, 8w)

The reconstruction-space setup of "Generate in Reconstruction Space, Match in Semantic Space": the inner
generator (``latent.inner = @dit``, ``@conv`` or ``@module``) is what is trained; the decoder
(:mod:`matchzoo.generators.vae`) is frozen (``eval``, no parameter gradients) but differentiable, so the loss
computed on the decoded images reaches the inner generator through it.

Choices, and why:

* **Clamp to [-1, 1].** The SD-VAE decoder's output lies roughly in [-1, 1] and overshoots slightly on some
  pixels. The clamp is exactly what Stable Diffusion's own post-processing does before an image is saved
  (``(x / 2 + 0.5).clamp(0, 1)``), so the feature spaces see during training what evaluation sees; values inside
  the range are untouched (a tanh would compress every pixel the decoder was trained to produce). The price: a
  pixel beyond the range passes no gradient, which for a trained decoder concerns few pixels.
* **The decoder is not part of the generator's parameters or state dict.** It is held outside the module tree
  (:meth:`LatentGenerator._apply` still moves it with ``.to(device)``), so the optimiser, the EMA and DDP never see
  its 49.5 M frozen weights and checkpoints hold only the inner generator; loading a checkpoint rebuilds the
  decoder from its weight file (the same resolution and offline rules as at training time).
* **bf16 on CUDA.** With ``bf16 = True`` the decode runs under bf16 autocast on CUDA tensors (GroupNorm stays in
  float32 there) and returns float32; CPU decoding is float32.

``train.init_from`` loads into the inner generator (:meth:`weights_module`).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import nn

from matchzoo import validate as check
from matchzoo.errors import MatchzooError
from matchzoo.generators import vae
from matchzoo.generators.base import Generator
from matchzoo.registry import register_generator


@register_generator("latent")
class LatentGenerator(Generator):
    """Latent-space generation: an inner generator's ``(4, h, w)`` SD-VAE latents, decoded by the frozen SD-VAE
    decoder into ``(3, 8h, 8w)`` images in [-1, 1]. Trained parameters: the inner generator's; the decoder has
    49,490,199 at the SD size (160,199 for ``'small'``), none of them trained.

    ``inner``: a generator factory (``@dit``) or instance.

    ``pretrained`` / ``vae_weights`` / ``vae_repo``: where the decoder's weights come from (see
    :mod:`matchzoo.generators.vae`); ``vae_architecture``: ``'sd'`` (default when pretrained or given a file) or
    ``'small'`` (default with ``pretrained = False``: a random decoder with few channels, for tests); ``seed``: the
    random decoder's initialisation, independent of ``train.seed``.
    """

    weights_options = ("vae_weights", "pretrained", "vae_repo")  # read by the run's upfront weights check

    def __init__(
        self,
        inner: Any = None,
        pretrained: bool = True,
        vae_weights: Optional[str] = None,
        vae_repo: str = vae.SD_VAE_REPO,
        vae_architecture: Optional[str] = None,
        scaling_factor: float = vae.SCALING_FACTOR,
        bf16: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        self.inner = build_inner(inner)  # first, so the inner generator's initialisation follows train.seed alone
        channels, height, width = self.inner.image_shape
        if channels != vae.LATENT_CHANNELS:
            raise MatchzooError(
                f"latent.inner = @{self.inner.generator_name} emits {channels} channels ({channels}, {height}, "
                f"{width}); the SD-VAE decoder takes {vae.LATENT_CHANNELS}-channel latents: make it emit "
                f"({vae.LATENT_CHANNELS}, h, w) without a tanh (e.g. dit.image_shape = (4, 32, 32), "
                f"dit.output = 'none')"
            )
        self.image_shape = (3, vae.DOWNSAMPLING * height, vae.DOWNSAMPLING * width)
        self.noise_dim = int(getattr(self.inner, "noise_dim", 0) or torch.Size(self.inner.noise_shape).numel())
        self.num_classes, self.null_label = self.inner.num_classes, self.inner.null_label
        self.scaling_factor = check.positive_real("latent.scaling_factor", scaling_factor)
        self.bf16 = bool(bf16)
        if vae_architecture is None:
            vae_architecture = "sd" if (pretrained or vae_weights) else "small"
        decoder, self.weights_source = vae.build_decoder(
            vae_architecture, bool(pretrained), vae_weights, vae_repo, check.seed("latent.seed", seed)
        )
        object.__setattr__(self, "_decoder", decoder)  # outside the module tree: not a parameter, not in state_dict

    @classmethod
    def weights_location(cls, vae_repo: Optional[str] = None):
        return vae.weights_location(vae_repo)

    @property
    def decoder(self) -> nn.Module:
        """The frozen diffusers ``AutoencoderKL`` (decoder half); :meth:`decode` is the full latent -> image map."""
        return self._decoder

    @property
    def noise_shape(self) -> tuple[int, ...]:
        return tuple(self.inner.noise_shape)

    def sample_noise(self, n: int, generator: Optional[torch.Generator] = None, device=None) -> torch.Tensor:
        return self.inner.sample_noise(n, generator=generator, device=device)

    def forward(self, noise: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        latents = self.inner(noise) if labels is None else self.inner(noise, labels)  # (N, 4, h, w)
        return self.decode(latents)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``(N, 4, h, w)`` -> images ``(N, 3, 8h, 8w)`` in [-1, 1] (float32), differentiable."""
        z = latents / self.scaling_factor
        if z.is_cuda and self.bf16:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                images = self._decoder.decode(z).sample
        else:
            images = self._decoder.decode(z).sample
        return images.float().clamp(-1.0, 1.0)  # SD's own post-processing; see the module docstring

    def train(self, mode: bool = True) -> "LatentGenerator":
        super().train(mode)
        self._decoder.eval()  # frozen: never in training mode (it has no dropout or batch norm, but stays exact)
        return self

    def _apply(self, fn: Callable, recurse: bool = True):
        """``.to()``, ``.cuda()``, ``.float()`` reach the decoder although it is not a registered submodule."""
        super()._apply(fn, recurse)
        self._decoder._apply(fn)
        return self

    def weights_module(self) -> nn.Module:
        return self.inner.weights_module()

    def extra_repr(self) -> str:
        return f"decoder=SD-VAE AutoencoderKL (frozen, weights: {self.weights_source}), scaling={self.scaling_factor}"

    @classmethod
    def small_kwargs(cls) -> dict:
        from matchzoo.generators.mlp import MLPGenerator

        def inner() -> Generator:
            return MLPGenerator(image_shape=(4, 2, 2), noise_dim=8, width=32, depth=1, num_classes=3)

        return {"inner": inner, "pretrained": False}


def build_inner(inner: Any) -> Generator:
    """``latent.inner``: a generator factory (``@dit``, built now) or an instance (``@dit()``)."""
    if inner is None:
        raise MatchzooError(
            "latent.inner is not set; bind the generator that emits the latents, e.g. latent.inner = @dit"
        )
    if not isinstance(inner, nn.Module) and callable(inner):
        inner = inner()
    return check.instance("latent.inner", inner, Generator, "a generator such as @dit")
