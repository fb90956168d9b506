"""``python -m matchzoo compare``: objective x train-space table, stability-vs-FDr^k plot, FDr^k curves."""

from __future__ import annotations

import argparse
import contextlib
from typing import Iterator

from matchzoo import validate as check
from matchzoo.errors import MatchzooError

HELP = "compare runs: table (Markdown + CSV), stability-vs-FDr^k scatter and FDr^k curves, logged to MLflow"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", help="only runs of this MLflow experiment")
    parser.add_argument("--sweep", help="only runs of this sweep (tag 'sweep')")
    parser.add_argument(
        "--out", type=check.text_option(check.folder), help="output folder (default runs/compare/<sweep or experiment>)"
    )
    parser.add_argument("--no_log", action="store_true", help="do not log the outputs as a summary MLflow run")


@contextlib.contextmanager
def readable_store() -> Iterator[None]:
    """A store that is not a database (or a truncated one) is one line naming it, not a SQLAlchemy traceback."""
    import sqlite3

    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    from matchzoo.tracking import tracking_uri

    try:
        yield
    except (MlflowException, SQLAlchemyError, sqlite3.DatabaseError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise MatchzooError(
            f"cannot read the MLflow store {tracking_uri()} ({reason}); "
            f"point MLFLOW_TRACKING_URI at a valid store or move the damaged file away"
        ) from None


def run(args: argparse.Namespace) -> int:
    from matchzoo.compare import compare
    from matchzoo.tracking import client

    with readable_store():
        report = compare(client(), args.experiment, args.sweep, args.out, log_summary=not args.no_log)
    print(report.markdown)
    for kind, path in report.files.items():
        print(f"{kind:>8}: {path}")
    if report.summary_run_id:
        print(f"logged as artifacts of summary run {report.summary_run_id}")
    return 0
