"""Pretrained backbones (timm, open_clip, FID Inception) without network: random init, local files, caches,
and the offline error path. Weight files are created by the tests themselves."""

import pytest
import torch

import matchzoo
from matchzoo.__main__ import main as cli_main
from matchzoo.errors import MissingWeightsError
from matchzoo.spaces.base import preprocess
from matchzoo.spaces.clip_spaces import OpenClipSpace
from matchzoo.spaces.inception import FID_WEIGHTS_FILE, FIDInception, build_fid_inception
from matchzoo.spaces.timm_spaces import TimmSpace

PRETRAINED = [
    name for name, cls in matchzoo.FEATURE_SPACES.items() if issubclass(cls, (TimmSpace, OpenClipSpace, FIDInception))
]


@pytest.fixture
def no_weights_anywhere(tmp_path, monkeypatch):
    """Empty HF and torch hub caches, downloads forbidden."""
    import huggingface_hub.constants

    monkeypatch.setenv("MATCHZOO_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


def test_the_issue_lists_every_pretrained_space():
    assert set(PRETRAINED) == {
        "inception",
        "inception_logits",
        "inception_sfid",
        "dinov2_vits14",
        "dinov2_vitb14",
        "dinov2_vitl14",
        "clip_vitb32",
        "clip_vitl14",
        "siglip",
        "mae_vitl16",
        "convnextv2_base",
    }


# One backbone per family runs in the fast suite; ViT-B/L-size backbones (10-50 s each on a shared CPU core)
# carry the ``slow`` mark: `pytest -m "not slow"` skips them, CI runs them.
FAST = {"inception", "dinov2_vits14", "clip_vitb32"}
PRETRAINED_MARKED = [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in PRETRAINED]


@pytest.mark.parametrize("name", PRETRAINED_MARKED)
def test_random_init_space_is_frozen_differentiable_and_has_its_dim(name, no_weights_anywhere):
    space = matchzoo.make_feature_space(name, pretrained=False)
    space.train()  # a parent calling .train() must not unfreeze or switch modes
    assert not space.training and not any(p.requires_grad for p in space.parameters())
    assert space.dim == type(space).dim == type(space).catalog()["dim"]
    images = (torch.rand(1, 1, 12, 12) * 2 - 1).requires_grad_(True)  # grayscale, tiny: resized by the space
    features = space(images)
    assert features.shape == (1, space.dim) and torch.isfinite(features).all()
    # a random projection (the plain sum of a LayerNorm output has zero gradient by construction)
    projection = torch.randn(space.dim, generator=torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad(features[0] @ projection, images)
    assert grad.abs().sum() > 0
    assert "random init" in space.weights_source


@pytest.mark.parametrize("name", PRETRAINED)
def test_missing_weights_offline_is_one_line_naming_model_caches_and_fix(name, no_weights_anywhere):
    with pytest.raises(MissingWeightsError) as info:
        matchzoo.make_feature_space(name)
    message = str(info.value).splitlines()[0]  # gin appends "In call to configurable ..." on a second line
    assert "MATCHZOO_OFFLINE=1" in message and "weights=" in message and "pretrained=False" in message
    assert name in message or "inception" in message
    location = matchzoo.FEATURE_SPACES.get(name).weights_location()
    for candidate in location.candidates():
        assert candidate in message


def test_missing_weights_exits_2_with_one_line_from_the_cli(no_weights_anywhere, capsys):
    code = cli_main(
        ["stats", "--dataset", "digits", "--spaces", "dinov2_vitl14", "--cache_dir", str(no_weights_anywhere)]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "vit_large_patch14_dinov2" in err


def test_explicit_missing_file_is_reported(no_weights_anywhere):
    with pytest.raises(MissingWeightsError, match="weights file not found"):
        matchzoo.make_feature_space("dinov2_vits14", weights=str(no_weights_anywhere / "nope.safetensors"))


def images_and_projection(n=2, size=20):
    generator = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, size, size, generator=generator) * 2 - 1


def test_timm_state_dict_through_weights_reproduces_the_model(no_weights_anywhere):
    import timm

    torch.manual_seed(5)
    model = timm.create_model(
        "vit_small_patch14_dinov2.lvd142m", pretrained=False, num_classes=0, img_size=224, global_pool="token"
    ).eval()
    path = no_weights_anywhere / "dino_s.pth"
    torch.save(model.state_dict(), path)
    space = matchzoo.make_feature_space("dinov2_vits14", weights=str(path))
    images = images_and_projection()
    with torch.no_grad():
        expected = model(preprocess(images, space.preprocessing))
        torch.testing.assert_close(space(images), expected, rtol=1e-5, atol=1e-5)
    other = matchzoo.make_feature_space("dinov2_vits14", pretrained=False)
    assert space.fingerprint != other.fingerprint  # weights changed -> fingerprint changed
    assert space.weights_source == f"file {path}"


def test_timm_weights_found_in_the_hugging_face_cache(no_weights_anywhere):
    """A file laid out as huggingface_hub caches it is used without network (and without weights=)."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(6)
    model = timm.create_model("vit_small_patch14_dinov2.lvd142m", pretrained=False, num_classes=0, img_size=224).eval()
    repo = no_weights_anywhere / "hf" / "models--timm--vit_small_patch14_dinov2.lvd142m"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(snapshot / "model.safetensors"))
    space = matchzoo.make_feature_space("dinov2_vits14")
    assert space.weights_source.startswith("cache ") and "model.safetensors" in space.weights_source
    images = images_and_projection(n=1)
    with torch.no_grad():
        torch.testing.assert_close(space(images), model(preprocess(images, space.preprocessing)), rtol=1e-5, atol=1e-5)


def test_open_clip_state_dict_through_weights_reproduces_encode_image(no_weights_anywhere):
    import open_clip

    torch.manual_seed(7)
    model = open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True).eval()
    path = no_weights_anywhere / "clip_b32.pt"
    torch.save(model.state_dict(), path)
    space = matchzoo.make_feature_space("clip_vitb32", weights=str(path))
    images = images_and_projection()
    with torch.no_grad():
        expected = model.encode_image(preprocess(images, space.preprocessing))
        torch.testing.assert_close(space(images), expected, rtol=1e-5, atol=1e-5)


def test_fid_inception_loads_from_the_torch_hub_cache(no_weights_anywhere):
    checkpoints = no_weights_anywhere / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    reference = build_fid_inception(seed=11).eval()
    torch.save(reference.state_dict(), checkpoints / FID_WEIGHTS_FILE)
    space = matchzoo.make_feature_space("inception")
    assert str(checkpoints / FID_WEIGHTS_FILE) in space.weights_source
    images = images_and_projection(n=1)
    with torch.no_grad():
        x = preprocess(images, space.preprocessing)
        assert x.shape[-1] == 299
        pool3 = torch.nn.Sequential(
            *[
                getattr(reference, n)
                for n in (
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
            ]
        )
        torch.testing.assert_close(space(images), pool3(x).flatten(1), rtol=1e-5, atol=1e-5)
    random = matchzoo.make_feature_space("inception", pretrained=False)
    assert random.fingerprint != space.fingerprint


def test_gpu_path_flags_are_cpu_safe_and_inception_stays_float32():
    space = matchzoo.make_feature_space("inception", pretrained=False)
    assert space.use_bf16 is False  # the FID convention is float32
    fast = matchzoo.make_feature_space("dinov2_vits14", pretrained=False, bf16=True, channels_last=True)
    plain = matchzoo.make_feature_space("dinov2_vits14", pretrained=False, bf16=False, channels_last=False)
    images = images_and_projection(n=1)
    with torch.no_grad():
        torch.testing.assert_close(fast(images), plain(images))  # on CPU both run the float32 path
    assert fast.fingerprint != plain.fingerprint  # precision is part of the cache key


def test_failed_download_becomes_one_line_missing_weights_error(no_weights_anywhere, monkeypatch):
    """Downloads allowed but the network is down: the library's exception becomes a MissingWeightsError."""
    import timm

    monkeypatch.delenv("MATCHZOO_OFFLINE")

    def offline_create_model(name, pretrained=False, **kwargs):
        assert pretrained, "random init must not be attempted as a fallback"
        raise OSError("Temporary failure in name resolution\nsecond line")

    monkeypatch.setattr(timm, "create_model", offline_create_model)
    monkeypatch.setattr("matchzoo.spaces.resolve.download_blocked", lambda location: None)  # the host answers
    with pytest.raises(
        MissingWeightsError, match="could not download weights for vit_small_patch14_dinov2.*OSError"
    ) as info:
        matchzoo.make_feature_space("dinov2_vits14")
    assert "second line" not in str(info.value)
