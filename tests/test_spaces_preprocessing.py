"""Preprocessing as data: exact reference resizers against independent oracles, channels, normalisation."""

import numpy as np
import pytest
import torch
from PIL import Image

import matchzoo
from matchzoo.errors import MatchzooError
from matchzoo.spaces.base import Preprocessing, preprocess
from matchzoo.spaces.pil_resize import pil_bicubic_resize
from matchzoo.spaces.tf_resize import tf1_bilinear_resize


def tf1_resize_loop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """TF1 ResizeBilinear (align_corners=False, legacy scaler) written as TF's kernel does, pixel by pixel."""
    h_in, w_in = image.shape
    out = np.zeros((height, width))
    for i in range(height):
        y = i * h_in / height
        top, bottom = int(np.floor(y)), min(int(np.ceil(y)), h_in - 1)
        for j in range(width):
            x = j * w_in / width
            left, right = int(np.floor(x)), min(int(np.ceil(x)), w_in - 1)
            top_row = image[top, left] + (image[top, right] - image[top, left]) * (x - left)
            bottom_row = image[bottom, left] + (image[bottom, right] - image[bottom, left]) * (x - left)
            out[i, j] = top_row + (bottom_row - top_row) * (y - top)
    return out


@pytest.mark.parametrize("size_in,size_out", [(8, 29), (13, 7), (32, 32 * 3)])
def test_tf1_bilinear_matches_the_tf_kernel_loop(size_in, size_out):
    image = np.random.default_rng(size_in).random((size_in, size_in))
    ours = tf1_bilinear_resize(torch.from_numpy(image)[None, None], size_out, size_out)[0, 0].numpy()
    np.testing.assert_allclose(ours, tf1_resize_loop(image, size_out, size_out), atol=1e-12)


def test_tf1_bilinear_known_values_and_difference_from_half_pixel():
    row = torch.tensor([[[[0.0, 1.0]]]], dtype=torch.float64)  # (1, 1, 1, 2)
    ours = tf1_bilinear_resize(row, 1, 4)
    assert ours.flatten().tolist() == [0.0, 0.5, 1.0, 1.0]  # s = i·2/4 = 0, .5, 1, 1.5 -> clamped
    half_pixel = torch.nn.functional.interpolate(row, size=(1, 4), mode="bilinear", align_corners=False)
    assert not torch.allclose(ours, half_pixel)


@pytest.mark.parametrize("size_in", [8, 31, 300])
def test_pil_bicubic_matches_pillow_float_mode(size_in):
    image = np.random.default_rng(size_in).random((size_in, size_in)).astype(np.float32)
    pillow = np.asarray(Image.fromarray(image, mode="F").resize((224, 224), Image.BICUBIC), dtype=np.float64)
    ours = pil_bicubic_resize(torch.from_numpy(image).double()[None, None], 224, 224)[0, 0].numpy()
    np.testing.assert_allclose(ours, pillow, atol=1e-5)


def dinov2_reference_pipeline(image_uint8: np.ndarray) -> np.ndarray:
    """FD_DINOv2 convention, independently: PIL bicubic resize to 224x224, /255, ImageNet mean/std."""
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    channels = []
    for c in range(3):  # float mode per channel: no uint8 rounding between the two resize passes
        plane = Image.fromarray(image_uint8[..., c].astype(np.float32), mode="F").resize((224, 224), Image.BICUBIC)
        channels.append(np.asarray(plane, dtype=np.float64) / 255.0)
    return (np.stack(channels) - mean[:, None, None]) / std[:, None, None]  # (3, 224, 224)


@pytest.mark.parametrize("size", [64, 256])
def test_dinov2_preprocessing_equals_independent_pipeline(size):
    rng = np.random.default_rng(size)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    spec = matchzoo.FEATURE_SPACES.get("dinov2_vitl14").preprocessing
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].double() / 127.5 - 1.0  # [-1, 1]
    ours = preprocess(tensor, spec)[0].numpy()
    np.testing.assert_allclose(ours, dinov2_reference_pipeline(image), atol=1e-5)


def test_uint8_pillow_pipeline_agrees_up_to_rounding():
    """The usual uint8 RGB PIL pipeline differs from ours only by its 8-bit rounding between passes."""
    x = np.linspace(0, 1, 48)
    smooth = (255 * np.stack([np.outer(x, x), np.outer(x, 1 - x), np.outer(1 - x, x)], -1)).astype(np.uint8)
    pillow = np.asarray(Image.fromarray(smooth).resize((224, 224), Image.BICUBIC), dtype=np.float64) / 255.0
    spec = Preprocessing(size=224, resize="pil_bicubic", channels=3, mean=(0, 0, 0), std=(1, 1, 1))
    ours = preprocess(torch.from_numpy(smooth).permute(2, 0, 1)[None].double() / 127.5 - 1.0, spec)[0].permute(1, 2, 0)
    assert np.abs(ours.numpy() - pillow).max() <= 2.0 / 255.0


def test_grayscale_is_repeated_to_rgb_and_normalised():
    spec = Preprocessing(size=None, channels=3, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    gray = torch.full((1, 1, 4, 4), 0.5)  # [-1, 1] -> 0.75 in [0, 1]
    out = preprocess(gray, spec)
    assert out.shape == (1, 3, 4, 4)
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([(0.75 - 0.5) / 0.5, (0.75 - 0.25) / 0.25, 0.75]))


def test_bad_image_shapes_are_user_errors():
    spec = Preprocessing(size=8, channels=3)
    with pytest.raises(MatchzooError, match=r"\(N, C, H, W\)"):
        preprocess(torch.zeros(3, 8, 8), spec)
    with pytest.raises(MatchzooError, match="2-channel"):
        preprocess(torch.zeros(1, 2, 8, 8), spec)


def test_resizers_are_differentiable():
    x = torch.rand(1, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    for resize in (tf1_bilinear_resize, pil_bicubic_resize):
        assert torch.autograd.gradcheck(lambda t: resize(t, 4, 9), (x,))
