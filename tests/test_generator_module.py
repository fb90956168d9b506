"""The ``module`` generator (issue 13, item 4): a user's ``nn.Module`` by import path or a TorchScript file, called
with a declared convention; and checkpoints naming one, which run no code the user has not named.

Oracles: the user's module called by hand with the inputs the convention promises.
"""

from __future__ import annotations

import copy
import sys
import textwrap

import pytest
import torch

from matchzoo import stored_config
from matchzoo.__main__ import main as cli_main
from matchzoo.errors import MatchzooError
from matchzoo.generators.module import ModuleGenerator
from matchzoo.train import checkpoint

# torch 2.14 marks TorchScript deprecated (FutureWarning) but still loads it; released generators ship in it
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")

USER_CODE = '''
import pathlib

import torch
from torch import nn

pathlib.Path(__file__).with_suffix(".imported").touch()  # proves the module was imported (trust tests)


class FlowMap(nn.Module):
    """A one-step flow map u(x, t, r, y) returning images in [0, 1]; it records what it was called with."""

    def __init__(self, width: int = 6, classes: int = 3):
        super().__init__()
        self.linear = nn.Linear(4, width * 0 + 4)
        self.embed = nn.Embedding(classes, 4)
        self.calls = []

    def forward(self, x, t, r, y):
        self.calls.append({"t": t, "r": r, "y": y})
        h = self.linear(x) + self.embed(y) + torch.as_tensor(t - r).reshape(-1, 1)  # (N,) tensors or numbers
        return torch.sigmoid(h).view(-1, 1, 2, 2)


class Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x):
        return torch.tanh(self.linear(x)).view(-1, 1, 2, 2)


class NotAModule:
    pass


def make_plain():
    return Plain()


def make_number():
    return 3


instance = Plain()
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module file only this test can import (unique name), on sys.path for the test's duration."""
    name = f"user_models_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_CODE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, tmp_path / f"{name}.imported"
    sys.modules.pop(name, None)


def flow_map(name: str, **overrides) -> ModuleGenerator:
    kwargs = dict(
        target=f"{name}:FlowMap",
        kwargs={"width": 6},
        noise_shape=(4,),
        image_shape=(1, 2, 2),
        num_classes=3,
        constants={"t": 1.0, "r": 0.0},
        output="zero_one",
    )
    torch.manual_seed(0)
    return ModuleGenerator(**{**kwargs, **overrides})


def headline(info) -> str:
    return str(info.value).splitlines()[0]


def test_import_target_with_constants_labels_and_zero_one_output(user_module):
    name, marker = user_module
    generator = flow_map(name)
    assert marker.exists() and generator.noise_shape == (4,) and generator.image_shape == (1, 2, 2)
    noise, labels = torch.randn(5, 4, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 2, 0])
    images = generator(noise, labels)
    call = generator.module.calls[-1]
    assert call["t"].shape == (5,) and call["t"].dtype == torch.float32 and torch.all(call["t"] == 1.0)
    assert torch.all(call["r"] == 0.0) and torch.equal(call["y"], labels)
    with torch.no_grad():
        by_hand = generator.module(noise, t=torch.ones(5), r=torch.zeros(5), y=labels)
    torch.testing.assert_close(images.detach(), 2 * by_hand - 1)  # zero_one -> [-1, 1]
    assert images.min() >= -1 and images.max() <= 1
    images.sum().backward()
    assert all(p.grad is not None for p in generator.module.parameters())  # its parameters are trained
    assert generator.weights_module() is generator.module  # init_from loads the user's own key names
    assert set(generator.weights_module().state_dict()) == {"linear.weight", "linear.bias", "embed.weight"}
    other = flow_map(name, output="minus_one_one")
    with torch.no_grad():
        torch.testing.assert_close(other(noise, labels), by_hand)


def test_constants_as_numbers_of_each_kind(user_module):
    name, _ = user_module
    generator = flow_map(name, constants={"t": 1, "r": 0.25})
    generator(torch.randn(2, 4), torch.tensor([0, 1]))
    call = generator.module.calls[-1]
    assert call["t"].dtype == torch.long and call["r"].dtype == torch.float32  # an int is a long tensor
    generator = flow_map(name, constants={"t": 1.0, "r": 0.5}, scalar_constants=True)
    generator(torch.randn(2, 4), torch.tensor([0, 1]))
    assert generator.module.calls[-1]["t"] == 1.0 and generator.module.calls[-1]["r"] == 0.5


def test_factories_and_unconditional_modules(user_module):
    name, _ = user_module
    generator = ModuleGenerator(target=f"{name}:make_plain", noise_shape=4, image_shape=(1, 2, 2))
    noise = torch.randn(3, 4)
    torch.testing.assert_close(generator(noise), generator.module(noise))
    with pytest.raises(MatchzooError, match="unconditional"):
        generator(noise, torch.zeros(3, dtype=torch.long))
    ema = copy.deepcopy(generator)
    torch.testing.assert_close(ema(noise), generator(noise))


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_file(user_module, tmp_path, how):
    import importlib

    name, _ = user_module
    user = importlib.import_module(name)
    torch.manual_seed(0)
    plain = user.Plain()
    scripted = torch.jit.script(plain) if how == "script" else torch.jit.trace(plain, torch.randn(2, 4))
    path = tmp_path / f"plain_{how}.pt"
    torch.jit.save(scripted, str(path))
    generator = ModuleGenerator(torchscript=str(path), noise_shape=(4,), image_shape=(1, 2, 2))
    noise = torch.randn(3, 4)
    with torch.no_grad():
        torch.testing.assert_close(generator(noise), plain(noise))
    generator(noise).square().sum().backward()
    assert all(p.grad is not None for p in generator.parameters())  # a TorchScript module can be post-trained
    ema = copy.deepcopy(generator)  # the trainer's EMA copies it
    with torch.no_grad():
        torch.testing.assert_close(ema(noise), generator(noise))


def test_latent_output_inside_latent():
    from matchzoo.generators.latent import LatentGenerator

    def inner():
        return ModuleGenerator(
            target="matchzoo.generators.mlp:MLPGenerator",
            kwargs={"image_shape": (4, 2, 2), "noise_dim": 8, "width": 16, "depth": 1},
            noise_shape=(8,),
            image_shape=(4, 2, 2),
            output="latent",
        )

    generator = LatentGenerator(inner=inner, pretrained=False)
    assert generator.image_shape == (3, 16, 16) and not generator.inner.outputs_images
    images = generator(generator.sample_noise(2))
    assert images.shape == (2, 3, 16, 16)


def test_bad_declarations_are_one_line(user_module, tmp_path):
    name, _ = user_module
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not torchscript")
    base = dict(noise_shape=(4,), image_shape=(1, 2, 2))
    cases = [
        (dict(target="no_colon"), "module.target must be 'package.module:Attribute'"),
        (dict(target="matchzoo_absent_package_xyz.sub:Thing"), "no module named 'matchzoo_absent_package_xyz'"),
        (dict(target=f"{name}:Missing"), "has no attribute 'Missing'"),
        (dict(target=f"{name}:NotAModule"), "not a torch.nn.Module subclass"),
        (dict(target=f"{name}:make_number"), "returned int, not a torch.nn.Module"),
        (dict(target=f"{name}:instance"), "name an nn.Module class or a function"),
        (dict(target=f"{name}:Plain", kwargs={"depth": 3}), "module.kwargs = {'depth': 3} do not fit"),
        (dict(torchscript=str(tmp_path / "absent.pt")), "module.torchscript file not found"),
        (dict(torchscript=str(junk)), "is not a TorchScript file"),
        (dict(), "give exactly one of module.target"),
        (dict(target=f"{name}:Plain", torchscript=str(junk)), "give exactly one of module.target"),
        (dict(target=f"{name}:Plain", noise_shape=None), "must be declared"),
        (dict(target=f"{name}:Plain", output="pixels"), "module.output"),
        (dict(target=f"{name}:Plain", constants={"t": [1.0]}), "module.constants['t']"),
        (dict(target=f"{name}:Plain", null_label=1), "module.null_label needs a class-conditional module"),
        (dict(target=f"{name}:FlowMap", num_classes=3, null_label=2), "is a real class"),
        (dict(target=f"{name}:FlowMap", num_classes=3, constants={"y": 1}), "the keyword that takes the labels"),
    ]
    for overrides, expected in cases:
        with pytest.raises(MatchzooError) as info:
            ModuleGenerator(**{**base, **overrides})
        assert expected in headline(info), (overrides, headline(info))
    wrong_shape = ModuleGenerator(target=f"{name}:Plain", noise_shape=(4,), image_shape=(1, 4, 1))
    with pytest.raises(MatchzooError, match=r"returned shape \(2, 1, 2, 2\) .* declares \(2, 1, 4, 1\)"):
        wrong_shape(torch.randn(2, 4))


# --------------------------------------------------------------------------- checkpoints run no untrusted code


def module_checkpoint(path, name: str, spec_in_payload: bool = True):
    """A checkpoint of a FlowMap generator, with its spec or (older checkpoints) only its stored bindings."""
    import importlib

    sys.modules.pop(name, None)
    spec_kwargs = {
        "target": f"{name}:FlowMap",
        "noise_shape": (4,),
        "image_shape": (1, 2, 2),
        "num_classes": 3,
        "constants": {"t": 1.0, "r": 0.0},
        "output": "zero_one",
    }
    torch.manual_seed(0)
    built = ModuleGenerator(**spec_kwargs)
    state = built.state_dict()
    marker = importlib.import_module(name).__file__.replace(".py", ".imported")
    sys.modules.pop(name, None)  # forget the import: the checkpoint must not bring it back
    import os

    os.remove(marker)
    config = (
        "train.generator = @module\n"
        f"module.target = '{name}:FlowMap'\n"
        "module.noise_shape = (4,)\nmodule.image_shape = (1, 2, 2)\nmodule.num_classes = 3\n"
        "module.constants = {'t': 1.0, 'r': 0.0}\nmodule.output = 'zero_one'\n"
    )
    payload = {"generator_ema": state, "operative_config": config}
    if spec_in_payload:
        payload["generator_spec"] = {"name": "module", "kwargs": spec_kwargs}
    checkpoint.save_atomic(payload, path)
    return built


@pytest.mark.parametrize("spec_in_payload", [True, False])
def test_a_module_checkpoint_is_refused_without_opt_in(user_module, tmp_path, monkeypatch, spec_in_payload):
    name, marker = user_module
    monkeypatch.delenv("MATCHZOO_TRUST_MODULES", raising=False)
    built = module_checkpoint(tmp_path / "gift.pt", name, spec_in_payload)
    with pytest.raises(MatchzooError) as info:
        stored_config.load_generator(tmp_path / "gift.pt")
    message = str(info.value)
    assert "\n" not in message and f"would import and run code from '{name}'" in message
    assert f"MATCHZOO_TRUST_MODULES={name}" in message
    assert not marker.exists() and name not in sys.modules  # never imported
    # trusting another module (or a sub-module of it) is not trusting this one
    monkeypatch.setenv("MATCHZOO_TRUST_MODULES", f"{name}_other,{name}.sub")
    with pytest.raises(MatchzooError, match="would import and run code"):
        stored_config.load_generator(tmp_path / "gift.pt")
    assert not marker.exists()
    monkeypatch.setenv("MATCHZOO_TRUST_MODULES", f"somewhere_else, {name}")
    loaded = stored_config.load_generator(tmp_path / "gift.pt")
    assert marker.exists()
    noise, labels = torch.randn(3, 4), torch.tensor([2, 1, 0])
    with torch.no_grad():
        torch.testing.assert_close(loaded(noise, labels), built(noise, labels))
    monkeypatch.delenv("MATCHZOO_TRUST_MODULES")
    assert isinstance(stored_config.load_generator(tmp_path / "gift.pt", trust_modules=[name]), ModuleGenerator)


def test_nested_module_and_torchscript_checkpoints_need_opt_in_too(user_module, tmp_path, monkeypatch):
    import importlib

    name, _ = user_module
    monkeypatch.delenv("MATCHZOO_TRUST_MODULES", raising=False)
    torch.manual_seed(0)
    path = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(importlib.import_module(name).Plain()), str(path))
    spec = {"name": "module", "kwargs": {"torchscript": str(path), "noise_shape": (4,), "image_shape": (1, 2, 2)}}
    built = stored_config.build_generator(spec, "test", trust_modules=[str(path)])
    checkpoint.save_atomic({"generator_spec": spec, "generator_ema": built.state_dict()}, tmp_path / "ts.pt")
    with pytest.raises(MatchzooError, match=f"code from '{path}'.*MATCHZOO_TRUST_MODULES={path}"):
        stored_config.load_generator(tmp_path / "ts.pt")
    monkeypatch.setenv("MATCHZOO_TRUST_MODULES", str(path))
    assert isinstance(stored_config.load_generator(tmp_path / "ts.pt"), ModuleGenerator)
    monkeypatch.delenv("MATCHZOO_TRUST_MODULES")
    inner = {"name": "module", "kwargs": {"target": f"{name}_nested:Thing", "noise_shape": 4, "image_shape": (4, 1, 1)}}
    nested = {"name": "latent", "kwargs": {"pretrained": False}, "generators": {"inner": inner}}
    with pytest.raises(MatchzooError, match=f"code from '{name}_nested'"):
        stored_config.build_generator(nested, "test")


def test_evaluate_refuses_a_module_checkpoint_in_one_line(user_module, tmp_path, monkeypatch, capsys):
    name, marker = user_module
    monkeypatch.delenv("MATCHZOO_TRUST_MODULES", raising=False)
    module_checkpoint(tmp_path / "gift.pt", name)
    code = cli_main(
        [
            "evaluate",
            "--samples",
            str(tmp_path / "gift.pt"),
            "--reference",
            "digits",
            "--spaces",
            "pixels",
            "--num_samples",
            "20",
            "--no_prdc",
            "--no_progress",
        ]
    )
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("matchzoo: error")]
    assert code == 2 and len(errors) == 1 and "MATCHZOO_TRUST_MODULES" in errors[0], errors
    assert not marker.exists()
