"""The training recipe: learning-rate schedule, gradient clipping, several EMA decays, bf16 autocast, and
``train.init_from`` (post-training from a weights file) -- each against an independent computation."""

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from matchzoo import config
from matchzoo.errors import MatchzooError
from matchzoo.generators.mlp import MLPGenerator
from matchzoo.run import build_settings, main, run_experiment
from matchzoo.train import checkpoint
from matchzoo.train.callbacks import Evaluator, RunContext
from matchzoo.train.init_from import load_into
from matchzoo.train.lr_schedule import constant_lr, warmup_cosine, warmup_cosine_factor
from matchzoo.train.trainer import TRAIN_GRAD_NORM, TRAIN_LR, Trainer

REPO = Path(__file__).resolve().parent.parent
QUICK = str(REPO / "gin" / "quickstart.gin")
TINY = [
    "train.steps = 6",
    "train.batch_size = 16",
    "train.eval_spaces = []",
    "train.progress = False",
    "train.terms = [@px/term]",
]


@pytest.fixture(autouse=True)
def keep_threads():
    threads = torch.get_num_threads()  # train.num_threads = 1 in the quickstart sets a process-wide value
    yield
    torch.set_num_threads(threads)


def trainer(*params: str, resuming: bool = False) -> Trainer:
    config.parse([QUICK], [*TINY, *params])
    built = Trainer(build_settings(), resuming=resuming)
    built.prepare()
    return built


def params_of(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


# --------------------------------------------------------------------------- learning-rate schedule


def closed_form(steps: int, warmup: int, ratio: float) -> np.ndarray:
    """Linear warm-up to 1 at update W-1, then half a cosine period from 1 (update W) to ``ratio`` (last update)."""
    s = np.arange(steps, dtype=np.float64)
    warm = (s + 1) / max(warmup, 1)
    phase = np.clip((s - warmup) / max(1, steps - 1 - warmup), 0, 1) * np.pi
    return np.where(s < warmup, warm, ratio + (1 - ratio) * (1 + np.cos(phase)) / 2)


@pytest.mark.parametrize("steps, warmup, ratio", [(10, 3, 0.1), (7, 0, 0.0), (200, 20, 0.5), (2, 1, 0.0)])
def test_warmup_cosine_is_the_closed_form_and_drives_the_optimiser(steps, warmup, ratio):
    factors = np.array([warmup_cosine_factor(s, steps, warmup, ratio) for s in range(steps)])
    np.testing.assert_allclose(factors, closed_form(steps, warmup, ratio), rtol=1e-12, atol=1e-15)
    assert factors.max() == pytest.approx(1.0) and factors[-1] == pytest.approx(ratio if steps - 1 > warmup else 1)
    assert np.all(np.diff(factors[warmup:]) <= 1e-15)  # never rises after the warm-up
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.3)
    schedule = warmup_cosine(optimizer, steps=steps, warmup_steps=warmup, min_lr_ratio=ratio)
    used = []
    for _ in range(steps):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    np.testing.assert_allclose(used, 0.3 * closed_form(steps, warmup, ratio), rtol=1e-12)
    constant = constant_lr(torch.optim.SGD([weight], lr=0.3), steps=steps)
    assert constant.get_last_lr() == [0.3]


def test_the_trainer_logs_the_scheduled_learning_rate_of_each_step(isolated_runs):
    built = trainer(
        "train.lr_schedule = @warmup_cosine", "warmup_cosine.warmup_steps = 2", "warmup_cosine.min_lr_ratio = 0.1"
    )
    logged = [built.train_step()[TRAIN_LR] for _ in range(6)]
    np.testing.assert_allclose(logged, 1e-3 * closed_form(6, 2, 0.1), rtol=1e-12)
    assert [trainer().train_step()[TRAIN_LR] for _ in range(2)] == [1e-3, 1e-3]


def operative(*params: str) -> str:
    config.parse([QUICK], [*TINY, *params])
    build_settings()
    return config.record().operative


