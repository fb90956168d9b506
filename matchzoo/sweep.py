"""Sweeps: the cartesian product of experiment files and gin grid axes, one MLflow run per cell.

A sweep is a :class:`SweepSpec`: experiment files (one axis: every cell uses one of them), fixed bindings
shared by all cells, and grid axes ``binding -> [gin value, ...]``. Grid values are gin *text*
(``@fd()``, ``@a/sinkhorn()``, ``0.1``, ``'x'``), parsed with gin's own parser so the command line and
sweep files accept exactly gin syntax::

    python -m matchzoo sweep --gin gin/offline/fd.gin --gin gin/offline/sinkhorn.gin \\
        --grid 'term.space=[@pixels(), @random_conv()]' --grid 'train.lr=[1e-3, 3e-4]'

or a sweep file (``gin/sweeps/*.gin``) holding only ``sweep.*`` bindings (any other ``--gin`` file, with
its includes and imports, is an experiment)::

    sweep.name = 'smoke'
    sweep.experiments = ['../quickstart.gin']          # relative to the sweep file, or to gin/
    sweep.gin_params = ['train.steps = 300']
    sweep.grid = {'ssl/term.objective': [@fd(), @sinkhorn()], 'ssl/term.space': [@digits_ssl(), @random_conv()]}

Before any cell runs, :func:`refuse_no_op_cells` parses every cell (nothing is built) and refuses, in one
line, an axis that repeats a value and any axis or fixed binding an experiment shadows with more specific
scoped bindings (``term.objective`` on the quickstart, whose terms are ``ssl/term`` and ``px/term``): such
a grid would train the same run in every cell.

Each cell is identified by a **cell id**: a hash of the experiment file (name *and* content) and of the
cell's bindings. Runs carry the tags ``sweep`` (the sweep name), ``sweep_cell`` (cell id) and
``sweep_cell_label`` (readable bindings; every name is in :mod:`matchzoo.keys`); the trainer adds
``objective`` and ``train_space``, which the sweep puts in the run name ``<sweep>: <objective>@<train_space>``
and makes sure are in the params ``1 objective`` / ``2 train_space`` (the UI's parallel-coordinates view plots
params, not tags; see :mod:`matchzoo.tracking`). Running a sweep again skips cells that already have a
FINISHED run, so an interrupted sweep resumes; a cell that raises is recorded as a FAILED run with tag
``sweep_error`` and the sweep goes on (a rerun retries it).

``--seeds 0,1,2`` (``sweep.seeds``) runs every cell once per seed with ``train.seed``: each (cell, seed) is a cell
of its own (its id hashes the cell id and the seed; without seeds the ids are exactly as above, so existing
sweeps resume) tagged ``sweep_group`` (the unseeded cell id) and ``sweep_seed``, which ``compare`` aggregates.

Cells run one at a time in this process, or many at once in processes of their own or as Slurm jobs
(``--jobs N``, ``--launcher slurm``: :mod:`matchzoo.launchers`); either way this process alone records their
ends, under one progress line (:mod:`matchzoo.sweep_progress`), after checking that the tracking store can take
the concurrent writers (:func:`matchzoo.tracking.check_concurrent_writers`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from gin import config_parser

from matchzoo import config, launchers, signals
from matchzoo import validate as check
from matchzoo.errors import MatchzooError
from matchzoo.keys import (
    CELL_TAG,
    ERROR_TAG,
    GROUP_TAG,
    LABEL_TAG,
    OBJECTIVE_TAG,
    RUN_NAME_TAG,
    SEED_TAG,
    SWEEP_TAG,
    TRAIN_SPACE_TAG,
)
from matchzoo.launchers import CellTask, LaunchSettings, Outcome
from matchzoo.sweep_progress import SweepProgress
from matchzoo.tracking import (
    check_concurrent_writers,
    ensure_experiment,
    search_all_runs,
    store_folder,
    summary_params,
    tracking_uri,
)
from matchzoo.tracking import client as make_client

SPEC_KEYS = ("name", "experiments", "gin_params", "grid", "experiment", "seeds", *launchers.SETTING_CHECKS)


# ----------------------------------------------------------------------------- gin text <-> values

# the text-level gin helpers live with every other gin call in matchzoo.config; kept importable from here
TextDelegate, GinReference, GinMacro, gin_text, binding_key = (
    config.TextDelegate,
    config.GinReference,
    config.GinMacro,
    config.gin_text,
    config.binding_key,
)
_TextDelegate = TextDelegate


def parse_statements(text: str, source: str) -> list[config_parser.BindingStatement]:
    """Binding statements of gin ``text``; syntax errors, includes and imports become one line naming ``source``."""
    statements = config.statements(text, source)
    for statement in statements:
        if not isinstance(statement, config_parser.BindingStatement):
            raise MatchzooError(f"{source}: only bindings are allowed here, got {type(statement).__name__}")
    return statements


def parse_grid_arg(arg: str) -> tuple[str, list[str]]:
    """``'term.objective=[@fd(), @sinkhorn()]'`` -> ``('term.objective', ['@fd()', '@sinkhorn()'])``."""
    statements = parse_statements(arg, f"--grid {arg!r}")
    if len(statements) != 1 or not isinstance(statements[0].value, list) or not statements[0].value:
        raise MatchzooError(
            f"--grid {arg!r}: expected one binding to a non-empty list, e.g. 'term.objective=[@fd(), @sinkhorn()]'"
        )
    return binding_key(statements[0]), [gin_text(v) for v in statements[0].value]


# ----------------------------------------------------------------------------- spec and cells


@dataclass
class SweepSpec:
    experiments: list[str]
    grid: dict[str, list[str]] = field(default_factory=dict)
    gin_params: list[str] = field(default_factory=list)
    name: Optional[str] = None
    experiment: Optional[str] = None  # MLflow experiment override (binds train.experiment)
    sources: dict[str, str] = field(default_factory=dict)  # grid axis -> where the user wrote it (for errors)
    gin_param_sources: dict[str, str] = field(default_factory=dict)  # fixed binding -> where it came from
    seeds: list[int] = field(default_factory=list)  # every cell once per seed (train.seed); empty: as configured
    seeds_source: str = "--seeds"
    launch: LaunchSettings = field(default_factory=LaunchSettings)  # how cells run; never part of a cell id

    def axis_source(self, key: str) -> str:
        return self.sources.get(key) or f"--grid '{key}=[{', '.join(self.grid[key])}]'"


@dataclass(frozen=True)
class Cell:
    experiment_file: str
    bindings: tuple[tuple[str, str], ...]  # grid axis -> gin value, in axis order
    gin_params: tuple[str, ...]  # all bindings passed to run_experiment (fixed ones first)
    cell_id: str
    seed: Optional[int] = None  # set by --seeds: this cell is one seed of the group ``group_id``
    group_id: Optional[str] = None  # the cell id without the seed

    @property
    def label(self) -> str:
        parts = [Path(self.experiment_file).stem] + [f"{key}={value}" for key, value in self.bindings]
        return " ".join(parts + ([f"seed={self.seed}"] if self.seed is not None else []))

    def tags(self, sweep: str) -> dict[str, str]:
        tags = {SWEEP_TAG: sweep, CELL_TAG: self.cell_id, LABEL_TAG: self.label[:5000]}
        if self.seed is not None:
            tags.update({GROUP_TAG: str(self.group_id), SEED_TAG: str(self.seed)})
        return tags

    def tag_values(self) -> dict[str, str]:
        """``objective``/``train_space`` guesses from the bindings, for runs that failed before the trainer
        tagged them."""
        tags = {}
        for key, value in self.bindings:
            match = re.fullmatch(r"@(?:[\w./]*/)?(\w+)(?:\(\))?", value)
            short = match.group(1) if match else value
            if key.endswith("term.objective"):
                tags[OBJECTIVE_TAG] = short
            elif key.endswith("term.space"):
                tags[TRAIN_SPACE_TAG] = short
        return tags


def is_sweep_file(path: Path) -> bool:
    """A file with ``sweep.*`` bindings; anything else (includes and imports too) is an experiment."""
    return any(
        isinstance(s, config_parser.BindingStatement) and s.selector == "sweep" and not s.scope
        for s in config.statements(config.read_gin_text(path), str(path))
    )


def load_sweep_file(path: Path) -> SweepSpec:
    """A :class:`SweepSpec` from a file of ``sweep.*`` bindings (see module docstring)."""
    values: dict[str, Any] = {}
    for statement in parse_statements(config.read_gin_text(path), str(path)):
        if statement.selector != "sweep" or statement.scope or statement.arg_name not in SPEC_KEYS:
            raise MatchzooError(
                f"{path}: unexpected binding {binding_key(statement)!r}; a sweep file holds only "
                f"{', '.join('sweep.' + k for k in SPEC_KEYS)}"
            )
        values[statement.arg_name] = statement.value
    if not values.get("experiments"):
        raise MatchzooError(f"{path}: set sweep.experiments = ['experiment.gin', ...]")
    grid = values.get("grid", {})
    if not isinstance(grid, dict) or any(not isinstance(v, list) or not v for v in grid.values()):
        raise MatchzooError(f"{path}: sweep.grid must map 'binding' -> [non-empty list of gin values]")
    experiments = [str(_resolve_relative(str(e), path.parent)) for e in values["experiments"]]
    gin_params = [str(p) for p in values.get("gin_params", [])]
    launch = LaunchSettings()
    for key in launchers.SETTING_CHECKS:
        if key in values:
            launchers.apply_setting(launch, key, values[key], f"sweep.{key} in {path}")
    seeds = parse_seeds(values["seeds"], f"sweep.seeds in {path}") if "seeds" in values else []
    return SweepSpec(
        experiments=experiments,
        grid={str(k): [gin_text(v) for v in vs] for k, vs in grid.items()},
        gin_params=gin_params,
        name=values.get("name"),
        experiment=values.get("experiment"),
        sources={str(k): f"sweep.grid axis {str(k)!r} of {path}" for k in grid},
        gin_param_sources={p: f"sweep.gin_params entry {p!r} of {path}" for p in gin_params},
        seeds=seeds,
        seeds_source=f"sweep.seeds in {path}",
        launch=launch,
    )


def parse_seeds(value: Any, source: str) -> list[int]:
    """``'0,1,2'`` or ``[0, 1, 2]`` -> ``[0, 1, 2]``: distinct valid seeds (a repeated seed would be the same run)."""
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items or any(item == "" for item in items):
        raise MatchzooError(f"{source} must be a non-empty list of seeds, e.g. 0,1,2, got {value!r}")
    seeds = []
    for item in items:
        number = item
        if isinstance(item, str):
            try:
                number = int(item)
            except ValueError:
                raise MatchzooError(f"{source} must be integers, e.g. 0,1,2, got {item!r}") from None
        seeds.append(check.seed(source, number))
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise MatchzooError(f"{source}: seed {repeated[0]} appears more than once; those cells would be the same run")
    return seeds


def _resolve_relative(name: str, base: Path) -> Path:
    candidate = base / name
    if candidate.is_file():
        return candidate.resolve()
    from matchzoo.config import resolve_config_file

    return resolve_config_file(name)


def build_spec(
    gin_files: Sequence[str],
    grid_args: Sequence[str],
    gin_params: Sequence[str],
    name: Optional[str],
    experiment: Optional[str],
) -> SweepSpec:
    """Command-line arguments -> spec. A ``--gin`` file with ``sweep.*`` bindings is a sweep file."""
    from matchzoo.config import resolve_config_file

    spec = SweepSpec(experiments=[])
    for file in gin_files:
        path = resolve_config_file(file)
        if is_sweep_file(path):
            loaded = load_sweep_file(path)
            spec.experiments += loaded.experiments
            spec.grid.update(loaded.grid)
            spec.gin_params += loaded.gin_params
            spec.sources.update(loaded.sources)
            spec.gin_param_sources.update(loaded.gin_param_sources)
            spec.name = spec.name or loaded.name
            spec.experiment = spec.experiment or loaded.experiment
            if loaded.seeds:
                spec.seeds, spec.seeds_source = loaded.seeds, loaded.seeds_source
            for key, source in loaded.launch.sources.items():
                setattr(spec.launch, key, getattr(loaded.launch, key))
                spec.launch.sources[key] = source
        else:
            spec.experiments.append(str(path))
    if not spec.experiments:
        raise MatchzooError("give at least one experiment: --gin FILE (an experiment or a sweep file)")
    for arg in grid_args:
        key, values = parse_grid_arg(arg)
        spec.grid[key] = values
        spec.sources[key] = f"--grid {arg!r}"
    spec.gin_params += list(gin_params)
    spec.name = name or spec.name
    spec.experiment = experiment or spec.experiment
    return spec


def expand(spec: SweepSpec) -> list[Cell]:
    """Every cell of the sweep: experiments x grid axes (in the order the axes were given)."""
    fixed = list(spec.gin_params)
    if spec.experiment:
        fixed.append(f"train.experiment = {spec.experiment!r}")
    axes = list(spec.grid.items())
    cells = []
    for experiment_file in spec.experiments:
        content = Path(experiment_file).read_bytes() if Path(experiment_file).is_file() else b""
        for combo in itertools.product(*[values for _, values in axes]):
            bindings = tuple((key, value) for (key, _), value in zip(axes, combo))
            params = tuple(fixed + [f"{key} = {value}" for key, value in bindings])
            # the file's name and content, not its absolute path: a moved checkout keeps its cell ids
            payload = json.dumps(
                {"file": Path(experiment_file).name, "content": hashlib.sha256(content).hexdigest(), "params": params},
                sort_keys=True,
            )
            cell_id = hashlib.sha256(payload.encode()).hexdigest()[:12]
            if not spec.seeds:  # exactly the cells (and ids) of a sweep without seeds
                cells.append(Cell(str(experiment_file), bindings, params, cell_id))
                continue
            for seed in spec.seeds:
                seeded = hashlib.sha256(f"{cell_id} seed={seed}".encode()).hexdigest()[:12]
                cells.append(
                    Cell(str(experiment_file), bindings, params + (f"train.seed = {seed}",), seeded, seed, cell_id)
                )
    return cells


def sweep_name(spec: SweepSpec, cells: Sequence[Cell]) -> str:
    """The spec's name, else a stable hash of its cells (the same command always resumes the same sweep)."""
    if spec.name:
        if not re.fullmatch(r"[\w.\-]+", str(spec.name)):
            raise MatchzooError(f"sweep name {spec.name!r}: use letters, digits, '_', '-' and '.' only")
        return str(spec.name)
    return "sweep-" + hashlib.sha256(",".join(c.cell_id for c in cells).encode()).hexdigest()[:8]


