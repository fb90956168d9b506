"""Labels in training: fake labels from the train split's frequencies (or uniform), a class-matched real batch,
the one-line refusals, class-balanced evaluation, and an unconditional run exactly as before labels existed."""

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from matchzoo import config
from matchzoo.run import build_settings, main
from matchzoo.train.callbacks import Evaluator, RunContext
from matchzoo.train.trainer import Trainer

REPO = Path(__file__).resolve().parent.parent
QUICK = str(REPO / "gin" / "quickstart.gin")
TINY = ["train.steps = 6", "train.batch_size = 32", "train.eval_spaces = []", "train.progress = False"]
CONDITIONAL = ["mlp.num_classes = 10", "train.terms = [@px/term]"]


@pytest.fixture(autouse=True)
def keep_threads():
    threads = torch.get_num_threads()  # train.num_threads = 1 in the quickstart sets a process-wide value
    yield
    torch.set_num_threads(threads)


def trainer(*params: str) -> Trainer:
    config.parse([QUICK], [*TINY, *params])
    return Trainer(build_settings())


def errors(capsys, *params: str) -> tuple[int, list[str]]:
    code = main(["--gin", QUICK, *[f"--gin_param={p}" for p in (*TINY, *params)]])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.startswith("matchzoo: error")]


def drawn_labels(built: Trainer, batches: int) -> torch.Tensor:
    return torch.cat([built.sample_inputs()[1] for _ in range(batches)])


def test_fake_labels_follow_the_train_split_frequencies_or_are_uniform():
    """Chi-square goodness of fit (seeded, so deterministic) of 12,800 drawn labels against the train split's
    class shares, and against the uniform distribution with label_sampling = 'uniform'."""
    built = trainer(*CONDITIONAL)
    train = built.settings.setup.dataset.labels("train")
    expected = np.bincount(train.numpy(), minlength=10) / train.numpy().size
    counts = np.bincount(drawn_labels(built, 400).numpy(), minlength=10)
    assert stats.chisquare(counts, expected * counts.sum()).pvalue > 1e-3
    # the train split of digits is not uniform: the uniform draw is a different distribution, and it is found
    uniform = np.bincount(drawn_labels(trainer(*CONDITIONAL, "train.label_sampling = 'uniform'"), 400), minlength=10)
    assert stats.chisquare(uniform).pvalue > 1e-3
    skewed = torch.bincount(train[train < 3], minlength=10).numpy()  # a 3-class split as a sanity oracle
    assert stats.chisquare(counts, skewed / skewed.sum() * counts.sum() + 1e-9).pvalue < 1e-6


def test_the_generator_gets_the_labels_drawn_right_after_the_noise():
    built = trainer(*CONDITIONAL)
    seen = []
    forward = built.generator.forward
    built.generator.forward = lambda noise, labels=None: seen.append((noise, labels)) or forward(noise, labels)
    built.prepare()
    built.train_step()
    rng = torch.Generator().manual_seed(built.settings.setup.seed + 1)  # the trainer's noise RNG of rank 0
    noise = torch.randn(32, built.generator.noise_dim, generator=rng)
    frequencies = torch.bincount(built.settings.setup.dataset.labels("train"), minlength=10).double()
    labels = torch.multinomial(frequencies / frequencies.sum(), 32, replacement=True, generator=rng)
    assert torch.equal(seen[0][0], noise) and torch.equal(seen[0][1], labels)


def test_class_matched_real_batches_have_the_fake_labels_item_by_item(isolated_runs):
    """Every term's real minibatch (the critic's too) is made of train items of exactly the fake labels."""
    built = trainer(*CONDITIONAL, "train.class_matched_real = True")
    built.prepare()
    dataset = built.settings.setup.dataset
    train_labels = dataset.labels("train")
    pixels = torch.stack([dataset.split("train")[i] for i in range(len(train_labels))]).flatten(1)  # (N, 64)
    term = built.terms[0]
    torch.testing.assert_close(built.real.train(term.space), pixels)  # features in split order (pixels space)
    seen = []
    sample_real = built.sample_real
    built.sample_real = lambda t, labels=None: seen.append((labels, sample_real(t, labels))) or seen[-1][1]
    for _ in range(3):
        built.train_step()
    assert len(seen) == 3
    for labels, real in seen:
        # the rows of the real batch are train items; find each one and read its class
        matches = (real[:, None, :] == pixels[None, :, :]).all(-1)  # (B, N)
        assert matches.any(1).all()
        classes_of_row = [set(train_labels[row].tolist()) for row in matches]
        assert all(int(label) in found for label, found in zip(labels, classes_of_row))
    # the index draw itself: exact classes, uniform within a class (all items of a small class get drawn)
    rng = torch.Generator().manual_seed(0)
    wanted = torch.full((4000,), 3)
    index = built.labels.real_indices(wanted, rng)
    assert torch.equal(train_labels[index], wanted)
    assert set(index.tolist()) == set(torch.nonzero(train_labels == 3).flatten().tolist())


