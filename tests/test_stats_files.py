"""Statistics files out and in: `stats --export` round trip (FD to 1e-12), foreign npz files (pytorch-fid /
clean-fid / FD-loss layout, ADM reference batches) against an independent NumPy/SciPy FD, one-line refusals, and
FD-loss trained from a statistics file alone."""

from __future__ import annotations

import errno
import hashlib
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg
import torch

import matchzoo
from matchzoo import stats_files
from matchzoo.__main__ import main
from matchzoo.data.cache import reference_stats
from matchzoo.errors import MatchzooError
from matchzoo.metrics import SpaceReference, SuiteSettings, compute_row, make_metrics
from matchzoo.metrics.frechet import FrechetReference, GaussianStats
from matchzoo.objectives.frechet import FrechetDistance
from matchzoo.spaces.base import Preprocessing
from matchzoo.stats_files import StatsConventionWarning, load_stats

SPACE = "digits_classifier"  # shipped weights, 64-d: the export path of a real space, in milliseconds


def scipy_fd(mu1, sigma1, mu2, sigma2) -> float:
    """The pytorch-fid / ADM formula with scipy.linalg.sqrtm (independent of matchzoo.linalg)."""
    covmean = np.real(scipy.linalg.sqrtm(sigma1 @ sigma2))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fake_space(name="fake", dim=6, fingerprint="f" * 16):
    """What load_stats reads of a space, without building one."""
    return SimpleNamespace(name=name, dim=dim, fingerprint=fingerprint, preprocessing=Preprocessing(size=None))


def features(n=500, dim=6, seed=0, shift=0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(dim, dim)) / dim**0.5 + np.eye(dim)
    return rng.normal(size=(n, dim)) @ mix + shift


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """`stats --export` of digits in SPACE (train and held-out) plus the cache it came from."""
    root = tmp_path_factory.mktemp("export")
    cache, out = root / "cache", root / "stats"
    args = ["stats", "--dataset", "digits", "--spaces", SPACE, "--cache_dir", str(cache), "--no_progress"]
    assert main([*args, "--export", str(out)]) == 0
    return SimpleNamespace(cache=cache, out=out, train=out / f"{SPACE}.npz", heldout=out / f"{SPACE}.heldout.npz")


def test_export_writes_float64_statistics_and_metadata(exported):
    space, dataset = matchzoo.make_feature_space(SPACE), matchzoo.make_dataset("digits")
    with np.load(exported.train, allow_pickle=False) as archive:
        assert archive["mu"].dtype == archive["sigma"].dtype == np.float64
        assert archive["mu"].shape == (64,) and archive["sigma"].shape == (64, 64)
        assert int(archive["n"]) == len(dataset.split("train"))
        assert str(archive["space_fingerprint"]) == space.fingerprint
        assert str(archive["dataset_fingerprint"]) == dataset.fingerprint
        assert str(archive["matchzoo_version"]) == matchzoo.__version__
        assert str(archive["feature_convention"]).startswith(f"{SPACE}: dim=64;")
        assert str(archive["split"]) == "train" and str(archive["format"]) == stats_files.FORMAT
    assert exported.heldout.is_file()
    assert not list(exported.out.glob(".*.tmp")), "no temporary file is left behind"