# ----------------------------------------------------------------------------- no cell may be a no-op


def refuse_no_op_cells(spec: SweepSpec, cells: Sequence[Cell]) -> None:
    """Before any cell runs, refuse a grid whose cells cannot differ: an axis that lists a value twice, or an
    axis or fixed binding that an experiment shadows with more specific (scoped) bindings, or ``--seeds`` beside
    another ``train.seed``. Costs one gin parse per cell; nothing is built."""
    if spec.seeds:
        clashing = [k for k in spec.grid if k.endswith("train.seed")] + [
            p for p in spec.gin_params if re.match(r"\s*([\w./]*/)?train\.seed\s*=", p)
        ]
        if clashing:
            where = (
                spec.axis_source(clashing[0])
                if clashing[0] in spec.grid
                else spec.gin_param_sources.get(clashing[0], f"--gin_param {clashing[0]!r}")
            )
            raise MatchzooError(f"{spec.seeds_source} and {where} both set train.seed; keep one of them")
    for key, values in spec.grid.items():
        repeated = sorted({value for value in values if values.count(value) > 1})
        if repeated:
            raise MatchzooError(
                f"{spec.axis_source(key)}: {', '.join(repeated)} appears more than once; "
                f"those cells would be the same run"
            )
    for cell in cells:
        _refuse_dead_bindings(spec, cell)


