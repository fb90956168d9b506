"""Reference-feature cache: float64 statistics vs NumPy, reuse, fingerprint keys, corruption, the stats CLI."""

import warnings

import numpy as np
import pytest
import torch

import matchzoo
from matchzoo.__main__ import main as cli_main
from matchzoo.data import cache
from matchzoo.data.cache import CacheRebuildWarning, cache_path, reference_features, reference_stats
from matchzoo.data.features import extract_features


@pytest.fixture
def digits():
    return matchzoo.make_dataset("digits")


@pytest.fixture
def counting(monkeypatch):
    """Counts feature extractions (the expensive step the cache exists to avoid)."""
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[0].name)
        return extract_features(*args, **kwargs)

    monkeypatch.setattr(cache, "extract_features", counted)
    return calls


def test_stats_are_float64_mean_and_unbiased_covariance(tmp_path, digits):
    space = matchzoo.make_feature_space("pixels")
    mean, cov = reference_stats(space, digits, "heldout", cache_dir=tmp_path, progress=False)
    features = reference_features(space, digits, "heldout", cache_dir=tmp_path, progress=False)
    assert mean.dtype == cov.dtype == torch.float64 and features.dtype == torch.float32
    reference = digits.split("heldout").images.flatten(1).double().numpy()  # pixels space = flattened images
    np.testing.assert_allclose(features.double().numpy(), reference, atol=1e-6)
    np.testing.assert_allclose(mean.numpy(), reference.mean(0), atol=1e-6)
    np.testing.assert_allclose(cov.numpy(), np.cov(reference, rowvar=False, ddof=1), atol=1e-6)


def test_second_call_reuses_the_file(tmp_path, digits, counting):
    space = matchzoo.make_feature_space("digits_ssl")
    first = reference_features(space, digits, "train", cache_dir=tmp_path, progress=False)
    second = reference_features(
        matchzoo.make_feature_space("digits_ssl"), digits, "train", cache_dir=tmp_path, progress=False
    )
    assert counting == ["digits_ssl"] and torch.equal(first, second)
    assert first.shape == (len(digits.split("train")), 64)
    assert not list(tmp_path.glob("*.tmp"))  # atomic write left no temporary file


def test_key_changes_with_space_weights_preprocessing_dataset_and_split(tmp_path, digits):
    base = cache_path(matchzoo.make_feature_space("random_conv", seed=0), digits, "train", tmp_path)
    assert base != cache_path(matchzoo.make_feature_space("random_conv", seed=1), digits, "train", tmp_path)
    assert base != cache_path(matchzoo.make_feature_space("random_conv", size=12), digits, "train", tmp_path)
    assert base != cache_path(
        matchzoo.make_feature_space("random_conv"), matchzoo.make_dataset("digits", split_seed=1), "train", tmp_path
    )
    assert base != cache_path(matchzoo.make_feature_space("random_conv"), digits, "heldout", tmp_path)
    assert base == cache_path(matchzoo.make_feature_space("random_conv", seed=0), digits, "train", tmp_path)


def test_environment_variable_sets_the_default_directory(tmp_path, digits, monkeypatch):
    monkeypatch.setenv("MATCHZOO_CACHE_DIR", str(tmp_path / "elsewhere"))
    reference_stats(matchzoo.make_feature_space("pixels"), digits, "heldout", progress=False)
    assert len(list((tmp_path / "elsewhere").glob("digits-heldout-pixels-*.pt"))) == 1


def _corrupt_truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _corrupt_flip_feature(path):
    record = torch.load(path, weights_only=True)
    record["features"][0, 0] += 1.0  # checksum no longer matches
    torch.save(record, path)


def _mismatch_fingerprint(path):
    record = torch.load(path, weights_only=True)
    record["space_fingerprint"] = "0" * 16  # e.g. a file copied from another space
    torch.save(record, path)


@pytest.mark.parametrize(
    "damage,reason",
    [
        (_corrupt_truncate, "unreadable"),
        (_corrupt_flip_feature, "checksum"),
        (_mismatch_fingerprint, "space_fingerprint"),
    ],
)
def test_damaged_or_mismatched_file_is_rebuilt_with_a_warning(tmp_path, digits, counting, damage, reason):
    space = matchzoo.make_feature_space("pixels")
    good = reference_features(space, digits, "heldout", cache_dir=tmp_path, progress=False).clone()
    damage(cache_path(space, digits, "heldout", tmp_path))
    with pytest.warns(CacheRebuildWarning, match=reason):
        rebuilt = reference_features(space, digits, "heldout", cache_dir=tmp_path, progress=False)
    assert torch.equal(rebuilt, good) and counting == ["pixels", "pixels"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheRebuildWarning)  # the rebuilt file is valid again
        reference_features(space, digits, "heldout", cache_dir=tmp_path, progress=False)


def test_stats_command_builds_then_reuses(tmp_path, capsys):
    argv = [
        "stats",
        "--dataset",
        "digits",
        "--spaces",
        "pixels,digits_classifier",
        "--splits",
        "heldout",
        "--cache_dir",
        str(tmp_path),
        "--no_progress",
    ]
    assert cli_main(argv) == 0
    first = capsys.readouterr().out.splitlines()
    assert len(first) == 2 and all("built" in line for line in first)
    assert "dim=64" in first[0] and "dim=64" in first[1]
    assert cli_main(argv) == 0
    assert all("reused" in line for line in capsys.readouterr().out.splitlines())
    assert len(list(tmp_path.glob("digits-heldout-*.pt"))) == 2


def test_stats_command_user_errors_exit_2(tmp_path, capsys):
    assert cli_main(["stats", "--dataset", "digitz", "--spaces", "pixels", "--cache_dir", str(tmp_path)]) == 2
    assert "did you mean 'digits'" in capsys.readouterr().err
    assert cli_main(["stats", "--dataset", "digits", "--spaces", "pixel", "--cache_dir", str(tmp_path)]) == 2
    assert "unknown feature space 'pixel'" in capsys.readouterr().err
    assert (
        cli_main(
            [
                "stats",
                "--dataset",
                "digits",
                "--spaces",
                "pixels",
                "--space_param",
                "pixel.size=4",
                "--cache_dir",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert (
        cli_main(
            ["stats", "--dataset", "digits", "--spaces", "pixels", "--splits", "test", "--cache_dir", str(tmp_path)]
        )
        == 2
    )


def test_stats_command_space_param_reaches_the_constructor(tmp_path, capsys):
    argv = [
        "stats",
        "--dataset",
        "digits",
        "--spaces",
        "pixels",
        "--space_param",
        "pixels.size=4",
        "--splits",
        "heldout",
        "--cache_dir",
        str(tmp_path),
        "--no_progress",
    ]
    assert cli_main(argv) == 0
    assert "dim=16" in capsys.readouterr().out
