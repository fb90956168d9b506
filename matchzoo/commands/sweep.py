"""``python -m matchzoo sweep``: run the cartesian product of experiments and gin grid axes, resumably."""

from __future__ import annotations

import argparse

HELP = "run a grid of experiments (one MLflow run per cell; finished cells are skipped)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gin",
        action="append",
        required=True,
        metavar="FILE",
        help="experiment file (repeat for an axis over files) or a sweep file with sweep.* bindings",
    )
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="BINDING=[V1, V2, ...]",
        help="grid axis in gin syntax, e.g. 'term.objective=[@fd(), @sinkhorn()]' (repeatable)",
    )
    parser.add_argument(
        "--gin_param",
        action="append",
        default=[],
        metavar="BINDING",
        help="binding shared by every cell, e.g. 'train.steps=200' (repeatable)",
    )
    parser.add_argument("--name", help="sweep name (tag 'sweep'; default: from the sweep file or a hash of the cells)")
    parser.add_argument("--experiment", help="MLflow experiment for every cell (binds train.experiment)")
    parser.add_argument("--dry_run", action="store_true", help="print the cells and their status, run nothing")


def run(args: argparse.Namespace) -> int:
    from matchzoo import sweep

    spec = sweep.build_spec(args.gin, args.grid, args.gin_param, args.name, args.experiment)
    if args.dry_run:
        cells = sweep.expand(spec)
        name = sweep.sweep_name(spec, cells)
        sweep.refuse_no_op_cells(spec, cells)
        done = _finished_cells(name)
        print(f"sweep {name!r}: {len(cells)} cells")
        for cell in cells:
            state = f"finished (run {done[cell.cell_id]})" if cell.cell_id in done else "to run"
            print(f"  {cell.cell_id}  {cell.label}  [{state}]")
        return 0
    result = sweep.run_sweep(spec)
    print(f"compare them: python -m matchzoo compare --sweep {result.name}")
    return 1 if result.failed else 0


def _finished_cells(name: str) -> dict[str, str]:
    """Finished cells of the sweep; a dry run on a store that does not exist yet does not create one."""
    from pathlib import Path

    from matchzoo import sweep
    from matchzoo.tracking import client, tracking_uri

    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        return {}
    return sweep.finished_cells(client(), name)