def _refuse_dead_bindings(spec: SweepSpec, cell: Cell) -> None:
    try:
        config.parse([cell.experiment_file], cell.gin_params, check_overrides=False)
    except MatchzooError:
        return  # such a cell fails when it runs and is recorded as a FAILED run, like any other failure
    where = f" with {Path(cell.experiment_file).name}"
    for param in spec.gin_params:
        source = spec.gin_param_sources.get(param, f"--gin_param {param!r}")
        config.refuse_dead(param, source + where, lambda key, value: f"--gin_param '{key}={value}'")
    for key, value in cell.bindings:
        config.refuse_dead(f"{key} = {value}", spec.axis_source(key) + where, _axis_example(spec, key))
    if cell.seed is not None:
        config.refuse_dead(
            f"train.seed = {cell.seed}", spec.seeds_source + where, lambda key, _: f"--gin_param '{key}=N'"
        )


def _axis_example(spec: SweepSpec, key: str) -> Callable[[str, str], str]:
    """How to write the axis on another binding, in the syntax the user wrote it in."""
    values = ", ".join(spec.grid[key])
    if spec.axis_source(key).startswith("sweep.grid"):
        return lambda other, _: f"sweep.grid = {{'{other}': [{values}]}}"
    return lambda other, _: f"--grid '{other}=[{values}]'"


