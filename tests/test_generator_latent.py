"""The ``latent`` generator (issue 13, item 3): an inner generator's SD-VAE latents decoded by a frozen diffusers
``AutoencoderKL`` decoder; its weights found like a feature space's (file, Hugging Face cache, download only when
allowed), and checkpoints that hold only the trained generator.

Oracles: diffusers' own ``AutoencoderKL.decode`` on ``latents / 0.18215``, built here from the same config and
weights; the weight files are written by the tests.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from matchzoo import stored_config
from matchzoo.errors import MatchzooError, MissingWeightsError
from matchzoo.generators import vae
from matchzoo.generators.base import check_generator_output
from matchzoo.generators.latent import LatentGenerator
from matchzoo.generators.mlp import MLPGenerator
from matchzoo.train import checkpoint

LATENT = (4, 4, 4)  # decoded to 3 x 32 x 32


def inner() -> MLPGenerator:
    return MLPGenerator(image_shape=LATENT, noise_dim=8, width=32, depth=1, num_classes=3)


def small(**kwargs) -> LatentGenerator:
    torch.manual_seed(0)
    return LatentGenerator(**{"inner": inner, "pretrained": False, **kwargs})


def headline(info) -> str:
    """What the CLI prints: gin appends "In call to configurable ..." on further lines when it calls a class."""
    return str(info.value).splitlines()[0]


def reference_vae(seed: int = 123):
    """A full (encoder + decoder) small AutoencoderKL built directly with diffusers: what a weight file holds."""
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(**vae.COMMON_CONFIG, **vae.ARCHITECTURES["small"]).eval()


def oracle_images(reference, latents: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return reference.decode(latents / 0.18215).sample.clamp(-1, 1)


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    return tmp_path / "hf" / "hub"


def test_small_decoder_shape_range_gradient_and_frozen():
    generator = small()
    noise, labels = generator.sample_noise(5, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 0, 1])
    images = generator(noise, labels)
    assert generator.image_shape == (3, 32, 32) and generator.noise_shape == (8,) and generator.num_classes == 3
    check_generator_output(images, generator.image_shape, "latent")
    assert images.dtype == torch.float32 and images.std() > 1e-3
    # the decode is diffusers' decode of latents / scaling_factor, clamped to [-1, 1]
    with torch.no_grad():
        latents = generator.inner(noise, labels)
        torch.testing.assert_close(images.detach(), generator.decoder.decode(latents / 0.18215).sample.clamp(-1, 1))
    images.square().mean().backward()
    inner_parameters = list(generator.inner.parameters())
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in inner_parameters)  # through the decoder
    decoder_parameters = list(generator.decoder.parameters())
    assert decoder_parameters and all(not p.requires_grad and p.grad is None for p in decoder_parameters)
    # the decoder is neither a parameter (optimiser, EMA) nor in the state dict (checkpoints)
    assert {id(p) for p in generator.parameters()} == {id(p) for p in inner_parameters}
    assert all(key.startswith("inner.") for key in generator.state_dict())
    assert generator.weights_module() is generator.inner
    generator.train()
    assert generator.training and not generator.decoder.training  # stays in eval mode


def test_decoder_follows_the_generator_and_its_copies():
    generator = small()
    generator.to(torch.float64)
    assert next(generator.decoder.parameters()).dtype == torch.float64  # .to() reaches the unregistered decoder
    generator.to(torch.float32)
    ema = copy.deepcopy(generator)  # what the trainer's EMA does
    assert ema.decoder is not generator.decoder
    noise = generator.sample_noise(3, generator=torch.Generator().manual_seed(0))
    labels = generator.balanced_labels(3)
    with torch.no_grad():
        torch.testing.assert_close(ema(noise, labels), generator(noise, labels))


def test_the_random_decoder_depends_on_its_own_seed_not_the_global_one():
    first, second = small(), small()
    torch.manual_seed(99)
    third = LatentGenerator(inner=inner, pretrained=False)
    for a, b in zip(first.decoder.state_dict().values(), third.decoder.state_dict().values()):
        assert torch.equal(a, b)
    assert not torch.equal(next(iter(small(seed=1).decoder.parameters())), next(iter(first.decoder.parameters())))
    assert torch.equal(first.inner.net[0].weight, second.inner.net[0].weight)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_from_a_file_the_test_writes(tmp_path, suffix):
    from safetensors.torch import save_file

    reference = reference_vae()
    path = tmp_path / f"diffusion_pytorch_model{suffix}"
    state = {key: value.contiguous() for key, value in reference.state_dict().items()}  # encoder keys included
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    generator = small(vae_weights=str(path), vae_architecture="small")
    assert str(path) in generator.weights_source
    latents = torch.randn(4, *LATENT, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(generator.decode(latents), oracle_images(reference, latents))
        assert not torch.allclose(small().decode(latents), generator.decode(latents))  # not the random decoder


def test_weight_file_mistakes_are_one_line(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "vae.safetensors"
    save_file({k: v.contiguous() for k, v in reference_vae().state_dict().items()}, str(path))
    cases = {
        "does not fit the SD-VAE decoder: missing": dict(vae_weights=str(path), vae_architecture="sd"),
        "weights file not found": dict(vae_weights=str(tmp_path / "absent.safetensors")),
        "vae_architecture must be one of": dict(vae_architecture="huge"),
    }
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    cases["cannot read"] = dict(vae_weights=str(tmp_path / "junk.safetensors"), vae_architecture="small")
    for expected, kwargs in cases.items():
        with pytest.raises(MatchzooError) as info:
            small(**kwargs)
        assert expected in headline(info), (expected, str(info.value))
    with pytest.raises(MatchzooError, match="emits 3 channels"):
        LatentGenerator(inner=lambda: MLPGenerator(image_shape=(3, 4, 4)), pretrained=False)
    with pytest.raises(MatchzooError, match="latent.inner is not set"):
        LatentGenerator(pretrained=False)


def test_offline_without_weights_names_where_it_looked(empty_caches, monkeypatch):
    monkeypatch.setenv("MATCHZOO_OFFLINE", "1")
    with pytest.raises(MissingWeightsError) as info:
        LatentGenerator(inner=inner)
    message = headline(info)
    assert message.startswith("no pretrained weights for 1 model and MATCHZOO_OFFLINE=1")
    assert "HF cache stabilityai/sd-vae-ft-ema/diffusion_pytorch_model.safetensors" in message
    assert "latent.vae_weights = '/path/to/file'" in message and "pretrained=False" in message


def test_weights_from_the_hugging_face_cache(empty_caches, monkeypatch):
    """The cache is probed without network, as huggingface_hub lays it out (refs/main -> snapshots/<commit>)."""
    from safetensors.torch import save_file

    monkeypatch.setenv("MATCHZOO_OFFLINE", "1")
    repo, commit = "tests/tiny-vae", "0" * 40
    folder = empty_caches / "models--tests--tiny-vae"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True)
    reference = reference_vae(seed=7)
    save_file(
        {k: v.contiguous() for k, v in reference.state_dict().items()},
        str(folder / "snapshots" / commit / vae.WEIGHT_FILES[0]),
    )
    generator = small(pretrained=True, vae_repo=repo, vae_architecture="small")
    latents = torch.randn(2, *LATENT, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(generator.decode(latents), oracle_images(reference, latents))
    assert "cache" in generator.weights_source


def test_the_runs_upfront_check_includes_the_vae(empty_caches, monkeypatch):
    from matchzoo.spaces.resolve import WeightsRequest, check_weights, configured_requests

    monkeypatch.setenv("MATCHZOO_OFFLINE", "1")
    bindings = {"latent.vae_repo": "tests/other-vae"}
    references = [("", "latent"), ("", "mlp"), ("", "inception")]
    requests = configured_requests(references, lambda binding, default: bindings.get(binding, default))
    assert [r.space for r in requests] == ["latent", "inception"]
    assert requests[0].setting == "latent.vae_weights = '/path/to/file'"
    assert requests[0].location.hf_files[0] == ("tests/other-vae", vae.WEIGHT_FILES[0])
    with pytest.raises(MissingWeightsError) as info:
        check_weights(requests)
    message = str(info.value)
    assert message.startswith("no pretrained weights for 2 models and MATCHZOO_OFFLINE=1") and "\n" not in message
    assert "latent VAE decoder (tests/other-vae): looked in: HF cache tests/other-vae/" in message
    assert "latent.vae_weights = '/path/to/file'" in message
    bindings = {"latent.pretrained": False}
    requests = configured_requests([("", "latent")], lambda binding, default: bindings.get(binding, default))
    assert requests == [WeightsRequest("latent", None, False)]
    assert check_weights(requests)["latent"].path is None


CONFIG = """
train.generator = @latent
latent.inner = @mlp
latent.pretrained = False
latent.seed = 3
mlp.image_shape = (4, 4, 4)
mlp.noise_dim = 8
mlp.width = 32
mlp.depth = 1
mlp.num_classes = 3
"""


def test_checkpoints_store_the_inner_spec_and_rebuild_the_decoder(tmp_path, monkeypatch):
    spec = stored_config.plain_generator_spec(CONFIG)
    assert spec == {
        "name": "latent",
        "kwargs": {"pretrained": False, "seed": 3},
        "generators": {
            "inner": {
                "name": "mlp",
                "kwargs": {"image_shape": (4, 4, 4), "noise_dim": 8, "width": 32, "depth": 1, "num_classes": 3},
            }
        },
    }
    torch.manual_seed(5)
    trained = stored_config.build_generator(spec, "test")
    assert isinstance(trained, LatentGenerator) and isinstance(trained.inner, MLPGenerator)
    payload = {"generator_spec": spec, "generator_ema": trained.state_dict(), "operative_config": CONFIG}
    checkpoint.save_atomic(payload, tmp_path / "new.pt")
    old_style = {"generator_ema": trained.state_dict(), "operative_config": CONFIG}  # no spec: from the bindings
    checkpoint.save_atomic(old_style, tmp_path / "old.pt")
    noise = trained.sample_noise(4, generator=torch.Generator().manual_seed(0))
    labels = trained.balanced_labels(4)
    with torch.no_grad():
        expected = trained(noise, labels)
        for name in ("new.pt", "old.pt"):
            torch.testing.assert_close(stored_config.load_generator(tmp_path / name)(noise, labels), expected)
    # the decoder is found again when the checkpoint is read: a missing weight file is one line
    spec_with_file = {
        **spec,
        "kwargs": {"vae_weights": str(tmp_path / "gone.safetensors"), "vae_architecture": "small"},
    }
    checkpoint.save_atomic({**payload, "generator_spec": spec_with_file}, tmp_path / "file.pt")
    with pytest.raises(MatchzooError, match="weights file not found: .*gone.safetensors"):
        stored_config.load_generator(tmp_path / "file.pt")


def test_nested_specs_refuse_what_flat_ones_refuse(tmp_path):
    base = {"name": "latent", "kwargs": {"pretrained": False}}
    cases = {
        "unknown generator 'getoutput'": {**base, "generators": {"inner": {"name": "getoutput", "kwargs": {}}}},
        "not plain": {**base, "generators": {"inner": {"name": "mlp", "kwargs": {"width": object()}}}},
        "'generators' is not": {**base, "generators": ["mlp"]},
    }
    for expected, spec in cases.items():
        with pytest.raises(MatchzooError, match=expected):
            stored_config.build_generator(spec, "test")
    looping = "train.generator = @latent\nlatent.inner = @latent\n"
    with pytest.raises(MatchzooError, match="nested more than"):
        stored_config.generator_spec(stored_config.config_entries(looping, "test"), "test")


def test_a_run_reports_missing_vae_weights_before_building_anything(empty_caches, monkeypatch):
    """Through the run's own parse step: the gin config's ``@latent`` is found and its VAE checked with the spaces."""
    from matchzoo.run import parse

    monkeypatch.setenv("MATCHZOO_OFFLINE", "1")
    params = ["train.generator = @latent", "latent.inner = @mlp", "latent.vae_repo = 'tests/absent-vae'"]
    with pytest.raises(MissingWeightsError) as info:
        parse([str(Path(__file__).resolve().parent.parent / "gin" / "quickstart.gin")], params)
    message = headline(info)
    assert "latent VAE decoder (tests/absent-vae)" in message and "latent.vae_weights = '/path/to/file'" in message
