"""Callbacks around the training loop: evaluation, checkpoints and metric logging.

Each has ``on_start(trainer)``, ``on_step(trainer, logs)`` and ``on_end(trainer)``. What a callback needs to
know about the run (total steps, batch sizes, eval spaces, dataset fingerprint) is handed to it at
construction as a :class:`RunContext`; from the trainer it uses only the live state (step, EMA generator,
real features, terms), never the trainer's settings.

Their cadence is bound in gin on the callback itself -- ``evaluator.every``, ``evaluator.samples``,
``evaluator.stability_every``, ``evaluator.stability_resamples``, ``evaluator.metrics``,
``checkpointer.every``, ``metric_logger.every`` -- and a value left unbound (``None``) falls back to the
``train.*`` setting of the same meaning (``train.eval_every``, ``train.eval_samples``, ...). When both are
bound, the callback's own binding wins.

``evaluator.reference_stats = 'DIR or file.npz'`` evaluates against statistics instead of the train split: the
reference of every eval space is ``DIR/<space>.npz`` (a file serves one eval space). The FDr denominator is then,
in this order: an ``fdr.baselines`` entry (fixed); the held-out features of the run (``train.heldout_dataset`` or
the dataset's held-out split); ``DIR/<space>.heldout.npz`` (FD of those statistics to the reference, used as a
fixed baseline); else none, and that space reports FD only (said once on stderr). Which one is the tag
:data:`FDR_BASELINE_TAG`.
"""

from __future__ import annotations

import copy
import functools
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import gin
import torch

from matchzoo import keys, stats_files
from matchzoo import validate as check
from matchzoo.digest import file_sha256
from matchzoo.errors import MatchzooError, UnknownNameError
from matchzoo.keys import BEST_EMA_DECAY_TAG, EVAL_STATS_TAG, FDR_BASELINE_TAG
from matchzoo.metrics import Metric, SpaceReference, compute_row, make_metrics, metric_names
from matchzoo.metrics.fdrk import FDr
from matchzoo.metrics.stability import matching_stability
from matchzoo.metrics.summary import across_spaces, eval_keys, families_of
from matchzoo.spaces.base import FeatureSpace
from matchzoo.tracking import Tracker, TrackingError
from matchzoo.train import checkpoint
from matchzoo.train.settings import Schedule

# FDR_BASELINE_TAG: the FDr denominator of the run: heldout_split | heldout_dataset:<fingerprint> |
# heldout_stats:<sha256> | fixed | none (FD only); "<space>=<source>;..." when the eval spaces differ
REFERENCE_STATS_OPTION = "evaluator.reference_stats"
HELDOUT_METRICS = ("fd_to_heldout", "fdr", "intervals")  # what reads the held-out side (left out when none exists)


@dataclass(frozen=True)
class RunContext:
    """The facts about a run its callbacks act on, fixed when the run is built."""

    steps: int  # the last step of the run: the final evaluation/checkpoint/log happens there, not twice
    batch_size: int  # the global training batch: default evaluation size and the stability probe size
    feature_batch_size: int  # chunk size for generating and encoding evaluation samples
    eval_spaces: Sequence[FeatureSpace] = ()
    dataset_fingerprint: str = ""  # with a space's fingerprint, keys the cached held-out FD


class Callback:
    def on_start(self, trainer) -> None: ...

    def on_step(self, trainer, logs: dict[str, float]) -> None: ...

    def on_end(self, trainer) -> None: ...


