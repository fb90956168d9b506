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
from typing import Optional, Sequence

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


WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def allowed_hosts(host: str, extra: Sequence[str] = ()) -> list[str]:
    """The ``Host`` headers the server accepts (its DNS-rebinding guard, mlflow ``--allowed-hosts``): mlflow's
    defaults (localhost and private IPs), this machine's names -- :func:`client_uri` tells the cells to use
    ``socket.gethostname()``, which mlflow's defaults refuse (403) -- the ``--host`` itself when it is a name, and
    ``extra`` (a DNS alias the cells use; ``*`` accepts every host)."""
    names = [socket.gethostname(), socket.getfqdn()]
    if host not in WILDCARD_HOSTS:
        names.append(host)
    own = [pattern for name in dict.fromkeys(n for n in names if n) for pattern in (name, f"{name}:*")]
    return list(dict.fromkeys([*mlflow_default_hosts(), *own, *extra]))


def mlflow_default_hosts() -> list[str]:
    """mlflow's own default allow-list (it is replaced, not extended, by ``--allowed-hosts``)."""
    try:
        from mlflow.server.security_utils import get_default_allowed_hosts
    except ImportError:  # an mlflow without the guard, or one that moved it: the same rule written out
        private = ["10.*", "192.168.*", *[f"172.{i}.*" for i in range(16, 32)]]
        return ["localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*", "[[]::1]:*", *private]
    return list(get_default_allowed_hosts())


def command(store_uri: str, host: str, port: int, workers: int = 4, extra_hosts: Sequence[str] = ()) -> list[str]:
    """``mlflow server`` over ``store_uri``; ``workers`` uvicorn processes answer the writers (mlflow's default 4);
    ``extra_hosts`` join the accepted ``Host`` headers (:func:`allowed_hosts`)."""
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
        "--allowed-hosts",
        ",".join(allowed_hosts(host, extra_hosts)),
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
