"""``train.*``: every setting of a training run, bound from gin.

One configurable (``train``) keeps every binding's name, so all of them land in the operative config and in
the MLflow params; :class:`TrainSettings` splits them into the parts each consumer needs:
:class:`ExperimentSetup` (what is matched: data, generator, terms, eval spaces, seed, labels, initial weights),
:class:`Optimization` (steps, batch, optimiser, schedule, clipping, EMA decays, precision),
:class:`Schedule` (how often to evaluate, log, checkpoint), :class:`Runtime` (where and how fast it runs)
and :class:`TrackingNames` (MLflow experiment, run name, run folder).

The generator is a factory (``train.generator = @mlp``) that is called after ``torch.manual_seed(train.seed)``,
so its initial weights follow the seed and nothing but the seed -- or ``train.init_from``, a weights file the
trainer loads into it before step 0 (:mod:`matchzoo.train.init_from`).

Labels: a class-conditional generator (``num_classes > 0``) is trained on a labelled dataset; the fake batch's
labels are drawn from the train split's label frequencies (``train.label_sampling = 'data'``) or uniformly
(``'uniform'``), and ``train.class_matched_real = True`` gives every term a real minibatch with exactly the fake
batch's labels (:mod:`matchzoo.train.labels`). An unconditional generator ignores the dataset's labels.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import gin
import torch

from matchzoo import keys, stats_files
from matchzoo import validate as check
from matchzoo.data.datasets import ImageDataset
from matchzoo.errors import MatchzooError
from matchzoo.generators.base import Generator
from matchzoo.spaces.base import FeatureSpace
from matchzoo.train import lr_schedule, optim
from matchzoo.train.lr_schedule import ScheduleFactory, check_schedule_factory, constant_lr
from matchzoo.train.optim import OptimizerFactory, adam, check_optimizer_factory
from matchzoo.train.terms import Term

MAX_STEPS = 10**9  # more is a typo (1e12), not a run: it would never finish and overflows schedules
MAX_BATCH = 2**20
IMAGE_COPIES = 4  # a generated batch, its gradient, and both again resized for a space: a floor, not an estimate
LABEL_SAMPLING = ("data", "uniform")
PRECISIONS = ("fp32", "bf16")


@dataclass
class ExperimentSetup:
    """What is matched: the data, the generator, the loss terms, where it is evaluated, the seed, how the fake
    batch's labels are drawn (``label_sampling``) and whether the real batch matches them (``class_matched_real``),
    and the weights file the generator starts from (``init_from``, None: the seeded initialisation)."""

    dataset: Optional[ImageDataset]  # None: every term trains from statistics files
    generator: Generator
    terms: list[Term]
    eval_spaces: list[FeatureSpace]
    seed: int
    label_sampling: str = "data"
    class_matched_real: bool = False
    per_class_matching: bool = False  # each term's loss summed class by class (matchzoo.train.per_class)
    init_from: Optional[str] = None
    heldout_dataset: Optional[ImageDataset] = None  # the FDr held-out side (all of it); None: the held-out split
    real_pool_size: Optional[int] = None  # real minibatches from this many train features; None: all of them


@dataclass
class Optimization:
    """How the generator is trained: ``optimizer(parameters, lr=lr, betas=betas)`` under the learning-rate
    schedule ``lr_schedule(optimizer, steps)``, gradients clipped to norm ``grad_clip_norm`` (None: not clipped),
    the forward passes in ``precision`` ('fp32' or 'bf16' autocast), and an EMA of the weights per decay in
    ``ema_decay`` (a tuple; the first is the primary one, evaluated during training and resumed as
    ``generator_ema``)."""

    steps: int
    batch_size: int
    optimizer: OptimizerFactory
    lr: float
    betas: tuple[float, float]
    ema_decay: tuple[float, ...]
    lr_schedule: ScheduleFactory = constant_lr
    grad_clip_norm: Optional[float] = None
    precision: str = "fp32"

    def build_optimizer(self, parameters) -> torch.optim.Optimizer:
        return optim.build("train.optimizer", self.optimizer, parameters, self.lr, self.betas)

    def build_schedule(self, optimizer: torch.optim.Optimizer):
        return lr_schedule.build("train.lr_schedule", self.lr_schedule, optimizer, self.steps)


@dataclass
class Schedule:
    """The ``train.*`` cadence: how often (in steps) the callbacks act unless a callback's own binding
    (``evaluator.every``, ...; :mod:`matchzoo.train.callbacks`) says otherwise. ``stability_every``: ``None``
    with every evaluation, 0 off."""

    eval_every: int
    eval_samples: Optional[int]
    stability_every: Optional[int]
    stability_resamples: int
    log_every: int
    checkpoint_every: int


@dataclass
class Runtime:
    """Where and how fast the run executes; none of it changes the numbers (so a resume may change it)."""

    device: str
    feature_batch_size: int
    progress: bool
    tf32: bool
    compile_spaces: bool
    num_threads: Optional[int]


@dataclass
class TrackingNames:
    experiment: str
    run_name: Optional[str]
    run_dir: Optional[str]


@gin.configurable("train", module="train")
class TrainSettings:
    def __init__(
        self,
        dataset: Optional[ImageDataset] = None,
        generator: Callable[[], Generator] = gin.REQUIRED,
        terms: Sequence[Term] = gin.REQUIRED,
        eval_spaces: Sequence[FeatureSpace] = (),
        steps: int = 1000,
        batch_size: int = 256,
        optimizer: OptimizerFactory = adam,
        lr: float = 1e-3,
        betas: tuple = (0.5, 0.999),
        ema_decay: Any = 0.99,
        seed: int = 0,
        lr_schedule: ScheduleFactory = constant_lr,
        grad_clip_norm: Optional[float] = None,
        precision: str = "fp32",
        label_sampling: str = "data",
        class_matched_real: bool = False,
        per_class_matching: bool = False,
        init_from: Optional[str] = None,
        heldout_dataset: Optional[ImageDataset] = None,
        real_pool_size: Optional[int] = None,
        device: str = "auto",
        eval_every: int = 250,
        eval_samples: Optional[int] = None,
        stability_every: Optional[int] = None,
        stability_resamples: int = 8,
        log_every: int = 25,
        checkpoint_every: int = 250,
        experiment: str = "matchzoo",
        run_name: Optional[str] = None,
        run_dir: Optional[str] = None,
        feature_batch_size: int = 256,
        progress: bool = True,
        tf32: bool = True,
        compile_spaces: bool = False,
        num_threads: Optional[int] = None,
    ):
        self.schedule = schedule(
            eval_every, eval_samples, stability_every, stability_resamples, log_every, checkpoint_every
        )
        self.runtime = runtime(device, feature_batch_size, progress, tf32, compile_spaces, num_threads)
        self.tracking = TrackingNames(experiment, run_name, run_dir)
        self.setup = setup(
            dataset,
            generator,
            terms,
            eval_spaces,
            seed,
            labels(label_sampling, class_matched_real, per_class_matching),
            init_from,
            real_data(heldout_dataset, real_pool_size),
        )
        recipe_options = recipe(lr_schedule, grad_clip_norm, precision)
        self.optimization = optimization(steps, batch_size, optimizer, lr, betas, ema_decay, self.setup, recipe_options)
        check_pool(self.setup, self.optimization.batch_size)

    def __getattr__(self, name: str) -> Any:
        """Flat reads (``settings.steps``) for code that still takes the whole settings, not its part."""
        for part in ("setup", "optimization", "schedule", "runtime", "tracking"):
            if part in self.__dict__ and name in self.__dict__[part].__dataclass_fields__:
                return getattr(self.__dict__[part], name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")


def schedule(eval_every, eval_samples, stability_every, stability_resamples, log_every, checkpoint_every) -> Schedule:
    eval_every = check.positive_int("train.eval_every", eval_every)
    return Schedule(
        eval_every=eval_every,
        eval_samples=None if eval_samples is None else check.integer("train.eval_samples", eval_samples, 2),
        # None (matching stability at every evaluation) is resolved by the evaluator, whose own cadence may differ
        stability_every=(
            None if stability_every is None else check.non_negative_int("train.stability_every", stability_every)
        ),
        stability_resamples=check.integer("train.stability_resamples", stability_resamples, 2),
        log_every=check.positive_int("train.log_every", log_every),
        checkpoint_every=check.positive_int("train.checkpoint_every", checkpoint_every),
    )


def runtime(device, feature_batch_size, progress, tf32, compile_spaces, num_threads) -> Runtime:
    return Runtime(
        device=check.device("train.device", device, allow_auto=True),
        feature_batch_size=check.positive_int("train.feature_batch_size", feature_batch_size, MAX_BATCH),
        progress=check.instance("train.progress", progress, bool, "True or False"),
        tf32=check.instance("train.tf32", tf32, bool, "True or False"),
        compile_spaces=check.instance("train.compile_spaces", compile_spaces, bool, "True or False"),
        num_threads=None if num_threads is None else check.positive_int("train.num_threads", num_threads),
    )


def labels(label_sampling, class_matched_real, per_class_matching=False) -> dict[str, Any]:
    """``train.label_sampling``, ``train.class_matched_real`` and ``train.per_class_matching``, checked (their fit
    to the generator and the dataset is checked once both exist, :func:`matchzoo.train.labels.check_labelled`)."""
    options = {
        "label_sampling": check.choice("train.label_sampling", label_sampling, LABEL_SAMPLING),
        "class_matched_real": check.instance("train.class_matched_real", class_matched_real, bool, "True or False"),
        "per_class_matching": check.instance("train.per_class_matching", per_class_matching, bool, "True or False"),
    }
    if options["per_class_matching"] and not options["class_matched_real"]:
        raise MatchzooError(
            "train.per_class_matching = True compares each class's fakes with real items of that class; "
            "set train.class_matched_real = True too"
        )
    return options


def init_path(value) -> Optional[str]:
    """``train.init_from``: None or a path string (its suffix and existence are checked when it is loaded)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise MatchzooError(
            f"train.init_from must be a path such as '/models/base.safetensors' (or .pt) or None, got {value!r}"
        )
    return value