# ----------------------------------------------------------------------------- running


Runner = Callable[[list[str], list[str], dict], str]


def finished_cells(client, name: str) -> dict[str, str]:
    """cell id -> run id of every FINISHED run of sweep ``name`` in any experiment."""
    done: dict[str, str] = {}
    for run in _sweep_runs(client, name):
        if run.info.status == "FINISHED" and CELL_TAG in run.data.tags:
            done.setdefault(run.data.tags[CELL_TAG], run.info.run_id)
    return done


def _sweep_runs(client, name: str, cell_id: Optional[str] = None) -> list:
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        return []
    query = f"tags.{SWEEP_TAG} = '{name}'" + (f" and tags.{CELL_TAG} = '{cell_id}'" if cell_id else "")
    return search_all_runs(client, experiment_ids, query)


@dataclass
class SweepResult:
    name: str
    finished: list[str] = field(default_factory=list)  # run ids run now
    skipped: list[str] = field(default_factory=list)  # run ids found finished
    failed: list[str] = field(default_factory=list)  # cell labels


def run_sweep(
    spec: SweepSpec,
    runner: Optional[Runner] = None,
    client=None,
    log: Callable[[str], None] = print,
    launcher: Optional[launchers.Launcher] = None,
    progress: bool = False,
) -> SweepResult:
    """Run every cell not yet FINISHED (one at a time, or ``spec.launch`` / ``launcher`` many at once); a
    failed cell is recorded and does not stop the sweep; SIGINT/SIGTERM stop the running cells (each
    checkpoints and marks its run KILLED) and then the sweep."""
    client = client or make_client()
    cells = expand(spec)
    name = sweep_name(spec, cells)
    refuse_no_op_cells(spec, cells)
    launcher = launcher or launchers.make_launcher(spec.launch, sweep_folder(name), runner)
    if launcher.slots > 1 or launcher.name != "local":
        check_concurrent_writers(launcher.remote, spec.launch.allow_shared_sqlite, f"--launcher {launcher.name}")
    done = finished_cells(client, name)
    result = SweepResult(name)
    bar = SweepProgress(len(cells), sum(c.cell_id in done for c in cells), enabled=progress, log=log)
    bar.write(f"sweep {name!r}: {len(cells)} cells, {sum(c.cell_id in done for c in cells)} already finished")
    if launcher.name != "local":
        bar.write(f"sweep {name!r}: {launcher.describe()}")
    pending = []
    for index, cell in enumerate(cells, 1):
        if cell.cell_id in done:
            result.skipped.append(done[cell.cell_id])
            bar.write(f"[{index}/{len(cells)}] {cell.label}: finished earlier (run {done[cell.cell_id]}), skipped")
        else:
            pending.append((index, cell))
    with bar:
        _run_cells(pending, len(cells), launcher, client, spec, name, result, bar)
    # the result line goes to stdout after the bar has closed (scripts and logs read it there)
    log(f"sweep {name!r}: {len(result.finished)} run, {len(result.skipped)} skipped, {len(result.failed)} failed")
    return result


