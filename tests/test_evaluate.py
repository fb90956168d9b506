"""End-to-end tests of ``python -m matchzoo evaluate`` on the bundled digits (offline spaces only)."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch

import matchzoo
from matchzoo.__main__ import main

SPACES = "pixels,random_conv"
FAST = ["--kid_subsets", "5", "--kid_subset_size", "200", "--no_progress"]


@pytest.fixture(scope="module")
def digits():
    return matchzoo.make_dataset("digits")


@pytest.fixture()
def cache(tmp_path_factory):
    return str(tmp_path_factory.getbasetemp() / "evaluate-cache")  # shared across tests: features built once


def write_npz(path, images):
    np.savez(path, images=images)
    return str(path)


def evaluate(capsys, *argv):
    code = main(["evaluate", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_heldout_digits_give_fdr_one_in_every_space(tmp_path, capsys, digits, cache):
    heldout = digits.images[digits.split_indices("heldout")].numpy()
    samples = write_npz(tmp_path / "heldout.npz", heldout)
    code, out, err = evaluate(
        capsys,
        "--samples",
        samples,
        "--reference",
        "digits",
        "--spaces",
        SPACES,
        "--cache_dir",
        cache,
        "--json",
        "-",
        *FAST,
    )
    assert code == 0, err
    result = json.loads(out)
    assert set(result["spaces"]) == {"pixels", "random_conv"}
    for row in result["spaces"].values():
        assert row["fdr"] == pytest.approx(1.0, rel=1e-12)
        assert row["fdr_n"] == heldout.shape[0]
    assert result["fdr_k"] == pytest.approx(1.0, rel=1e-12)


def test_noise_samples_print_a_full_table_and_csv(tmp_path, capsys, digits, cache):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(300, 8, 8, 1), dtype=np.uint8)  # NHWC uint8
    samples = write_npz(tmp_path / "noise.npz", noise)
    csv_path = tmp_path / "out.csv"
    code, out, err = evaluate(
        capsys,
        "--samples",
        samples,
        "--reference",
        "digits",
        "--spaces",
        SPACES,
        "--cache_dir",
        cache,
        "--csv",
        str(csv_path),
        *FAST,
    )
    assert code == 0, err
    header = out.splitlines()[0].split()
    assert header[:5] == ["space", "dim", "n", "FD", "FDr"] and header[-4:] == [
        "precision",
        "recall",
        "density",
        "coverage",
    ]
    assert out.splitlines()[-1].startswith("FDr^k = ")
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert [r["space"] for r in rows] == ["pixels", "random_conv"]
    for row in rows:
        assert float(row["fdr"]) > 5.0  # uniform noise is far from digits compared with held-out digits
        assert float(row["precision"]) < 0.5
        assert float(row["fdr_k"]) > 5.0


def test_image_folder_samples(tmp_path, capsys, digits, cache):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    train = digits.images[digits.split_indices("train")][:40]
    for i, image in enumerate(train):
        array = ((image[0].numpy() + 1.0) * 127.5).round().astype(np.uint8)
        Image.fromarray(array, mode="L").save(folder / f"{i:03d}.png")
    code, out, err = evaluate(
        capsys,
        "--samples",
        str(folder),
        "--reference",
        "digits",
        "--spaces",
        "pixels",
        "--cache_dir",
        cache,
        "--json",
        "-",
        *FAST,
    )
    assert code == 0, err
    assert err.startswith("matchzoo: warning: Fréchet distance from n=40 samples in D=64")  # 40 images < 64 pixels
    assert err.count("\n") == 1  # the same warning from three call sites is printed once, on one line
    row = json.loads(out)["spaces"]["pixels"]
    assert row["n"] == 40 and row["fdr_n"] == 40 and np.isfinite(row["fd"])


@pytest.mark.parametrize("as_run_folder", [False, True])
def test_checkpoint_samples_use_the_generator(tmp_path, capsys, monkeypatch, cache, as_run_folder):
    import matchzoo.stored_config as stored_config

    generator = matchzoo.make_generator("mlp", image_shape=(1, 8, 8))
    calls = []

    def fake_load(path, device="cpu", **kwargs):
        calls.append(str(path))
        return generator

    monkeypatch.setattr(stored_config, "load_generator", fake_load)
    path = tmp_path / "checkpoint.pt"
    torch.save({}, path)
    samples = tmp_path if as_run_folder else path  # the trainer's run folder holds checkpoint.pt
    code, out, err = evaluate(
        capsys,
        "--samples",
        str(samples),
        "--reference",
        "digits",
        "--spaces",
        "pixels",
        "--num_samples",
        "64",
        "--cache_dir",
        cache,
        "--json",
        "-",
        "--no_prdc",
        *FAST,
    )
    assert code == 0, err
    assert calls == [str(path)]
    row = json.loads(out)["spaces"]["pixels"]
    assert row["n"] == 64 and "precision" not in row


def test_a_checkpoints_own_record_of_its_training_spaces_is_the_default_seen_set(tmp_path, capsys, monkeypatch, cache):
    """Without --seen_spaces, a checkpoint's seen_spaces (here random_conv) leave their families out of fdr_unseen
    (pixels too); --seen_spaces '' says none were."""
    import matchzoo.stored_config as stored_config
    from matchzoo.train import checkpoint

    generator = matchzoo.make_generator("mlp", image_shape=(1, 8, 8))
    monkeypatch.setattr(stored_config, "load_generator", lambda path, device="cpu", **kwargs: generator)
    checkpoint.save_atomic({"seen_spaces": ["random_conv"], "operative_config": ""}, tmp_path / "checkpoint.pt")
    argv = ["--samples", str(tmp_path), "--reference", "digits", "--spaces", "pixels,digits_classifier"]
    argv += ["--num_samples", "64", "--cache_dir", cache, "--json", "-", "--no_prdc", "--interval_draws", "0", *FAST]
    code, out, err = evaluate(capsys, *argv)
    assert code == 0, err
    result = json.loads(out)
    assert result["seen_spaces"] == ["random_conv"] and result["unseen_spaces"] == ["digits_classifier"]
    assert result["fdr_unseen"] == pytest.approx(result["spaces"]["digits_classifier"]["fdr"], rel=1e-14)
    assert "generator was optimised in random_conv" in err
    code, out, err = evaluate(capsys, *argv, "--seen_spaces", "")
    assert code == 0, err
    assert json.loads(out)["unseen_spaces"] == ["pixels", "digits_classifier"]


@pytest.mark.filterwarnings("ignore::matchzoo.linalg.FewSamplesWarning")
@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda tmp: str(tmp / "missing.npz"), "npz file not found"),
        (lambda tmp: str(tmp / "nothing_here"), "does not exist"),
        (lambda tmp: write_npz(tmp / "flat.npz", np.zeros((10, 64), np.float32)), "expected images"),
        (lambda tmp: write_npz(tmp / "range.npz", np.full((10, 1, 8, 8), 3.0, np.float32)), "must lie in [-1, 1]"),
        (lambda tmp: write_npz(tmp / "one.npz", np.zeros((1, 1, 8, 8), np.uint8)), "need at least 2"),
        (
            lambda tmp: write_npz(tmp / "four.npz", np.arange(256, dtype=np.uint8).reshape(4, 1, 8, 8)),
            "more than 5 samples",
        ),
    ],
)
def test_bad_samples_fail_in_one_line(tmp_path, capsys, cache, make_input, message):
    code, out, err = evaluate(
        capsys,
        "--samples",
        make_input(tmp_path),
        "--reference",
        "digits",
        "--spaces",
        "pixels",
        "--cache_dir",
        cache,
        *FAST,
    )
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("matchzoo: error:") and message in err


def test_unknown_space_and_dataset_fail_in_one_line(tmp_path, capsys, cache):
    samples = write_npz(tmp_path / "x.npz", np.zeros((4, 1, 8, 8), np.uint8))
    code, _, err = evaluate(
        capsys, "--samples", samples, "--reference", "digits", "--spaces", "pixel", "--cache_dir", cache
    )
    assert code == 2 and "did you mean 'pixels'" in err and err.count("\n") == 1
    code, _, err = evaluate(
        capsys, "--samples", samples, "--reference", "digitz", "--spaces", "pixels", "--cache_dir", cache
    )
    assert code == 2 and "unknown dataset 'digitz'" in err


def test_bad_numbers_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--samples", "x.npz", "--reference", "digits", "--kid_subsets", "0"])
    assert exit_info.value.code == 2 and "must be >= 1" in capsys.readouterr().err


def test_the_library_call_gives_the_commands_numbers(tmp_path, capsys, digits, cache):
    """``evaluate`` is options -> :func:`matchzoo.evaluation.evaluate_samples` -> print: the library alone (no
    argparse) gives the same rows."""
    from matchzoo.evaluation import evaluate_samples
    from matchzoo.metrics.suite import SuiteSettings
    from matchzoo.samples import load_samples

    rng = np.random.default_rng(1)
    samples = write_npz(tmp_path / "noise.npz", rng.integers(0, 256, size=(120, 8, 8, 1), dtype=np.uint8))
    options = ["--kid_subsets", "3", "--kid_subset_size", "50", "--no_prdc", "--seed", "4", "--no_progress"]
    code, out, err = evaluate(
        capsys,
        "--samples",
        samples,
        "--reference",
        "digits",
        "--spaces",
        "pixels",
        "--cache_dir",
        cache,
        "--json",
        "-",
        *options,
    )
    assert code == 0, err
    images = load_samples(samples, digits, None, seed=4, device="cpu")
    settings = SuiteSettings(kid_subsets=3, kid_subset_size=50, prdc=False, seed=4)
    direct = evaluate_samples(
        images, digits, ["pixels"], matchzoo.make_feature_space, settings, cache_dir=cache, progress=False
    )
    printed = json.loads(out)
    assert set(direct) >= {"spaces", "fdr_k", "fdr_k_low", "fdr_unseen", "interval"}
    assert direct == {key: printed[key] for key in direct}


def test_json_and_table_carry_intervals_flags_and_the_unseen_summary(tmp_path, capsys, digits, cache):
    """Train-split digits are the reference itself: FDr far below 1 beyond noise in pixels (flagged)."""
    train = digits.images[digits.split_indices("train")[:359]].numpy()
    samples = write_npz(tmp_path / "train.npz", train)
    argv = ["--samples", samples, "--reference", "digits", "--cache_dir", cache, "--no_prdc"]
    argv += ["--spaces", SPACES + ",digits_classifier", "--interval_draws", "40", "--seen_spaces", "digits_classifier"]
    argv += FAST
    code, out, err = evaluate(capsys, *argv, "--json", str(tmp_path / "out.json"))
    assert code == 0, err
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["interval"] == {
        "method": "bootstrap rescaled to the observed value, percentile",
        "draws": 40,
        "level": 0.95,
    }
    pixels = result["spaces"]["pixels"]
    assert (
        pixels["fd_low"] < pixels["fd"] < pixels["fd_high"] and pixels["fdr_low"] < pixels["fdr"] < pixels["fdr_high"]
    )
    assert pixels["fdr_below_one"] is True and pixels["fdr_denominator"] == "heldout"
    assert result["fdr_k_low"] < result["fdr_k"] < result["fdr_k_high"]
    random_conv = result["spaces"]["random_conv"]
    assert result["unseen_spaces"] == ["pixels", "random_conv"]
    assert result["fdr_unseen"] == pytest.approx((pixels["fdr"] * random_conv["fdr"]) ** 0.5, rel=1e-12)
    assert result["fdr_unseen_low"] < result["fdr_unseen"] < result["fdr_unseen_high"]
    line = next(line for line in out.splitlines() if line.startswith("pixels"))
    assert f"[{pixels['fd_low']:.4g}, {pixels['fd_high']:.4g}]" in line and "]*" in line
    assert "fdr_unseen = " in out and "40 draws" in out

    code, out, err = evaluate(capsys, *argv, "--interval_draws", "0", "--fdr_baselines", "pixels=2.5", "--csv", "-")
    assert code == 0, err
    row = next(csv.DictReader(io.StringIO(out)))
    assert "fd_low" not in row and row["fdr_denominator"] == "fixed"
    assert float(row["fdr"]) == pytest.approx(float(row["fd"]) / 2.5, rel=1e-12)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--fdr_baselines", "dino=2"], "--fdr_baselines names dino, not among the --spaces"),
        (["--seen_spaces", "dino"], "--seen_spaces dino must be among the --spaces"),
    ],
)
def test_baseline_and_seen_spaces_fail_in_one_line(tmp_path, capsys, cache, extra, message):
    samples = write_npz(tmp_path / "x.npz", np.zeros((10, 8, 8, 1), dtype=np.uint8))
    code, _, err = evaluate(
        capsys, "--samples", samples, "--reference", "digits", "--spaces", SPACES, "--cache_dir", cache, *extra
    )
    assert code == 2 and message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--fdr_baselines", "pixels:2"], "expected SPACE=FD pairs such as inception=1.68"),
        (["--fdr_baselines", "pixels=0"], "must be > 0.0, got 0.0"),
        (["--interval_level", "1.5"], "must be in (0, 1)"),
        (["--interval_draws", "-1"], "must be >= 0"),
    ],
)
def test_bad_interval_and_baseline_values_are_usage_errors(capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--samples", "x.npz", "--reference", "digits", *extra])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and err.count("\n") == 1


def test_checkpoint_seen_spaces_is_none_for_anything_but_a_readable_checkpoint(tmp_path):
    from matchzoo.samples import checkpoint_seen_spaces
    from matchzoo.train import checkpoint

    (tmp_path / "garbage.pt").write_bytes(b"not a zip")
    np.savez(tmp_path / "x.npz", images=np.zeros((2, 8, 8, 1), dtype=np.uint8))
    for path in ("garbage.pt", "x.npz", "missing.pt", "."):
        assert checkpoint_seen_spaces(str(tmp_path / path)) is None
    checkpoint.save_atomic({"operative_config": "term.space = @pixels()"}, tmp_path / "checkpoint.pt")
    assert checkpoint_seen_spaces(str(tmp_path)) == ["pixels"]  # a run folder; an older checkpoint's bindings
