"""``python -m matchzoo.run --gin FILE [--gin FILE ...] [--gin_param 'scope.name=value' ...] [--resume DIR]``

Parse the config, build the experiment (``train.*``: the settings seed the RNG, then build the generator,
terms and eval spaces), run it with the shared trainer, and track the run in MLflow (operative config,
params, metrics, sample grids). Checkpoints go to ``runs/<experiment>/<run>/``; a run directory that
already holds a checkpoint is resumed (same MLflow run, no repeated steps).

MLflow state is changed only by the process that owns the run: the run folder is locked for the whole
run, and a resume is checked against the checkpoint (same experiment, see :data:`RESUMABLE_CHANGES`;
weights that load) before the MLflow run is touched. Whatever stops a run that has started -- Ctrl-C,
SIGTERM, a failing store, a NaN -- leaves a status that says so and says which checkpoint is on disk.
"""

from __future__ import annotations

import argparse
import functools
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from matchzoo import cli_args, config, keys, signals, stored_config, tracking
from matchzoo.cli import guarded
from matchzoo.errors import MatchzooError
from matchzoo.spaces.resolve import check_weights, configured_requests
from matchzoo.tracking import Tracker, TrackingError, summary_params
from matchzoo.train import callbacks as callback_factories
from matchzoo.train import checkpoint, distributed
from matchzoo.train.callbacks import Checkpointer, Evaluator, MetricLogger, RunContext
from matchzoo.train.settings import Schedule, TrainSettings
from matchzoo.train.terms import objective_name
from matchzoo.train.trainer import NonFiniteError, Trainer
from matchzoo.validate import ArgumentParser


def build_settings() -> TrainSettings:
    """Every ``train.*`` component from the parsed config (the settings seed the RNG before the generator)."""
    return config.build(TrainSettings)


def run_experiment(
    gin_files: Sequence[str], gin_params: Sequence[str] = (), tags: Optional[dict] = None, resume: Optional[str] = None
) -> str:
    """Train one configured experiment; returns the MLflow run id."""
    threads = torch.get_num_threads()  # train.num_threads changes a process-wide setting; give it back
    joined = distributed.current().enabled  # a process group the caller owns is theirs to leave
    finished = False
    try:
        run_id = _run_experiment(gin_files, gin_params, tags, resume)
        finished = True
        return run_id
    finally:
        if not joined:
            distributed.cleanup(finished)
        torch.set_num_threads(threads)


def _run_experiment(
    gin_files: Sequence[str], gin_params: Sequence[str], tags: Optional[dict], resume: Optional[str]
) -> str:
    files = parse(gin_files, gin_params)
    settings = build_settings()
    trainer = Trainer(settings, resuming=continues_a_run(resume, settings))
    run_dir = Path(
        distributed.broadcast_object(str(resume or settings.tracking.run_dir or default_run_dir(settings, files)))
    )
    if resume and not (run_dir / checkpoint.FILENAME).is_file():
        raise MatchzooError(f"--resume {resume}: no {checkpoint.FILENAME} there")
    plans = plan_callbacks(settings.schedule)
    check_evaluation_data(settings, plans)
    lock = lock_run_dir(run_dir, trainer.dist.is_main)
    try:
        return _train(trainer, RunConfig(files, list(gin_params), config.record()), plans, tags, run_dir)
    finally:
        lock.release()


def continues_a_run(resume: Optional[str], settings: TrainSettings) -> bool:
    """Whether this run continues from a checkpoint (``--resume``, or a ``train.run_dir`` that holds one): its
    weights then come from the checkpoint and ``train.init_from`` is not read again."""
    folder = resume or settings.tracking.run_dir
    return folder is not None and (Path(folder) / checkpoint.FILENAME).is_file()


def parse(gin_files: Sequence[str], gin_params: Sequence[str]) -> list[Path]:
    """The config, checked for everything that can fail before a dataset or model is built."""
    files = config.parse(gin_files, gin_params)
    refuse_shadowed_cadence(gin_params)
    # every missing pretrained model in one line, before datasets or models are built
    check_weights(configured_requests(config.referenced_configurables(), config.query))
    tracking.check_store()  # a store that cannot take the run fails now, not after the reference features
    return files