@dataclass
class _Running:
    index: int
    cell: Cell
    tags: dict
    started_ms: int


def _run_cells(pending, total, launcher, client, spec, name, result, bar, poll_seconds: float = 0.5) -> None:
    running: dict[launchers.Handle, _Running] = {}
    try:
        while pending or running:
            while pending and len(running) < launcher.slots:
                index, cell = pending.pop(0)
                tags = cell.tags(name)
                bar.write(f"[{index}/{total}] {cell.label}: running")
                started = int(time.time() * 1000)
                bar.started()
                handle = launcher.start(CellTask(cell.cell_id, [cell.experiment_file], list(cell.gin_params), tags))
                running[handle] = _Running(index, cell, tags, started)
            settled = [(handle, outcome) for handle in running if (outcome := handle.poll()) is not None]
            for handle, outcome in settled:
                _settle(outcome, running.pop(handle), total, client, spec, name, result, bar)
            if not settled:
                bar.tick()
                time.sleep(poll_seconds)
    except KeyboardInterrupt as interrupt:
        if not running:
            raise  # the cell ran in this process and has reported how it stopped
        signum = getattr(interrupt, "signum", signal.SIGINT)
        for handle in running:
            handle.interrupt(signum)
        for handle, state in running.items():  # each saves its checkpoint and marks its run KILLED
            outcome = handle.wait(timeout=600.0)
            if outcome is not None and outcome.interrupted is None:
                _settle(outcome, state, total, client, spec, name, result, bar)
        raise signals.Interrupted(
            signum,
            f"sweep {name!r} interrupted ({signal.Signals(signum).name}): stopped {len(running)} running cell(s), "
            f"each saved its checkpoint and marked its run KILLED; run the same command again to run the "
            f"unfinished cells",
        ) from None


