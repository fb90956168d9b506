"""The trainer's real side (issue 16): training with no dataset from statistics alone, evaluation against a
statistics folder (FDr from held-out statistics, or FD only), a separate held-out dataset as the FDr denominator,
a bounded pool of real features for sample-based objectives (the default run unchanged bit for bit), and the
one-line refusals."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

import matchzoo
from matchzoo import config, keys
from matchzoo.errors import MatchzooError
from matchzoo.run import build_settings, main
from matchzoo.stats_files import StatsConventionWarning
from matchzoo.train.callbacks import Evaluator, RunContext
from matchzoo.train.trainer import Trainer

REPO = Path(__file__).resolve().parent.parent
QUICK = str(REPO / "gin" / "quickstart.gin")
TINY = ["train.steps = 6", "train.batch_size = 32", "train.eval_spaces = []", "train.progress = False"]
NO_DATA = """
train.generator = @mlp
mlp.image_shape = (1, 8, 8)
train.terms = [@term]
term.space = @pixels()
term.objective = @fd()
fd.population_size = 256
fd.reference_stats = '{stats}'
train.eval_spaces = []
train.steps = 4
train.batch_size = 32
train.eval_every = 100
train.progress = False
train.num_threads = 1
train.run_dir = 'runs/nodata'
"""


@pytest.fixture(autouse=True)
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def scipy_fd(mu1, sigma1, mu2, sigma2) -> float:
    covmean = np.real(scipy.linalg.sqrtm(sigma1 @ sigma2))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def moments(features) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(features, dtype=np.float64)
    return x.mean(0), np.cov(x, rowvar=False)


def pixel_features(split: str) -> np.ndarray:
    """Digits in the pixels space, computed here (flattened images: the pixels space's definition)."""
    images = matchzoo.make_dataset("digits").split(split)
    return torch.stack([images[i] for i in range(len(images))]).flatten(1).numpy()


@pytest.fixture(scope="module")
def stats_dir(tmp_path_factory):
    """A folder of plain mu/sigma npz files written by NumPy: pixels.npz (train) and, in with_heldout/, the held-out
    split beside it."""
    root = tmp_path_factory.mktemp("stats")
    (root / "with_heldout").mkdir()
    for folder in (root, root / "with_heldout"):
        mu, sigma = moments(pixel_features("train"))
        np.savez(folder / "pixels.npz", mu=mu, sigma=sigma)
    mu, sigma = moments(pixel_features("heldout"))
    np.savez(root / "with_heldout" / "pixels.heldout.npz", mu=mu, sigma=sigma)
    np.savez(root / "five.npz", mu=np.zeros(5), sigma=np.eye(5))
    return root


def build(tmp_path: Path, text: str, *params: str) -> Trainer:
    path = tmp_path / "config.gin"
    path.write_text(text)
    config.parse([str(path)], list(params))
    with pytest.warns(StatsConventionWarning):  # plain mu/sigma files carry no fingerprints
        return Trainer(build_settings())


def quick(*params: str) -> Trainer:
    config.parse([QUICK], [*TINY, *params])
    return Trainer(build_settings())


def one_line(capsys, args) -> str:
    code = main(args)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("matchzoo: error")]
    assert code == 2 and len(lines) == 1, lines
    return lines[0]


# ------------------------------------------------------------------------------------------------- no dataset


def test_no_dataset_trains_from_statistics_and_never_reads_real_features(isolated_runs, stats_dir, monkeypatch):
    import matchzoo.data.cache as cache

    monkeypatch.setattr(cache, "reference_features", lambda *a, **k: pytest.fail("real features were extracted"))
    built = build(isolated_runs, NO_DATA.format(stats=stats_dir / "pixels.npz"))
    assert built.settings.setup.dataset is None and built.image_shape == (1, 8, 8)
    seen = []
    forward = built.terms[0].objective.forward
    built.terms[0].objective.forward = lambda fake, real=None: seen.append(real) or forward(fake, real)
    built.prepare()
    losses = [built.train_step()["train/loss"] for _ in range(3)]
    assert seen == [None, None, None] and all(np.isfinite(losses))


