"""``inception``: the FID network (TF Inception 2015-12-05 ported to PyTorch), pool3 2048-d features; and two
more readouts of the same network and weights file:

* ``inception_logits`` -- the 1008 class logits the Inception Score is computed from (the IS convention of the
  original implementation and the ADM evaluator: ``pool3 @ W`` with the graph's ``softmax/logits`` weights and
  *no* bias; ``W`` is the ``fc.weight`` of the weights file);
* ``inception_sfid`` -- the sFID features of the ADM evaluator: the first 7 channels of ``mixed_6/conv`` (the
  1x1 branch of ``Mixed_6d``, after its ReLU), a 17x17x7 map flattened in NHWC order (2023-d), so the FD in this
  space is sFID and ADM reference batches' ``mu_s``/``sigma_s`` apply to it.

The architecture is pytorch-fid's FID variant of torchvision's Inception-v3 (its patched Mixed blocks
reproduce the TF graph's pooling quirks), loaded from ``pt_inception-2015-12-05-6726825d.pth`` — the
file pytorch-fid and torch-fidelity use. Inputs are resized to 299x299 with the TF1 bilinear op of the
reference implementation (:mod:`matchzoo.spaces.tf_resize`) and scaled to [-1, 1], so FDs agree with
published FIDs. Always float32 (the convention the published numbers were computed in).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from matchzoo.errors import MatchzooError
from matchzoo.registry import register_feature_space
from matchzoo.spaces.base import FeatureSpace, Preprocessing
from matchzoo.spaces.resolve import WeightsLocation, download_failed, resolve_weights, torch_hub_checkpoints

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = (
    f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS_FILE}"  # = pytorch-fid's
)

INCEPTION_PREPROCESSING = Preprocessing(
    size=299,
    resize="tf1_bilinear",
    antialias=False,
    channels=3,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    layer="pool3 (global average pool after Mixed_7c), 2048-d",
)


def build_fid_inception(seed: int = 0) -> nn.Module:
    """torchvision Inception-v3 with pytorch-fid's FID blocks, 1008 classes, no aux head, seeded init."""
    try:
        from pytorch_fid import inception as fid
    except ImportError:
        raise MatchzooError("the inception space needs pytorch-fid: pip install 'pytorch-fid>=0.3.0'") from None

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = fid._inception_v3(num_classes=1008, aux_logits=False, weights=None)
        net.Mixed_5b = fid.FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = fid.FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = fid.FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = fid.FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = fid.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = fid.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = fid.FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = fid.FIDInceptionE_1(1280)
        net.Mixed_7c = fid.FIDInceptionE_2(2048)
    return net


def inception_preprocessing(layer: str) -> Preprocessing:
    """The FID input convention (299 px, TF1 bilinear, [-1, 1]) read out at ``layer``."""
    return Preprocessing(
        size=299, resize="tf1_bilinear", antialias=False, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3, layer=layer
    )


POOL3_PATH = (
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "maxpool1",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "maxpool2",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
    "avgpool",
)


@register_feature_space("inception")
class FIDInception(FeatureSpace):
    """FID Inception-v3 (TF 2015-12-05 weights), pool3 2048-d, TF1 bilinear resize to 299."""

    dim = 2048
    preprocessing = INCEPTION_PREPROCESSING
    family = "inception"  # inception_logits and inception_sfid read the same network

    @classmethod
    def weights_location(cls) -> WeightsLocation:
        checkpoints = torch_hub_checkpoints()  # follows $TORCH_HOME at call time
        return WeightsLocation(
            model="inception (FID Inception-v3)",
            local_files=(checkpoints / FID_WEIGHTS_FILE,),
            how_to=f"or copy {FID_WEIGHTS_FILE} into {checkpoints} ",
            download_url=FID_WEIGHTS_URL,
        )

    def __init__(
        self, pretrained: bool = True, weights: Optional[str] = None, seed: int = 0, channels_last: bool = True
    ):
        super().__init__()
        resolved = resolve_weights(self.weights_location(), weights, pretrained)
        self.net = build_fid_inception(seed)
        if resolved.path is not None:
            state = _load_file(resolved.path)
        elif resolved.download:
            state = _download()
        else:
            state = None
        if state is not None:
            try:
                self.net.load_state_dict(state)
            except RuntimeError as error:
                raise MatchzooError(
                    f"inception: {resolved.path} is not an FID Inception state_dict: {str(error).splitlines()[0]}"
                ) from None
        self.weights_source = f"downloaded {FID_WEIGHTS_FILE}" if resolved.download else resolved.source
        self.set_gpu_path(bf16=False, channels_last=channels_last)
        self.freeze()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        for name in POOL3_PATH:
            x = getattr(self.net, name)(x)
        return x  # (N, 2048, 1, 1); flattened by forward

    @classmethod
    def catalog(cls) -> dict:
        return {
            "dim": cls.dim,
            "preprocessing": cls.preprocessing,
            "weights": f"torch hub checkpoints/{FID_WEIGHTS_FILE} (pytorch-fid release) or weights=",
        }


IS_CLASSES = 1008  # the TF graph's softmax: 1000 ImageNet classes + 8 unused
SFID_CHANNELS, SFID_SIDE = 7, 17
SFID_TRUNK = POOL3_PATH[: POOL3_PATH.index("Mixed_6d")]  # up to the 17x17 input of Mixed_6d


@register_feature_space("inception_logits")
class FIDInceptionLogits(FIDInception):
    """FID Inception-v3 class logits (1008, no bias: the Inception Score convention); same weights as ``inception``."""

    dim = IS_CLASSES
    preprocessing = inception_preprocessing("logits = pool3 @ fc.weight^T (softmax/logits/MatMul, no bias), 1008-d")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pool3 = super().encode(x).flatten(1)  # (N, 2048)
        return pool3 @ self.net.fc.weight.T  # (N, 1008)


@register_feature_space("inception_sfid")
class FIDInceptionSpatial(FIDInception):
    """sFID features: first 7 channels of ``mixed_6/conv`` (``Mixed_6d.branch1x1``), 17x17x7 NHWC = 2023-d."""

    dim = SFID_SIDE * SFID_SIDE * SFID_CHANNELS
    preprocessing = inception_preprocessing(
        "mixed_6/conv (Mixed_6d.branch1x1 after ReLU)[..., :7], 17x17x7 flattened NHWC, 2023-d"
    )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        for name in SFID_TRUNK:
            x = getattr(self.net, name)(x)
        spatial = self.net.Mixed_6d.branch1x1(x)[:, :SFID_CHANNELS]  # (N, 7, 17, 17)
        return spatial.permute(0, 2, 3, 1).flatten(1)  # (N, 17*17*7) in the TF graph's NHWC order


def _load_file(path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unreadable / not a checkpoint
        raise MatchzooError(f"inception: cannot read weights file {path}: {type(error).__name__}: {error}") from None


def _download() -> dict:
    try:
        return torch.hub.load_state_dict_from_url(FID_WEIGHTS_URL, map_location="cpu", progress=True)
    except Exception as error:  # network failures come in many types
        raise download_failed("inception", error, FIDInception.weights_location().candidates()) from None
