"""``python -m matchzoo ui``: the MLflow UI over the project's store, bound to 127.0.0.1 (the server's process
group, signals and exit status: :mod:`matchzoo.mlflow_ui`)."""

from __future__ import annotations

import argparse
import sys

from matchzoo import cli_args, mlflow_ui
from matchzoo.tracking import tracking_uri

HELP = "start the MLflow UI (127.0.0.1) over the runs store (default sqlite:///runs/mlflow.db)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cli_args.add_port(parser)
    cli_args.add_dry_run(parser)


def run(args: argparse.Namespace) -> int:
    cmd = mlflow_ui.command(args.port)
    if args.dry_run:
        print(" ".join(cmd))
        return 0
    mlflow_ui.check_port_free(args.port)
    print(f"MLflow UI on http://{mlflow_ui.HOST}:{args.port} over {tracking_uri()} (Ctrl-C to stop)", file=sys.stderr)
    return mlflow_ui.serve(cmd)
