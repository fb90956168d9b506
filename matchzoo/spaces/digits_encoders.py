"""Two small encoders trained by this project on the bundled digits data and shipped inside the package.

* ``digits_classifier``: supervised (cross-entropy on the 10 digit classes): class-specialised features,
  the offline analogue of the Inception pool3 space.
* ``digits_ssl``: self-supervised (VICReg on two augmented views: small rotations, scalings, shifts,
  pixel noise): augmentation-invariant features, the offline analogue of DINOv2.

Both share :class:`DigitsEncoderNet` (8x8 grayscale -> 64-d embedding, ~72k parameters) and were trained
on the digits *train* split only by ``python scripts/train_digits_encoders.py`` (fixed seed). The
weight files live in ``matchzoo/spaces/weights/<name>.pt`` next to ``<name>.json`` (SHA-256, command,
seed, accuracy); loading verifies the checksum and never touches the network.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from matchzoo.digest import file_sha256
from matchzoo.errors import MatchzooError, MissingWeightsError
from matchzoo.registry import register_feature_space
from matchzoo.spaces.base import FeatureSpace, Preprocessing

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
TRAIN_COMMAND = "python scripts/train_digits_encoders.py"  # in a clone of the repository


class DigitsEncoderNet(nn.Module):
    """conv(1->w) -> conv(w->2w) -> pool -> conv(2w->2w) -> pool -> linear: (N, 1, 8, 8) -> (N, dim)."""

    def __init__(self, dim: int = 64, width: int = 32):
        super().__init__()
        self.dim, self.width = dim, width
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.GELU(),  # (N, w, 8, 8)
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.GELU(),  # (N, 2w, 8, 8)
            nn.AvgPool2d(2),  # (N, 2w, 4, 4)
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.GELU(),  # (N, 2w, 4, 4)
            nn.AvgPool2d(2),  # (N, 2w, 2, 2)
            nn.Flatten(),  # (N, 8w)
        )
        self.embed = nn.Linear(8 * width, dim)  # (N, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.body(x))


def shipped_metadata(name: str) -> dict:
    """The JSON record written next to a shipped weight file (checksum, command, seed, accuracy)."""
    record = WEIGHTS_DIR / f"{name}.json"
    if not record.is_file():
        raise MissingWeightsError(
            f"{name}: shipped weights record {record} is missing; reinstall matchzoo or run `{TRAIN_COMMAND}`"
        )
    return json.loads(record.read_text())


def load_shipped_state(name: str) -> dict[str, torch.Tensor]:
    """State dict of a shipped encoder after checking its SHA-256 against the JSON record (no network)."""
    metadata = shipped_metadata(name)
    path = WEIGHTS_DIR / metadata["file"]
    if not path.is_file():
        raise MissingWeightsError(
            f"{name}: shipped weight file {path} is missing; reinstall matchzoo or run `{TRAIN_COMMAND}`"
        )
    actual = file_sha256(path)
    if actual != metadata["sha256"]:
        raise MatchzooError(
            f"{name}: checksum mismatch for {path} (sha256 {actual[:12]}..., expected {metadata['sha256'][:12]}...); "
            f"the file is corrupt or was replaced: reinstall matchzoo or run `{TRAIN_COMMAND}`"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def load_state_file(name: str, path: str) -> dict[str, torch.Tensor]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise MissingWeightsError(
            f"{name}: weights file not found: {path}; pass an existing state_dict file as weights="
        )
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a non-checkpoint file
        raise MatchzooError(f"{name}: cannot read weights file {path}: {type(error).__name__}: {error}") from None


class DigitsEncoderSpace(FeatureSpace):
    """A shipped digits encoder as a feature space. ``pretrained=False`` gives a seeded random init."""

    shipped_name: str
    training_recipe: str

    def __init__(self, pretrained: bool = True, weights: Optional[str] = None, seed: int = 0):
        super().__init__()
        self.preprocessing = Preprocessing(
            size=8,
            resize="bilinear",
            antialias=True,
            channels=1,
            mean=(0.5,),
            std=(0.5,),
            layer=f"64-d embedding (linear layer after conv body; {self.training_recipe})",
        )
        self.net = DigitsEncoderNet()
        self.dim = self.net.dim
        if weights:
            state, self.weights_source = load_state_file(self.shipped_name, weights), f"file {weights}"
        elif pretrained:
            state, self.weights_source = (
                load_shipped_state(self.shipped_name),
                f"shipped {self.shipped_name}.pt (sha256-checked)",
            )
        else:
            state, self.weights_source = (
                _seeded_random_state(self.net, seed),
                f"random init (seed {seed}, pretrained=False)",
            )
            self.family = "pixels"  # no learned weights (see FeatureSpace.family)
        try:
            self.net.load_state_dict(state)
        except RuntimeError as error:
            first = str(error).splitlines()[0]
            raise MatchzooError(f"{self.shipped_name}: weights do not fit DigitsEncoderNet: {first}") from None
        self.freeze()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _seeded_random_state(net: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, tensor in net.state_dict().items():
        fan_in = tensor[0].numel() if tensor.ndim > 1 else 1
        scale = math.sqrt(2.0 / fan_in) if tensor.ndim > 1 else 0.1
        state[key] = torch.randn(tensor.shape, generator=generator) * scale
    return state


@register_feature_space("digits_classifier")
class DigitsClassifier(DigitsEncoderSpace):
    """Supervised digits classifier (shipped): class-specialised 64-d features, offline analogue of Inception."""

    shipped_name = "digits_classifier"
    training_recipe = "supervised cross-entropy"


@register_feature_space("digits_ssl")
class DigitsSSL(DigitsEncoderSpace):
    """Self-supervised digits encoder (VICReg, shipped): augmentation-invariant 64-d features, offline DINO analogue."""

    shipped_name = "digits_ssl"
    training_recipe = "self-supervised VICReg"
