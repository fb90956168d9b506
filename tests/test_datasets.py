import numpy as np
import pytest
import torch
from PIL import Image

import matchzoo
from matchzoo.errors import MatchzooError


def test_digits_real_data_split_is_deterministic_and_disjoint():
    a, b = matchzoo.make_dataset("digits"), matchzoo.make_dataset("digits")
    train, heldout = a.split("train"), a.split("heldout")
    assert len(train) + len(heldout) == 1797
    assert torch.equal(a.split_indices("heldout"), b.split_indices("heldout"))
    assert not set(a.split_indices("train").tolist()) & set(a.split_indices("heldout").tolist())
    image = train[0]
    assert image.shape == (1, 8, 8) and image.min() >= -1 and image.max() <= 1
    assert a.fingerprint == b.fingerprint
    assert matchzoo.make_dataset("digits", split_seed=1).fingerprint != a.fingerprint


def test_npz_dataset_uint8_nhwc(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, size=(20, 6, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "x.npz", images=array)
    dataset = matchzoo.make_dataset("npz", path=str(tmp_path / "x.npz"))
    image = dataset.split("train")[0]
    assert image.shape == (3, 6, 6) and -1 <= image.min() and image.max() <= 1


def test_npz_errors_are_one_line(tmp_path):
    with pytest.raises(MatchzooError, match="npz file not found"):
        matchzoo.make_dataset("npz", path=str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "bad.npz", images=np.full((4, 1, 5, 5), 3.0, dtype=np.float32))
    with pytest.raises(MatchzooError, match=r"\[-1, 1\]"):
        matchzoo.make_dataset("npz", path=str(tmp_path / "bad.npz"))


def test_image_folder_resizes_and_crops(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    dataset = matchzoo.make_dataset("image_folder", root=str(tmp_path), size=16, heldout_fraction=0.2)
    assert len(dataset.split("train")) == 4 and len(dataset.split("heldout")) == 1
    assert dataset.split("train")[0].shape == (3, 16, 16)
    with pytest.raises(MatchzooError, match="image folder not found"):
        matchzoo.make_dataset("image_folder", root=str(tmp_path / "nope"))
