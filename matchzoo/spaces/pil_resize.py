"""Pillow's resampling (``Image.resize(..., BICUBIC)``) as a differentiable tensor op.

Published FD_DINOv2 / CLIP numbers resize PIL images, so the tensor path must reproduce Pillow, whose
bicubic kernel (a = −0.5) and support scaling differ from ``F.interpolate``'s (a = −0.75). For an
input of size n resized to m, with scale s = n/m and stretch t = max(s, 1), output pixel i has centre
c = (i + ½)·s, uses the inputs j ∈ [⌊c − 2t + ½⌋, ⌊c + 2t + ½⌋) clipped to [0, n), with weights

    w_ij ∝ k((j − c + ½)/t),   k(x) = (a+2)|x|³ − (a+3)|x|² + 1        for |x| < 1,
                               k(x) = a|x|³ − 5a|x|² + 8a|x| − 4a      for 1 ≤ |x| < 2,   a = −0.5,

normalised to sum to one per row. Applied separably: ``Y = R · X · Cᵀ``. No clipping or uint8
rounding between passes (Pillow's float ``"F"`` mode behaves the same way).
"""

from __future__ import annotations

import functools
import math

import torch

CUBIC_A = -0.5


def bicubic_kernel(x: torch.Tensor) -> torch.Tensor:
    x = x.abs()
    near = ((CUBIC_A + 2) * x - (CUBIC_A + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * CUBIC_A
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def pil_interpolation_matrix(size_in: int, size_out: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return _pil_interpolation_matrix_float64(size_in, size_out).to(dtype=dtype, device=device)


@functools.lru_cache(maxsize=32)
def _pil_interpolation_matrix_float64(size_in: int, size_out: int) -> torch.Tensor:
    """(size_out, size_in) Pillow bicubic resampling weights."""
    scale = size_in / size_out
    stretch = max(scale, 1.0)
    support = 2.0 * stretch
    matrix = torch.zeros(size_out, size_in, dtype=torch.float64)
    for i in range(size_out):
        centre = (i + 0.5) * scale
        first = max(int(math.floor(centre - support + 0.5)), 0)
        last = min(int(math.floor(centre + support + 0.5)), size_in)
        taps = torch.arange(first, last, dtype=torch.float64)
        weights = bicubic_kernel((taps - centre + 0.5) / stretch)
        matrix[i, first:last] = weights / weights.sum()
    return matrix


def pil_bicubic_resize(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize ``images`` (N, C, H, W) to (N, C, height, width) like Pillow's bicubic ``resize``."""
    rows = pil_interpolation_matrix(images.shape[-2], height, images.dtype, images.device)  # (height, H)
    cols = pil_interpolation_matrix(images.shape[-1], width, images.dtype, images.device)  # (width, W)
    return torch.matmul(torch.matmul(rows, images), cols.T)  # (N, C, height, width)
