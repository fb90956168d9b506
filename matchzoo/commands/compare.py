"""``python -m matchzoo compare``: objective x train-space table, stability-vs-FDr^k plot, FDr^k curves."""

from __future__ import annotations

import argparse

from matchzoo import cli_args
from matchzoo import validate as check

HELP = "compare runs: table (Markdown + CSV), stability-vs-FDr^k scatter and FDr^k curves, logged to MLflow"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cli_args.add_experiment(parser)
    parser.add_argument("--sweep", help="only runs of this sweep (tag 'sweep')")
    parser.add_argument(
        "--out", type=check.text_option(check.folder), help="output folder (default runs/compare/<sweep or experiment>)"
    )
    parser.add_argument("--no_log", action="store_true", help="do not log the outputs as a summary MLflow run")


def run(args: argparse.Namespace) -> int:
    from matchzoo.compare import compare
    from matchzoo.tracking import client, readable_store

    with readable_store():
        report = compare(client(), args.experiment, args.sweep, args.out, log_summary=not args.no_log)
    print(report.markdown)
    for kind, path in report.files.items():
        print(f"{kind:>8}: {path}")
    if report.summary_run_id:
        print(f"logged as artifacts of summary run {report.summary_run_id}")
    return 0
