"""Every registered generator, built tiny with ``cls(**cls.small_kwargs())``: a new generator is covered the moment
it is registered. Then the architecture-specific checks of ``conv`` and ``dit``.

A generator whose output is not an image (latents for a ``latent`` wrapper to decode) declares
``outputs_images = False``; only the [-1, 1] range check is skipped for it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import matchzoo.generators  # noqa: F401  (registers every generator)
from matchzoo.errors import MatchzooError
from matchzoo.generators.base import check_generator_output
from matchzoo.generators.conv import ConvGenerator
from matchzoo.generators.dit import DiTGenerator, sincos_positions
from matchzoo.registry import GENERATORS

NAMES = GENERATORS.names()
BATCH = 6


def headline(info) -> str:
    """What the CLI prints: gin appends "In call to configurable ..." on further lines when it calls a class."""
    return str(info.value).splitlines()[0]


def build(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    cls = GENERATORS.get(name)
    return cls(**{**cls.small_kwargs(), **overrides})


def call(generator, noise, labels):
    """Unconditional generators may keep ``forward(self, noise)``."""
    return generator(noise) if labels is None else generator(noise, labels)


def inputs(generator, n: int = BATCH, seed: int = 1):
    rng = torch.Generator().manual_seed(seed)
    noise = generator.sample_noise(n, generator=rng)
    return noise, generator.sample_labels(n, generator=rng)


def perturb(generator, seed: int = 2, scale: float = 0.05) -> None:
    """Generic weights: zero-initialised layers (adaLN-Zero gates, conditional-norm projections) make the output
    independent of the label at initialisation by design; the wiring is checked at weights off that point."""
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in generator.parameters():
            param.add_(scale * torch.randn(param.shape, generator=rng))


def test_registry_has_the_architectures():
    assert {"mlp", "conv", "dit"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_output_shape_and_range(name):
    generator = build(name).eval()
    with torch.no_grad():
        images = generator.sample(BATCH, generator=torch.Generator().manual_seed(0))
    if getattr(generator, "outputs_images", True):
        check_generator_output(images, generator.image_shape, name)
    assert images.shape == (BATCH, *generator.image_shape) and torch.isfinite(images).all()
    assert images.std() > 1e-3  # not a collapsed (constant) output at initialisation


@pytest.mark.parametrize("name", NAMES)
def test_labels_are_honoured(name):
    generator = build(name).eval()
    noise, _ = inputs(generator)
    if not generator.num_classes:
        with pytest.raises(MatchzooError, match="unconditional"):
            generator(noise, torch.zeros(BATCH, dtype=torch.long))
        return
    perturb(generator)
    with torch.no_grad():
        outputs = [generator(noise, torch.full((BATCH,), k, dtype=torch.long)) for k in range(generator.num_classes)]
    for first in range(len(outputs)):
        for second in range(first + 1, len(outputs)):
            difference = (outputs[first] - outputs[second]).flatten(1).abs().amax(dim=1)
            assert (difference > 1e-4).all(), f"classes {first} and {second} give the same image"


@pytest.mark.parametrize("name", NAMES)
def test_bad_labels_are_one_line(name):
    generator = build(name).eval()
    noise, _ = inputs(generator)
    if not generator.num_classes:
        return
    k = generator.num_classes
    bad = {
        "outside": torch.full((BATCH,), k + 1, dtype=torch.long),
        "negative": torch.full((BATCH,), -1, dtype=torch.long),
        "float": torch.zeros(BATCH),
        "shape": torch.zeros(BATCH, 1, dtype=torch.long),
        "missing": None,
    }
    if generator.null_label is None:
        bad["null"] = torch.full((BATCH,), k, dtype=torch.long)
    for what, labels in bad.items():
        with pytest.raises(MatchzooError) as info:
            generator(noise, labels)
        assert "\n" not in str(info.value), what


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_generator_and_samples(name):
    first, second, other = build(name, seed=0).eval(), build(name, seed=0).eval(), build(name, seed=1).eval()
    with torch.no_grad():
        a, b, c = (g.sample(BATCH, generator=torch.Generator().manual_seed(5)) for g in (first, second, other))
        d = first.sample(BATCH, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, d)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    source, target = build(name, seed=0).eval(), build(name, seed=1).eval()
    perturb(source)
    target.load_state_dict(source.state_dict())
    noise, labels = inputs(source)
    with torch.no_grad():
        assert torch.equal(call(source, noise, labels), call(target, noise, labels))


@pytest.mark.parametrize("name", NAMES)
def test_classifier_free_guidance(name):
    generator = build(name).eval()
    perturb(generator)
    if generator.null_label is None:
        if generator.num_classes:
            with pytest.raises(MatchzooError, match="cfg_scale"):
                generator.sample(BATCH, cfg_scale=2.0)
        return
    labels = generator.balanced_labels(BATCH)
    null = torch.full_like(labels, generator.null_label)
    noise = generator.sample_noise(BATCH, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        cond, uncond = generator(noise, labels), generator(noise, null)
        guided = generator.sample(BATCH, labels, generator=torch.Generator().manual_seed(3), cfg_scale=2.5)
        unguided = generator.sample(BATCH, labels, generator=torch.Generator().manual_seed(3), cfg_scale=0.0)
    assert not torch.allclose(cond, uncond)
    torch.testing.assert_close(guided, uncond + 2.5 * (cond - uncond))
    torch.testing.assert_close(unguided, uncond)


def trainable(generator) -> list[tuple[str, torch.nn.Parameter]]:
    return [(name, p) for name, p in generator.named_parameters() if p.requires_grad]


def regression_loss(generator, noise, labels, target):
    return ((call(generator, noise, labels) - target) ** 2).mean()


@pytest.mark.parametrize("name", NAMES)
def test_learns_from_its_initialisation_and_no_parameter_is_dead(name):
    """From the real initialisation (adaLN-Zero included): 15 Adam steps on a fixed regression target lower the
    loss, and afterwards every trainable parameter receives a non-zero gradient."""
    generator = build(name).train()
    noise, labels = inputs(generator, n=8)
    target = torch.rand((8, *generator.image_shape), generator=torch.Generator().manual_seed(4)) * 1.6 - 0.8
    optimizer = torch.optim.Adam([p for _, p in trainable(generator)], lr=3e-3)
    losses = []
    for _ in range(15):
        loss = regression_loss(generator, noise, labels, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.95 * losses[0], losses
    optimizer.zero_grad()
    regression_loss(generator, noise, labels, target).backward()
    dead = [n for n, p in trainable(generator) if p.grad is None or not p.grad.abs().max() > 0]
    assert not dead, f"parameters without gradient: {dead}"


@pytest.mark.parametrize("name", NAMES)
def test_wrong_noise_shape_is_refused(name):
    generator = build(name).eval()
    noise, labels = inputs(generator)
    expected = MatchzooError if name in ("conv", "dit") else (MatchzooError, RuntimeError)
    with pytest.raises(expected):
        call(generator, noise[..., :-1], labels)


# --------------------------------------------------------------------------- conv


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"image_shape": (3, 12, 12)}, "conv.image_shape"),
        ({"image_shape": (3, 512, 512)}, "conv.image_shape"),
        ({"image_shape": (3, 16, 32)}, "conv.image_shape"),
        ({"width": 0}, "conv.width"),
        ({"upsample": "bicubic"}, "conv.upsample"),
        ({"num_classes": 0, "label_dropout": 0.1}, "conv.label_dropout"),
        ({"num_classes": 3, "label_dropout": 1.0}, "conv.label_dropout"),
    ],
)
def test_conv_bad_kwargs_are_one_line(kwargs, expected):
    with pytest.raises(MatchzooError) as info:
        ConvGenerator(**{**ConvGenerator.small_kwargs(), **kwargs})
    assert expected in headline(info)


@pytest.mark.parametrize("size", [8, 64, 256])
def test_conv_sizes(size):
    generator = ConvGenerator(image_shape=(1, size, size), noise_dim=4, width=8, embed_dim=4).eval()
    with torch.no_grad():
        assert generator.sample(2).shape == (2, 1, size, size)


def test_conv_sample_does_not_depend_on_its_batch():
    """Group (not batch) normalisation: a sample is the same alone and inside a batch, in train mode too."""
    generator = build("conv").train()
    generator.classes.label_dropout = 0.0
    perturb(generator)
    noise, labels = inputs(generator)
    with torch.no_grad():
        torch.testing.assert_close(generator(noise[:1], labels[:1]), generator(noise, labels)[:1])


# --------------------------------------------------------------------------- dit


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"heads": 5}, "dit.heads"),
        ({"patch_size": 3}, "dit.patch_size"),
        ({"hidden": 30, "heads": 3}, "dit.hidden"),
        ({"preset": "Q/2"}, "dit.preset"),
        ({"preset": "B/3"}, "dit.preset"),
        ({"output": "sigmoid"}, "dit.output"),
        ({"depth": 0}, "dit.depth"),
        ({"checkpointing": "yes"}, "dit.checkpointing"),
    ],
)
def test_dit_bad_kwargs_are_one_line(kwargs, expected):
    with pytest.raises(MatchzooError) as info:
        DiTGenerator(**{**DiTGenerator.small_kwargs(), **kwargs})
    assert expected in headline(info)


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_stated_parameter_counts():
    """The numbers written in the docstrings and the README are the real ones."""
    with torch.device("meta"):  # shapes only: B/2 has 130 M parameters
        assert count(ConvGenerator()) == 1_859_587
        assert count(ConvGenerator(num_classes=1000)) == 1_987_587
        assert count(ConvGenerator(image_shape=(1, 8, 8))) == 1_661_569
        assert count(DiTGenerator()) == 16_293_168
        b2 = DiTGenerator(preset="B/2", image_shape=(4, 32, 32), num_classes=1000, output="none")
    assert (b2.depth, b2.hidden, b2.heads, b2.patch_size) == (12, 768, 12, 2)
    assert count(b2) == 129_515_536
    assert "1.86 M" in ConvGenerator.__doc__ and "16.3 M" in DiTGenerator.__doc__


def test_dit_preset_fills_only_what_is_not_given():
    with torch.device("meta"):
        generator = DiTGenerator(preset="S/4", depth=2)
    assert (generator.depth, generator.hidden, generator.heads, generator.patch_size) == (2, 384, 6, 4)


def test_sincos_positions_closed_form():
    """<e(p), e(q)> = sum_k cos((p_r - q_r) w_k) + sum_k cos((p_c - q_c) w_k): depends only on the offset."""
    dim, rows, cols = 32, 3, 5
    table = sincos_positions(dim, rows, cols).double().numpy()
    assert table.shape == (rows * cols, dim)
    frequencies = 1.0 / 10000 ** (np.arange(dim // 4) / (dim // 4))
    grid = [(r, c) for r in range(rows) for c in range(cols)]
    for i, (r1, c1) in enumerate(grid):
        for j, (r2, c2) in enumerate(grid):
            expected = np.cos((r1 - r2) * frequencies).sum() + np.cos((c1 - c2) * frequencies).sum()
            assert abs(table[i] @ table[j] - expected) < 1e-5


def test_dit_patches_land_where_they_came_from():
    """At initialisation every block is the identity (adaLN-Zero), so the output inside patch (i, j) depends on
    the noise inside patch (i, j) only: changing one noise patch must change exactly that output patch."""
    generator = DiTGenerator(image_shape=(2, 8, 12), num_classes=0, depth=1, hidden=16, heads=2, patch_size=4).eval()
    noise = torch.randn(1, 2, 8, 12, generator=torch.Generator().manual_seed(0))
    changed = noise.clone()
    changed[:, :, 4:8, 8:12] += 1.0  # patch (row 1, column 2)
    with torch.no_grad():
        moved = (generator(changed) - generator(noise)).abs().sum(dim=(0, 1))  # (8, 12)
    inside = torch.zeros(8, 12, dtype=torch.bool)
    inside[4:8, 8:12] = True
    assert (moved[inside] > 0).all() and (moved[~inside] == 0).all()


def test_dit_latent_output_is_unbounded():
    generator = DiTGenerator(**{**DiTGenerator.small_kwargs(), "output": "none"}).eval()
    assert generator.outputs_images is False and generator.noise_shape == generator.image_shape
    with torch.no_grad():
        generator.final.linear.weight.mul_(20)
        latents = generator.sample(BATCH)
    assert latents.abs().max() > 1.0


def test_dit_activation_checkpointing_gives_the_same_outputs_and_gradients():
    plain = build("dit", label_dropout=0.0).train()
    perturb(plain)
    checkpointed = build("dit", label_dropout=0.0, checkpointing=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    noise, labels = inputs(plain)
    outputs, grads = [], []
    for generator in (plain, checkpointed):
        images = generator(noise, labels)
        (images**2).mean().backward()
        outputs.append(images.detach())
        grads.append({n: p.grad.clone() for n, p in generator.named_parameters()})
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=1e-6)
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-7)


def test_label_dropout_trains_the_null_class_only_in_training():
    generator = build("dit", label_dropout=0.5).train()
    perturb(generator)
    noise, _ = inputs(generator, n=64)
    labels = torch.zeros(64, dtype=torch.long)
    null = torch.full_like(labels, generator.null_label)
    with torch.no_grad():
        torch.manual_seed(0)
        dropped = generator(noise, labels)
        generator.eval()
        cond, uncond = generator(noise, labels), generator(noise, null)
    as_null = (dropped - uncond).flatten(1).abs().amax(dim=1) < 1e-6
    as_cond = (dropped - cond).flatten(1).abs().amax(dim=1) < 1e-6
    assert (as_null ^ as_cond).all()
    assert 16 <= int(as_null.sum()) <= 48  # Binomial(64, 0.5): outside this range with probability < 1e-4
    assert math.isclose(generator.classes.label_dropout, 0.5)


# --------------------------------------------------------------------------- through the real trainer


@pytest.mark.parametrize("name", NAMES)
def test_two_training_steps_through_the_trainer(name, tmp_path):
    """Every registered generator, tiny, trains two steps on a tiny labelled dataset of its own image shape:
    fake labels drawn by the trainer, class-matched real batch (conditional ones), finite loss, weights moved."""
    import gin

    from matchzoo import config
    from matchzoo.run import build_settings
    from matchzoo.train.trainer import Trainer

    generator = build(name)
    channels, height, width = generator.image_shape
    classes = max(generator.num_classes, 1)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, channels, height, width), dtype=np.uint8)
    np.savez(tmp_path / "tiny.npz", images=images, labels=np.arange(40) % classes)
    config.parse(
        [],
        [
            "train.dataset = @npz()",
            f"npz.path = '{tmp_path / 'tiny.npz'}'",
            "npz.key = 'images'",
            "train.terms = [@term]",
            "term.space = @pixels()",
            f"pixels.size = {height}",
            f"pixels.channels = {1 if channels == 1 else 3}",
            "term.objective = @mmd()",
            f"train.class_matched_real = {generator.num_classes > 0}",
            "train.steps = 2",
            "train.batch_size = 8",
            "train.eval_spaces = []",
            "train.progress = False",
            "train.device = 'cpu'",
        ],
    )
    cls = GENERATORS.get(name)
    gin.bind_parameter("train.generator", lambda: cls(**cls.small_kwargs()))  # a factory, built after the seed
    trainer = Trainer(build_settings())
    trainer.prepare()
    before = [p.detach().clone() for p in trainer.generator.parameters() if p.requires_grad]
    losses = [trainer.train_step() for _ in range(2)]
    after = [p.detach() for p in trainer.generator.parameters() if p.requires_grad]
    assert all(math.isfinite(value) for logs in losses for value in logs.values()), losses
    assert any(not torch.equal(a, b) for a, b in zip(before, after))


@pytest.mark.slow
def test_sinkhorn_dino_config_runs_end_to_end_with_random_weights(isolated_runs):
    """gin/sinkhorn_dino.gin (class-conditional DiT/2 in SD-VAE latent space, Sinkhorn in DINOv2-B) with random
    DINOv2 and VAE weights and a narrow one-block DiT, on a small synthetic class-folder dataset: two CPU steps."""
    from PIL import Image

    from matchzoo.run import main

    root = isolated_runs / "classes"
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for index in range(4):
            pixels = rng.integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.png")
    params = [
        f"DATA_ROOT = '{root}'",
        "NUM_CLASSES = 2",
        "image_folder.heldout_fraction = 0.25",
        "dinov2_vitb14.pretrained = False",
        "latent.pretrained = False",
        "train.steps = 2",
        "train.batch_size = 2",
        "warmup_cosine.warmup_steps = 1",
        "train.eval_spaces = []",
        "train.eval_samples = 4",  # the evaluator still draws (and decodes) its samples at the start and the end
        "train.progress = False",
        "train.device = 'cpu'",
        "train.run_dir = 'runs/sinkhorn_dino'",
        "dit.depth = 1",  # B/2's width and depth cost minutes per CPU step; its shape is checked by parameter count
        "dit.hidden = 64",
        "dit.heads = 2",
    ]
    gin_file = str(Path(__file__).resolve().parents[1] / "gin" / "sinkhorn_dino.gin")
    assert main(["--gin", gin_file, *[f"--gin_param={p}" for p in params]]) == 0
    payload = torch.load(isolated_runs / "runs" / "sinkhorn_dino" / "checkpoint.pt", weights_only=True)
    assert payload["step"] == 2