class MetricLogger(Callback):
    """Averages training logs over ``every`` steps and writes them to MLflow in batches."""

    def __init__(self, tracker: Tracker, every: int, steps: int):
        self.tracker, self.every, self.steps = tracker, every, steps
        self._sums: dict[str, float] = {}
        self._count = 0

    def on_step(self, trainer, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            self._sums[key] = self._sums.get(key, 0.0) + value
        self._count += 1
        if trainer.step % self.every == 0 or trainer.step == self.steps:
            self.tracker.log_metrics({k: v / self._count for k, v in self._sums.items()}, trainer.step)
            self._sums, self._count = {}, 0

    def on_end(self, trainer) -> None:
        self.tracker.flush()


class Evaluator(Callback):
    """Every ``every`` steps, at the start and at the end: EMA-generator samples vs real data in every eval space.

    Logs every quantity of the selected registered metrics as ``eval/<key>/<space>`` (default: those that
    run during training -- ``fd`` to the reference, ``fd_to_heldout``, and FDr with its parts), ``eval/fdr_k``,
    optional ``eval/stability/<space>`` for each training term, and a sample grid PNG.

    Samples come from ``generator.sample(n, labels, generator=rng)`` with a fixed seed, so every evaluation sees
    the same noise; a class-conditional generator gets class-balanced labels (``i % num_classes`` over all ``n``).
    A run with several EMA decays (``train.ema_decay = (0.999, 0.9999)``) evaluates the others once, at the end,
    under ``ema_<decay>/eval/...`` (:func:`matchzoo.keys.ema_key`), and tags the decay with the lowest FDr^k
    (:data:`BEST_EMA_DECAY_TAG`).
    """

    def __init__(
        self,
        tracker: Optional[Tracker],
        every: int,
        samples: Optional[int],
        seed: int,
        stability_every: int = 0,
        stability_resamples: int = 8,
        metrics: Optional[Sequence[Union[str, Metric]]] = None,
        context: Optional[RunContext] = None,
        reference_stats: Optional[str] = None,
    ):
        """``metrics``: registered names (default: those that run during training) or metrics built already;
        ``context`` is needed from :meth:`on_start` on (scoring given features needs none); ``reference_stats``: a
        statistics folder or file the eval spaces are compared with instead of the train split."""
        self.tracker, self.every, self.samples, self.seed = tracker, every, samples, seed
        self.stability_every, self.stability_resamples = stability_every, stability_resamples
        self.metrics = training_metrics(metrics)
        self.context = context
        self.reference_stats = reference_stats
        self.references: dict[str, SpaceReference] = {}
        self.space_metrics: dict[str, list[Metric]] = {}  # per eval space: the metrics its real side allows
        self.baselines: dict[str, str] = {}  # per eval space: where its FDr denominator comes from
        self.last: dict[str, float] = {}
        self.history: list[tuple[int, dict[str, float]]] = []
        self.other_emas: dict[float, dict[str, float]] = {}  # decay -> its final metrics (plain keys)
        self.best_ema_decay: Optional[float] = None

    def on_start(self, trainer) -> None:
        """Reference factors are computed once per space; each evaluation then costs one eigvalsh per FD."""
        for space in self.context.eval_spaces:
            heldout = trainer.real.heldout(space) if trainer.real.has_heldout else None
            if heldout is not None:
                self.samples = self.samples or heldout.shape[0]
            self.references[space.name] = self.space_reference(trainer, space, heldout)
        self.baselines = fdr_baselines(
            self.context.eval_spaces,
            self.metrics,
            self.reference_stats,
            trainer.real.has_heldout,
            trainer.real.heldout_source,
        )
        self.space_metrics = {space: self.metrics_for(space, real) for space, real in self.references.items()}
        self.announce()
        if trainer.step == 0:
            self.evaluate(trainer)

    def space_reference(self, trainer, space: FeatureSpace, heldout: Optional[torch.Tensor]) -> SpaceReference:
        """The real side of ``space``: the train split (or ``reference_stats``) and the run's held-out features."""
        key = (space.fingerprint, self.context.dataset_fingerprint, trainer.real.heldout_source)
        if self.reference_stats is None:
            return SpaceReference(trainer.real.train(space), heldout, cache_key=key, name=space.name)
        stats = SpaceReference.from_stats(self.reference_stats, space, option=REFERENCE_STATS_OPTION)
        if heldout is None:
            return stats
        return SpaceReference(
            None,
            heldout,
            stats.frechet,
            cache_key=(*stats.cache_key[:2], trainer.real.heldout_source),
            source=stats.source,
            files=stats.files[:1],  # the held-out features win over a <space>.heldout.npz
            name=space.name,
        )

    def metrics_for(self, space: str, real: SpaceReference) -> list[Metric]:
        """The metrics ``space`` is scored with, given where its FDr denominator comes from (:attr:`baselines`)."""
        source = self.baselines[space]
        if source.startswith("heldout_stats:"):  # FD(held-out statistics, reference) as a fixed baseline
            return with_baseline(self.metrics, space, real.frechet.distance_to_stats(real.frechet_heldout.stats))
        if source == "none":
            return [m for m in self.metrics if getattr(type(m), "registry_name", "") not in HELDOUT_METRICS]
        return self.metrics

    def announce(self) -> None:
        """Once per run: the spaces scored without FDr (stderr) and the statistics files read (tags)."""
        alone = [space for space, source in self.baselines.items() if source == "none"]
        if alone:
            print(
                f"matchzoo: note: {REFERENCE_STATS_OPTION}: no held-out side for eval space(s) {', '.join(alone)} "
                f"(no <space>.heldout.npz, no dataset, no fdr.baselines entry): FD only, no FDr there",
                file=sys.stderr,
            )
        if self.tracker is None:
            return
        tags = {}  # the fdr_baseline tag is set when the run starts (matchzoo.run), before any evaluation
        for space, real in self.references.items():
            for file, role in zip(real.files, ("", ".heldout")):
                tags.update({f"{EVAL_STATS_TAG}/{space}{role}/{k}": v for k, v in file.record().items()})
        if tags:
            self.tracker.set_tags(tags)

    def on_step(self, trainer, logs: dict[str, float]) -> None:
        if trainer.step % self.every == 0 and trainer.step != self.context.steps:
            self.evaluate(trainer)

    def on_end(self, trainer) -> None:
        if not self.history or self.history[-1][0] != trainer.step:
            self.evaluate(trainer)
        self.evaluate_other_emas(trainer)

    @torch.no_grad()
    def generate(self, trainer, n: int, generator=None) -> torch.Tensor:
        """``n`` samples of ``generator`` (default: the primary EMA generator), in chunks, from the fixed seed."""
        rng = torch.Generator().manual_seed(self.seed)
        generator = trainer.ema.model if generator is None else generator
        labels = generator.balanced_labels(n) if getattr(generator, "num_classes", 0) else None  # (n,) or None
        chunks = []
        chunk = self.context.feature_batch_size
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            part = None if labels is None else labels[start : start + size]
            chunks.append(generator.sample(size, labels=part, generator=rng))
        return torch.cat(chunks)

    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        chunks = images.split(self.context.feature_batch_size)
        with torch.no_grad():
            return {space.name: torch.cat([space(chunk) for chunk in chunks]) for space in self.context.eval_spaces}

    def evaluate(self, trainer) -> dict[str, float]:
        n = self.samples or self.context.batch_size
        images = self.generate(trainer, n)
        metrics = self.score(self.features(images), seen=trainer.seen_spaces)
        if self.stability_every and trainer.step % self.stability_every == 0:
            metrics.update(self.stability(trainer, images))
        self.last = metrics
        self.history.append((trainer.step, metrics))
        if self.tracker is not None:
            self.tracker.log_metrics(metrics, trainer.step)
            self.log_grid(images[:64], trainer.step)
        return metrics

    def evaluate_other_emas(self, trainer) -> None:
        """The final evaluation of every EMA besides the primary one, logged under ``ema_<decay>/...``; then the
        decay with the lowest FDr^k (the primary's included) as the tag :data:`BEST_EMA_DECAY_TAG`."""
        emas = getattr(trainer, "emas", [trainer.ema])
        if len(emas) < 2:
            return
        n = self.samples or self.context.batch_size
        for ema in emas[1:]:
            metrics = self.score(self.features(self.generate(trainer, n, ema.model)), seen=trainer.seen_spaces)
            self.other_emas[ema.decay] = metrics
            if self.tracker is not None:
                self.tracker.log_metrics({keys.ema_key(ema.decay, k): v for k, v in metrics.items()}, trainer.step)
        scores = {emas[0].decay: self.last.get(keys.FDRK)}
        scores.update({decay: metrics.get(keys.FDRK) for decay, metrics in self.other_emas.items()})
        scores = {decay: score for decay, score in scores.items() if score is not None}
        if scores:
            self.best_ema_decay = min(scores, key=scores.get)
            if self.tracker is not None:
                self.tracker.set_tags({BEST_EMA_DECAY_TAG: f"{self.best_ema_decay:g}"})

    def score(self, features: dict[str, torch.Tensor], seen: Sequence[str] = ()) -> dict[str, float]:
        """``eval/<key>/<space>`` of every selected metric, ``eval/fdr_k`` and ``eval/fdr_unseen``, from generated
        ``(n, D)`` features per eval space (each space's real side is in :attr:`references`); ``seen``: the spaces
        the run trains in."""
        rows = {
            space: compute_row(self.space_metrics.get(space, self.metrics), fake, self.references[space], self.seed)
            for space, fake in features.items()
        }
        metrics = {keys.eval_key(key, space): value for space, row in rows.items() for key, value in row.items()}
        # eval/fdr_k and eval/fdr_unseen (over the eval spaces in no family a term trains in), with intervals
        spaces = self.context.eval_spaces if self.context is not None else ()
        families = families_of({space.name: space for space in spaces})  # default: the registered families
        metrics.update(eval_keys(across_spaces(rows, seen, families)))
        return metrics

    def stability(self, trainer, images: torch.Tensor) -> dict[str, float]:
        """Per training term, against the real features its minibatches come from (the pool, when one is set);
        a term trained from statistics alone has no real minibatch to resample and is left out."""
        out = {}
        probe_images = images[: self.context.batch_size]
        for term in trainer.terms:
            if not stats_files.needs_real_samples(term.objective):
                continue
            with torch.no_grad():
                probe = term.space(probe_images)
            out[keys.stability_key(term.space.name)] = matching_stability(
                term.objective,
                probe,
                trainer.real.pool(term.space),
                resamples=self.stability_resamples,
                batch_size=self.context.batch_size,
                seed=self.seed,
            )
        return out

    def log_grid(self, images: torch.Tensor, step: int) -> None:
        from torchvision.utils import save_image

        scale = max(1, 64 // images.shape[-1])
        grid_images = torch.nn.functional.interpolate(images.float().cpu(), scale_factor=scale, mode="nearest")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"step_{step:06d}.png"
            save_image(grid_images, path, nrow=8, normalize=True, value_range=(-1, 1), padding=2)
            self.tracker.log_artifact(path, "samples")


class Checkpointer(Callback):
    """Atomic checkpoint every ``every`` steps and at the end (plus on Ctrl-C/SIGTERM, see :mod:`matchzoo.run`).

    ``saved_step`` is the step of the checkpoint on disk (``None``: none written yet), so an error can say
    whether a good checkpoint is left."""

    def __init__(
        self,
        path: Path,
        every: int,
        steps: int,
        extra: dict,
        tracker: Optional[Tracker] = None,
        saved_step: Optional[int] = None,
    ):
        self.path, self.every, self.steps, self.extra, self.tracker = path, every, steps, extra, tracker
        self.saved_step = saved_step

    def save(self, trainer) -> None:
        """Flush MLflow first (metrics up to this step are durable before the step is), but write the
        checkpoint even when the store fails -- a full or broken store must not cost the training -- and
        only then report the store's failure."""
        failure: Optional[TrackingError] = None
        if self.tracker is not None:
            try:
                self.tracker.flush()
            except TrackingError as error:
                failure = error
        self.write(trainer)
        if failure is not None:
            raise failure

    def write(self, trainer) -> None:
        checkpoint.save_atomic({**trainer.state_dict(), **self.extra}, self.path)
        self.saved_step = trainer.step

    def kept(self) -> str:
        """What a failed run leaves behind, for its error message."""
        if self.saved_step is None:
            return "no checkpoint was written yet"
        return f"the last good checkpoint (step {self.saved_step}) is kept in {self.path.parent}"

    def on_step(self, trainer, logs: dict[str, float]) -> None:
        if trainer.step % self.every == 0 and trainer.step != self.steps:
            self.save(trainer)

    def on_end(self, trainer) -> None:
        self.save(trainer)


def fdr_baselines(
    eval_spaces: Sequence[FeatureSpace],
    metrics: Sequence[Metric],
    reference_stats: Optional[str],
    has_heldout: bool,
    heldout_source: str,
) -> dict[str, str]:
    """``{space: where its FDr denominator comes from}`` (see the module docstring for the order)."""
    fixed = {name for metric in fdr_metrics(metrics) for name in metric.baselines}
    folder = None if reference_stats is None else Path(reference_stats).expanduser()
    sources = {}
    for space in eval_spaces:
        beside = (
            None if folder is None or not folder.is_dir() else stats_files.export_path(folder, space.name, "heldout")
        )
        if space.name in fixed:
            sources[space.name] = "fixed"
        elif has_heldout:
            sources[space.name] = heldout_source
        elif beside is not None and beside.is_file():
            sources[space.name] = f"heldout_stats:{file_sha256(beside)[:16]}"
        else:
            sources[space.name] = "none"
    return sources


def fdr_baseline_tag(sources: dict[str, str]) -> dict[str, str]:
    """The :data:`FDR_BASELINE_TAG` of a run: one source, or ``space=source;...`` when the spaces differ."""
    if not sources:
        return {}
    distinct = set(sources.values())
    value = distinct.pop() if len(distinct) == 1 else ";".join(f"{k}={v}" for k, v in sources.items())
    return {FDR_BASELINE_TAG: value}


def fdr_metrics(metrics: Sequence[Metric]) -> list[FDr]:
    """The FDr instances among ``metrics`` (an interval metric holds the one it follows as ``.fdr``)."""
    found = [m for m in metrics if isinstance(m, FDr)]
    return found + [m.fdr for m in metrics if isinstance(getattr(m, "fdr", None), FDr)]


def with_baseline(metrics: Sequence[Metric], space: str, baseline: float) -> list[Metric]:
    """``metrics`` with ``baseline`` as the fixed FDr denominator of ``space`` (copies; the originals unchanged)."""
    out = []
    for metric in metrics:
        if isinstance(metric, FDr):
            metric = FDr({**metric.baselines, space: baseline}, REFERENCE_STATS_OPTION)
        elif isinstance(getattr(metric, "fdr", None), FDr):
            metric = copy.copy(metric)
            metric.fdr = FDr({**metric.fdr.baselines, space: baseline}, REFERENCE_STATS_OPTION)
        out.append(metric)
    return out


def training_metrics(metrics: Optional[Sequence[Union[str, Metric]]]) -> list[Metric]:
    """Metrics built already are kept in their order; names are built in registry order."""
    if metrics is not None and all(isinstance(metric, Metric) for metric in metrics):
        return list(metrics)
    return make_metrics(metric_names(during_training=True) if metrics is None else metrics)


# --- gin: each callback owns its cadence ------------------------------------------------------------------
# The factories run before the operative config is recorded (so their bindings, and those of the metrics they
# build, count as used); they return the callback's class with its cadence bound, and run.py completes it with
# what exists only once the run is tracked (the MLflow tracker, the checkpoint's fields).


def _first(*values):
    return next((value for value in values if value is not None), None)


@gin.configurable("evaluator", module="callbacks", denylist=["schedule"])
def evaluator(
    schedule: Schedule,
    every: Optional[int] = None,
    samples: Optional[int] = None,
    stability_every: Optional[int] = None,
    stability_resamples: Optional[int] = None,
    metrics: Optional[Sequence[str]] = None,
    reference_stats: Optional[str] = None,
) -> Callable[..., Evaluator]:
    """``None``: the ``train.*`` value (``train.eval_every``, ...); ``metrics = None``: the registered metrics
    that run during training; ``stability_every = 0`` turns matching stability off; ``reference_stats``: a
    statistics folder (``<space>.npz`` per eval space) or file the eval spaces are compared with."""
    if reference_stats is not None and (not isinstance(reference_stats, str) or not reference_stats):
        raise MatchzooError(
            f"{REFERENCE_STATS_OPTION} must be a folder written by `matchzoo stats --export` or an npz path, "
            f"got {reference_stats!r}"
        )
    every = schedule.eval_every if every is None else check.positive_int("evaluator.every", every)
    if stability_every is not None:
        stability_every = check.non_negative_int("evaluator.stability_every", stability_every)
    if stability_resamples is not None:
        stability_resamples = check.integer("evaluator.stability_resamples", stability_resamples, 2)
    return functools.partial(
        Evaluator,
        every=every,
        samples=schedule.eval_samples if samples is None else check.integer("evaluator.samples", samples, 2),
        # matching stability at every evaluation unless either binding says otherwise
        stability_every=_first(stability_every, schedule.stability_every, every),
        stability_resamples=_first(stability_resamples, schedule.stability_resamples),
        metrics=named_metrics(metrics),
        reference_stats=reference_stats,
    )


def named_metrics(names: Optional[Sequence[str]]) -> list[Metric]:
    example = "['fd_reference', 'fdr', 'kid']"
    if names is None:
        return training_metrics(None)
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names):
        raise MatchzooError(f"evaluator.metrics must be a list of metric names such as {example}, got {names!r}")
    try:
        return training_metrics(names)
    except UnknownNameError as error:
        raise MatchzooError(f"evaluator.metrics: {error}") from None


@gin.configurable("checkpointer", module="callbacks", denylist=["schedule"])
def checkpointer(schedule: Schedule, every: Optional[int] = None) -> Callable[..., Checkpointer]:
    """``every = None``: ``train.checkpoint_every``."""
    every = schedule.checkpoint_every if every is None else check.positive_int("checkpointer.every", every)
    return functools.partial(Checkpointer, every=every)


@gin.configurable("metric_logger", module="callbacks", denylist=["schedule"])
def metric_logger(schedule: Schedule, every: Optional[int] = None) -> Callable[..., MetricLogger]:
    """``every = None``: ``train.log_every``."""
    every = schedule.log_every if every is None else check.positive_int("metric_logger.every", every)
    return functools.partial(MetricLogger, every=every)