def real_data(heldout_dataset, real_pool_size) -> dict[str, Any]:
    """``train.heldout_dataset`` (a dataset or None) and ``train.real_pool_size`` (None or at least 2; its fit to
    the batch and the dataset is checked once both are known)."""
    if heldout_dataset is not None:
        check.instance(
            "train.heldout_dataset", heldout_dataset, ImageDataset, "a dataset such as @image_folder() or None"
        )
    if real_pool_size is not None:
        real_pool_size = check.integer("train.real_pool_size", real_pool_size, 2)
    return {"heldout_dataset": heldout_dataset, "real_pool_size": real_pool_size}


def image_shape(dataset: ImageDataset) -> tuple[int, ...]:
    """``(C, H, W)`` of the dataset's first train image (one image is read)."""
    return tuple(dataset.split("train")[0].shape)


def check_real_data(dataset, generator: Generator, terms: Sequence[Term], real_options: dict) -> None:
    """Without a dataset every term trains from statistics; a held-out dataset has the dataset's image shape."""
    if dataset is None:
        stats_files.check_terms_without_dataset(terms)
        if real_options.get("real_pool_size") is not None:
            raise MatchzooError(
                "train.real_pool_size is set but train.dataset = None: there are no real features to pool; "
                "drop train.real_pool_size or give the dataset"
            )
    heldout = real_options.get("heldout_dataset")
    if heldout is None:
        return
    # the images evaluation compares: the dataset's, or without one the generator's own
    expected = image_shape(dataset) if dataset is not None else tuple(getattr(generator, "image_shape", ()) or ())
    other = f"train.dataset ({dataset.name})" if dataset is not None else "the generator (train.dataset = None)"
    if expected and image_shape(heldout) != expected:
        raise MatchzooError(
            f"train.heldout_dataset ({heldout.name}) has images of shape {image_shape(heldout)} but {other} has "
            f"{expected}; give a held-out dataset with the same size and channels (e.g. the same image_folder.size)"
        )


