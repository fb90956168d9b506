"""``dit``: a one-step Diffusion-Transformer generator (the DiT architecture of Peebles & Xie, 2023, used as a
map from noise to sample in one evaluation, as in "Generate in Reconstruction Space, Match in Semantic Space").

::

    noise (C, H, W)  --patchify p x p, linear-->  tokens (H/p * W/p, hidden) + fixed 2-D sin-cos positions
        --> depth x [ x += g1 * Attn(LN(x) * (1 + s1) + b1);  x += g2 * MLP(LN(x) * (1 + s2) + b2) ]
        --> LN(x) * (1 + s) + b --linear--> p*p*C per token --unpatchify--> (C, H, W) --> tanh (or none)

Every ``(b, s, g)`` is regressed from the class vector by a zero-initialised linear layer (adaLN-Zero), so each
block starts as the identity and training opens the gates. The class table has ``num_classes + 1`` rows, the
last being the null class that ``label_dropout`` trains, for classifier-free guidance at sampling time. There is
no timestep input: the network is the one-step map itself.

One departure from DiT: DiT zero-initialises the final linear layer (a denoiser may start by predicting zero),
which here would make every initial sample the same image -- a collapsed start on which Fréchet-type losses have
no usable gradient. The final layer is instead drawn so that the initial output has a standard deviation of
about 0.5 (a noise-dependent image, tanh in its linear range); the blocks keep adaLN-Zero. At step 0 only the
final layer and the gates receive gradient; after the first update every parameter does (tested).

``output = 'tanh'`` makes images in [-1, 1]; ``output = 'none'`` leaves the values unbounded, for latents that a
``latent`` generator decodes. ``checkpointing = True`` recomputes each block in the backward pass
(``torch.utils.checkpoint``): the activations of one block are kept instead of ``depth``, at the cost of a second
forward pass of each block.

Parameters (counted): 16,293,168 at the defaults (3x32x32 pixels, depth 6, hidden 384, heads 6, patch 4,
unconditional); ``preset = 'B/2'`` on 4x32x32 latents with 1000 classes: 129,515,536 (DiT-B/2 without the
timestep embedder and with 4 rather than 8 output channels; DiT reports 130 M for its B/2).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from matchzoo import validate as check
from matchzoo.errors import MatchzooError
from matchzoo.generators.base import Generator, image_shape_of
from matchzoo.generators.conditioning import ClassEmbedding
from matchzoo.registry import register_generator

# DiT's model table (depth, hidden, heads); the patch size is the part after the slash
PRESET_SIZES = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}
PRESETS = tuple(f"{size}/{patch}" for size in PRESET_SIZES for patch in (2, 4, 8))
DEFAULTS = {"depth": 6, "hidden": 384, "heads": 6, "patch_size": 4}  # preset = None


def sincos_positions(dim: int, grid_height: int, grid_width: int) -> torch.Tensor:
    """``(grid_height * grid_width, dim)`` fixed 2-D sin-cos embedding: half the channels encode the row, half the
    column, each as ``[sin(pos * w_k), cos(pos * w_k)]`` with ``w_k = 10000^(-k / (dim/4))`` (computed in float64)."""
    quarter = dim // 4
    frequencies = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)  # (dim/4,)

    def encode(positions: torch.Tensor) -> torch.Tensor:  # (T,) -> (T, dim/2)
        angles = positions[:, None] * frequencies[None, :]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    rows, cols = torch.meshgrid(
        torch.arange(grid_height, dtype=torch.float64), torch.arange(grid_width, dtype=torch.float64), indexing="ij"
    )
    return torch.cat([encode(rows.flatten()), encode(cols.flatten())], dim=1).float()


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None, :]) + shift[:, None, :]  # x (N, T, D), shift/scale (N, D)


def zero_linear(fan_in: int, fan_out: int) -> nn.Linear:
    layer = nn.Linear(fan_in, fan_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, D)
        n, tokens, hidden = x.shape
        q, k, v = self.qkv(x).view(n, tokens, 3, self.heads, hidden // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (N, heads, T, D/heads)
        return self.proj(out.transpose(1, 2).reshape(n, tokens, hidden))


class DiTBlock(nn.Module):
    """Pre-LN transformer block whose LayerNorm shift/scale and residual gates come from the class vector."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden, heads)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        mlp_hidden = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, mlp_hidden), nn.GELU(approximate="tanh"), nn.Linear(mlp_hidden, hidden)
        )
        self.modulation = zero_linear(hidden, 6 * hidden)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:  # x (N, T, D), condition (N, D)
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(condition)).chunk(6, dim=1)
        x = x + gate1[:, None, :] * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None, :] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    def __init__(self, hidden: int, out_features: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, out_features)
        nn.init.normal_(self.linear.weight, std=0.5 / math.sqrt(hidden))  # LN output has unit scale: output std ~0.5
        nn.init.zeros_(self.linear.bias)
        self.modulation = zero_linear(hidden, 2 * hidden)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(F.silu(condition)).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


