"""Streaming evaluate inputs: .npz members read by rows (mapped or stream-decompressed), images converted per
batch, checkpoints sampled lazily and deterministically in the seed, image folders decoded in workers."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

import matchzoo
from matchzoo.data import load_npz_images
from matchzoo.data.features import extract_features
from matchzoo.data.npzfile import NpzArray
from matchzoo.errors import MatchzooError
from matchzoo.samples import SAMPLE_BLOCK, CheckpointSamples, NpzSamples, load_samples


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, size=(300, 8, 8, 3), dtype=np.uint8)  # NHWC, as ADM


@pytest.mark.parametrize("layout", ["savez", "savez_compressed", "fortran"])
def test_rows_read_from_any_member_equal_numpy(tmp_path, images, layout):
    path = tmp_path / "x.npz"
    if layout == "fortran":
        np.savez(path, images=np.asfortranarray(images))
    else:
        getattr(np, layout)(path, images=images)
    array = NpzArray(str(path), "images")
    assert array.compressed == (layout == "savez_compressed") and array.shape == images.shape
    for rows in ([0], [299], [5, 3, 3, 250, 0, 17], list(range(40, 90)), [10, 9, 8]):  # any order, repeats, backwards
        np.testing.assert_array_equal(array.take(rows), images[rows])
    np.testing.assert_array_equal(array.rows(100, 164), images[100:164])


def test_npz_samples_equal_the_whole_array_converted(tmp_path, images):
    """The oracle is today's whole-array loader (:func:`load_npz_images`); streaming changes only the memory."""
    np.savez(tmp_path / "u8.npz", arr_0=images)
    floats = images.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0
    np.savez_compressed(tmp_path / "f32.npz", images=floats)  # compressed NCHW float
    for name in ("u8.npz", "f32.npz"):
        samples = NpzSamples(str(tmp_path / name))
        whole = load_npz_images(str(tmp_path / name))
        streamed = torch.stack(samples.__getitems__(list(range(len(samples)))))
        assert torch.equal(streamed, whole), name
        features = extract_features(matchzoo.make_feature_space("pixels", channels=3), samples, 64, progress=False)
        assert torch.equal(features, whole.flatten(1))


def test_a_uint8_npz_is_never_read_or_converted_whole(tmp_path, monkeypatch):
    """numpy reports its allocations to tracemalloc: reading 2,000 images through extract_features must stay far
    below the array's float32 size (the whole-array path allocates all of it at once); the float conversion (torch,
    which tracemalloc does not see) is watched batch by batch."""
    array = np.random.default_rng(1).integers(0, 256, size=(2000, 3, 32, 32), dtype=np.uint8)
    np.savez(tmp_path / "big.npz", images=array)
    samples = NpzSamples(str(tmp_path / "big.npz"))
    converted = []
    convert = NpzSamples._convert
    monkeypatch.setattr(NpzSamples, "_convert", lambda self, rows: converted.append(len(rows)) or convert(self, rows))
    space = matchzoo.make_feature_space("pixels", size=4, channels=3)
    float_bytes = array.size * 4
    tracemalloc.start()
    try:
        extract_features(space, samples, batch_size=64, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < float_bytes / 10, (peak, float_bytes)
    assert max(converted) == 64 and sum(converted) == 2000
    tracemalloc.start()
    try:
        load_npz_images(str(tmp_path / "big.npz"))
        _, whole_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert whole_peak >= float_bytes  # the measurement sees the allocations it must see


def test_adm_labels_are_read_and_checked(tmp_path, images):
    np.savez(tmp_path / "adm.npz", arr_0=images, arr_1=np.arange(300) % 10)
    assert torch.equal(NpzSamples(str(tmp_path / "adm.npz")).labels, torch.arange(300) % 10)
    np.savez(tmp_path / "plain.npz", arr_0=images)
    assert NpzSamples(str(tmp_path / "plain.npz")).labels is None
    np.savez(tmp_path / "bad.npz", arr_0=images, arr_1=np.zeros(299, np.int64))
    with pytest.raises(MatchzooError, match=r"labels 'arr_1' must be integers of shape \(300,\)"):
        NpzSamples(str(tmp_path / "bad.npz"))


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((10, 64), np.float32), "expected images"),
        (np.full((10, 1, 8, 8), 3.0, np.float32), "must lie in [-1, 1]"),
        (np.full((10, 1, 8, 8), np.nan, np.float32), "NaN or infinite"),
        (np.zeros((10, 3, 8, 3), np.uint8), "ambiguous"),
        (np.zeros((0, 1, 8, 8), np.uint8), "holds 0 images"),
        (np.zeros((4, 1, 8, 8), np.complex64), "not supported"),
    ],
)
def test_bad_arrays_fail_in_one_line_before_any_work(tmp_path, array, message):
    np.savez_compressed(tmp_path / "bad.npz", images=array)
    with pytest.raises(MatchzooError) as error:
        NpzSamples(str(tmp_path / "bad.npz"))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_renamed_npy_is_named(tmp_path, images):
    np.save(tmp_path / "x.npy", images)
    (tmp_path / "x.npy").rename(tmp_path / "x.npz")
    with pytest.raises(MatchzooError, match=r"holds a single .npy array, not a .npz archive; save it with np.savez"):
        NpzSamples(str(tmp_path / "x.npz"))


