"""Class labels through the data and the generator contract: datasets' labels aligned with their split items,
label sampling, classifier-free guidance against a hand computation, and every label bad input as one line."""

from __future__ import annotations

import contextlib
import re

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

import matchzoo
from matchzoo.data.datasets import SPLITS
from matchzoo.errors import MatchzooError
from matchzoo.generators.base import check_labels
from matchzoo.generators.mlp import MLPGenerator

# The describe() keys datasets had before labels existed: an unlabelled dataset keeps exactly these, so its
# fingerprint (and every cache keyed by it) is unchanged.
UNLABELLED_FOLDER_KEYS = {"source", "files", "listing", "size", "channels", "heldout_fraction", "split_seed"}
UNLABELLED_NPZ_KEYS = {"source", "key", "heldout_fraction", "split_seed", "content"}


@contextlib.contextmanager
def one_line_error(match: str):
    """A MatchzooError whose first line (the line the CLI prints; gin appends its call site below) says ``match``."""
    with pytest.raises(MatchzooError) as info:
        yield info
    first = str(info.value).splitlines()[0]
    assert re.search(match, first), first


# --------------------------------------------------------------------------- datasets


def test_digits_labels_match_sklearn_item_by_item():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    dataset = matchzoo.make_dataset("digits")
    assert dataset.num_classes == 10 and dataset.class_names == [str(d) for d in range(10)]
    for split in SPLITS:
        indices = dataset.split_indices(split).numpy()
        items = dataset.split(split)
        images = torch.stack([items[i] for i in range(len(items))])
        expected_images = torch.from_numpy(bunch.images[indices].astype(np.float32) / 8.0 - 1.0).unsqueeze(1)
        assert torch.equal(images, expected_images)  # the split's items are sklearn's images at these indices
        labels = dataset.labels(split)
        assert labels.dtype == torch.long and labels.shape == (len(items),)
        assert np.array_equal(labels.numpy(), bunch.target[indices])
        counts = np.bincount(bunch.target[indices], minlength=10)
        frequencies = dataset.label_frequencies(split)
        assert frequencies.dtype == torch.float64
        np.testing.assert_allclose(frequencies.numpy(), counts / counts.sum(), rtol=0, atol=1e-15)


def _solid(path, value: int) -> None:
    Image.fromarray(np.full((6, 5), value, dtype=np.uint8)).save(path)


def _class_tree(root, layout: dict[str, int]) -> dict[str, int]:
    """``layout``: relative folder -> number of files; the grey value of every file encodes its top folder."""
    values = {}
    for folder, count in layout.items():
        top = folder.split("/")[0]
        values.setdefault(top, 40 * (len(values) + 1))
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            _solid(root / folder / f"{i}.png", values[top])
    return values


def test_image_folder_classes_are_the_sorted_sub_folders_and_align_with_items(tmp_path):
    values = _class_tree(tmp_path, {"dog": 3, "cat": 2, "ant/deep/er": 2, "bee": 1})
    dataset = matchzoo.make_dataset("image_folder", root=str(tmp_path), size=4, channels=1, heldout_fraction=0.25)
    assert dataset.class_names == ["ant", "bee", "cat", "dog"] and dataset.num_classes == 4
    value_to_class = {values[name]: index for index, name in enumerate(sorted(values))}
    total = 0
    for split in SPLITS:
        items, labels = dataset.split(split), dataset.labels(split)
        assert labels.dtype == torch.long and labels.shape == (len(items),)
        for i in range(len(items)):
            grey = round((float(items[i].mean()) + 1.0) * 127.5)
            assert labels[i] == value_to_class[grey]
        total += len(items)
    assert total == 8
    all_labels = torch.cat([dataset.labels(s) for s in SPLITS])
    assert torch.bincount(all_labels).tolist() == [2, 1, 2, 3]
    unlabelled = matchzoo.make_dataset(
        "image_folder", root=str(tmp_path), size=4, channels=1, heldout_fraction=0.25, labels=False
    )
    assert unlabelled.num_classes == 0 and unlabelled.class_names is None and unlabelled.labels("train") is None
    assert set(unlabelled.describe()) == UNLABELLED_FOLDER_KEYS
    assert unlabelled.fingerprint != dataset.fingerprint
    assert set(dataset.describe()) - UNLABELLED_FOLDER_KEYS == {"labels", "classes", "class_names"}


def test_flat_image_folder_is_unlabelled_with_its_old_fingerprint(tmp_path):
    for i in range(3):
        _solid(tmp_path / f"{i}.png", 10 * i)
    dataset = matchzoo.make_dataset("image_folder", root=str(tmp_path), size=4)
    assert dataset.num_classes == 0 and dataset.labels("heldout") is None
    assert set(dataset.describe()) == UNLABELLED_FOLDER_KEYS
    with one_line_error("has no labels"):
        dataset.label_frequencies("train")


