"""Launchers: where a sweep's cells run. ``--launcher`` names are a registry; another engine is one more entry.

* ``local`` -- in this process, one cell after another (the sweep as it always was; ``--jobs 1``).
* ``processes`` -- ``--jobs N`` cells at once on this machine, each in its own process (``python -m
  matchzoo.launchers CELL.json``, or ``torchrun --standalone`` when a cell has several GPUs). Each process gets
  its own thread budget (``OMP_NUM_THREADS`` = cores // N, at least 1, which torch reads at import; a
  ``train.num_threads`` binding still wins) and, with ``--gpus_per_cell K``, K GPUs of its own
  (``CUDA_VISIBLE_DEVICES``, disjoint between the cells running at once: :func:`gpu_slots`).
* ``slurm`` -- one Slurm job per cell through submitit (partition, time, GPUs and nodes per cell, CPUs); a cell
  on several GPUs or nodes runs ``torchrun`` inside its job (one agent per node, c10d rendezvous on the first
  node). submitit's logs and the cells' files go to ``<store>/sweeps/<sweep>/``.

A cell process reports through a small JSON file (the run id, or the error line the sweep records in the
run's ``sweep_error`` tag); a process that dies without writing it (a segfault, the OOM killer) is a failed
cell too, with its exit status and the path of its log. SIGINT/SIGTERM to the sweep reach every running cell,
which saves its checkpoint and marks its run KILLED exactly as a single run does (:mod:`matchzoo.signals`).
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from matchzoo import validate as check
from matchzoo.errors import MatchzooError

LAUNCHERS: dict[str, type] = {}  # name -> Launcher class (not gin configurables: flags and sweep.* choose them)


def register_launcher(name: str) -> Callable[[type], type]:
    def decorator(cls: type) -> type:
        if name in LAUNCHERS:
            raise MatchzooError(f"launcher {name!r} is already registered (by {LAUNCHERS[name].__qualname__})")
        LAUNCHERS[name] = cls
        return cls

    return decorator


def launcher_class(name: str, source: str = "--launcher") -> type:
    if name not in LAUNCHERS:
        close = difflib.get_close_matches(str(name), LAUNCHERS, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise MatchzooError(f"{source}: unknown launcher {name!r}{hint}; known: {', '.join(sorted(LAUNCHERS))}")
    return LAUNCHERS[name]


Runner = Callable[[list[str], list[str], dict], str]


# ----------------------------------------------------------------------------- what to run and what came of it


@dataclass(frozen=True)
class CellTask:
    """One cell as a launcher sees it: what ``run_experiment`` is called with."""

    cell_id: str
    gin_files: list[str]
    gin_params: list[str]
    tags: dict[str, str]


@dataclass
class Outcome:
    """A cell's end: a run id, or the error line for ``sweep_error``, or the signal that stopped it."""

    run_id: Optional[str] = None
    error: Optional[str] = None
    traceback: Optional[str] = None  # printed for failures that are not user errors (as in-process)
    log: Optional[str] = None  # the cell's own output, when it ran elsewhere
    interrupted: Optional[int] = None  # signal number: the sweep stopped it


def error_line(error: BaseException) -> str:
    """``'ValueError: boom'``: what a failed cell's ``sweep_error`` tag says."""
    return f"{type(error).__name__}: {error}".replace("\n", " ")


@dataclass
class LaunchSettings:
    """How to run the cells (never part of a cell id): from flags or ``sweep.*`` bindings."""

    launcher: str = "local"
    jobs: Optional[int] = None  # cells at once (processes: default 1, or every GPU; slurm: every cell)
    gpus_per_cell: int = 0
    nodes_per_cell: int = 1
    cpus_per_cell: Optional[int] = None
    partition: Optional[str] = None
    time_min: Optional[int] = None
    allow_shared_sqlite: bool = False
    sources: dict[str, str] = field(default_factory=dict)  # field -> where the user set it (for messages)

    def where(self, name: str) -> str:
        return self.sources.get(name, f"--{name}")