def test_a_schedule_that_spans_train_steps_refuses_a_resume_that_changes_them(tmp_path):
    from matchzoo.run import resume_changes

    cosine = ("train.lr_schedule = @warmup_cosine", "warmup_cosine.warmup_steps = 1")
    started = {"operative_config": operative(*cosine, "train.steps = 3")}
    with pytest.raises(MatchzooError, match=r"train.steps changes \(3 -> 5\) but train.lr_schedule = @warmup_cosine"):
        resume_changes(started, operative(*cosine, "train.steps = 5"), tmp_path)
    assert resume_changes(started, operative(*cosine, "train.steps = 3", "train.log_every = 2"), tmp_path)
    constant = {"operative_config": operative("train.steps = 3")}
    assert "train.steps" in resume_changes(constant, operative("train.steps = 5"), tmp_path)


# --------------------------------------------------------------------------- gradient clipping


def sgd(built: Trainer, lr: float = 0.05) -> None:
    """Plain SGD, so an update is exactly -lr times the (clipped) gradient."""
    built.optimizer = torch.optim.SGD(built.generator.parameters(), lr=lr)
    built.schedule = constant_lr(built.optimizer, steps=6)


def test_gradient_clipping_bounds_the_update_and_the_logged_norm_is_the_gradients(isolated_runs):
    free, clipped = trainer(), trainer("train.grad_clip_norm = 0.01")
    for built in (free, clipped):
        sgd(built)
    before = torch.cat([p.flatten() for p in params_of(free.generator)])
    free_logs, clipped_logs = free.train_step(), clipped.train_step()
    step_free = before - torch.cat([p.detach().flatten() for p in free.generator.parameters()])
    step_clipped = before - torch.cat([p.detach().flatten() for p in clipped.generator.parameters()])
    gradient = step_free / 0.05  # the unclipped gradient, read off the SGD update
    assert free_logs[TRAIN_GRAD_NORM] == pytest.approx(float(gradient.double().norm()), rel=1e-4)
    assert clipped_logs[TRAIN_GRAD_NORM] == pytest.approx(free_logs[TRAIN_GRAD_NORM], rel=1e-6)  # before clipping
    assert free_logs[TRAIN_GRAD_NORM] > 0.01  # so clipping acts
    assert float(step_clipped.double().norm()) == pytest.approx(0.05 * 0.01, rel=1e-4)
    assert torch.nn.functional.cosine_similarity(step_clipped, step_free, dim=0) > 1 - 1e-5
    # the same clipped gradient as torch.nn.utils.clip_grad_norm_ in one call
    reference = trainer("train.grad_clip_norm = 0.01")
    sgd(reference)
    noise, labels = reference.sample_inputs()
    images = reference.generate(noise, labels)
    term = reference.terms[0]
    loss = term.objective(reference.features(term, images), reference.sample_real(term, labels)).loss
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(reference.generator.parameters(), 0.01)
    assert float(norm) == pytest.approx(clipped_logs[TRAIN_GRAD_NORM], rel=1e-6)
    reference.optimizer.step()
    for ours, theirs in zip(clipped.generator.parameters(), reference.generator.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-7)


# --------------------------------------------------------------------------- several EMA decays


def test_every_ema_decay_is_the_hand_computed_average_and_the_best_is_tagged(isolated_runs):
    built = trainer("train.ema_decay = (0.9, 0.5, 0.0)")
    hand = {decay: [p.double() for p in params_of(built.generator)] for decay in (0.9, 0.5, 0.0)}
    for _ in range(4):
        built.train_step()
        for decay, average in hand.items():
            online = [p.double() for p in params_of(built.generator)]
            hand[decay] = [decay * e + (1 - decay) * p for e, p in zip(average, online)]
    assert [ema.decay for ema in built.emas] == [0.9, 0.5, 0.0] and built.ema is built.emas[0]
    for ema in built.emas:
        for ours, expected in zip(ema.model.parameters(), hand[ema.decay]):
            torch.testing.assert_close(ours.double(), expected, rtol=1e-5, atol=1e-7)

    class Recorder:
        def __init__(self):
            self.metrics, self.tags = {}, {}

        def log_metrics(self, metrics, step):
            self.metrics.update(metrics)

        def set_tags(self, tags):
            self.tags.update(tags)

        def log_artifact(self, *args):
            pass

    from matchzoo.spaces.offline import Pixels

    context = RunContext(steps=4, batch_size=16, feature_batch_size=64, eval_spaces=(Pixels(channels=1, size=8),))
    recorder = Recorder()
    evaluator = Evaluator(recorder, every=100, samples=64, seed=0, stability_every=0, context=context)
    evaluator.on_start(built)
    evaluator.on_end(built)
    scores = {0.9: recorder.metrics["eval/fdr_k"]}
    scores.update({decay: recorder.metrics[f"ema_{decay:g}/eval/fdr_k"] for decay in (0.5, 0.0)})
    assert recorder.tags == {"best_ema_decay": f"{min(scores, key=scores.get):g}"}
    # each decay's numbers are those of its own generator, scored like the primary one
    alone = evaluator.score(evaluator.features(evaluator.generate(built, 64, built.emas[2].model)))
    assert recorder.metrics["ema_0/eval/fdr_k"] == alone["eval/fdr_k"]