@dataclass(frozen=True)
class RunConfig:
    """Where a run's config came from and what gin recorded of it once everything was built."""

    files: list[Path]
    gin_params: list[str]
    record: config.Record

    def checkpoint_fields(self, world_size: int) -> dict:
        """What every checkpoint of the run carries besides the trainer state and the MLflow run id."""
        return {
            "operative_config": self.record.operative,
            "gin_files": [str(f) for f in self.files],
            "gin_params": self.gin_params,
            "world_size": world_size,
            "generator_spec": stored_config.plain_generator_spec(self.record.operative),
        }


def check_evaluation_data(settings: TrainSettings, plans: "CallbackPlans") -> None:
    """Eval spaces compare with real data: without ``train.dataset`` that is ``evaluator.reference_stats``."""
    setup = settings.setup
    stats = getattr(plans.evaluator, "keywords", {}).get("reference_stats")
    if setup.dataset is None and setup.eval_spaces and stats is None:
        names = ", ".join(space.name for space in setup.eval_spaces)
        raise MatchzooError(
            f"train.eval_spaces ({names}) compare with real data but train.dataset = None; set "
            f"evaluator.reference_stats = 'DIR' (a `matchzoo stats --export` folder), give the dataset, or set "
            f"train.eval_spaces = []"
        )


def lock_run_dir(run_dir: Path, is_main: bool) -> checkpoint.RunLock:
    """Rank 0 locks the run folder; every rank learns whether that failed, so none waits for the others."""
    lock = checkpoint.RunLock(run_dir)
    failure = None
    if is_main:
        try:
            lock.acquire()
        except MatchzooError as error:
            failure = str(error)
    failure = distributed.broadcast_object(failure)
    if failure:
        raise MatchzooError(failure)
    return lock


@dataclass(frozen=True)
class CallbackPlans:
    """The callbacks as gin configured them (cadence, metrics), still without the tracker and checkpoint fields."""

    checkpointer: Callable[..., Checkpointer]
    evaluator: Callable[..., Evaluator]
    metric_logger: Callable[..., MetricLogger]


# a callback's own binding wins over the train.* value it falls back to: an override of the train.* value
# (--gin_param, a sweep axis) while the callback's own binding is set would change nothing
CADENCE_FALLBACKS = {
    "train.eval_every": "evaluator.every",
    "train.eval_samples": "evaluator.samples",
    "train.stability_every": "evaluator.stability_every",
    "train.stability_resamples": "evaluator.stability_resamples",
    "train.checkpoint_every": "checkpointer.every",
    "train.log_every": "metric_logger.every",
}


def refuse_shadowed_cadence(gin_params: Sequence[str]) -> None:
    for text in gin_params:
        for statement in config.statements(text, f"--gin_param {text!r}"):
            key = config.binding_key(statement) if hasattr(statement, "arg_name") else None
            own = CADENCE_FALLBACKS.get(key)
            if own is not None and config.query(own, None) is not None:
                raise MatchzooError(
                    f"--gin_param {text!r} changes nothing: {own} = {config.query(own)!r} is bound and wins over "
                    f"{key} (set {own} instead)"
                )


def plan_callbacks(schedule: Schedule) -> CallbackPlans:
    """Built before the operative config is recorded, so ``evaluator.*`` and the metric bindings count as used;
    the ``train.*`` cadence is what a callback falls back to when its own binding is unset."""
    factories = (callback_factories.checkpointer, callback_factories.evaluator, callback_factories.metric_logger)
    return CallbackPlans(*(config.build(functools.partial(factory, schedule)) for factory in factories))


