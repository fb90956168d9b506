"""The digits encoders shipped inside the package: checksums, offline loading, metadata, corruption."""

import json
import shutil

import pytest
import torch

import matchzoo
from matchzoo.errors import MatchzooError, MissingWeightsError
from matchzoo.spaces import digits_encoders
from matchzoo.spaces.digits_encoders import WEIGHTS_DIR, file_sha256, shipped_metadata

SHIPPED = ["digits_classifier", "digits_ssl"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_match_their_recorded_checksum(name):
    record = shipped_metadata(name)
    path = WEIGHTS_DIR / record["file"]
    assert file_sha256(path) == record["sha256"]
    assert path.stat().st_size < 1_000_000  # "tiny": ships inside the wheel
    assert record["command"].startswith("python scripts/train_digits_encoders.py")
    assert isinstance(record["seed"], int)
    assert "train split" in record["data"]
    accuracy_key = "heldout_accuracy" if name == "digits_classifier" else "linear_probe_heldout_accuracy"
    assert 0.5 < record[accuracy_key] <= 1.0  # far above the 10-class chance level of 0.1


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_encoder_loads_offline_and_is_deterministic(name, monkeypatch):
    monkeypatch.setenv("MATCHZOO_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    space = matchzoo.make_feature_space(name)
    again = matchzoo.make_feature_space(name)
    images = torch.rand(5, 1, 8, 8) * 2 - 1
    features = space(images)
    assert features.shape == (5, 64) and space.dim == 64
    assert torch.equal(features, again(images))
    assert "sha256-checked" in space.weights_source
    assert space.fingerprint == again.fingerprint


def test_classifier_features_separate_digit_classes():
    """The supervised space is class-specialised: a nearest-class-mean rule on held-out digits is accurate."""
    dataset = matchzoo.make_dataset("digits")
    space = matchzoo.make_feature_space("digits_classifier")
    labels_train = dataset.labels("train")
    labels_test = dataset.labels("heldout")
    with torch.no_grad():
        train = space(dataset.images[dataset.split_indices("train")])
        test = space(dataset.images[dataset.split_indices("heldout")])
    centroids = torch.stack([train[labels_train == c].mean(0) for c in range(10)])  # (10, 64)
    predicted = torch.cdist(test, centroids).argmin(1)
    assert (predicted == labels_test).float().mean() > 0.9


def _copy_weights(tmp_path, monkeypatch):
    copy = tmp_path / "weights"
    shutil.copytree(WEIGHTS_DIR, copy)
    monkeypatch.setattr(digits_encoders, "WEIGHTS_DIR", copy)
    return copy


def test_corrupted_shipped_file_fails_with_checksum_error(tmp_path, monkeypatch):
    copy = _copy_weights(tmp_path, monkeypatch)
    path = copy / "digits_ssl.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(MatchzooError, match="checksum mismatch.*train_digits_encoders"):
        matchzoo.make_feature_space("digits_ssl")


def test_missing_shipped_file_is_a_missing_weights_error(tmp_path, monkeypatch):
    copy = _copy_weights(tmp_path, monkeypatch)
    (copy / "digits_classifier.pt").unlink()
    with pytest.raises(MissingWeightsError, match="digits_classifier.*missing"):
        matchzoo.make_feature_space("digits_classifier")


def test_explicit_weights_file_and_random_init(tmp_path):
    shipped = matchzoo.make_feature_space("digits_ssl")
    random_a = matchzoo.make_feature_space("digits_ssl", pretrained=False, seed=1)
    random_b = matchzoo.make_feature_space("digits_ssl", pretrained=False, seed=1)
    random_c = matchzoo.make_feature_space("digits_ssl", pretrained=False, seed=2)
    images = torch.rand(4, 1, 8, 8) * 2 - 1
    assert torch.equal(random_a(images), random_b(images))
    assert not torch.allclose(random_a(images), random_c(images))
    assert random_a.fingerprint != shipped.fingerprint != random_c.fingerprint
    path = tmp_path / "mine.pt"
    torch.save(random_a.net.state_dict(), path)
    loaded = matchzoo.make_feature_space("digits_ssl", weights=str(path))
    assert torch.equal(loaded(images), random_a(images))
    assert loaded.fingerprint == random_a.fingerprint  # same weights + preprocessing = same cache key
    with pytest.raises(MissingWeightsError, match="weights file not found"):
        matchzoo.make_feature_space("digits_ssl", weights=str(tmp_path / "absent.pt"))
    (tmp_path / "bad.pt").write_text("not a checkpoint")
    with pytest.raises(MatchzooError, match="cannot read weights file"):
        matchzoo.make_feature_space("digits_ssl", weights=str(tmp_path / "bad.pt"))


def test_metadata_record_is_valid_json_for_both_encoders():
    for name in SHIPPED:
        record = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
        assert record["name"] == name and record["dim"] == 64
