"""``python -m matchzoo server``: an MLflow tracking server over the run store, for sweeps whose cells write
at once (``--jobs N``, ``--launcher slurm``); see :mod:`matchzoo.tracking_server`."""

from __future__ import annotations

import argparse
import sys

from matchzoo import cli_args, mlflow_ui, tracking_server
from matchzoo.validate import integer, option

HELP = "start an MLflow tracking server over the runs store (many concurrent writers: parallel and Slurm sweeps)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=None,
        metavar="FOLDER|URI",
        help="run store: a folder (its mlflow.db) or a database URI (default: the store matchzoo uses, runs/)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1; 0.0.0.0 for a cluster)"
    )
    cli_args.add_port(parser)
    parser.add_argument(
        "--server_workers",
        type=option(integer, 1, 64),
        default=4,
        help="mlflow server processes answering the writers (its --workers; default 4)",
    )
    parser.add_argument(
        "--allowed_hosts",
        default="",
        metavar="A,B",
        help="more Host headers to accept (a DNS alias the cells use; '*' accepts any). Accepted anyway: localhost, "
        "private IPs, this machine's names and --host",
    )
    cli_args.add_dry_run(parser)


def run(args: argparse.Namespace) -> int:
    store = tracking_server.backend_store(args.store)
    extra = [name.strip() for name in args.allowed_hosts.split(",") if name.strip()]
    cmd = tracking_server.command(store, args.host, args.port, args.server_workers, extra)
    if args.dry_run:
        print(" ".join(cmd))
        return 0
    tracking_server.check_port_free(args.host, args.port)
    tracking_server.prepare_store(store)
    uri = tracking_server.client_uri(args.host, args.port)
    print(
        f"MLflow tracking server over {store}; cells log to it with MLFLOW_TRACKING_URI={uri} (Ctrl-C to stop)",
        file=sys.stderr,
    )
    return mlflow_ui.serve(cmd)