def test_export_then_import_gives_the_same_fd_to_1e_12(exported):
    space, dataset = matchzoo.make_feature_space(SPACE), matchzoo.make_dataset("digits")
    mean, cov = reference_stats(space, dataset, "train", cache_dir=exported.cache, progress=False)
    cached = FrechetReference(GaussianStats(mean, cov, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", StatsConventionWarning)  # a matchzoo export in its own space: no warning
        imported, record = FrechetReference.from_stats_file(exported.train, space)
    assert record.layout == "matchzoo" and record.count == len(dataset.split("train"))
    generated = torch.from_numpy(features(300, 64, seed=3, shift=0.2))
    assert imported.distance_to_features(generated) == pytest.approx(cached.distance_to_features(generated), rel=1e-12)
    assert torch.equal(imported.stats.mean, mean)
    assert (imported.stats.cov - cov).abs().max() <= 1e-15 * cov.abs().max()  # symmetrised on load: round-off


def test_an_independent_numpy_npz_is_accepted_with_one_warning_and_gives_scipys_fd(tmp_path):
    real, generated = features(800, seed=1), features(600, seed=2, shift=0.3)
    path = tmp_path / "pytorch_fid_stats.npz"
    np.savez(path, mu=real.mean(axis=0), sigma=np.cov(real, rowvar=False))  # the pytorch-fid --save-stats layout
    with pytest.warns(StatsConventionWarning, match="no matchzoo fingerprints.*convention of space fake") as caught:
        reference, record = FrechetReference.from_stats_file(path, fake_space())
    assert len(caught) == 1
    assert record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and record.layout == "plain"
    assert record.record()["sha256"] == record.sha256
    expected = scipy_fd(generated.mean(0), np.cov(generated, rowvar=False), real.mean(0), np.cov(real, rowvar=False))
    assert reference.distance_to_features(torch.from_numpy(generated)) == pytest.approx(expected, rel=1e-9)


def test_float32_statistics_from_another_tool_are_accepted(tmp_path):
    real = features(400, seed=4)
    path = tmp_path / "clean_fid_like.npz"
    np.savez(path, mu=real.mean(0).astype(np.float32), sigma=np.cov(real, rowvar=False).astype(np.float32))
    stats = load_stats(path)
    assert stats.mean.dtype == stats.cov.dtype == torch.float64
    assert torch.equal(stats.cov, stats.cov.T)


def adm_batch(path: Path, pool_dim=6, spatial_dim=5, images=4) -> dict:
    pool, spatial = features(300, pool_dim, seed=5), features(300, spatial_dim, seed=6)
    arrays = {
        "mu": pool.mean(0),
        "sigma": np.cov(pool, rowvar=False),
        "mu_s": spatial.mean(0),
        "sigma_s": np.cov(spatial, rowvar=False),
        "arr_0": np.arange(images * 8 * 8 * 3, dtype=np.uint8).reshape(images, 8, 8, 3),
    }
    np.savez(path, **arrays)
    return arrays


def test_adm_reference_batch_pool3_spatial_and_lazy_images(tmp_path):
    path = tmp_path / "VIRTUAL_ref.npz"
    arrays = adm_batch(path)
    with pytest.warns(StatsConventionWarning):
        pool = load_stats(path, fake_space("inception", 6))
        spatial = load_stats(path, fake_space("inception_sfid", 5))
    assert pool.arrays == ("mu", "sigma") and spatial.arrays == ("mu_s", "sigma_s") and pool.layout == "adm"
    np.testing.assert_array_equal(spatial.mean.numpy(), arrays["mu_s"])
    np.testing.assert_array_equal(pool.images(), arrays["arr_0"])  # read on request only


def test_statistics_without_images_say_sample_metrics_need_the_dataset(tmp_path):
    real, heldout = features(500, seed=7), features(300, seed=8)
    train_path, heldout_path = tmp_path / "s.npz", tmp_path / "s.heldout.npz"
    np.savez(train_path, mu=real.mean(0), sigma=np.cov(real, rowvar=False))
    np.savez(heldout_path, mu=heldout.mean(0), sigma=np.cov(heldout, rowvar=False))
    with pytest.warns(StatsConventionWarning):
        side = SpaceReference.from_stats(train_path, fake_space(), heldout=heldout_path)
    generated = torch.from_numpy(features(400, seed=9, shift=0.5))
    row = compute_row(make_metrics(["fd_reference", "fd_to_heldout"]), generated, side, seed=0)
    g = generated.numpy()
    expected = scipy_fd(g.mean(0), np.cov(g, rowvar=False), real.mean(0), np.cov(real, rowvar=False))
    assert row["fd"] == pytest.approx(expected, rel=1e-9)
    kid = make_metrics(["kid"], SuiteSettings(kid_subsets=2))[0]
    with pytest.raises(MatchzooError, match=r"compares samples .* only statistics .*give the dataset") as info:
        kid(generated, side, seed=0)
    assert "\n" not in str(info.value)
    with pytest.raises(MatchzooError, match="arr_0"):
        load_stats(train_path).images()


def test_an_export_folder_is_a_space_reference_with_its_heldout_side(exported):
    space = matchzoo.make_feature_space(SPACE)
    side = SpaceReference.from_stats(exported.out, space)
    assert [file.path for file in side.files] == [exported.train, exported.heldout]
    generated = torch.from_numpy(features(300, 64, seed=11, shift=0.1))
    row = compute_row(make_metrics(["fd_reference", "fd_to_heldout"]), generated, side, seed=0)
    heldout, _ = FrechetReference.from_stats_file(exported.heldout, space)
    assert row["fd_to_heldout"] == pytest.approx(heldout.distance_to_features(generated), rel=1e-12)
    with pytest.raises(MatchzooError, match="held-out side of the space is only statistics"):
        make_metrics(["fdr"])[0](generated, side, seed=0)  # the equal-size FDr draws held-out samples


def test_adm_images_become_reference_samples_on_first_use(tmp_path):
    path = tmp_path / "VIRTUAL_ref.npz"
    arrays = adm_batch(path, images=40)
    calls = []

    def extract(images: np.ndarray) -> torch.Tensor:  # stands in for a space: NHWC uint8 -> (N, 6)
        calls.append(images.shape)
        return torch.from_numpy(images.reshape(len(images), -1)[:, :6].astype(np.float64))

    with pytest.warns(StatsConventionWarning):
        side = SpaceReference.from_stats(path, fake_space("inception", 6), extract=extract)
    assert calls == []  # FD metrics never read the images
    generated = torch.from_numpy(features(40, seed=12))
    compute_row(make_metrics(["fd_reference"]), generated, side, seed=0)
    assert calls == []
    np.testing.assert_array_equal(side.reference.numpy(), extract(arrays["arr_0"]).numpy())
    assert len(calls) == 2 and side.reference is side.reference  # extracted once, then kept


def square(n=6):
    return np.eye(n)


BAD_FILES = {
    "missing_keys": ({"mean": np.zeros(6), "cov": square()}, r"has no mu and sigma arrays \(found: cov, mean\)"),
    "shapes": ({"mu": np.zeros(6), "sigma": np.eye(5)}, r"mu has shape \(6,\) and sigma \(5, 5\); expected"),
    "nan": ({"mu": np.full(6, np.nan), "sigma": square()}, "mu contains NaN or inf"),
    "integer": ({"mu": np.zeros(6, np.int64), "sigma": square()}, "mu is int64, expected floating point"),
    "asymmetric": ({"mu": np.zeros(6), "sigma": square() + np.triu(np.ones((6, 6)), 1)}, "sigma is not symmetric"),
    "not_psd": ({"mu": np.zeros(6), "sigma": np.diag([1.0, 1, 1, 1, 1, -0.5])}, "not positive semi-definite"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_statistics_files_are_one_line_naming_the_option(case, tmp_path):
    arrays, message = BAD_FILES[case]
    path = tmp_path / f"{case}.npz"
    np.savez(path, **arrays)
    with pytest.raises(MatchzooError, match=message) as info:
        load_stats(path, option="fd.reference_stats")
    assert "\n" not in str(info.value) and str(info.value).startswith("fd.reference_stats = ")


@pytest.mark.parametrize("smallest, accepted", [(-1e-15, True), (-1e-12, False), (0.0, True)])
def test_psd_tolerance_is_the_round_off_of_the_stored_precision(smallest, accepted, tmp_path):
    """tau = 10 D eps: 1.3e-14 for 6-d float64, so -1e-15 x lambda_max is round-off and -1e-12 is not."""
    path = tmp_path / "edge.npz"
    np.savez(path, mu=np.zeros(6), sigma=np.diag([1.0, 1, 1, 1, 1, smallest]))
    if accepted:
        assert load_stats(path).dim == 6
    else:
        with pytest.raises(MatchzooError, match="smallest eigenvalue -1e-12"):
            load_stats(path)
    rank_deficient = features(4, seed=13)  # fewer samples than dimensions: singular, PSD up to round-off
    np.savez(path, mu=rank_deficient.mean(0), sigma=np.cov(rank_deficient, rowvar=False))
    assert load_stats(path).dim == 6


def test_unreadable_missing_and_single_array_files(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all")
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    for path, message in [
        (tmp_path / "absent.npz", "no such file; export one with"),
        (garbage, "is not a readable npz file"),
        (single, "holds a single array"),
    ]:
        with pytest.raises(MatchzooError, match=message) as info:
            load_stats(path)
        assert "\n" not in str(info.value)


def test_dimension_and_fingerprint_mismatches_are_one_line(exported, tmp_path):
    plain = tmp_path / "plain.npz"
    np.savez(plain, mu=np.zeros(6), sigma=np.eye(6))
    with pytest.raises(MatchzooError, match=r"holds 6-d statistics \(mu\) but space 'wide' gives 7-d features"):
        load_stats(plain, fake_space("wide", 7))
    other = fake_space(SPACE, 64, fingerprint="0" * 16)
    with pytest.raises(MatchzooError, match=r"exported in space 'digits_classifier' \(fingerprint .*other weights"):
        load_stats(exported.train, other)


def test_export_refuses_to_overwrite_unless_forced(exported, capsys):
    args = ["stats", "--dataset", "digits", "--spaces", SPACE, "--cache_dir", str(exported.cache), "--no_progress"]
    before = exported.train.read_bytes()
    assert main([*args, "--splits", "train", "--export", str(exported.out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "exists; pass --force to overwrite it" in err
    assert main([*args, "--splits", "train", "--export", str(exported.out), "--force"]) == 0
    assert exported.train.read_bytes() == before  # same cache, same statistics, same bytes
    assert main([*args, "--force"]) == 2 and "--force only applies to --export" in capsys.readouterr().err


def test_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "s.npz"
    path.write_bytes(b"previous")

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(stats_files.np, "savez", no_space)
    with pytest.raises(MatchzooError, match="No space left on device; free space") as info:
        stats_files.write_npz_atomic(path, {"mu": np.zeros(2)}, force=True)
    assert "\n" not in str(info.value) and path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]


# ------------------------------------------------------------------------------------------ FD-loss from a file


def test_fd_loss_from_statistics_ignores_real_features_and_checks_its_space(exported):
    objective = FrechetDistance(population="batch", reference_stats=str(exported.train))
    assert objective.needs_real_samples is False and FrechetDistance().needs_real_samples is True
    fake = torch.from_numpy(features(64, 64, seed=10)).float().requires_grad_()
    before = objective(fake).loss
    objective.prepare_reference(torch.randn(50, 64) * 100)  # real features are ignored...
    assert objective(fake).loss.item() == pytest.approx(before.item(), rel=1e-12)
    assert objective(fake, torch.randn(50, 64) * 100).loss.item() == pytest.approx(before.item(), rel=1e-12)
    with pytest.raises(MatchzooError, match=r"holds 64-d statistics but the term's space gives 3-d features"):
        objective.prepare_reference(torch.randn(50, 3))  # ...but must come from a space of the same dimension
    objective.use_space(matchzoo.make_feature_space(SPACE))  # its own space: silent
    with pytest.raises(MatchzooError, match=r"fd.reference_stats = .* exported in space 'digits_classifier'"):
        objective.use_space(matchzoo.make_feature_space("digits_ssl"))  # same dim, other network


def test_objectives_that_need_samples_say_they_need_the_dataset():
    terms = [SimpleNamespace(name="px.sinkhorn", objective=matchzoo.make_objective("sinkhorn"))]
    with pytest.raises(MatchzooError, match="objective 'sinkhorn' matches real samples and needs train.dataset"):
        stats_files.check_terms_without_dataset(terms)
    with pytest.raises(MatchzooError, match=r"no such file"):
        FrechetDistance(reference_stats="/nonexistent/stats.npz")


@pytest.fixture
def one_thread():
    """Small CPU models train fastest single-threaded (the quickstart's train.num_threads = 1), on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_fd_loss_trains_from_exported_statistics_without_the_dataset(exported, one_thread):
    """Only the exported file is read after the export: FD to the statistics falls tenfold in 100 steps."""
    torch.manual_seed(0)
    space = matchzoo.make_feature_space(SPACE)
    generator = matchzoo.make_generator("mlp", image_shape=(1, 8, 8))
    objective = FrechetDistance(population="queue", population_size=512, reference_stats=str(exported.train))
    objective.use_space(space)
    stats_files.check_terms_without_dataset([SimpleNamespace(name="t", objective=objective)])
    reference, _ = FrechetReference.from_stats_file(exported.train, space)
    optimizer = torch.optim.Adam(generator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    probe = torch.Generator().manual_seed(1)

    def fd_now() -> float:
        with torch.no_grad():
            return reference.distance_to_features(space(generator(generator.sample_noise(512, generator=probe))))

    start = fd_now()
    for _ in range(100):
        loss = objective(space(generator(generator.sample_noise(128)))).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    end = fd_now()
    assert end < start / 10, (start, end)


OFFLINE_FD = """
train.generator = @mlp
mlp.image_shape = (1, 8, 8)
train.terms = [@term]
term.space = @digits_classifier()
term.objective = @fd()
fd.population_size = 512
fd.reference_stats = '{stats}'
train.eval_spaces = []
train.steps = 100
train.batch_size = 128
train.lr = 1e-3
train.eval_every = 100
train.checkpoint_every = 100
train.progress = False
train.num_threads = 1
train.run_dir = 'runs/offline'
"""


def test_fd_loss_trains_offline_from_exported_statistics_with_no_dataset_in_the_config(exported, isolated_runs):
    from matchzoo.run import main as run_main

    config = isolated_runs / "offline_fd.gin"
    config.write_text(OFFLINE_FD.format(stats=exported.train))
    assert run_main(["--gin", str(config)]) == 0
    cache = isolated_runs / "runs" / "cache"
    assert not cache.exists() or not any(cache.iterdir()), "no real features were extracted"
    space = matchzoo.make_feature_space(SPACE)
    reference, _ = FrechetReference.from_stats_file(exported.train, space)
    torch.manual_seed(0)  # train.seed: the generator's initial weights
    generator = matchzoo.make_generator("mlp", image_shape=(1, 8, 8))
    noise = generator.sample_noise(512, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        start = reference.distance_to_features(space(generator(noise)))
        payload = torch.load(isolated_runs / "runs" / "offline" / "checkpoint.pt", weights_only=True)
        generator.load_state_dict(payload["generator"])
        end = reference.distance_to_features(space(generator(noise)))
    assert end < start / 5, (start, end)