def test_image_folder_label_bad_inputs_are_one_line(tmp_path):
    _class_tree(tmp_path, {"a": 2, "b": 2})
    _solid(tmp_path / "loose1.png", 1)
    _solid(tmp_path / "loose2.png", 2)
    with one_line_error(r"2 PNG/JPEG file\(s\) lie directly under the root beside 2 class sub-folder.*labels = False"):
        matchzoo.make_dataset("image_folder", root=str(tmp_path), size=4)
    ignored = matchzoo.make_dataset("image_folder", root=str(tmp_path), size=4, labels=False)
    assert ignored.num_classes == 0 and len(ignored.files) == 6
    (tmp_path / "loose1.png").unlink()
    (tmp_path / "loose2.png").unlink()
    (tmp_path / "empty").mkdir()
    with one_line_error(r"1 class sub-folder\(s\) hold no PNG/JPEG files \(empty\)"):
        matchzoo.make_dataset("image_folder", root=str(tmp_path), size=4)
    with one_line_error("image_folder.labels must be True or False"):
        matchzoo.make_dataset("image_folder", root=str(tmp_path), size=4, labels=1)


def _npz(tmp_path, labels=None, name="x.npz", count=12, **extra):
    images = np.repeat(np.arange(count, dtype=np.uint8)[:, None, None, None] * 20, 16, axis=2).reshape(count, 1, 4, 4)
    arrays = {"images": images, **extra}
    if labels is not None:
        arrays["labels"] = labels
    np.savez(tmp_path / name, **arrays)
    return str(tmp_path / name)


def test_npz_labels_align_with_items(tmp_path):
    targets = np.array([3, 0, 1, 1, 2, 0, 3, 3, 1, 0, 2, 2])
    path = _npz(tmp_path, targets)
    dataset = matchzoo.make_dataset("npz", path=path, heldout_fraction=0.25)
    assert dataset.num_classes == 4 and dataset.class_names == ["0", "1", "2", "3"]
    for split in SPLITS:
        items, labels = dataset.split(split), dataset.labels(split)
        for i in range(len(items)):
            original = round((float(items[i].mean()) + 1.0) * 127.5) // 20  # which stored image this item is
            assert labels[i] == targets[original]
    assert set(dataset.describe()) - UNLABELLED_NPZ_KEYS == {"labels_key", "labels"}
    unlabelled = matchzoo.make_dataset("npz", path=path, heldout_fraction=0.25, labels_key=None)
    assert unlabelled.num_classes == 0 and unlabelled.labels("train") is None
    assert set(unlabelled.describe()) == UNLABELLED_NPZ_KEYS and unlabelled.fingerprint != dataset.fingerprint
    plain = matchzoo.make_dataset("npz", path=_npz(tmp_path, name="plain.npz"))  # no labels array: unlabelled
    assert plain.num_classes == 0 and set(plain.describe()) == UNLABELLED_NPZ_KEYS
    other = _npz(tmp_path, name="y.npz", y=targets.astype(np.uint8))
    assert matchzoo.make_dataset("npz", path=other, labels_key="y").labels("train").dtype == torch.long


@pytest.mark.parametrize(
    "labels, words",
    [
        (np.zeros(12, dtype=np.float32), "has dtype float32"),
        (np.zeros(12, dtype=bool), "has dtype bool"),
        (np.zeros((12, 1), dtype=np.int64), r"has shape \(12, 1\), expected \(12,\)"),
        (np.zeros(11, dtype=np.int64), "holds 11 labels for 12 images"),
        (np.array([0] * 11 + [-1]), "holds the negative label -1"),
        (np.array([0] * 11 + [2**40]), "holds the label 1099511627776, more than 1,048,576 classes"),
    ],
)
def test_npz_label_bad_inputs_are_one_line(tmp_path, labels, words):
    with one_line_error(f"labels 'labels' {words}.*npz.labels_key = None"):
        matchzoo.make_dataset("npz", path=_npz(tmp_path, labels))


def test_npz_missing_named_labels_and_bad_key_are_one_line(tmp_path):
    path = _npz(tmp_path)
    with one_line_error(r"no labels array 'y' \(npz.labels_key\); it has images"):
        matchzoo.make_dataset("npz", path=path, labels_key="y")
    with one_line_error("npz.labels_key must be an array name"):
        matchzoo.make_dataset("npz", path=path, labels_key=3)


# --------------------------------------------------------------------------- generator contract


