"""``python -m matchzoo ui``: the MLflow UI over the project's store, bound to 127.0.0.1."""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

from matchzoo.errors import MatchzooError
from matchzoo.train.tracking import tracking_uri

HELP = "start the MLflow UI (127.0.0.1) over the runs store (default sqlite:///runs/mlflow.db)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (default 5000)")
    parser.add_argument("--dry-run", action="store_true", help="print the command instead of running it")


def command(port: int) -> list[str]:
    mlflow = shutil.which("mlflow") or str(__import__("pathlib").Path(sys.executable).with_name("mlflow"))
    return [mlflow, "ui", "--backend-store-uri", tracking_uri(), "--host", "127.0.0.1", "--port", str(port)]


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise MatchzooError(f"--port must be in 1..65535, got {args.port}")
    cmd = command(args.port)
    if args.dry_run:
        print(" ".join(cmd))
        return 0
    print(f"MLflow UI on http://127.0.0.1:{args.port} over {tracking_uri()} (Ctrl-C to stop)", file=sys.stderr)
    try:
        return subprocess.call(cmd)
    except FileNotFoundError:
        raise MatchzooError(f"cannot start {cmd[0]}; is mlflow installed in this environment?") from None
