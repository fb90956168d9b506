"""Pretrained timm backbones as feature spaces: DINOv2 (S/B/L), MAE ViT-L/16, ConvNeXt-V2-B.

DINOv2 follows the FD_DINOv2 convention (Stein et al. 2023, dgm-eval): a direct bicubic resize to
224x224 (no crop), ImageNet mean/std, and the class token after the final LayerNorm (1024-d for ViT-L);
timm resamples the 518-px position embeddings to the 16x16 patch grid when the weights are loaded.
MAE uses its CLS token after the final norm; ConvNeXt-V2 the global-average-pooled, head-normed
pre-logits. Weights are resolved by :mod:`matchzoo.spaces.resolve` (explicit file -> HF hub cache ->
torch hub cache -> download if allowed) and loaded through timm's own pretrained loader so its
checkpoint filters (position-embedding resampling, classifier removal) apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from matchzoo.errors import MatchzooError
from matchzoo.registry import register_feature_space
from matchzoo.spaces.base import FeatureSpace, Preprocessing
from matchzoo.spaces.resolve import (
    WeightsLocation,
    download_failed,
    hub_offline,
    resolve_weights,
    torch_hub_checkpoints,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class TimmSpace(FeatureSpace):
    """Base for timm backbones; subclasses set ``timm_name``, ``dim``, ``preprocessing``, ``create_kwargs``."""

    timm_name: str
    create_kwargs: dict = {}
    allows_bf16 = True

    def __init__(
        self,
        pretrained: bool = True,
        weights: Optional[str] = None,
        seed: int = 0,
        bf16: bool = True,
        channels_last: bool = True,
    ):
        super().__init__()
        import timm

        resolved = resolve_weights(self.weights_location(), weights, pretrained)
        kwargs = dict(num_classes=0, **self.create_kwargs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # random init (pretrained=False) is reproducible
            if resolved.path is not None:
                with hub_offline():
                    self.model = _create_from_file(timm, self.timm_name, resolved.path, kwargs)
            elif resolved.download:
                try:
                    self.model = timm.create_model(self.timm_name, pretrained=True, **kwargs)
                except Exception as error:  # network errors come in many types
                    raise download_failed(self.timm_name, error, resolved.looked_in) from None
            else:
                self.model = timm.create_model(self.timm_name, pretrained=False, **kwargs)
        self.weights_source = f"downloaded via timm ({self.timm_name})" if resolved.download else resolved.source
        if self.model.num_features != self.dim:
            raise MatchzooError(f"{self.name}: timm returned {self.model.num_features}-d features, expected {self.dim}")
        self.set_gpu_path(bf16=bf16, channels_last=channels_last)
        self.freeze()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)  # (N, dim): pre-logits (num_classes=0)

    def config(self) -> dict:
        return {"timm_name": self.timm_name, **self.create_kwargs}

    @classmethod
    def weights_location(cls) -> WeightsLocation:
        import timm

        cfg = timm.models.get_pretrained_cfg(cls.timm_name)
        hub_id = getattr(cfg, "hf_hub_id", None)
        hf_files = (
            tuple((hub_id, f) for f in ((cfg.hf_hub_filename,) if cfg.hf_hub_filename else HF_WEIGHT_FILES))
            if hub_id
            else ()
        )
        url = getattr(cfg, "url", None) or ""
        local = (torch_hub_checkpoints() / Path(url).name,) if url else ()
        return WeightsLocation(
            model=f"{cls.registry_name} (timm {cls.timm_name})", hf_files=hf_files, local_files=local, download_url=url
        )

    @classmethod
    def catalog(cls) -> dict:
        hub = ", ".join(f"{repo}/{name}" for repo, name in cls.weights_location().hf_files[:1])
        return {
            "dim": cls.dim,
            "preprocessing": cls.preprocessing,
            "weights": f"timm {cls.timm_name} (HF cache {hub}) or weights=",
        }


def _create_from_file(timm, name: str, path: Path, kwargs: dict):
    """timm model with weights from a local file, through timm's pretrained loader (no network)."""
    try:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kwargs)
    except (RuntimeError, KeyError, ValueError, OSError) as error:
        first = str(error).splitlines()[0][:300]
        raise MatchzooError(f"{name}: cannot load weights from {path}: {type(error).__name__}: {first}") from None


def dinov2_preprocessing(layer: str) -> Preprocessing:
    return Preprocessing(
        size=224, resize="pil_bicubic", antialias=True, channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, layer=layer
    )


class DinoV2(TimmSpace):
    """DINOv2 in the FD_DINOv2 convention: 224px Pillow-bicubic, ImageNet mean/std, final-norm CLS token."""

    create_kwargs = {"img_size": 224, "global_pool": "token"}
    preprocessing = dinov2_preprocessing("CLS token after final LayerNorm")
    family = "dinov2"  # S, B and L: one recipe and data (LVD-142M), distilled from one teacher


@register_feature_space("dinov2_vits14")
class DinoV2Small(DinoV2):
    """DINOv2 ViT-S/14 (FD_DINOv2 convention): 224px Pillow-bicubic, ImageNet mean/std, final-norm CLS token, 384-d."""

    timm_name = "vit_small_patch14_dinov2.lvd142m"
    dim = 384


@register_feature_space("dinov2_vitb14")
class DinoV2Base(DinoV2):
    """DINOv2 ViT-B/14 (FD_DINOv2 convention): 224px Pillow-bicubic, ImageNet mean/std, final-norm CLS token, 768-d."""

    timm_name = "vit_base_patch14_dinov2.lvd142m"
    dim = 768


@register_feature_space("dinov2_vitl14")
class DinoV2Large(DinoV2):
    """DINOv2 ViT-L/14 (FD_DINOv2 convention): 224px Pillow-bicubic, ImageNet mean/std, final-norm CLS token, 1024-d."""

    timm_name = "vit_large_patch14_dinov2.lvd142m"
    dim = 1024


@register_feature_space("mae_vitl16")
class MAELarge(TimmSpace):
    """MAE ViT-L/16 (self-supervised pretrain weights): 224px Pillow-bicubic, ImageNet mean/std, CLS token, 1024-d."""

    timm_name = "vit_large_patch16_224.mae"
    create_kwargs = {"global_pool": "token"}
    dim = 1024
    preprocessing = dinov2_preprocessing("CLS token after final LayerNorm")


@register_feature_space("convnextv2_base")
class ConvNeXtV2Base(TimmSpace):
    """ConvNeXt-V2-B (FCMAE, IN-22k->1k fine-tuned): 224px Pillow-bicubic, ImageNet mean/std, pooled
    pre-logits, 1024-d."""

    timm_name = "convnextv2_base.fcmae_ft_in22k_in1k"
    dim = 1024
    preprocessing = Preprocessing(
        size=224,
        resize="pil_bicubic",
        antialias=True,
        channels=3,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        layer="global average pool + head LayerNorm (pre-logits)",
    )