def check_pool(setup: ExperimentSetup, batch_size: int) -> None:
    """``train.real_pool_size`` holds at least one global batch and at most the train split."""
    size = setup.real_pool_size
    if size is None:
        return
    if size < batch_size:
        raise MatchzooError(
            f"train.real_pool_size = {size} is smaller than train.batch_size = {batch_size}; a pool holds at least "
            f"one real minibatch: raise it (e.g. 100 x the batch) or lower the batch"
        )
    available = len(setup.dataset.split("train"))
    if size > available:
        raise MatchzooError(
            f"train.real_pool_size = {size} exceeds the {available} train images of dataset {setup.dataset.name!r}; "
            f"drop the binding (every train feature is used) or lower it"
        )


def setup(
    dataset, generator, terms, eval_spaces, seed, label_options=None, init_from=None, real_options=None
) -> ExperimentSetup:
    """Seeds the global RNG, then builds the factories in the order the shipped configs bind them (generator,
    terms, eval spaces), so every random initialisation follows ``train.seed`` and nothing else."""
    if dataset is not None:
        dataset = check.instance("train.dataset", dataset, ImageDataset, "a dataset such as @digits() (or None)")
    init_from = init_path(init_from)
    check.instances("train.terms", terms, object, "loss terms", TERMS_EXAMPLE)  # a list, no strings in it
    check.instances("train.eval_spaces", eval_spaces, object, "feature spaces", SPACES_EXAMPLE)
    if not terms:
        raise MatchzooError(
            "train.terms is empty; give at least one @term (a feature space, an objective and a weight)"
        )
    refuse_unseeded_parameters(terms)
    seed = check.seed("train.seed", seed)
    factory = generator_factory(generator)
    torch.manual_seed(seed)
    built_generator = build_generator(factory)
    built_terms = check.instances(
        "train.terms", [build_item(item, Term) for item in terms], Term, "loss terms", TERMS_EXAMPLE
    )
    built_spaces = check.instances(
        "train.eval_spaces",
        [build_item(item, FeatureSpace) for item in eval_spaces],
        FeatureSpace,
        "feature spaces",
        SPACES_EXAMPLE,
    )
    real_options = real_options or {}
    check_real_data(dataset, built_generator, built_terms, real_options)
    return ExperimentSetup(
        dataset,
        built_generator,
        built_terms,
        built_spaces,
        seed,
        **(label_options or {}),
        init_from=init_from,
        **real_options,
    )