def test_a_run_without_dataset_records_its_statistics_and_evaluates_fd_only(isolated_runs, stats_dir, capsys):
    from mlflow.tracking import MlflowClient

    path = isolated_runs / "nodata.gin"
    path.write_text(NO_DATA.format(stats=stats_dir / "pixels.npz"))
    args = ["--gin", str(path), "--gin_param=train.eval_spaces = [@pixels]"]
    args += [f"--gin_param=evaluator.reference_stats = '{stats_dir}'", "--gin_param=evaluator.stability_every = 0"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.count("FD only, no FDr there") == 1
    payload = torch.load(isolated_runs / "runs" / "nodata" / "checkpoint.pt", weights_only=True)
    run = MlflowClient(tracking_uri=f"sqlite:///{isolated_runs / 'runs' / 'mlflow.db'}").get_run(
        payload["mlflow_run_id"]
    )
    tags, metrics = run.data.tags, run.data.metrics
    sha = hashlib.sha256((stats_dir / "pixels.npz").read_bytes()).hexdigest()
    assert tags[keys.DATASET_TAG] == "none" and tags["fdr_baseline"] == "none"
    assert tags["reference_stats/pixels.fd/sha256"] == sha and tags["eval_reference_stats/pixels/sha256"] == sha
    assert keys.eval_key("fd", "pixels") in metrics and keys.eval_key("fdr", "pixels") not in metrics


def test_evaluation_against_held_out_statistics_divides_by_their_fd(isolated_runs, stats_dir):
    """With <space>.heldout.npz beside the reference and no dataset: FDr = FD(all generated) / FD(held-out stats)."""
    built = build(isolated_runs, NO_DATA.format(stats=stats_dir / "pixels.npz"), "train.eval_spaces = [@pixels]")
    space = built.settings.setup.eval_spaces[0]
    context = RunContext(steps=4, batch_size=32, feature_batch_size=64, eval_spaces=(space,))
    evaluator = Evaluator(
        None, 100, 200, seed=0, stability_every=0, context=context, reference_stats=str(stats_dir / "with_heldout")
    )
    with pytest.warns(StatsConventionWarning):
        evaluator.on_start(built)
    assert evaluator.baselines["pixels"].startswith("heldout_stats:")
    generated = space(evaluator.generate(built, 200)).numpy()
    ref = np.load(stats_dir / "pixels.npz")
    held = np.load(stats_dir / "with_heldout" / "pixels.heldout.npz")
    fd = scipy_fd(*moments(generated), ref["mu"], ref["sigma"])
    baseline = scipy_fd(held["mu"], held["sigma"], ref["mu"], ref["sigma"])
    row = evaluator.last
    assert row[keys.eval_key("fd", "pixels")] == pytest.approx(fd, rel=1e-6)
    assert row[keys.eval_key("fd_heldout", "pixels")] == pytest.approx(baseline, rel=1e-6)
    assert row[keys.eval_key("fdr", "pixels")] == pytest.approx(fd / baseline, rel=1e-6)
    assert row[keys.FDRK] == pytest.approx(fd / baseline, rel=1e-6)


def test_evaluation_against_statistics_with_a_dataset_uses_its_held_out_split(isolated_runs, stats_dir):
    built = quick("train.terms = [@px/term]")
    space = matchzoo.make_feature_space("pixels")
    context = RunContext(steps=6, batch_size=32, feature_batch_size=64, eval_spaces=(space,))
    evaluator = Evaluator(None, 100, 100, seed=0, stability_every=0, context=context, reference_stats=str(stats_dir))
    with pytest.warns(StatsConventionWarning):
        evaluator.on_start(built)
    assert evaluator.baselines == {"pixels": "heldout_split"}
    generated = space(evaluator.generate(built, 100)).numpy()
    ref = np.load(stats_dir / "pixels.npz")
    row = evaluator.last
    assert row[keys.eval_key("fd", "pixels")] == pytest.approx(scipy_fd(*moments(generated), ref["mu"], ref["sigma"]))
    assert row[keys.eval_key("fdr", "pixels")] == pytest.approx(
        row[keys.eval_key("fd_matched", "pixels")] / row[keys.eval_key("fd_heldout", "pixels")]
    )


# ------------------------------------------------------------------------------------------------ held-out dataset


def write_images(path: Path, count: int, size: int, seed: int) -> Path:
    images = np.random.default_rng(seed).integers(0, 256, size=(count, size, size, 1), dtype=np.uint8)
    np.savez(path, images=images)
    return path


def test_a_held_out_dataset_is_the_fdr_denominator_with_all_of_its_images(isolated_runs):
    data = write_images(isolated_runs / "val.npz", 50, 8, 1)
    built = quick("train.terms = [@px/term]", "train.heldout_dataset = @npz()", f"npz.path = '{data}'")
    heldout = built.settings.setup.heldout_dataset
    space = matchzoo.make_feature_space("pixels")
    features = built.real.heldout(space)
    expected = [
        heldout.split(split)[i].flatten() for split in ("train", "heldout") for i in range(len(heldout.split(split)))
    ]
    assert features.shape == (50, 64) and torch.equal(features, torch.stack(expected))
    context = RunContext(steps=6, batch_size=32, feature_batch_size=64, eval_spaces=(space,))
    evaluator = Evaluator(None, 100, 40, seed=0, stability_every=0, context=context)
    evaluator.on_start(built)
    assert evaluator.baselines == {"pixels": f"heldout_dataset:{heldout.fingerprint}"}
    assert evaluator.last[keys.eval_key("fdr_n", "pixels")] == 40


# ---------------------------------------------------------------------------------------------------- real pool

BEFORE = json.loads(
    # train/loss of steps 1-6, computed with the code before real pools existed (commit c9dadd8)
    '{"cm": [0.3537502586841583, 0.3501705229282379, 0.33785998821258545, 0.32699349522590637, 0.3152414858341217, '
    '0.31359341740608215], "sink": [77.11284637451172, 68.76541137695312, 64.62265014648438, 59.12537384033203, '
    "52.78989791870117, 46.009910583496094]}"
)


def test_without_a_pool_the_runs_are_those_from_before_pools_bit_for_bit(isolated_runs):
    matched = quick("mlp.num_classes = 10", "train.terms = [@px/term]", "train.class_matched_real = True")
    sinkhorn = quick("train.terms = [@px/term]", "px/term.objective = @sinkhorn()")
    for name, built in (("cm", matched), ("sink", sinkhorn)):
        built.prepare()
        assert [built.train_step()["train/loss"] for _ in range(6)] == BEFORE[name]


def test_a_pool_feeds_the_minibatches_while_the_reference_sees_every_train_feature(isolated_runs):
    built = quick("train.terms = [@px/term]", "px/term.objective = @fd()", "train.real_pool_size = 100")
    term = built.terms[0]
    built.prepare()
    train = built.real.train(term.space)
    assert train.device.type == "cpu" and train.shape[0] == len(built.settings.setup.dataset.split("train"))
    mean, _, _ = term.objective.reference(None)
    torch.testing.assert_close(mean, train.double().mean(0))  # exact statistics of the full train split
    pool = built.real.pool(term.space)
    assert pool.shape == (100, 64) and torch.equal(pool, train[built.real.pool_index()])
    again = quick("train.terms = [@px/term]", "px/term.objective = @fd()", "train.real_pool_size = 100")
    assert torch.equal(again.real.pool_index(), built.real.pool_index())  # seeded: the same pool every run
    for _ in range(5):
        rows = built.sample_real(term)
        assert ((rows[:, None, :] == pool[None]).all(-1)).any(1).all()


def test_class_matched_batches_come_from_the_pooled_items_of_each_class(isolated_runs):
    built = quick(
        "mlp.num_classes = 10",
        "train.terms = [@px/term]",
        "train.class_matched_real = True",
        "train.real_pool_size = 300",
    )
    built.prepare()
    term = built.terms[0]
    pool = built.real.pool(term.space)
    pool_labels = built.settings.setup.dataset.labels("train")[built.real.pool_index()]
    for _ in range(3):
        _, labels = built.sample_inputs()
        rows = built.sample_real(term, labels)
        matches = (rows[:, None, :] == pool[None]).all(-1)  # (B, P)
        assert matches.any(1).all()
        assert all(int(label) in set(pool_labels[row].tolist()) for label, row in zip(labels, matches))


def test_a_pool_without_a_class_the_matched_draw_needs_is_one_line(isolated_runs):
    from matchzoo.train.real_labels import PoolLabels

    built = quick("mlp.num_classes = 10", "train.terms = [@px/term]", "train.class_matched_real = True")
    labels = built.settings.setup.dataset.labels("train")
    without_three = torch.nonzero(labels != 3).flatten()[:200]
    with pytest.raises(MatchzooError, match="train.real_pool_size = 200 holds no train item of class 3 "):
        PoolLabels(built.labels, built.settings.setup.dataset, without_three, 200)


# ------------------------------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "params, words",
    [
        (["train.real_pool_size = 16"], "train.real_pool_size = 16 is smaller than train.batch_size = 32"),
        (["train.real_pool_size = -5"], "train.real_pool_size must be"),
        (["evaluator.reference_stats = 3"], "evaluator.reference_stats must be a folder"),
        (["train.real_pool_size = 100000"], "exceeds the"),
        (["train.dataset = None"], "needs train.dataset"),
        (
            ["train.dataset = None", "train.terms = [@px/term]", "px/term.objective = @sinkhorn()"],
            "'sinkhorn' matches real samples",
        ),
    ],
)
def test_pool_and_dataset_mistakes_are_one_line(isolated_runs, capsys, params, words):
    line = one_line(capsys, ["--gin", QUICK, *[f"--gin_param={p}" for p in (*TINY, *params)]])
    assert words in line, line
    assert not (isolated_runs / "runs" / "quickstart").exists()


