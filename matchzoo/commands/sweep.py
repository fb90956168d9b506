"""``python -m matchzoo sweep``: run the cartesian product of experiments and gin grid axes, resumably, one cell
at a time or many at once (``--jobs N``, ``--launcher slurm``; see :mod:`matchzoo.launchers`)."""

from __future__ import annotations

import argparse

from matchzoo import cli_args
from matchzoo import validate as check

HELP = "run a grid of experiments (one MLflow run per cell; finished cells are skipped)"

# launch options: flag -> help; each may also be a sweep.<name> binding in a sweep file (the flag wins)
LAUNCH_HELP = {
    "launcher": "where cells run: local (this process, one at a time), processes (--jobs N at once here) or "
    "slurm (one submitit job per cell)",
    "jobs": "cells at once (processes: default 1, or every GPU / --gpus_per_cell; slurm: default every cell)",
    "gpus_per_cell": "GPUs of each cell (disjoint CUDA_VISIBLE_DEVICES here; torchrun inside a cell with > 1)",
    "nodes_per_cell": "slurm: nodes of each cell (torchrun across them; default 1)",
    "cpus_per_cell": "slurm: CPUs of each cell (and its thread count)",
    "partition": "slurm: partition",
    "time": "slurm: time limit of each cell, minutes or [D-]HH:MM[:SS] (default 24:00:00)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cli_args.add_gin(parser)
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="BINDING=[V1, V2, ...]",
        help="grid axis in gin syntax, e.g. 'term.objective=[@fd(), @sinkhorn()]' (repeatable)",
    )
    cli_args.add_gin_params(parser)
    parser.add_argument("--name", help="sweep name (tag 'sweep'; default: from the sweep file or a hash of the cells)")
    parser.add_argument(
        "--seeds",
        metavar="S1,S2,...",
        help="run every cell once per seed (train.seed; tags sweep_group, sweep_seed), e.g. 0,1,2",
    )
    cli_args.add_experiment(parser)
    cli_args.add_dry_run(parser)
    cli_args.add_progress(parser)
    launch = parser.add_argument_group("launching (also sweep.<name> bindings in a sweep file)")
    launch.add_argument("--launcher", help=LAUNCH_HELP["launcher"])
    for name in ("jobs", "gpus_per_cell", "nodes_per_cell", "cpus_per_cell"):
        launch.add_argument(f"--{name}", type=check.option(check.integer), help=LAUNCH_HELP[name])
    launch.add_argument("--partition", help=LAUNCH_HELP["partition"])
    launch.add_argument("--time", help=LAUNCH_HELP["time"])
    launch.add_argument(
        "--allow_shared_sqlite",
        action="store_true",
        default=None,
        help="let cells on several machines write the sqlite store on a shared filesystem (your risk; "
        "`python -m matchzoo server` is the safe way)",
    )


def run(args: argparse.Namespace) -> int:
    from matchzoo import launchers, sweep

    spec = sweep.build_spec(args.gin, args.grid, args.gin_param, args.name, args.experiment)
    if args.seeds is not None:
        spec.seeds, spec.seeds_source = sweep.parse_seeds(args.seeds, "--seeds"), "--seeds"
    for name in launchers.SETTING_CHECKS:
        value = getattr(args, name)
        if value is not None:
            launchers.apply_setting(spec.launch, name, value, f"--{name}")
    if args.dry_run:
        cells = sweep.expand(spec)
        name = sweep.sweep_name(spec, cells)
        sweep.refuse_no_op_cells(spec, cells)
        done = sweep.finished_cells_if_stored(name)
        print(f"sweep {name!r}: {len(cells)} cells")
        for cell in cells:
            state = f"finished (run {done[cell.cell_id]})" if cell.cell_id in done else "to run"
            print(f"  {cell.cell_id}  {cell.label}  [{state}]")
        return 0
    result = sweep.run_sweep(spec, progress=not args.no_progress)
    print(f"compare them: python -m matchzoo compare --sweep {result.name}")
    return 1 if result.failed else 0