def test_ema_decay_values_are_checked(isolated_runs):
    for value, words in [
        ("(0.9, 0.9)", "lists 0.9 more than once"),
        ("(0.9, 1.0)", "train.ema_decay[1] must be in [0, 1)"),
        ("()", "train.ema_decay is empty"),
        ("(0.9999999, 0.99999995)", "0.9999999 and 0.99999995 share the metric prefix 'ema_1/'"),
    ]:
        config.parse([QUICK], [*TINY, f"train.ema_decay = {value}"])
        with pytest.raises(MatchzooError) as error:
            build_settings()
        assert words in str(error.value)


# --------------------------------------------------------------------------- resume


RECIPE = [
    "train.lr_schedule = @warmup_cosine",
    "warmup_cosine.warmup_steps = 2",
    "warmup_cosine.min_lr_ratio = 0.2",
    "train.ema_decay = (0.9, 0.5)",
    "train.grad_clip_norm = 0.05",
    "train.terms = [@term]",
    "term.space = @digits_ssl()",
    "term.objective = @fd()",  # population state in the checkpoint too
    "fd.population_size = 64",
]


def test_resume_continues_schedule_and_every_ema_bit_identically(isolated_runs, tmp_path):
    whole = trainer(*RECIPE)
    whole_logs = [whole.train_step() for _ in range(6)]
    first = trainer(*RECIPE)
    for _ in range(3):
        first.train_step()
    checkpoint.save_atomic(first.state_dict(), tmp_path / "checkpoint.pt")
    second = trainer(*RECIPE, resuming=True)
    second.load_state_dict(checkpoint.load(tmp_path))
    second_logs = [second.train_step() for _ in range(3)]
    assert second_logs == whole_logs[3:]  # loss, lr, gradient norm, every term log: the same floats
    for ours, theirs in zip(second.emas, whole.emas):
        for a, b in zip(ours.model.state_dict().values(), theirs.model.state_dict().values()):
            assert torch.equal(a, b)
    for a, b in zip(second.generator.parameters(), whole.generator.parameters()):
        assert torch.equal(a, b)
    assert second.schedule.state_dict() == whole.schedule.state_dict()


def test_checkpoints_without_several_emas_or_a_schedule_still_resume(isolated_runs, tmp_path):
    old = trainer()
    old.train_step()
    state = {k: v for k, v in old.state_dict().items() if k not in ("generator_emas", "lr_schedule")}
    fresh = trainer(resuming=True)
    fresh.load_state_dict(state)
    assert fresh.step == 1 and fresh.train_step()[TRAIN_LR] == 1e-3
    with pytest.raises(MatchzooError, match=r"checkpoint does not match this config: checkpoint keeps EMA decays none"):
        trainer("train.ema_decay = (0.99, 0.9)", resuming=True).load_state_dict(state)


# --------------------------------------------------------------------------- bf16


def test_bf16_autocast_runs_on_the_cpu_with_finite_float32_losses(isolated_runs):
    built = trainer("train.precision = 'bf16'", "train.terms = [@ssl/term, @px/term]")
    dtypes = []
    forward = built.generator.forward
    built.generator.forward = lambda noise, labels=None: (
        dtypes.append(forward(noise, labels).dtype) or forward(noise, labels)
    )
    objective_inputs = []
    for term in built.terms:
        objective = term.objective.forward
        term.objective.forward = lambda fake, real, objective=objective: (
            objective_inputs.append(fake.dtype) or objective(fake, real)
        )
    logs = [built.train_step() for _ in range(3)]
    assert set(dtypes) == {torch.bfloat16}  # the generator ran under autocast
    assert set(objective_inputs) == {torch.float32}  # the objectives see float32 features
    assert all(math.isfinite(log["train/loss"]) and math.isfinite(log[TRAIN_GRAD_NORM]) for log in logs)
    assert all(p.dtype == torch.float32 for p in built.generator.parameters())


