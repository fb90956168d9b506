"""Feature spaces. Importing this package registers every space.

Offline (no download): ``pixels``, ``random_conv``, and the shipped encoders ``digits_classifier`` and
``digits_ssl``. Pretrained (weights from a local file, a library cache or a download, see
:mod:`matchzoo.spaces.resolve`): ``inception`` (FID), ``dinov2_vits14/vitb14/vitl14``, ``mae_vitl16``,
``convnextv2_base`` (timm), ``clip_vitb32``, ``clip_vitl14``, ``siglip`` (open_clip). timm, open_clip
and pytorch-fid are imported only when such a space is built.
"""

from matchzoo.spaces import (
    clip_spaces,  # noqa: F401  (registers CLIP, SigLIP)
    digits_encoders,  # noqa: F401  (registers "digits_classifier", "digits_ssl")
    inception,  # noqa: F401  (registers "inception")
    offline,  # noqa: F401  (registers "pixels", "random_conv")
    timm_spaces,  # noqa: F401  (registers DINOv2, MAE, ConvNeXt-V2)
)
from matchzoo.spaces.base import FeatureSpace, Preprocessing, preprocess

__all__ = ["FeatureSpace", "Preprocessing", "preprocess"]