def test_sample_labels_follow_the_given_frequencies():
    generator = MLPGenerator(num_classes=4)
    frequencies = torch.tensor([1.0, 2.0, 3.0, 4.0])  # normalised inside
    labels = generator.sample_labels(20_000, generator=torch.Generator().manual_seed(0), frequencies=frequencies)
    assert labels.dtype == torch.long and labels.shape == (20_000,)
    counts = np.bincount(labels.numpy(), minlength=4)
    assert stats.chisquare(counts, 20_000 * np.array([0.1, 0.2, 0.3, 0.4])).pvalue > 1e-3
    uniform = generator.sample_labels(20_000, generator=torch.Generator().manual_seed(1))
    assert stats.chisquare(np.bincount(uniform.numpy(), minlength=4)).pvalue > 1e-3
    again = generator.sample_labels(20_000, generator=torch.Generator().manual_seed(0), frequencies=frequencies)
    assert torch.equal(labels, again)  # drawn from the given torch.Generator only
    zero_class = generator.sample_labels(2_000, generator=torch.Generator().manual_seed(2), frequencies=[1, 0, 1, 1])
    assert not (zero_class == 1).any()
    assert MLPGenerator().sample_labels(5) is None and MLPGenerator().balanced_labels(5) is None


@pytest.mark.parametrize(
    "frequencies, words",
    [([0.5, 0.5], r"shape \(4,\)"), ([1, -1, 1, 1], "non-negative"), ([0, 0, 0, 0], "not all zero")],
)
def test_bad_label_frequencies_are_one_line(frequencies, words):
    with one_line_error(words):
        MLPGenerator(num_classes=4).sample_labels(3, frequencies=frequencies)


def test_balanced_labels_counts_and_order():
    generator = MLPGenerator(num_classes=3)
    assert generator.balanced_labels(7).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert np.bincount(generator.balanced_labels(3_000).numpy()).tolist() == [1_000] * 3
    assert np.bincount(generator.balanced_labels(3_001).numpy()).tolist() == [1_001, 1_000, 1_000]


class GuidedMLP(MLPGenerator):
    """A conditional mlp trained (notionally) with label dropout: one extra embedding row is the null class."""

    def __init__(self, num_classes: int = 3):
        super().__init__(image_shape=(1, 2, 3), noise_dim=4, width=8, depth=1, num_classes=num_classes + 1)
        self.num_classes, self.null_label = num_classes, num_classes