# --------------------------------------------------------------------------- train.init_from


def other_generator(**kwargs) -> MLPGenerator:
    torch.manual_seed(1234)
    return MLPGenerator(image_shape=(1, 8, 8), **kwargs)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_init_from_loads_the_file_into_the_generator_and_its_ema(isolated_runs, tmp_path, suffix):
    weights = other_generator().state_dict()
    path = tmp_path / f"base{suffix}"
    save_file(weights, str(path)) if suffix == ".safetensors" else torch.save(weights, path)
    built = trainer(f"train.init_from = '{path}'")
    for name, tensor in built.generator.state_dict().items():
        assert torch.equal(tensor, weights[name]) and torch.equal(built.ema.model.state_dict()[name], weights[name])
    assert built.init_from_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert trainer(f"train.init_from = '{tmp_path / 'gone.pt'}'", resuming=True).init_from_sha256 is None


def test_init_from_a_matchzoo_checkpoint_takes_its_ema_generator(isolated_runs, tmp_path):
    source = trainer("train.ema_decay = 0.5")
    source.train_step()
    checkpoint.save_atomic(source.state_dict(), tmp_path / "checkpoint.pt")
    built = trainer(f"train.init_from = '{tmp_path / 'checkpoint.pt'}'")
    for name, tensor in source.ema.model.state_dict().items():
        assert torch.equal(built.generator.state_dict()[name], tensor)
    assert not torch.equal(source.ema.model.net[0].weight, source.generator.net[0].weight)
    # the spaces those weights were optimised in come along (TINY trains the quickstart's pixels term), and are
    # saved on, once each
    assert source.seen_spaces == ["pixels"] and built.inherited_spaces == ["pixels"]
    assert built.state_dict()["seen_spaces"] == ["pixels"]
    resumed = trainer(resuming=True)
    resumed.load_state_dict({**source.state_dict(), "inherited_spaces": ["random_conv"]})
    assert resumed.seen_spaces == ["random_conv", "pixels"]


def test_seen_spaces_of_a_checkpoint_a_state_dict_and_an_older_checkpoint():
    from matchzoo.train.init_from import seen_spaces_of

    config = "ssl/term.space = @digits_ssl()\npx/term.space = @pixels()\ntrain.eval_spaces = [@random_conv]"
    older = {"format": checkpoint.FORMAT, "operative_config": config}  # before checkpoints stored seen_spaces
    assert seen_spaces_of(older) == ["digits_ssl", "pixels"]
    assert seen_spaces_of({**older, "seen_spaces": ["mae_vitl16"]}) == ["mae_vitl16"]
    assert seen_spaces_of(other_generator().state_dict()) == []  # nothing is known about plain weights


def test_a_post_trained_run_leaves_the_base_runs_spaces_out_of_fdr_unseen(isolated_runs, tmp_path):
    """The base checkpoint says its weights saw digits_classifier: the new run (trained in pixels) tags both, and
    with pixels, random_conv and digits_classifier evaluated no family is unseen, so no fdr_unseen."""
    from mlflow.tracking import MlflowClient

    source = trainer()
    checkpoint.save_atomic({**source.state_dict(), "seen_spaces": ["digits_classifier"]}, tmp_path / "base.pt")
    params = [*TINY, "train.steps = 2", "train.eval_samples = 64", "train.run_dir = 'runs/post'"]
    params += ["train.eval_spaces = [@pixels, @random_conv, @digits_classifier]"]
    run_id = run_experiment([QUICK], [*params, f"train.init_from = '{tmp_path / 'base.pt'}'"])
    run = MlflowClient(tracking_uri=f"sqlite:///{isolated_runs / 'runs' / 'mlflow.db'}").get_run(run_id)
    assert run.data.tags["seen_spaces"] == "digits_classifier,pixels"
    assert "eval/fdr_k" in run.data.metrics and "eval/fdr_unseen" not in run.data.metrics
    assert checkpoint.load(isolated_runs / "runs" / "post")["seen_spaces"] == ["digits_classifier", "pixels"]
    fresh = run_experiment([QUICK], [*params, "train.run_dir = 'runs/fresh'"])  # without init_from: classifier unseen
    fresh_run = MlflowClient(tracking_uri=f"sqlite:///{isolated_runs / 'runs' / 'mlflow.db'}").get_run(fresh)
    assert "seen_spaces" not in fresh_run.data.tags
    classifier = fresh_run.data.metrics["eval/fdr/digits_classifier"]
    assert fresh_run.data.metrics["eval/fdr_unseen"] == pytest.approx(classifier, rel=1e-14)


