"""``python -m matchzoo sweep``: run the cartesian product of experiments and gin grid axes, resumably."""

from __future__ import annotations

import argparse

from matchzoo import cli_args

HELP = "run a grid of experiments (one MLflow run per cell; finished cells are skipped)"


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
    cli_args.add_experiment(parser)
    cli_args.add_dry_run(parser)


def run(args: argparse.Namespace) -> int:
    from matchzoo import sweep

    spec = sweep.build_spec(args.gin, args.grid, args.gin_param, args.name, args.experiment)
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
    result = sweep.run_sweep(spec)
    print(f"compare them: python -m matchzoo compare --sweep {result.name}")
    return 1 if result.failed else 0