def _train(trainer: Trainer, run_config: RunConfig, plans: CallbackPlans, tags: Optional[dict], run_dir: Path) -> str:
    """Everything that can refuse the run (checkpoint, config changes) happens before MLflow is touched."""
    settings, operative = trainer.settings, run_config.record.operative
    previous = checkpoint.load(run_dir) if (run_dir / checkpoint.FILENAME).is_file() else None
    changes = resume_changes(previous, operative, run_dir) if previous is not None else {}
    trainer.prepare()
    if previous is not None:
        trainer.load_state_dict(previous)
        steps = settings.optimization.steps
        if trainer.step >= steps:
            print(
                f"matchzoo: {run_dir} is already at step {trainer.step} (train.steps = {steps}); nothing to do "
                f"(raise train.steps to train longer)",
                file=sys.stderr,
            )
            return str(previous.get("mlflow_run_id", ""))
    if not trainer.dist.is_main:  # other ranks train; rank 0 alone logs, evaluates and checkpoints
        return _run_worker(trainer)
    tags = run_tags(settings, run_config.files, run_dir, tags)
    tags.update(fdr_baseline_tag(trainer, plans))
    if trainer.init_from_sha256 is not None:  # the weights file this run started from (train.init_from)
        tags[keys.INIT_FROM_SHA_TAG] = trainer.init_from_sha256
    if trainer.inherited_spaces:  # ... and the spaces those weights had been optimised in
        tags[keys.SEEN_SPACES_TAG] = ",".join(trainer.seen_spaces)
    tracker = start_tracking(settings, tags, run_dir, previous, changes, run_config.record, trainer.step)
    fields = {**run_config.checkpoint_fields(trainer.dist.world_size), "mlflow_run_id": tracker.run_id}
    checkpointer, evaluator, logger = callbacks(plans, settings, tracker, run_dir, fields, previous, trainer.step)
    trainer.callbacks = [logger, evaluator, checkpointer]
    fit(trainer, tracker, checkpointer)
    summarize(evaluator, tracker.run_id, run_dir)
    return tracker.run_id


def callbacks(
    plans: CallbackPlans,
    settings: TrainSettings,
    tracker: Tracker,
    run_dir: Path,
    fields: dict,
    previous: Optional[dict],
    step: int,
) -> tuple[Checkpointer, Evaluator, MetricLogger]:
    """The planned callbacks, given the tracked run and what they need to know about it."""
    context = run_context(settings)
    checkpointer = plans.checkpointer(
        path=run_dir / checkpoint.FILENAME,
        steps=context.steps,
        extra=fields,
        tracker=tracker,
        saved_step=step if previous is not None else None,
    )
    evaluator = plans.evaluator(tracker=tracker, seed=settings.setup.seed, context=context)
    return checkpointer, evaluator, plans.metric_logger(tracker=tracker, steps=context.steps)


def run_context(settings: TrainSettings) -> RunContext:
    setup = settings.setup
    return RunContext(
        steps=settings.optimization.steps,
        batch_size=settings.optimization.batch_size,
        feature_batch_size=settings.runtime.feature_batch_size,
        eval_spaces=tuple(setup.eval_spaces),
        dataset_fingerprint=setup.dataset.fingerprint if setup.dataset is not None else "",
    )


def run_tags(settings: TrainSettings, files: list[Path], run_dir: Path, extra: Optional[dict]) -> dict[str, str]:
    setup = settings.setup
    return {
        keys.OBJECTIVE_TAG: ",".join(objective_name(t.objective) for t in setup.terms),
        keys.TRAIN_SPACE_TAG: ",".join(t.space.name for t in setup.terms),
        keys.EVAL_SPACES_TAG: ",".join(s.name for s in setup.eval_spaces),
        keys.DATASET_TAG: setup.dataset.name if setup.dataset is not None else keys.NO_DATASET,
        keys.GIN_FILES_TAG: ",".join(str(f) for f in files),
        keys.RUN_DIR_TAG: str(run_dir),
        **reference_stats_tags(setup.terms),
        **(extra or {}),
    }


def fdr_baseline_tag(trainer: Trainer, plans: CallbackPlans) -> dict[str, str]:
    """Where each eval space's FDr denominator comes from (``fdr_baseline``), known before any evaluation."""
    planned = getattr(plans.evaluator, "keywords", {})
    sources = callback_factories.fdr_baselines(
        trainer.settings.setup.eval_spaces,
        planned.get("metrics") or [],
        planned.get("reference_stats"),
        trainer.real.has_heldout,
        trainer.real.heldout_source,
    )
    return callback_factories.fdr_baseline_tag(sources)