def write(path: Path, payload) -> str:
    torch.save(payload, path)
    return str(path)


@pytest.mark.parametrize(
    "make, words",
    [
        (
            lambda tmp: write(
                tmp / "renamed.pt",
                {("net.0.w" if k == "net.0.weight" else k): v for k, v in other_generator().state_dict().items()},
            ),
            "1 missing (net.0.weight); 1 unexpected (net.0.w)",
        ),
        (
            lambda tmp: write(tmp / "narrow.pt", other_generator(width=64).state_dict()),
            "with another shape (net.0.weight (64, 32) vs (256, 32), net.0.bias (64,) vs (256,), net.2.weight",
        ),
        (
            lambda tmp: write(
                tmp / "extra.pt", {**other_generator().state_dict(), **{f"x{i}": torch.ones(1) for i in range(7)}}
            ),
            "7 unexpected (x0, x1, x2, x3, x4, ... (2 more))",
        ),
        (lambda tmp: str(tmp / "missing.safetensors"), "missing.safetensors': no such file"),
        (lambda tmp: (tmp / "bad.pt").write_bytes(b"not a torch file") and str(tmp / "bad.pt"), "is corrupt or not a"),
        (
            lambda tmp: (
                (tmp / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
                and str(tmp / "bad.safetensors")
            ),
            "is corrupt or not a safetensors file",
        ),
        (lambda tmp: write(tmp / "nested.pt", {"model": other_generator().state_dict()}), "is not a flat state dict"),
        (lambda tmp: write(tmp / "list.pt", [1, 2]), "holds list, not a state dict"),
        (lambda tmp: str(tmp / "weights.npz"), "unknown weights format '.npz'"),
    ],
)
def test_init_from_mistakes_are_one_line(isolated_runs, tmp_path, capsys, make, words):
    path = make(tmp_path)
    config.parse([QUICK], TINY)
    generator = build_settings().generator
    with pytest.raises(MatchzooError, match="train.init_from") as error:
        load_into(generator, path)
    assert words in str(error.value) and "\n" not in str(error.value)
    code = main(["--gin", QUICK, *[f"--gin_param={p}" for p in TINY], f"--gin_param=train.init_from = '{path}'"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("matchzoo: error")]
    assert code == 2 and len(lines) == 1 and words in lines[0]


def test_a_run_records_the_init_file_and_several_emas(isolated_runs, tmp_path):
    from mlflow.tracking import MlflowClient

    path = tmp_path / "base.safetensors"
    save_file(other_generator().state_dict(), str(path))
    run_id = run_experiment(
        [QUICK],
        [
            *TINY,
            "train.steps = 2",
            f"train.init_from = '{path}'",
            "train.ema_decay = (0.9, 0.5)",
            "train.eval_spaces = [@pixels]",
            "train.eval_samples = 64",
            "train.run_dir = 'runs/post'",
        ],
    )
    run = MlflowClient(tracking_uri=f"sqlite:///{isolated_runs / 'runs' / 'mlflow.db'}").get_run(run_id)
    assert run.data.tags["init_from_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert run.data.params["train.init_from"] == f"'{path}'"
    assert run.data.tags["best_ema_decay"] in ("0.9", "0.5")
    assert "ema_0.5/eval/fdr_k" in run.data.metrics and "train/grad_norm" in run.data.metrics
    payload = checkpoint.load(isolated_runs / "runs" / "post")
    assert list(payload["generator_emas"]) == ["0.5"]


def test_an_ema_shares_a_frozen_module_held_outside_the_generator_tree():
    """A frozen decoder kept out of the parameters (``latent``) is shared by every EMA copy, not duplicated."""
    from matchzoo.train.ema import EMA

    class WithDecoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = torch.nn.Linear(4, 4)
            object.__setattr__(self, "decoder", torch.nn.Linear(4, 4).requires_grad_(False))

    model = WithDecoder()
    ema = EMA(model, 0.9)
    assert ema.model.decoder is model.decoder and ema.model.inner is not model.inner
    assert torch.equal(ema.model.inner.weight, model.inner.weight)