def test_a_held_out_dataset_of_another_shape_is_one_line(isolated_runs, capsys):
    data = write_images(isolated_runs / "val.npz", 20, 16, 0)
    params = [*TINY, "train.heldout_dataset = @npz()", f"npz.path = '{data}'"]
    line = one_line(capsys, ["--gin", QUICK, *[f"--gin_param={p}" for p in params]])
    assert (
        "train.heldout_dataset (npz) has images of shape (1, 16, 16) but train.dataset (digits) has (1, 8, 8)" in line
    )


@pytest.mark.parametrize(
    "stats, params, words",
    [
        ("five.npz", [], "holds 5-d statistics (mu) but space 'pixels' gives 64-d"),
        ("pixels.npz", ["train.eval_spaces = [@pixels]"], "train.eval_spaces (pixels) compare with real data"),
        ("pixels.npz", ["mlp.num_classes = 10"], "train.label_sampling = 'data' follows the dataset's class"),
        ("pixels.npz", ["train.real_pool_size = 100"], "train.real_pool_size is set but train.dataset = None"),
    ],
)
def test_statistics_only_mistakes_are_one_line(isolated_runs, stats_dir, capsys, stats, params, words):
    path = isolated_runs / "nodata.gin"
    path.write_text(NO_DATA.format(stats=stats_dir / stats))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StatsConventionWarning)  # plain files: the warning is not the point here
        line = one_line(capsys, ["--gin", str(path), *[f"--gin_param={p}" for p in params]])
    assert words in line, line