def reference_stats_tags(terms) -> dict[str, str]:
    """What each term's statistics file was (``fd.reference_stats``): path, SHA-256, arrays read, layout."""
    tags = {}
    for term in terms:
        file = getattr(term.objective, "reference_file", None)
        if file is not None:
            tags.update(
                {f"{keys.REFERENCE_STATS_TAG}/{term.name}/{key}": value for key, value in file.record().items()}
            )
    return tags


def start_tracking(
    settings: TrainSettings,
    tags: dict[str, str],
    run_dir: Path,
    previous: Optional[dict],
    changes: dict[str, tuple[str, str]],
    record: config.Record,
    step: int,
) -> Tracker:
    """A new MLflow run, or the resumed one set RUNNING; if recording the config fails, a resumed run gets
    its earlier status back (this process never trained in it)."""
    names = settings.tracking
    tracker = Tracker(
        names.experiment,
        names.run_name or run_dir.name,
        tags,
        resume_run_id=previous["mlflow_run_id"] if previous else None,
    )
    try:
        if previous is None:
            record_config(
                tracker,
                record,
                {keys.OBJECTIVE_TAG: tags[keys.OBJECTIVE_TAG], keys.TRAIN_SPACE_TAG: tags[keys.TRAIN_SPACE_TAG]},
            )
        else:
            print(f"resuming {run_dir} at step {step} (MLflow run {tracker.run_id})", file=sys.stderr)
            record_resume(tracker, changes, record.operative, step)
    except BaseException:
        close_quietly(tracker.restore if previous is not None else lambda: tracker.finish("FAILED"))
        raise
    return tracker


def fit(trainer: Trainer, tracker: Tracker, checkpointer: Checkpointer) -> None:
    """Train; whatever stops the run, the MLflow status says so and a usable checkpoint is on disk."""
    first_step = trainer.step

    def close(status: str) -> None:
        if tracker.previous_status and trainer.step == first_step:  # a resume that never trained a step
            close_quietly(tracker.restore)
        else:
            close_quietly(lambda: tracker.finish(status))

    try:
        trainer.fit()
    except KeyboardInterrupt as interrupt:  # Ctrl-C and SIGTERM (matchzoo.signals)
        note = save_regardless(checkpointer, trainer)
        close("KILLED")
        raise signals.Interrupted(
            getattr(interrupt, "signum", signal.SIGINT), f"interrupted at step {trainer.step}; {note}"
        ) from None
    except TrackingError as error:  # the store broke mid-run: keep the training, report the store
        note = save_regardless(checkpointer, trainer)
        close("FAILED")
        raise TrackingError(f"{error}; {note}") from None
    except NonFiniteError as error:
        close("FAILED")
        raise NonFiniteError(f"{error}; {checkpointer.kept()}") from None
    except BaseException:
        close("FAILED")
        raise
    tracker.finish("FINISHED")


def save_regardless(checkpointer: Checkpointer, trainer: Trainer) -> str:
    """Write the checkpoint without needing MLflow; says what is on disk afterwards."""
    try:
        checkpointer.write(trainer)
    except MatchzooError as error:
        return f"{error}; {checkpointer.kept()}"
    where = checkpointer.path.parent
    return f"checkpoint saved in {where} (continue with --resume {where})"


def close_quietly(close) -> None:
    """Finishing the MLflow run while an error propagates: a second failure must not hide the first."""
    try:
        close()
    except MatchzooError as error:
        print(f"matchzoo: warning: {error}", file=sys.stderr)


def _run_worker(trainer: Trainer) -> str:
    trainer.settings.runtime.progress = False
    trainer.fit()
    return ""


# how often the callbacks act: the same freedom under the callbacks' own bindings as under train.*
RESUMABLE_CADENCE = frozenset(
    {"evaluator.every", "evaluator.stability_every", "checkpointer.every", "metric_logger.every"}
)
RESUMABLE_CHANGES = RESUMABLE_CADENCE | frozenset(
    f"train.{name}"
    for name in (
        "steps",
        "progress",
        "num_threads",
        "device",
        "eval_every",
        "log_every",
        "checkpoint_every",
        "stability_every",
        "feature_batch_size",
        "compile_spaces",
        "tf32",
        "run_name",
        "init_from",  # read only before step 0: a resumed run's weights come from its checkpoint
    )
)
NOT_A_CHANGE = frozenset({"train.run_dir"})  # --resume names the folder; the binding is moot then


