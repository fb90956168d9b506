"""``python -m matchzoo.run --gin FILE [--gin FILE ...] [--gin_param 'scope.name=value' ...] [--resume DIR]``

Parses the config, builds every component through gin, trains with the shared trainer and tracks the run
in MLflow (operative config, params, metrics, sample grids). Checkpoints go to ``runs/<experiment>/<run>/``;
a run directory that already holds a checkpoint is resumed (same MLflow run, no repeated steps).
"""
from __future__ import annotations

import argparse
import secrets
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import gin
import torch

from matchzoo import config
from matchzoo.cli import guarded
from matchzoo.errors import MatchzooError
from matchzoo.train import checkpoint, distributed
from matchzoo.train.callbacks import Checkpointer, Evaluator, MetricLogger
from matchzoo.train.settings import TrainSettings
from matchzoo.train.terms import objective_name
from matchzoo.train.tracking import Tracker, summary_params
from matchzoo.train.trainer import Trainer


def build_settings() -> TrainSettings:
    """Seed the global RNG from ``train.seed`` *before* gin builds the generator, then build everything."""
    torch.manual_seed(int(config.query("train.seed", 0)))
    try:
        return TrainSettings()
    except MatchzooError:
        raise
    except (ValueError, TypeError) as error:
        raise MatchzooError(config.describe_gin_error(error)) from None


def run_experiment(gin_files: Sequence[str], gin_params: Sequence[str] = (), tags: Optional[dict] = None,
                   resume: Optional[str] = None) -> str:
    """Train one configured experiment; returns the MLflow run id."""
    threads = torch.get_num_threads()  # train.num_threads changes a process-wide setting; give it back
    try:
        return _run_experiment(gin_files, gin_params, tags, resume)
    finally:
        torch.set_num_threads(threads)


def _run_experiment(gin_files: Sequence[str], gin_params: Sequence[str], tags: Optional[dict],
                    resume: Optional[str]) -> str:
    files = config.parse(gin_files, gin_params)
    settings = build_settings()
    trainer = Trainer(settings)
    run_dir = Path(distributed.broadcast_object(str(resume or settings.run_dir or default_run_dir(settings, files))))
    previous = checkpoint.load(run_dir) if (run_dir / checkpoint.FILENAME).is_file() else None
    if resume and previous is None:
        raise MatchzooError(f"--resume {resume}: no {checkpoint.FILENAME} there")
    run_tags = {
        "objective": ",".join(objective_name(t.objective) for t in settings.terms),
        "train_space": ",".join(t.space.name for t in settings.terms),
        "eval_spaces": ",".join(s.name for s in settings.eval_spaces),
        "dataset": settings.dataset.name,
        "gin_files": ",".join(str(f) for f in files),
        "run_dir": str(run_dir),
        **(tags or {}),
    }
    if not trainer.dist.is_main:  # other ranks train; rank 0 alone logs, evaluates and checkpoints
        return _run_worker(trainer, previous)
    tracker = Tracker(settings.experiment, settings.run_name or run_dir.name, run_tags,
                      resume_run_id=previous["mlflow_run_id"] if previous else None)
    extra = {"mlflow_run_id": tracker.run_id, "operative_config": "", "gin_files": [str(f) for f in files],
             "gin_params": list(gin_params), "world_size": trainer.dist.world_size}
    checkpointer = Checkpointer(run_dir / checkpoint.FILENAME, settings.checkpoint_every, extra, tracker)
    evaluator = Evaluator(tracker, settings.eval_every, settings.eval_samples, settings.seed,
                          settings.stability_every, settings.stability_resamples)
    trainer.callbacks = [MetricLogger(tracker, settings.log_every), evaluator, checkpointer]
    status = "FAILED"
    try:
        trainer.prepare()
        if previous is not None:
            trainer.load_state_dict(previous)
            print(f"resuming {run_dir} at step {trainer.step} (MLflow run {tracker.run_id})", file=sys.stderr)
        extra["operative_config"] = config.operative_config()
        record_config(tracker, {"objective": run_tags["objective"], "train_space": run_tags["train_space"]})
        trainer.fit()
        status = "FINISHED"
    except KeyboardInterrupt:
        checkpointer.save(trainer)
        status = "KILLED"
        print(f"interrupted at step {trainer.step}; checkpoint saved in {run_dir}", file=sys.stderr)
        raise
    finally:
        tracker.finish(status)
    summarize(evaluator, tracker.run_id, run_dir)
    return tracker.run_id


def _run_worker(trainer: Trainer, previous) -> str:
    trainer.settings.progress = False
    trainer.prepare()
    if previous is not None:
        trainer.load_state_dict(previous)
    trainer.fit()
    return ""


def default_run_dir(settings: TrainSettings, files: Sequence[Path]) -> Path:
    """A fresh folder per run; the random suffix keeps two runs started in the same second apart (a shared
    folder would make the second one resume the first's checkpoint)."""
    stem = "+".join(f.stem for f in files) or "run"
    return Path("runs") / settings.experiment / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def record_config(tracker: Tracker, summary: dict[str, str]) -> None:
    """Operative config artifact, flattened bindings as params, the run summary (``objective``,
    ``train_space``) as the params ``1 objective`` / ``2 train_space`` (named so the MLflow UI's
    parallel-coordinates plot preselects them, see :mod:`matchzoo.train.tracking`), and the report of
    unused bindings."""
    tracker.log_text(config.operative_config(), "operative_config.gin")
    tracker.log_params({**config.flattened_bindings(), **summary_params(summary)})
    unused = config.unused_bindings()
    if unused:
        message = f"these bindings were never used (typo or component not in this experiment?): {', '.join(unused)}"
        print(f"matchzoo: warning: {message}", file=sys.stderr)
        tracker.set_tags({"unused_bindings": ", ".join(unused)[:5000]})


def summarize(evaluator: Evaluator, run_id: str, run_dir: Path) -> None:
    if not evaluator.history:
        return
    first_step, first = evaluator.history[0]
    last_step, last = evaluator.history[-1]
    print(f"run {run_id} (checkpoint: {run_dir})")
    for key in sorted(last):
        before = first.get(key)
        change = f"  (step {first_step}: {before:.4g}, {100 * (last[key] - before) / before:+.1f}%)" if before else ""
        print(f"  {key:<32} {last[key]:.4g}{change}")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gin", action="append", required=True, metavar="FILE", help="gin config file (repeatable)")
    parser.add_argument("--gin_param", action="append", default=[], metavar="BINDING",
                        help="extra binding, e.g. 'train.steps=200' (repeatable)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run whose checkpoint is in RUN_DIR")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m matchzoo.run", description="Train one gin-configured experiment.")
    add_run_arguments(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: (run_experiment(args.gin, args.gin_param, resume=args.resume), 0)[1])


if __name__ == "__main__":
    sys.exit(main())