def test_unconditional_generators_ignore_the_dataset_labels_and_draw_nothing_for_them():
    built = trainer()
    assert built.settings.setup.dataset.num_classes == 10 and built.generator.num_classes == 0
    state = built.noise_rng.get_state()
    noise, labels = built.sample_inputs()
    assert labels is None
    after = torch.Generator()
    after.set_state(state)
    torch.randn(32, built.generator.noise_dim, generator=after)
    assert torch.equal(after.get_state(), built.noise_rng.get_state())


def test_an_unconditional_run_is_the_run_from_before_labels_existed():
    built = trainer("train.terms = [@ssl/term, @px/term]")
    built.prepare()
    losses = [built.train_step()["train/loss"] for _ in range(6)]
    assert losses == pytest.approx(BEFORE["quickstart"], rel=1e-6, abs=0)
    san = trainer(
        "train.terms = [@term]",
        "term.space = @digits_ssl()",
        "term.objective = @san()",
        "train.lr = 2e-4",
        "train.betas = (0.0, 0.99)",
    )
    san.prepare()
    assert [san.train_step()["train/loss"] for _ in range(6)] == pytest.approx(BEFORE["san"], rel=1e-6, abs=0)


def test_evaluation_of_a_conditional_generator_is_class_balanced():
    built = trainer(*CONDITIONAL, "train.feature_batch_size = 7")
    seen = []
    forward = built.ema.model.forward
    built.ema.model.forward = lambda noise, labels=None: seen.append(labels) or forward(noise, labels)
    context = RunContext(steps=6, batch_size=32, feature_batch_size=7, eval_spaces=())
    images = Evaluator(None, every=3, samples=25, seed=0, context=context).generate(built, 25)
    assert images.shape == (25, 1, 8, 8)
    assert torch.equal(torch.cat(seen), torch.arange(25) % 10)  # balanced over all samples, across chunks


@pytest.mark.parametrize(
    "params, labels, words",
    [
        (
            ["mlp.num_classes = 3"],
            None,
            "generator 'mlp' is class-conditional (3 classes) but dataset 'npz' has no labels",
        ),
        (["mlp.num_classes = 3"], [0, 1, 2, 5], "dataset 'npz' has label 5 but generator 'mlp' has num_classes = 3"),
        (["train.class_matched_real = True"], [0, 1], "train.class_matched_real = True needs a class-conditional"),
        (
            ["mlp.num_classes = 3", "train.class_matched_real = True", "train.label_sampling = 'uniform'"],
            [0, 2],
            "class 1 (of 3) has no item in the train split",
        ),
        (["train.label_sampling = 'balanced'"], None, "train.label_sampling must be one of 'data', 'uniform'"),
        (["train.class_matched_real = 1"], None, "train.class_matched_real must be True or False"),
    ],
)
def test_label_mistakes_are_one_line_before_training(isolated_runs, capsys, params, labels, words):
    images = np.random.default_rng(0).integers(0, 256, size=(60, 8, 8, 1), dtype=np.uint8)
    arrays = {"images": images} if labels is None else {"images": images, "labels": np.resize(labels, 60)}
    np.savez(isolated_runs / "data.npz", **arrays)
    data = ["train.dataset = @npz()", f"npz.path = '{isolated_runs / 'data.npz'}'"]
    code, lines = errors(capsys, *data, *params)
    assert code == 2 and len(lines) == 1 and words in lines[0], lines
    assert not (isolated_runs / "runs" / "quickstart").exists()  # refused before a run folder exists


# train/loss of steps 1-6 of the two runs above, computed with the code before labels and the training recipe
# existed (commit 9f42b57); the code after them reproduced every bit of them (and of the weights) on this machine
BEFORE = {
    "quickstart": [
        0.7398110628128052,
        0.6997718214988708,
        0.6791167259216309,
        0.6851191520690918,
        0.6398345232009888,
        0.6328326463699341,
    ],
    "san": [
        0.11486934125423431,
        0.19324494898319244,
        0.2931721806526184,
        0.40432390570640564,
        0.5110166668891907,
        0.644611120223999,
    ],
}
