"""An MLflow tracking server over matchzoo's store, for many writers at once (parallel and Slurm sweeps).

sqlite takes a handful of writers on one machine; cells on other machines (or many at once) log through one
server instead: ``python -m matchzoo server`` runs ``mlflow server`` with the same backend store URI matchzoo
uses (``--store FOLDER`` -> ``sqlite:///FOLDER/mlflow.db``, or any database URI) and proxies artifacts into
``<store>/artifacts``; the cells get ``MLFLOW_TRACKING_URI=http://HOST:PORT``. The server runs in its own
process group and stops on SIGINT/SIGTERM like ``matchzoo ui`` (:mod:`matchzoo.mlflow_ui`).
"""

from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path
from typing import Optional

from matchzoo import mlflow_ui
from matchzoo.errors import MatchzooError
from matchzoo.tracking import DEFAULT_TRACKING_URI, open_sqlite_store, tracking_uri

DATABASE_SCHEMES = ("sqlite:", "postgresql", "mysql", "mssql")


def backend_store(store: Optional[str]) -> str:
    """The backend store URI: ``--store`` (a folder, or a database URI) or the store matchzoo uses now (the
    default one when ``MLFLOW_TRACKING_URI`` points at a server: a server cannot be its own store)."""
    if store is None:
        uri = tracking_uri()
        default = f"sqlite:///{Path(DEFAULT_TRACKING_URI[len('sqlite:///') :]).resolve()}"
        return uri if uri.startswith(DATABASE_SCHEMES) else default
    if store.startswith(DATABASE_SCHEMES):
        return store
    if "://" in store:
        raise MatchzooError(f"--store {store!r}: give a folder or a database URI (sqlite:///, postgresql://, mysql://)")
    return f"sqlite:///{(Path(store) / 'mlflow.db').resolve()}"


def artifacts_folder(store_uri: str) -> Path:
    """``<store folder>/artifacts`` for a sqlite store, ``runs/artifacts`` for another database."""
    if store_uri.startswith("sqlite:///"):
        return Path(store_uri[len("sqlite:///") :]).parent / "artifacts"
    return Path("runs").resolve() / "artifacts"


def command(store_uri: str, host: str, port: int, workers: int = 4) -> list[str]:
    """``mlflow server`` over ``store_uri``; ``workers`` uvicorn processes answer the writers (mlflow's default 4)."""
    mlflow = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    artifacts = artifacts_folder(store_uri).resolve().as_uri()
    return [
        mlflow,
        "server",
        "--backend-store-uri",
        store_uri,
        "--artifacts-destination",
        artifacts,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def prepare_store(store_uri: str) -> None:
    """Create (and migrate) a sqlite store under matchzoo's store lock before the server's workers open it, so a
    sweep writing the same file directly cannot race the server's schema creation."""
    if store_uri.startswith("sqlite:///"):
        from matchzoo.tracking import check_folder

        check_folder(Path(store_uri[len("sqlite:///") :]))
        open_sqlite_store(store_uri)


def check_port_free(host: str, port: int) -> None:
    """A busy port is one line up front (mlflow would log the bind error and exit 0)."""
    mlflow_ui.check_port_free(port, host, hint="pass --host/--port")


def client_uri(host: str, port: int) -> str:
    """What the cells set as ``MLFLOW_TRACKING_URI`` (this machine's name when the server listens everywhere)."""
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    return f"http://{shown}:{port}"