# settings a sweep file may bind as ``sweep.<name>``: name -> (LaunchSettings field, check)
def _time_minutes(name: str, value) -> int:
    """Minutes from ``90``, ``'90'``, ``'1:30:00'`` or ``'1-00:00:00'`` (Slurm's formats)."""
    text = str(value).strip()
    try:
        days, _, clock = text.rpartition("-") if "-" in text else ("0", "", text)
        parts = [int(p) for p in clock.split(":")]
        if len(parts) == 1:
            minutes = parts[0]
        elif len(parts) in (2, 3):
            hours, mins = parts[0], parts[1]
            minutes = hours * 60 + mins + (1 if len(parts) == 3 and parts[2] else 0)
        else:
            raise ValueError
        minutes += int(days or 0) * 24 * 60
    except ValueError:
        raise MatchzooError(f"{name} must be minutes or [D-]HH:MM[:SS], e.g. 90 or 4:00:00, got {value!r}") from None
    return check.positive_int(name, minutes)


SETTING_CHECKS: dict[str, Callable] = {
    "launcher": lambda name, value: launcher_class(str(value), name) and str(value),
    "jobs": check.positive_int,
    "gpus_per_cell": check.non_negative_int,
    "nodes_per_cell": check.positive_int,
    "cpus_per_cell": check.positive_int,
    "partition": lambda name, value: check.instance(name, value, str, "a Slurm partition name"),
    "time": _time_minutes,
    "allow_shared_sqlite": lambda name, value: check.instance(name, value, bool, "True or False"),
}
SETTING_FIELDS = {"time": "time_min"}


def apply_setting(settings: LaunchSettings, name: str, value, source: str) -> None:
    """Check ``value`` under ``source`` (the binding or flag) and store it."""
    checked = SETTING_CHECKS[name](source, value)
    attribute = SETTING_FIELDS.get(name, name)
    setattr(settings, attribute, checked)
    settings.sources[attribute] = source


