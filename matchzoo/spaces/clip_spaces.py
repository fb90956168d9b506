"""open_clip image towers as feature spaces: CLIP ViT-B/32 and ViT-L/14 (OpenAI weights), SigLIP ViT-B/16.

Features are the image embedding returned by the visual tower (after the projection, *not*
L2-normalised), as in FD_CLIP. Preprocessing takes open_clip's per-tag config: bicubic resize to 224
(square inputs, so shortest-side resize + centre crop is a plain resize), the tag's mean/std. The text
tower is dropped after loading. OpenAI CLIP uses QuickGELU, so those models are built with
``force_quick_gelu=True`` (otherwise the OpenAI weights give wrong features silently).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from matchzoo.errors import MatchzooError
from matchzoo.registry import register_feature_space
from matchzoo.spaces.base import FeatureSpace, Preprocessing
from matchzoo.spaces.resolve import WeightsLocation, download_failed, hub_offline, resolve_weights

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class OpenClipSpace(FeatureSpace):
    """Base for open_clip image towers; subclasses set ``model_name``, ``tag``, ``dim``, ``preprocessing``."""

    model_name: str
    tag: str
    quick_gelu: bool = False
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
        import open_clip

        resolved = resolve_weights(self.weights_location(), weights, pretrained)
        kwargs = {"force_quick_gelu": self.quick_gelu}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if resolved.path is not None:
                with hub_offline():
                    model = _create_from_file(open_clip, self.model_name, resolved.path, kwargs)
            elif resolved.download:
                try:
                    model = open_clip.create_model(self.model_name, pretrained=self.tag, **kwargs)
                except Exception as error:  # network errors come in many types
                    raise download_failed(f"{self.model_name}/{self.tag}", error, resolved.looked_in) from None
            else:
                model = open_clip.create_model(self.model_name, pretrained=None, **kwargs)
        self.visual = model.visual  # text tower dropped
        self.weights_source = (
            f"downloaded via open_clip ({self.model_name}/{self.tag})" if resolved.download else resolved.source
        )
        self.set_gpu_path(bf16=bf16, channels_last=channels_last)
        self.freeze()
        with torch.no_grad():
            probe = self.visual(torch.zeros(1, 3, self.preprocessing.size, self.preprocessing.size))
        if probe.shape[-1] != self.dim:
            raise MatchzooError(f"{self.name}: open_clip returned {probe.shape[-1]}-d features, expected {self.dim}")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)  # (N, dim) projected image embedding

    def config(self) -> dict:
        return {"open_clip": self.model_name, "tag": self.tag, "quick_gelu": self.quick_gelu}

    @classmethod
    def weights_location(cls) -> WeightsLocation:
        import open_clip

        cfg = open_clip.get_pretrained_cfg(cls.model_name, cls.tag)
        hub = cfg.get("hf_hub", "")
        repo, filename = (hub.rstrip("/"), "") if hub.endswith("/") else (str(Path(hub).parent), Path(hub).name)
        files = (filename,) if filename else HF_WEIGHT_FILES
        return WeightsLocation(
            model=f"{cls.registry_name} (open_clip {cls.model_name}/{cls.tag})",
            hf_files=tuple((repo, f) for f in files) if repo else (),
            download_url=cfg.get("url", ""),
        )

    @classmethod
    def catalog(cls) -> dict:
        hub = ", ".join(f"{repo}/{name}" for repo, name in cls.weights_location().hf_files[:1])
        return {
            "dim": cls.dim,
            "preprocessing": cls.preprocessing,
            "weights": f"open_clip {cls.model_name}/{cls.tag} (HF cache {hub}) or weights=",
        }


def _create_from_file(open_clip, name: str, path: Path, kwargs: dict):
    try:
        return open_clip.create_model(name, pretrained=str(path), **kwargs)
    except (RuntimeError, KeyError, ValueError, OSError) as error:
        first = str(error).splitlines()[0][:300]
        raise MatchzooError(f"{name}: cannot load weights from {path}: {type(error).__name__}: {first}") from None


def clip_preprocessing(mean, std, layer) -> Preprocessing:
    return Preprocessing(size=224, resize="pil_bicubic", antialias=True, channels=3, mean=mean, std=std, layer=layer)


@register_feature_space("clip_vitb32")
class ClipViTB32(OpenClipSpace):
    """CLIP ViT-B/32 (OpenAI, open_clip): 224px Pillow-bicubic, CLIP mean/std, projected image embedding, 512-d."""

    family = "clip_openai"  # ViT-B/32 and ViT-L/14: one recipe and data (OpenAI WIT-400M)
    model_name, tag, quick_gelu, dim = "ViT-B-32", "openai", True, 512
    preprocessing = clip_preprocessing(OPENAI_MEAN, OPENAI_STD, "image embedding (after projection, not normalised)")


@register_feature_space("clip_vitl14")
class ClipViTL14(OpenClipSpace):
    """CLIP ViT-L/14 (OpenAI, open_clip): 224px Pillow-bicubic, CLIP mean/std, projected image embedding, 768-d."""

    family = "clip_openai"  # ViT-B/32 and ViT-L/14: one recipe and data (OpenAI WIT-400M)
    model_name, tag, quick_gelu, dim = "ViT-L-14", "openai", True, 768
    preprocessing = clip_preprocessing(OPENAI_MEAN, OPENAI_STD, "image embedding (after projection, not normalised)")


@register_feature_space("siglip")
class SigLIPB16(OpenClipSpace):
    """SigLIP ViT-B/16 (WebLI, open_clip): 224px Pillow-bicubic, mean/std 0.5, pooled (MAP head) image
    embedding, 768-d."""

    model_name, tag, dim = "ViT-B-16-SigLIP", "webli", 768
    preprocessing = clip_preprocessing((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "image embedding (attention-pool head)")