def test_a_damaged_member_is_one_line(tmp_path, images):
    np.savez(tmp_path / "x.npz", images=images)
    data = (tmp_path / "x.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(MatchzooError, match="not a readable .npz file"):
        NpzSamples(str(tmp_path / "cut.npz"))


def test_subsampling_is_seeded_and_in_file_order(tmp_path, images):
    np.savez(tmp_path / "x.npz", images=images)
    digits = matchzoo.make_dataset("digits")
    first = load_samples(str(tmp_path / "x.npz"), digits, 50, seed=3, device="cpu")
    again = load_samples(str(tmp_path / "x.npz"), digits, 50, seed=3, device="cpu")
    other = load_samples(str(tmp_path / "x.npz"), digits, 50, seed=4, device="cpu")
    assert isinstance(first, Subset) and len(first) == 50
    assert first.indices == again.indices == sorted(first.indices) and first.indices != other.indices
    whole = load_npz_images(str(tmp_path / "x.npz"))
    assert torch.equal(torch.stack([first[i] for i in range(50)]), whole[first.indices])


def _generator(num_classes=0):
    torch.manual_seed(0)
    return matchzoo.make_generator("mlp", image_shape=(1, 8, 8), noise_dim=8, width=32, num_classes=num_classes).eval()


@pytest.mark.parametrize("num_classes, labels", [(0, "balanced"), (3, "balanced"), (3, "uniform")])
def test_checkpoint_samples_depend_on_the_seed_not_on_the_chunking(num_classes, labels):
    generator = _generator(num_classes)
    count = 2 * SAMPLE_BLOCK + 37
    whole, whole_labels = CheckpointSamples(generator, count, seed=5, labels=labels).chunk(0, count)
    for step in (7, 100, SAMPLE_BLOCK, 1000):
        samples = CheckpointSamples(generator, count, seed=5, labels=labels)
        parts = [samples.chunk(start, min(start + step, count)) for start in range(0, count, step)]
        assert torch.equal(torch.cat([images for images, _ in parts]), whole), step
        if num_classes:
            assert torch.equal(torch.cat([chunk for _, chunk in parts]), whole_labels)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(0))
    assert torch.equal(CheckpointSamples(generator, count, seed=5, labels=labels).images(order.tolist()), whole[order])
    assert not torch.equal(CheckpointSamples(generator, count, seed=6, labels=labels).images(range(count)), whole)
    if num_classes and labels == "balanced":
        assert torch.equal(whole_labels, torch.arange(count) % num_classes)
    if num_classes and labels == "uniform":
        assert set(whole_labels.tolist()) == {0, 1, 2} and not torch.equal(whole_labels, torch.arange(count) % 3)


def test_checkpoint_samples_are_drawn_only_when_asked(monkeypatch):
    generator = _generator()
    calls = []
    original = generator.sample
    monkeypatch.setattr(generator, "sample", lambda n, **kw: calls.append(n) or original(n, **kw))
    samples = CheckpointSamples(generator, 50_000, seed=0)
    assert len(samples) == 50_000 and calls == []
    samples.images([3, 1000])
    assert calls == [SAMPLE_BLOCK, SAMPLE_BLOCK]  # two blocks of 256, not 50,000 images


def _write_folder(root, count=24, broken=False):
    from PIL import Image

    rng = np.random.default_rng(2)
    root.mkdir()
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8)).save(root / f"{index:03d}.png")
    if broken:
        (root / "zzz.png").write_bytes(b"not a png")
    return root


def test_folder_workers_give_the_same_features(tmp_path):
    digits = matchzoo.make_dataset("digits")
    samples = load_samples(str(_write_folder(tmp_path / "folder")), digits, None, seed=0, device="cpu")
    space = matchzoo.make_feature_space("random_conv")
    single = extract_features(space, samples, batch_size=5, progress=False)
    parallel = extract_features(space, samples, batch_size=5, progress=False, workers=2)
    assert single.shape == (24, space.dim) and torch.equal(single, parallel)


def test_an_unreadable_image_in_a_worker_is_still_one_line(tmp_path):
    digits = matchzoo.make_dataset("digits")
    samples = load_samples(str(_write_folder(tmp_path / "folder", 6, broken=True)), digits, None, 0, "cpu")
    with pytest.raises(MatchzooError) as error:
        extract_features(matchzoo.make_feature_space("pixels"), samples, batch_size=2, progress=False, workers=2)
    assert str(error.value).startswith("cannot read image") and "zzz.png" in str(error.value)
    assert "\n" not in str(error.value)
