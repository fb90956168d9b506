"""The feature-space contract: frozen, differentiable maps from images in [-1, 1] to ``(N, dim)`` features.

A space carries its preprocessing as *data* (:class:`Preprocessing`: input size, resize filter,
antialias, channels, mean/std, which layer/token) and a :attr:`FeatureSpace.fingerprint` over that
description plus a hash of its weights, so cached reference features are never reused across a change.

Subclasses set ``dim``, ``preprocessing`` and ``weights_source`` and implement ``encode(x)`` on the
preprocessed batch. Parameters are frozen (``requires_grad_(False)``) and the module stays in eval mode
even when a parent calls ``.train()``; gradients still flow to the input images.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from matchzoo.errors import MatchzooError


@dataclass(frozen=True)
class Preprocessing:
    """How images in [-1, 1] become network input. Applied by :func:`preprocess`.

    ``size``: square side the network sees (``None`` keeps the input size).
    ``resize``: torch interpolation mode (``bilinear``, ``bicubic``, ``area``, ``nearest``) or an exact
    reference filter from ``EXACT_RESIZERS`` (``tf1_bilinear``, ``pil_bicubic``).
    ``channels``: 3 repeats grayscale to RGB; 1 averages RGB to gray.
    ``mean``/``std``: applied after mapping [-1, 1] to [0, 1], one value per channel.
    ``layer``: which layer/token the features are read from (documentation + fingerprint).
    """

    size: Optional[int]
    resize: str = "bilinear"
    antialias: bool = False
    align_corners: bool = False
    channels: int = 3
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    layer: str = "output"

    def describe(self) -> str:
        size = "native" if self.size is None else f"{self.size}px {self.resize}{'+aa' if self.antialias else ''}"
        mean = ",".join(f"{m:.3g}" for m in self.mean)
        std = ",".join(f"{s:.3g}" for s in self.std)
        return f"{size}, {self.channels}ch, mean=({mean}) std=({std}), {self.layer}"

    def as_dict(self) -> dict:
        return asdict(self)


def _tf1_bilinear():
    from matchzoo.spaces.tf_resize import tf1_bilinear_resize

    return tf1_bilinear_resize


def _pil_bicubic():
    from matchzoo.spaces.pil_resize import pil_bicubic_resize

    return pil_bicubic_resize


# Resize filters that reproduce another library bit-for-bit (reference conventions of published metrics):
# ``tf1_bilinear`` = TF1 ResizeBilinear (FID), ``pil_bicubic`` = Pillow bicubic (FD_DINOv2, CLIP transforms).
EXACT_RESIZERS = {"tf1_bilinear": _tf1_bilinear, "pil_bicubic": _pil_bicubic}


def preprocess(images: torch.Tensor, spec: Preprocessing) -> torch.Tensor:
    """Resize, fix channels and normalise images in [-1, 1] as ``spec`` says (differentiable)."""
    if images.ndim != 4:
        raise MatchzooError(f"feature spaces take images (N, C, H, W) in [-1, 1]; got shape {tuple(images.shape)}")
    x = images
    channels = x.shape[1]
    if spec.channels == 3 and channels == 1:
        x = x.expand(-1, 3, -1, -1)
    elif spec.channels == 1 and channels == 3:
        x = x.mean(dim=1, keepdim=True)
    elif channels != spec.channels:
        raise MatchzooError(f"cannot feed {channels}-channel images to a {spec.channels}-channel feature space")
    if spec.size is not None and tuple(x.shape[-2:]) != (spec.size, spec.size) and spec.resize in EXACT_RESIZERS:
        x = EXACT_RESIZERS[spec.resize]()(x, spec.size, spec.size)
    elif spec.size is not None and tuple(x.shape[-2:]) != (spec.size, spec.size):
        kwargs = {"antialias": spec.antialias} if spec.resize in ("bilinear", "bicubic") else {}
        if spec.resize in ("bilinear", "bicubic"):
            kwargs["align_corners"] = spec.align_corners
        x = F.interpolate(x, size=(spec.size, spec.size), mode=spec.resize, **kwargs)
    x = (x + 1.0) * 0.5  # [-1, 1] -> [0, 1]
    mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def state_dict_digest(module: nn.Module) -> str:
    """SHA-256 over parameter and buffer names, shapes and bytes: changes whenever the weights do."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(t.shape)).encode())
        digest.update(str(t.dtype).encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return digest.hexdigest()


class FeatureSpace(nn.Module):
    """Base class for frozen feature extractors. See the module docstring for the contract."""

    dim: int
    preprocessing: Preprocessing
    weights_source: str = "none (no weights)"
    # The representation the features come from, for ``fdr_unseen`` (matchzoo.metrics.summary): spaces of one
    # family are left out together when any of them was trained or attacked in. One family = one learned
    # network (pool3, logits and sFID of Inception), or one training recipe and data at several sizes (DINOv2
    # S/B/L), or no learned weights at all ("pixels": raw pixels and random networks, whose geometry is a fixed
    # function of the pixels'). None: the space is its own family (its registered name).
    family: Optional[str] = None

    def __init__(self) -> None:
        super().__init__()
        self._fingerprint: Optional[str] = None

    @property
    def name(self) -> str:
        return getattr(type(self), "registry_name", type(self).__name__)

    @property
    def input_size(self) -> Optional[int]:
        return self.preprocessing.size

    def freeze(self) -> "FeatureSpace":
        """Call at the end of ``__init__``: eval mode, no parameter gradients."""
        self.requires_grad_(False)
        super().train(False)
        self._fingerprint = None
        return self

    def train(self, mode: bool = True) -> "FeatureSpace":
        """Feature spaces stay in eval mode whatever a parent module asks."""
        return super().train(False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # GPU path: backbones that allow it run bf16 autocast / channels_last on CUDA (never on CPU, where
    # both are slower or unsupported). Spaces whose metric convention is float32 (FID Inception) keep
    # ``allows_bf16 = False``. ``use_bf16`` / ``use_channels_last`` are the per-instance switches.
    allows_bf16: bool = False
    use_bf16: bool = False
    use_channels_last: bool = False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = preprocess(images, self.preprocessing)
        if x.is_cuda and self.use_channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if x.is_cuda and self.use_bf16 and self.allows_bf16:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                features = self.encode(x)
            return features.float().flatten(1)
        return self.encode(x).flatten(1)

    def set_gpu_path(self, bf16: bool, channels_last: bool) -> None:
        """Choose the CUDA fast path (call in ``__init__`` before :meth:`freeze`); no effect on CPU."""
        self.use_bf16 = bool(bf16) and self.allows_bf16
        self.use_channels_last = bool(channels_last)  # applied to CUDA inputs only; CPU numerics untouched

    @classmethod
    def catalog(cls) -> dict:
        """dim, preprocessing and weights source of the default configuration (``list --spaces``).

        Cheap spaces instantiate themselves; pretrained backbones override this with static facts.
        """
        space = cls()
        return {"dim": space.dim, "preprocessing": space.preprocessing, "weights": space.weights_source}

    def config(self) -> dict:
        """Constructor settings that change the features (beyond preprocessing and weights)."""
        return {}

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            payload = json.dumps(
                {
                    "space": self.name,
                    "dim": self.dim,
                    "preprocessing": self.preprocessing.as_dict(),
                    "config": self.config(),
                    "bf16": self.use_bf16,
                    "weights": state_dict_digest(self),
                },
                sort_keys=True,
                default=str,
            )
            self._fingerprint = hashlib.sha256(payload.encode()).hexdigest()[:16]
        return self._fingerprint

    def describe(self) -> str:
        return f"dim={self.dim}; {self.preprocessing.describe()}; weights: {self.weights_source}"
