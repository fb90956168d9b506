"""TensorFlow-1 ``ResizeBilinear`` (``align_corners=False``, no half-pixel centres), differentiable.

The FID reference implementation resizes inside the TF graph with this op, so published FIDs depend on
it. Output pixel i samples the input at s = i · in/out (not the half-pixel-centred (i + ½)·in/out − ½
of ``torch.nn.functional.interpolate``):

    y_i = (1 − w_i) · x_{⌊s⌋} + w_i · x_{min(⌊s⌋ + 1, in − 1)},   w_i = s − ⌊s⌋.

Implemented as two dense interpolation matrices, ``Y = A_h · X · A_wᵀ`` per image and channel.
"""

from __future__ import annotations

import functools

import torch


def tf1_interpolation_matrix(size_in: int, size_out: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return _tf1_interpolation_matrix_float64(size_in, size_out).to(dtype=dtype, device=device)


@functools.lru_cache(maxsize=32)
def _tf1_interpolation_matrix_float64(size_in: int, size_out: int) -> torch.Tensor:
    """(size_out, size_in) matrix whose rows hold the two bilinear weights of each output pixel."""
    source = torch.arange(size_out, dtype=torch.float64) * (size_in / size_out)  # (out,)
    low = source.floor().long().clamp(max=size_in - 1)
    high = (low + 1).clamp(max=size_in - 1)
    weight = source - low.double()
    matrix = torch.zeros(size_out, size_in, dtype=torch.float64)
    rows = torch.arange(size_out)
    matrix.index_put_((rows, low), 1.0 - weight, accumulate=True)
    matrix.index_put_((rows, high), weight, accumulate=True)
    return matrix


def tf1_bilinear_resize(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize ``images`` (N, C, H, W) to (N, C, height, width) like TF1 ``ResizeBilinear``."""
    rows = tf1_interpolation_matrix(images.shape[-2], height, images.dtype, images.device)  # (height, H)
    cols = tf1_interpolation_matrix(images.shape[-1], width, images.dtype, images.device)  # (width, W)
    return torch.matmul(torch.matmul(rows, images), cols.T)  # (N, C, height, width)