# train.steps may change on resume, but not under a schedule whose shape depends on it (the cosine spans train.steps)
STEPS_DEPENDENT_SCHEDULES = frozenset({"warmup_cosine"})


def refuse_schedule_stretch(stored: dict, current: dict, run_dir: Path) -> None:
    schedule = current.get("train.lr_schedule")
    name = getattr(schedule, "name", None)
    if name in STEPS_DEPENDENT_SCHEDULES and stored.get("train.steps") != current.get("train.steps"):
        raise MatchzooError(
            f"--resume {run_dir}: train.steps changes ({stored.get('train.steps')} -> {current.get('train.steps')}) "
            f"but train.lr_schedule = @{name} spans train.steps; resume with train.steps = "
            f"{stored.get('train.steps')}, or start a new run"
        )


def resume_changes(previous: dict, operative: str, run_dir: Path) -> dict[str, tuple[str, str]]:
    """``{binding: (stored, now)}`` for bindings a resumed run may change (how long, how often, where it runs);
    any other difference is a different experiment and is refused. Both configs are read as data."""
    stored_text = str(previous.get("operative_config", ""))
    if stored_text == operative:
        return {}
    stored = stored_config.config_entries(stored_text, f"checkpoint {run_dir / checkpoint.FILENAME}")
    current = stored_config.config_entries(operative, "this config")
    refuse_schedule_stretch(stored, current, run_dir)
    missing = object()
    differing = {
        key: (stored.get(key, missing), current.get(key, missing))
        for key in sorted((stored.keys() | current.keys()) - NOT_A_CHANGE)
        if comparable(key, stored.get(key, missing), missing) != comparable(key, current.get(key, missing), missing)
    }
    text = {
        key: tuple("(unset)" if v is missing else config.gin_text(v) for v in values)
        for key, values in differing.items()
    }
    # changed values first, then what only the checkpoint has, then what only this config has
    refused = sorted(
        (key for key in text if key not in RESUMABLE_CHANGES),
        key=lambda key: (differing[key][0] is missing) * 2 + (differing[key][1] is missing),
    )
    if refused:
        shown = ", ".join(f"{key} ({text[key][0]} -> {text[key][1]})" for key in refused[:5])
        more = f" and {len(refused) - 5} more" if len(refused) > 5 else ""
        raise MatchzooError(
            f"--resume {run_dir}: this config differs from the checkpoint's in {shown}{more}; resume "
            f"with the config the run started with (only train.steps, the eval/log/checkpoint cadence, "
            f"the device and the like may change), or start a new run instead"
        )
    return text


# bindings that older checkpoints lack (written before the optimiser became a factory, or before the callbacks
# became configurables), at the value they had then
ADDED_DEFAULTS = {
    "adam.weight_decay": 0.0,
    # labels, post-training and the training recipe (issue 13), at the values that reproduce the runs before them
    "train.label_sampling": "data",
    "train.class_matched_real": False,
    "train.per_class_matching": False,
    "train.init_from": None,
    "train.grad_clip_norm": None,
    "train.precision": "fp32",
    "train.lr_schedule": config.GinReference("constant_lr", evaluate=False),  # the default is not written out
    "mlp.num_classes": 0,
    "npz.labels_key": "labels",  # an unconditional generator ignores a dataset's labels: the same run as before
    "image_folder.labels": True,
    # real data without the dataset, held-out datasets and pools (issue 16): unset is the run before them
    "train.heldout_dataset": None,
    "train.real_pool_size": None,
    # the callbacks became configurables (unset: the train.* value)
    **{
        f"{callback}.{name}": None
        for callback, names in (
            ("evaluator", ("every", "samples", "stability_every", "stability_resamples", "metrics", "reference_stats")),
            ("checkpointer", ("every",)),
            ("metric_logger", ("every",)),
        )
        for name in names
    },
}