# ----------------------------------------------------------------------------- resources


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def thread_budget(jobs: int, available: Optional[int] = None) -> int:
    """Threads per cell when ``jobs`` cells share the machine: cores // jobs, at least 1."""
    return max(1, (available or cores()) // jobs)


def visible_gpus() -> list[str]:
    """The GPUs this process may hand out: ``CUDA_VISIBLE_DEVICES`` as given, else every device torch sees."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def gpu_slots(devices: Sequence[str], jobs: int, per_cell: int, source: str = "--gpus_per_cell") -> list[list[str]]:
    """``jobs`` disjoint groups of ``per_cell`` devices (``CUDA_VISIBLE_DEVICES`` of the cells running at once);
    no GPU: ``jobs`` empty groups."""
    if per_cell == 0:
        return [[] for _ in range(jobs)]
    if jobs * per_cell > len(devices):
        seen = f"{len(devices)} ({','.join(devices)})" if devices else "none"
        raise MatchzooError(
            f"{source} {per_cell} with --jobs {jobs} needs {jobs * per_cell} GPUs, this machine shows {seen}; "
            f"lower --jobs or {source}"
        )
    return [list(devices[i * per_cell : (i + 1) * per_cell]) for i in range(jobs)]


# ----------------------------------------------------------------------------- launchers


class Handle:
    """A started cell. :meth:`poll` is ``None`` while it runs, then its :class:`Outcome`."""

    def __init__(self, task: CellTask):
        self.task = task

    def poll(self) -> Optional[Outcome]:
        raise NotImplementedError

    def interrupt(self, signum: int) -> None:
        """Pass SIGINT/SIGTERM on: the cell checkpoints and marks its run KILLED."""

    def wait(self, timeout: float) -> Optional[Outcome]:
        deadline = time.monotonic() + timeout
        while (outcome := self.poll()) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        return outcome


class Launcher:
    """Starts cells; ``slots`` of them may run at once."""

    slots: int = 1
    name: str = "local"
    #: whether cells may run on other machines than this one (the store must then be a server)
    remote: bool = False

    def start(self, task: CellTask) -> Handle:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


class _Done(Handle):
    def __init__(self, task: CellTask, outcome: Outcome):
        super().__init__(task)
        self.outcome = outcome

    def poll(self) -> Optional[Outcome]:
        return self.outcome


@register_launcher("local")
class InProcessLauncher(Launcher):
    """In this process, one cell after another; Ctrl-C stops the cell (checkpoint, KILLED) and the sweep."""

    def __init__(self, settings: Optional[LaunchSettings] = None, folder: Optional[Path] = None, runner=None):
        if settings is not None and (settings.jobs or 1) > 1:
            raise MatchzooError(f"{settings.where('launcher')} local runs one cell at a time; use --jobs N alone")
        self.runner = runner or _run_experiment

    def start(self, task: CellTask) -> Handle:
        try:
            run_id = self.runner(list(task.gin_files), list(task.gin_params), dict(task.tags))
        except Exception as error:  # a failed cell must not stop the sweep; the error goes to the run's tags
            trace = None if isinstance(error, MatchzooError) else traceback.format_exc()
            return _Done(task, Outcome(error=error_line(error), traceback=trace))
        return _Done(task, Outcome(run_id=run_id))


def _run_experiment(gin_files: list[str], gin_params: list[str], tags: dict) -> str:
    from matchzoo.run import run_experiment

    return run_experiment(gin_files, gin_params, tags)


class CellFiles:
    """``<folder>/cells/<id>.json`` (what to run), ``<id>.result.json`` (what came of it), ``logs/<id>.log``."""

    def __init__(self, folder: Path, task: CellTask):
        self.spec = folder / "cells" / f"{task.cell_id}.json"
        self.result = folder / "cells" / f"{task.cell_id}.result.json"
        self.log = folder / "logs" / f"{task.cell_id}.log"

    def write(self, task: CellTask) -> None:
        for path in (self.spec, self.log):
            path.parent.mkdir(parents=True, exist_ok=True)
        self.result.unlink(missing_ok=True)  # an earlier attempt's answer must not be read as this one's
        payload = {"gin_files": task.gin_files, "gin_params": task.gin_params, "tags": task.tags}
        self.spec.write_text(json.dumps({**payload, "result": str(self.result)}, indent=1))

    def outcome(self, status: Optional[int], interrupted: Optional[int]) -> Outcome:
        """The cell's answer; without one, the exit status (and the log to read) is the error."""
        if self.result.is_file():
            answer = json.loads(self.result.read_text())
            return Outcome(answer.get("run_id"), answer.get("error"), answer.get("traceback"), str(self.log))
        if interrupted is not None and status in (128 + interrupted, -interrupted):
            return Outcome(interrupted=interrupted, log=str(self.log))
        how = f"killed by {signal.Signals(-status).name}" if status is not None and status < 0 else f"status {status}"
        return Outcome(error=f"CellProcessError: the cell's process ended ({how}) without a result", log=str(self.log))


def cell_command(spec: Path, nproc: int = 1, nnodes: int = 1, rendezvous: Optional[str] = None) -> list[str]:
    """The command that runs one cell: this Python on the cell file, or ``torchrun`` over several processes."""
    entry = ["-m", "matchzoo.launchers", str(spec)]
    if nproc * nnodes == 1:
        return [sys.executable, *entry]
    run = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    if nnodes == 1:
        return [*run, "--standalone", *entry]
    return [*run, f"--nnodes={nnodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={rendezvous}", *entry]


def cell_environment(threads: Optional[int], gpus: Optional[Sequence[str]]) -> dict[str, str]:
    from matchzoo.tracking import tracking_uri

    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri(), PYTHONUNBUFFERED="1")
    # the cell imports the very matchzoo this sweep runs (a checkout on sys.path, not another installed copy)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [os.environ.get("PYTHONPATH")])])
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    return env


class _ProcessHandle(Handle):
    def __init__(self, task: CellTask, files: CellFiles, process: subprocess.Popen, release: Callable[[], None]):
        super().__init__(task)
        self.files, self.process, self.release = files, process, release
        self.signum: Optional[int] = None
        self.outcome: Optional[Outcome] = None

    def poll(self) -> Optional[Outcome]:
        if self.outcome is None and self.process.poll() is not None:
            self.outcome = self.files.outcome(self.process.returncode, self.signum)
            self.release()
        return self.outcome

    def interrupt(self, signum: int) -> None:
        from matchzoo.mlflow_ui import signal_group

        self.signum = signum
        signal_group(self.process.pid, signum)  # its own session: torchrun's workers too