def _settle(outcome: Outcome, state: _Running, total, client, spec, name, result, bar) -> None:
    """Record a cell's end exactly as the sequential sweep always did: FINISHED runs get their UI name, a
    failure a FAILED run with ``sweep_error``."""
    prefix = f"[{state.index}/{total}] {state.cell.label}"
    where = f"; log: {outcome.log}" if outcome.log else ""
    if outcome.run_id:
        annotate_for_ui(client, outcome.run_id, state.cell, name)
        result.finished.append(outcome.run_id)
        bar.settled(failed=False)
        bar.write(f"{prefix}: finished (run {outcome.run_id})")
        return
    message = outcome.error or f"stopped by {signal.Signals(outcome.interrupted or signal.SIGINT).name}"
    run_id = record_failure(client, state.cell, state.tags, message, state.started_ms, spec.experiment or name)
    result.failed.append(state.cell.label)
    bar.settled(failed=True)
    bar.write(f"{prefix}: FAILED ({message[:300]}); recorded as run {run_id}{where}")
    if outcome.traceback and not outcome.log:
        print(outcome.traceback, file=sys.stderr, end="")


def sweep_folder(name: str) -> Path:
    """``<store>/sweeps/<name>``: the cells' files, their logs and submitit's."""
    return store_folder() / "sweeps" / name


def annotate_for_ui(client, run_id: str, cell: Cell, name: str) -> None:
    """Name the run ``<sweep>: <objective>@<train_space> [other bindings]`` and copy ``objective`` and
    ``train_space`` into the params ``1 objective`` / ``2 train_space``, so the MLflow UI's compare and
    parallel-coordinates views (which plot params and metrics, not tags) show them without configuration.
    Existing params are left alone."""
    run = client.get_run(run_id)
    tags, params = run.data.tags, run.data.params
    objective, space = tags.get(OBJECTIVE_TAG, "?"), tags.get(TRAIN_SPACE_TAG, "?")
    others = [f"{k.split('.')[-1]}={v}" for k, v in cell.bindings if not k.endswith(("term.objective", "term.space"))]
    others += [f"seed={cell.seed}"] if cell.seed is not None else []
    client.set_tag(run_id, RUN_NAME_TAG, " ".join([f"{name}: {objective}@{space}", *others])[:250])
    for key, value in summary_params({OBJECTIVE_TAG: objective, TRAIN_SPACE_TAG: space}).items():
        if key not in params:
            client.log_param(run_id, key, value)


def record_failure(client, cell: Cell, tags: dict, message: str, started_ms: int, experiment_name: str) -> str:
    """Mark the cell's run FAILED with ``sweep_error``; create that run when the cell died before making one."""
    attempts = [r for r in _sweep_runs(client, tags[SWEEP_TAG], cell.cell_id) if r.info.start_time >= started_ms]
    if attempts:
        run_id = attempts[0].info.run_id
        if attempts[0].info.status in ("RUNNING", "SCHEDULED"):
            client.set_terminated(run_id, status="FAILED")
    else:
        experiment_id = ensure_experiment(client, experiment_name)
        run_id = client.create_run(
            experiment_id, run_name=f"failed {cell.label}"[:250], tags={**cell.tag_values(), **tags}
        ).info.run_id
        client.set_terminated(run_id, status="FAILED")
    client.set_tag(run_id, ERROR_TAG, message[:5000])
    return run_id


def finished_cells_if_stored(name: str) -> dict[str, str]:
    """Finished cells of the sweep; a dry run on a store that does not exist yet does not create one."""
    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        return {}
    return finished_cells(make_client(), name)