def comparable(key: str, value, missing: object):
    """A stored or current value in the form both compare in: checkpoints written before the generator became a
    factory bind ``train.generator = @mlp()``, the same generator as ``@mlp`` (the seed precedes either build)."""
    if key == "train.generator" and isinstance(value, config.GinReference):
        return config.GinReference(value.name, evaluate=False)
    if value is missing and key in ADDED_DEFAULTS:
        return ADDED_DEFAULTS[key]
    return value


def record_resume(tracker: Tracker, changes: dict[str, tuple[str, str]], operative: str, step: int) -> None:
    """Params stay those the run started with (MLflow params are immutable); allowed changes are a note on
    stderr, an entry in the ``resume_changes`` tag and the new operative config as an extra artifact."""
    if not changes:
        return
    summary = ", ".join(f"{key}: {old} -> {new}" for key, (old, new) in changes.items())
    print(f"matchzoo: note: resuming at step {step} with changed settings: {summary}", file=sys.stderr)
    earlier = tracker.tag(keys.RESUME_CHANGES_TAG)
    entry = f"step {step}: {summary}"
    tracker.set_tags({keys.RESUME_CHANGES_TAG: (f"{earlier}; {entry}" if earlier else entry)[:5000]})
    tracker.log_text(operative, f"operative_config_resumed_step_{step}.gin")


def default_run_dir(settings: TrainSettings, files: Sequence[Path]) -> Path:
    """A fresh folder per run; the random suffix keeps two runs started in the same second apart (a shared
    folder would make the second one resume the first's checkpoint)."""
    stem = "+".join(f.stem for f in files) or "run"
    started = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / settings.tracking.experiment / f"{stem}-{started}-{secrets.token_hex(2)}"


def record_config(tracker: Tracker, record: config.Record, summary: dict[str, str]) -> None:
    """Operative config artifact, flattened bindings as params, the run summary (``objective``,
    ``train_space``) as the params ``1 objective`` / ``2 train_space`` (named so the MLflow UI's
    parallel-coordinates plot preselects them, see :mod:`matchzoo.tracking`), and the report of
    unused bindings."""
    tracker.log_text(record.operative, "operative_config.gin")
    tracker.log_params({**record.bindings, **summary_params(summary)})
    unused = record.unused
    if unused:
        message = (
            f"these bindings were never used (typo, component not in this experiment, or shadowed by a "
            f"scoped binding?): {', '.join(unused)}"
        )
        print(f"matchzoo: warning: {message}", file=sys.stderr)
        tracker.set_tags({keys.UNUSED_BINDINGS_TAG: ", ".join(unused)[:5000]})


def summarize(evaluator: Evaluator, run_id: str, run_dir: Path) -> None:
    if not evaluator.history:
        return
    first_step, first = evaluator.history[0]
    last_step, last = evaluator.history[-1]
    print(f"run {run_id} (checkpoint: {run_dir})")
    # the FDr denominator and its sample size do not change during a run: MLflow has them, the summary skips them
    constant = (keys.eval_prefix(keys.FD_HELDOUT), keys.eval_prefix(keys.FDR_N))
    for key in sorted(k for k in last if not k.startswith(constant)):
        before = first.get(key)
        change = f"  (step {first_step}: {before:.4g}, {100 * (last[key] - before) / before:+.1f}%)" if before else ""
        print(f"  {key:<32} {last[key]:.4g}{change}")
    for decay, metrics in evaluator.other_emas.items():  # train.ema_decay with several decays: FDr^k of each
        if keys.FDRK in metrics:
            print(f"  {keys.ema_key(decay, keys.FDRK):<32} {metrics[keys.FDRK]:.4g}")
    if evaluator.best_ema_decay is not None:
        print(f"  best EMA decay by {keys.FDRK}: {evaluator.best_ema_decay:g}")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The same options, words and checks as ``python -m matchzoo run`` (:mod:`matchzoo.cli_args`)."""
    cli_args.add_gin(parser)
    cli_args.add_gin_params(parser)
    cli_args.add_resume(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m matchzoo.run", description="Train one gin-configured experiment.")
    add_run_arguments(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: (run_experiment(args.gin, args.gin_param, resume=args.resume), 0)[1])


if __name__ == "__main__":
    sys.exit(main())