TERMS_EXAMPLE, SPACES_EXAMPLE = "[@term]", "[@pixels, @digits_ssl]"


def build_item(item: Any, kind: type) -> Any:
    """A list item gin built already (``@term()``), or a factory (``@term``, ``@ssl/term``) built now."""
    if isinstance(item, (kind, str, bytes, torch.nn.Module)) or not callable(item):
        return item  # checked by the caller, with the list's own message
    return item()


def refuse_unseeded_parameters(terms: Sequence[Any]) -> None:
    """A term gin built (``@term()``) exists before the seed is set; an objective with parameters (a critic)
    would start from weights ``train.seed`` does not choose."""
    for term in terms:
        if isinstance(term, Term) and any(True for _ in term.objective.parameters()):
            raise MatchzooError(
                f"train.terms: term {term.name!r} was built before train.seed is applied, but its "
                f"objective has parameters that must start from the seed; write it as a factory "
                f"(@term or @scope/term, without parentheses)"
            )


def generator_factory(value: Any) -> Callable[[], Generator]:
    """``@mlp`` (a factory) is expected; ``@mlp()`` would have been built by gin before the seed is set."""
    if isinstance(value, Generator):
        name = getattr(type(value), "registry_name", type(value).__name__)
        raise MatchzooError(
            f"train.generator = @{name}() builds the generator before train.seed is applied; write "
            f"train.generator = @{name} (no parentheses) so it is built after seeding"
        )
    if isinstance(value, torch.nn.Module) or not callable(value):
        check.instance("train.generator", value, Generator, "a generator such as @mlp")
    return value