@register_launcher("processes")
class ProcessLauncher(Launcher):
    """``jobs`` cells at once, each in its own process (and session: the sweep alone forwards signals)."""

    name = "processes"

    def __init__(self, settings: LaunchSettings, folder: Path, runner=None):
        if runner is not None:
            raise MatchzooError("a custom runner runs in this process; use the local launcher")
        per_cell = settings.gpus_per_cell
        devices = visible_gpus() if per_cell else []
        jobs = settings.jobs or (len(devices) // per_cell if per_cell else 1) or 1
        self.slots, self.folder = jobs, folder
        self.free = gpu_slots(devices, jobs, per_cell)
        self.per_cell = per_cell
        self.threads = None if per_cell else thread_budget(jobs)

    def describe(self) -> str:
        budget = f"{self.per_cell} GPU(s) each" if self.per_cell else f"{self.threads} thread(s) each"
        return f"{self.slots} processes, {budget}; cell logs in {self.folder / 'logs'}"

    def start(self, task: CellTask) -> Handle:
        files = CellFiles(self.folder, task)
        files.write(task)
        gpus = self.free.pop(0)
        with open(files.log, "a") as log:
            log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} cell {task.cell_id}: {task.tags}\n")
            log.flush()
            process = subprocess.Popen(
                cell_command(files.spec, nproc=max(1, len(gpus))),
                env=cell_environment(self.threads, gpus if self.per_cell else None),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return _ProcessHandle(task, files, process, lambda: self.free.append(gpus))


# ----------------------------------------------------------------------------- slurm through submitit


@dataclass(frozen=True)
class SlurmCell:
    """What a Slurm job runs (pickled by submitit): the cell command, under torchrun across the job's nodes
    when the cell has more than one process. Returns the cell's answer as a dict (task 0 reads it)."""

    spec: str
    result: str
    nodes: int
    gpus: int
    threads: Optional[int]

    def __call__(self) -> dict:
        rendezvous = None
        if self.nodes > 1:
            import submitit

            environment = submitit.JobEnvironment()
            rendezvous = f"{environment.hostnames[0]}:{29400 + int(environment.job_id) % 1000}"
        command = cell_command(Path(self.spec), max(1, self.gpus), self.nodes, rendezvous)
        env = cell_environment(self.threads, None)
        process = subprocess.Popen(command, env=env, start_new_session=True)
        forward = lambda signum, frame: _signal_group(process.pid, signum)  # noqa: E731
        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            status = process.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        result = Path(self.result)
        if result.is_file():
            return json.loads(result.read_text())
        return {"error": f"CellProcessError: the cell's process ended (status {status}) without a result"}


def _signal_group(pgid: int, signum: int) -> None:
    from matchzoo.mlflow_ui import signal_group

    signal_group(pgid, signum)


class _SlurmHandle(Handle):
    def __init__(self, task: CellTask, files: CellFiles, job):
        super().__init__(task)
        self.files, self.job = files, job
        self.signum: Optional[int] = None
        self.outcome: Optional[Outcome] = None

    def poll(self) -> Optional[Outcome]:
        if self.outcome is not None or not self.job.done():
            return self.outcome
        log = str(self.job.paths.stdout)
        try:
            answer = self.job.result()
        except Exception as error:  # submitit: the job failed, timed out or was cancelled
            if self.signum is not None:
                self.outcome = Outcome(interrupted=self.signum, log=log)
            else:
                reason = (str(error).strip().splitlines() or [type(error).__name__])[-1]
                self.outcome = Outcome(error=f"SlurmJobError: job {self.job.job_id}: {reason}", log=log)
            return self.outcome
        if self.signum is not None and not answer.get("run_id"):
            self.outcome = Outcome(interrupted=self.signum, log=log)
        else:
            self.outcome = Outcome(answer.get("run_id"), answer.get("error"), answer.get("traceback"), log)
        return self.outcome

    def interrupt(self, signum: int) -> None:
        self.signum = signum
        self.job.cancel(check=False)  # scancel: Slurm sends SIGTERM to the cell, which checkpoints


@register_launcher("slurm")
class SlurmLauncher(Launcher):
    """One submitit job per cell. ``cluster`` is submitit's name (``'slurm'``; tests pass ``'local'``, which
    runs the same pickled job in a local process)."""

    name = "slurm"

    def __init__(self, settings: LaunchSettings, folder: Path, runner=None, cluster: str = "slurm"):
        import submitit

        if runner is not None:
            raise MatchzooError("a custom runner runs in this process; use the local launcher")
        if cluster == "slurm" and shutil.which("sbatch") is None:
            raise MatchzooError(
                f"{settings.where('launcher')} slurm: sbatch is not on PATH (not a Slurm login node?); "
                f"run the sweep where sbatch works, or use --jobs N on this machine"
            )
        self.folder, self.cluster, self.settings = folder, cluster, settings
        self.remote = cluster == "slurm"
        self.slots = settings.jobs or 10**9  # Slurm queues them; --jobs caps how many are submitted at once
        nodes, gpus = settings.nodes_per_cell, settings.gpus_per_cell
        if cluster != "slurm" and nodes > 1:
            raise MatchzooError(
                f"{settings.where('nodes_per_cell')} {nodes}: submitit's {cluster} executor has one node"
            )
        self.executor = submitit.AutoExecutor(folder=folder / "slurm", cluster=cluster)
        parameters = {"name": f"matchzoo-{folder.name}", "nodes": nodes, "tasks_per_node": 1}
        parameters["timeout_min"] = settings.time_min or 60 * 24
        if gpus:
            parameters["gpus_per_node"] = gpus
        if settings.cpus_per_cell:
            parameters["cpus_per_task"] = settings.cpus_per_cell
        if settings.partition:
            parameters["slurm_partition"] = settings.partition
        self.executor.update_parameters(**parameters)

    def describe(self) -> str:
        s = self.settings
        what = f"{s.nodes_per_cell} node(s) x {s.gpus_per_cell} GPU(s) per cell"
        return f"submitit {self.cluster} jobs ({what}); logs in {self.folder / 'slurm'}"

    def start(self, task: CellTask) -> Handle:
        files = CellFiles(self.folder, task)
        files.write(task)
        s = self.settings
        job = self.executor.submit(
            SlurmCell(str(files.spec), str(files.result), s.nodes_per_cell, s.gpus_per_cell, s.cpus_per_cell)
        )
        return _SlurmHandle(task, files, job)


def make_launcher(settings: LaunchSettings, folder: Path, runner: Optional[Runner] = None) -> Launcher:
    """The launcher ``settings`` name; ``--jobs N`` (N > 1) or ``--gpus_per_cell`` alone mean ``processes``."""
    name = settings.launcher
    if name == "local" and ((settings.jobs or 1) > 1 or settings.gpus_per_cell) and "launcher" not in settings.sources:
        name = "processes"
    return launcher_class(name, settings.where("launcher"))(settings, folder, runner=runner)


# ----------------------------------------------------------------------------- the cell process


def _write_answer(path: Path, answer: dict) -> None:
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(answer))
    os.replace(temporary, path)  # the sweep never reads half an answer


def cell_main(argv: Sequence[str]) -> int:
    """``python -m matchzoo.launchers CELL.json``: run one cell, answer in the cell's result file (rank 0)."""
    from matchzoo.cli import guarded

    spec = json.loads(Path(argv[0]).read_text())
    result = Path(spec["result"])
    rank0 = os.environ.get("RANK", "0") == "0"

    def body() -> int:
        try:
            run_id = _run_experiment(spec["gin_files"], spec["gin_params"], spec["tags"])
        except Exception as error:
            if rank0 or not result.exists():
                trace = None if isinstance(error, MatchzooError) else traceback.format_exc()
                _write_answer(result, {"error": error_line(error), "traceback": trace})
            raise
        if rank0:
            _write_answer(result, {"run_id": run_id})
        return 0

    return guarded(body)


if __name__ == "__main__":
    sys.exit(cell_main(sys.argv[1:]))