def _by_hand(model: GuidedMLP, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    first, last = model.net[0], model.net[2]
    hidden = torch.cat([noise, model.embedding.weight[labels]], dim=1) @ first.weight.T + first.bias
    hidden = torch.where(hidden > 0, hidden, 0.2 * hidden)
    return torch.tanh(hidden @ last.weight.T + last.bias).reshape(-1, 1, 2, 3)


@pytest.mark.parametrize("scale", [0.0, 1.0, 2.5])
def test_classifier_free_guidance_matches_a_hand_computation(scale):
    torch.manual_seed(0)
    model = GuidedMLP()
    labels = torch.tensor([2, 0, 1, 1, 0])
    with torch.no_grad():
        sampled = model.sample(5, labels, generator=torch.Generator().manual_seed(7), cfg_scale=scale)
        noise = torch.randn(5, 4, generator=torch.Generator().manual_seed(7))
        cond, uncond = _by_hand(model, noise, labels), _by_hand(model, noise, torch.full((5,), 3))
    torch.testing.assert_close(sampled, uncond + scale * (cond - uncond), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(cond, uncond)  # the guidance term is not trivially zero


def test_sample_defaults_to_balanced_labels_and_is_reproducible():
    torch.manual_seed(0)
    model = MLPGenerator(**MLPGenerator.small_kwargs())
    with torch.no_grad():
        default = model.sample(6, generator=torch.Generator().manual_seed(3))
        explicit = model.sample(6, model.balanced_labels(6), generator=torch.Generator().manual_seed(3))
        shifted = model.sample(6, (model.balanced_labels(6) + 1) % 3, generator=torch.Generator().manual_seed(3))
    assert torch.equal(default, explicit)
    assert not torch.allclose(default, shifted)  # labels are honoured: same noise, other classes, other images


@pytest.mark.parametrize(
    "scale, words",
    [(2.0, "needs a generator trained with a null label"), (-1.0, "must be >= 0"), (float("nan"), "finite")],
)
def test_bad_cfg_scales_are_one_line(scale, words):
    with one_line_error(words):
        MLPGenerator(num_classes=3).sample(2, cfg_scale=scale)


@pytest.mark.parametrize(
    "labels, words",
    [
        (torch.tensor([0.0, 1.0]), "integer class indices .*torch.float32"),
        (torch.tensor([True, False]), "integer class indices .*torch.bool"),
        (torch.zeros(2, 1, dtype=torch.long), r"shape \(N,\), got \(2, 1\)"),
        (torch.tensor([0, -1]), r"label -1 is outside \[0, 3\)"),
        (torch.tensor([3, 0]), r"label 3 is outside \[0, 3\)"),
    ],
)
def test_bad_labels_are_one_line(labels, words):
    with one_line_error(words):
        check_labels(labels, 3, "g")
    with one_line_error(words):
        MLPGenerator(noise_dim=4, width=8, depth=1, num_classes=3)(torch.zeros(2, 4), labels)


def test_labels_and_unconditional_generators():
    unconditional = MLPGenerator(noise_dim=4, width=8, depth=1)
    with one_line_error("unconditional .* takes no labels"):
        unconditional(torch.zeros(2, 4), torch.tensor([0, 1]))
    with one_line_error("unconditional .* takes no labels"):
        unconditional.sample(2, labels=torch.tensor([0, 1]))
    with one_line_error(r"class-conditional \(3 classes\) and needs labels"):
        MLPGenerator(noise_dim=4, width=8, depth=1, num_classes=3)(torch.zeros(2, 4))
    assert torch.equal(check_labels(torch.tensor([0, 3]), 3, "g", null_label=3), torch.tensor([0, 3]))
    with one_line_error(r"label 4 is outside"):
        check_labels(torch.tensor([4, 3]), 3, "g", null_label=3)
    with one_line_error("given 3 labels"):
        MLPGenerator(noise_dim=4, width=8, depth=1, num_classes=3).sample(2, labels=torch.tensor([0, 1, 2]))


def test_unconditional_mlp_is_the_same_network_as_before_labels():
    """num_classes = 0: the same parameters in the same order from the same seed as the pre-labels mlp (built here
    by hand), so the offline numbers do not move; it is still called as generator(noise)."""
    torch.manual_seed(0)
    old = torch.nn.Sequential(
        torch.nn.Linear(32, 256),
        torch.nn.LeakyReLU(0.2),
        torch.nn.Linear(256, 256),
        torch.nn.LeakyReLU(0.2),
        torch.nn.Linear(256, 64),
    )
    rng_after_old = torch.get_rng_state()
    torch.manual_seed(0)
    new = MLPGenerator()
    assert torch.equal(torch.get_rng_state(), rng_after_old)  # building drew exactly the same random numbers
    assert new.num_classes == 0 and new.null_label is None and new.weights_module() is new
    old_state, new_state = old.state_dict(), new.state_dict()
    assert list(new_state) == [f"net.{key}" for key in old_state]
    assert all(torch.equal(old_state[key], new_state[f"net.{key}"]) for key in old_state)
    noise = torch.randn(3, 32)
    with torch.no_grad():
        assert torch.equal(new(noise), torch.tanh(old(noise)).view(3, 1, 8, 8))


# --------------------------------------------------------------------------- sampling a checkpoint


def _checkpoint(tmp_path, **kwargs) -> tuple[str, MLPGenerator]:
    from matchzoo.train.checkpoint import FORMAT

    torch.manual_seed(0)
    model = MLPGenerator(**kwargs).eval()
    spec = {"name": "mlp", "kwargs": {**kwargs, "image_shape": list(kwargs["image_shape"])}}
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": FORMAT, "generator_spec": spec, "generator_ema": model.state_dict()}, path)
    return str(path), model


def _nearest_class(model: MLPGenerator, noise: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        per_class = torch.stack([model(noise, torch.full((noise.shape[0],), c)) for c in range(model.num_classes)])
    return (per_class - images).flatten(2).abs().amax(2).argmin(0)  # (N,) the class whose image it is


def test_sampling_a_conditional_checkpoint_is_class_balanced_across_chunks(tmp_path):
    from matchzoo.probes.inputs import load_candidates

    path, model = _checkpoint(tmp_path, image_shape=(1, 4, 4), noise_dim=4, width=16, depth=1, num_classes=3)
    candidates = load_candidates(path, count=1003, seed=1)
    rng = torch.Generator().manual_seed(1)
    noise = torch.cat([torch.randn(1000, 4, generator=rng), torch.randn(3, 4, generator=rng)])  # chunks of 1000
    assert torch.equal(_nearest_class(model, noise, candidates), torch.arange(1003) % 3)


def test_sampling_an_unconditional_checkpoint_is_unchanged(tmp_path):
    from matchzoo.probes.inputs import load_candidates

    path, model = _checkpoint(tmp_path, image_shape=(1, 4, 4), noise_dim=4, width=16, depth=1)
    noise = torch.randn(5, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(load_candidates(path, count=5, seed=2), model(noise).clamp(-1, 1))