def build_generator(factory: Callable[[], Generator]) -> Generator:
    name = getattr(factory, "registry_name", getattr(factory, "__name__", "the factory"))
    return check.instance(
        "train.generator", factory(), Generator, f"a generator such as @mlp (@{name} built something else)"
    )


def recipe(lr_schedule, grad_clip_norm, precision) -> dict[str, Any]:
    """The training recipe beyond the optimiser: schedule factory, gradient clipping, autocast precision."""
    return {
        "lr_schedule": check_schedule_factory("train.lr_schedule", lr_schedule),
        "grad_clip_norm": (
            None if grad_clip_norm is None else check.positive_real("train.grad_clip_norm", grad_clip_norm)
        ),
        "precision": check.choice("train.precision", precision, PRECISIONS),
    }


def ema_decays(value) -> tuple[float, ...]:
    """``train.ema_decay``: one decay or a tuple of distinct ones, each in [0, 1) (1 would never follow the
    generator); the first is the primary EMA."""
    if isinstance(value, (tuple, list)):
        if not value:
            raise MatchzooError("train.ema_decay is empty; give a decay such as 0.999 or a tuple (0.999, 0.9999)")
        decays = tuple(check.fraction(f"train.ema_decay[{i}]", d, open_high=True) for i, d in enumerate(value))
    else:
        decays = (check.fraction("train.ema_decay", value, open_high=True),)
    repeated = sorted({d for d in decays if decays.count(d) > 1})
    if repeated:
        raise MatchzooError(f"train.ema_decay lists {repeated[0]:g} more than once; give each decay once")
    names = [keys.ema_key(d, "") for d in decays]  # metric keys round to 6 significant digits
    clash = next((d for d, name in zip(decays, names) if names.count(name) > 1), None)
    if clash is not None:
        others = [d for d, name in zip(decays, names) if name == keys.ema_key(clash, "")]
        raise MatchzooError(
            f"train.ema_decay: {others[0]!r} and {others[1]!r} share the metric prefix {keys.ema_key(clash, '')!r}; "
            f"give decays that differ in their first 6 significant digits"
        )
    return decays


def optimization(
    steps, batch_size, optimizer, lr, betas, ema_decay, setup: ExperimentSetup, recipe_options=None
) -> Optimization:
    return Optimization(
        steps=check.positive_int("train.steps", steps, MAX_STEPS),
        batch_size=batch_size_checked(batch_size, setup),
        optimizer=check_optimizer_factory("train.optimizer", optimizer),
        lr=check.positive_real("train.lr", lr),
        # Adam needs each beta in [0, 1): beta = 1 never forgets its first moment
        betas=check.pair("train.betas", betas, check.fraction, False, True),
        ema_decay=ema_decays(ema_decay),
        **(recipe_options or {}),
    )


def batch_size_checked(value, setup: ExperimentSetup) -> int:
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and value < 2:
        raise MatchzooError(f"train.batch_size must be at least 2 (statistics need two samples), got {value}")
    batch_size = check.integer("train.batch_size", value, 2, MAX_BATCH)
    per_process = -(-batch_size // max(1, int(os.environ.get("WORLD_SIZE", "1"))))  # torchrun splits the batch
    needed = per_process * largest_image(setup) * 4 * IMAGE_COPIES  # float32 bytes
    available = check.memory_bytes()
    if available is not None and needed > available:
        raise MatchzooError(
            f"train.batch_size = {batch_size} needs at least {needed / 2**30:.1f} GiB for its images alone, more "
            f"than this machine's {available / 2**30:.1f} GiB of memory; lower train.batch_size"
        )
    return batch_size


def largest_image(setup: ExperimentSetup) -> int:
    """Elements of the largest image a batch item becomes: the generator's output or a space's resized input."""
    sizes = [math.prod(getattr(setup.generator, "image_shape", (1,)))]
    sizes += [3 * term.space.input_size**2 for term in setup.terms if term.space.input_size]
    return max(sizes)