def test_a_conditional_generator_without_dataset_draws_uniform_labels(isolated_runs, stats_dir):
    built = build(
        isolated_runs,
        NO_DATA.format(stats=stats_dir / "pixels.npz"),
        "mlp.num_classes = 10",
        "train.label_sampling = 'uniform'",
    )
    built.prepare()
    _, labels = built.sample_inputs()
    assert labels.shape == (32,) and int(labels.max()) < 10
    assert np.isfinite(built.train_step()["train/loss"])
    path = isolated_runs / "matched.gin"
    path.write_text(NO_DATA.format(stats=stats_dir / "pixels.npz"))
    params = ["mlp.num_classes = 10", "train.label_sampling = 'uniform'", "train.class_matched_real = True"]
    config.parse([str(path)], params)
    with pytest.raises(MatchzooError, match="no real items to match"):
        Trainer(build_settings())


def test_a_fixed_baseline_wins_and_the_run_start_knows_every_source(isolated_runs, stats_dir):
    from matchzoo.metrics.fdrk import FDr
    from matchzoo.metrics.frechet import FDToReference
    from matchzoo.train.callbacks import fdr_baseline_tag, fdr_baselines

    pixels, conv = matchzoo.make_feature_space("pixels"), matchzoo.make_feature_space("random_conv")
    metrics = [FDToReference(), FDr({"pixels": 2.0})]
    sources = fdr_baselines((pixels, conv), metrics, str(stats_dir / "with_heldout"), False, "heldout_split")
    # random_conv has no statistics in the folder: FD only
    assert sources == {"pixels": "fixed", "random_conv": "none"}
    assert fdr_baseline_tag(sources) == {"fdr_baseline": "pixels=fixed;random_conv=none"}
    with_heldout = fdr_baselines((pixels,), metrics[:1], str(stats_dir / "with_heldout"), False, "heldout_split")
    held = hashlib.sha256((stats_dir / "with_heldout" / "pixels.heldout.npz").read_bytes()).hexdigest()
    assert with_heldout == {"pixels": f"heldout_stats:{held[:16]}"}
    assert fdr_baselines((pixels,), metrics[:1], None, True, "heldout_dataset:ab") == {"pixels": "heldout_dataset:ab"}