@register_generator("dit")
class DiTGenerator(Generator):
    """One-step DiT (adaLN-Zero transformer on noise patches), null class for cfg; 16.3 M params at defaults."""

    def __init__(
        self,
        image_shape: tuple = (3, 32, 32),
        num_classes: int = 0,
        preset: Optional[str] = None,
        depth: Optional[int] = None,
        hidden: Optional[int] = None,
        heads: Optional[int] = None,
        patch_size: Optional[int] = None,
        mlp_ratio: float = 4.0,
        label_dropout: float = 0.0,
        output: str = "tanh",
        checkpointing: bool = False,
    ):
        super().__init__()
        self.image_shape = image_shape_of("dit.image_shape", image_shape)
        self.noise_dim = math.prod(self.image_shape)
        sizes = dict(DEFAULTS) if preset is None else preset_sizes(preset)
        given = {"depth": depth, "hidden": hidden, "heads": heads, "patch_size": patch_size}
        sizes.update({key: value for key, value in given.items() if value is not None})  # explicit values win
        self.depth = check.positive_int("dit.depth", sizes["depth"])
        self.hidden = check.positive_int("dit.hidden", sizes["hidden"])
        self.heads = check.positive_int("dit.heads", sizes["heads"])
        self.patch_size = check.positive_int("dit.patch_size", sizes["patch_size"])
        mlp_ratio = check.positive_real("dit.mlp_ratio", mlp_ratio)
        self.output = check.choice("dit.output", output, ("tanh", "none"))
        self.checkpointing = check.choice("dit.checkpointing", checkpointing, (True, False))
        channels, height, width = self.image_shape
        check_geometry(self.hidden, self.heads, self.patch_size, height, width)
        self.grid = (height // self.patch_size, width // self.patch_size)

        self.classes = ClassEmbedding("dit", num_classes, self.hidden, label_dropout, std=0.02)  # DiT's init
        self.num_classes, self.null_label = self.classes.num_classes, self.classes.null_label
        self.patch_embed = nn.Conv2d(channels, self.hidden, self.patch_size, stride=self.patch_size)
        nn.init.xavier_uniform_(self.patch_embed.weight.view(self.hidden, -1))  # as a linear layer on patches
        nn.init.zeros_(self.patch_embed.bias)
        # fixed, so not a parameter and not in the state dict (rebuilt from the geometry)
        self.register_buffer("positions", sincos_positions(self.hidden, *self.grid)[None], persistent=False)
        self.blocks = nn.ModuleList(DiTBlock(self.hidden, self.heads, mlp_ratio) for _ in range(self.depth))
        for block in self.blocks:
            for layer in (block.attn.qkv, block.attn.proj, block.mlp[0], block.mlp[2]):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.final = FinalLayer(self.hidden, self.patch_size * self.patch_size * channels)

    @property
    def noise_shape(self) -> tuple[int, ...]:
        return self.image_shape

    @property
    def outputs_images(self) -> bool:
        """False for ``output = 'none'`` (latents): the [-1, 1] range check does not apply."""
        return self.output == "tanh"

    @classmethod
    def small_kwargs(cls) -> dict:
        return dict(image_shape=(3, 8, 8), num_classes=3, depth=2, hidden=32, heads=2, patch_size=2, label_dropout=0.1)

    def forward(self, noise: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        if tuple(noise.shape[1:]) != self.image_shape or noise.ndim != 4:
            raise MatchzooError(
                f"dit: noise must be (N, {', '.join(map(str, self.image_shape))}), got {tuple(noise.shape)}"
            )
        n, p = noise.shape[0], self.patch_size
        condition = self.classes(labels, n)  # (N, D)
        x = self.patch_embed(noise).flatten(2).transpose(1, 2) + self.positions  # (N, T, D)
        for block in self.blocks:
            if self.checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, condition, use_reentrant=False)
            else:
                x = block(x, condition)
        patches = self.final(x, condition)  # (N, T, p*p*C)
        rows, cols = self.grid
        channels = self.image_shape[0]
        out = patches.view(n, rows, cols, p, p, channels).permute(0, 5, 1, 3, 2, 4).reshape(n, *self.image_shape)
        return torch.tanh(out) if self.output == "tanh" else out


def preset_sizes(preset: str) -> dict:
    if not isinstance(preset, str) or "/" not in preset or preset.split("/")[0] not in PRESET_SIZES:
        raise MatchzooError(f"dit.preset must be one of {', '.join(PRESETS)} (or None), got {preset!r}")
    size, patch = preset.split("/")
    if patch not in ("2", "4", "8"):
        raise MatchzooError(f"dit.preset must be one of {', '.join(PRESETS)} (or None), got {preset!r}")
    depth, hidden, heads = PRESET_SIZES[size]
    return {"depth": depth, "hidden": hidden, "heads": heads, "patch_size": int(patch)}


def check_geometry(hidden: int, heads: int, patch: int, height: int, width: int) -> None:
    if hidden % heads:
        raise MatchzooError(f"dit.heads = {heads} must divide dit.hidden = {hidden}; choose e.g. heads = 6 for 384")
    if hidden % 4:
        raise MatchzooError(f"dit.hidden = {hidden} must be a multiple of 4 (2-D sin-cos positions)")
    if height % patch or width % patch:
        raise MatchzooError(
            f"dit.patch_size = {patch} must divide the image size {height}x{width}; choose a divisor such as 2"
        )
