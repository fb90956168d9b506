"""MLflow tracking: sqlite store under ``runs/`` by default, batched metric logging, artifacts.

MLflow's sqlite store costs ~3.6 ms per ``log_metric`` call, so metrics are buffered and written with
``log_batch``. The tracking URI defaults to ``sqlite:///runs/mlflow.db`` (``MLFLOW_TRACKING_URI``
overrides it); new experiments put artifacts under ``runs/artifacts/``.

Keys are chosen for the MLflow UI's run-compare page (MLflow 3.17, ``CompareRunView``), whose
parallel-coordinates plot preselects, without any configuration,

* params: ``sorted(keys whose value differs between the compared runs)[:3]`` (JavaScript's default sort,
  i.e. by UTF-16 code unit: digits < upper case < ``_`` < lower case), and
* metrics: ``[first key common to all compared runs]``, in the order the store returns a run's latest
  metrics -- for the sqlite store the order in which each key was *first* logged in the run.

So the run summary is logged as the params ``1 objective``, ``2 train_space`` and (at the end of a finished
run) ``3 stability``: a leading digit sorts them before every gin binding (gin names start with a letter or
``_``), and each batch of metrics is written with ``eval/fdr_k`` first, then ``eval/stability/*``, so the
first key a fresh run logs (its step-0 evaluation) is FDr^k. The plot then opens on
objective | train space | stability | FDr^k, coloured by FDr^k. Every key, tag and param name is in
:mod:`matchzoo.keys`; new runs carry the tag ``matchzoo.key_schema`` so readers can tell key schemas apart.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import socket
import time
import urllib.parse
from pathlib import Path
from typing import Iterator, Optional

from matchzoo.errors import MatchzooError
from matchzoo.keys import FDRK, KEY_SCHEMA, KEY_SCHEMA_TAG, STABILITY_PARAM, STABILITY_PREFIX, SUMMARY_PARAMS
from matchzoo.keys import OBJECTIVE_PARAM as OBJECTIVE_PARAM  # re-exported: their home was this module
from matchzoo.keys import TRAIN_SPACE_PARAM as TRAIN_SPACE_PARAM

DEFAULT_TRACKING_URI = "sqlite:///runs/mlflow.db"
FDRK_METRIC = FDRK


def metric_rank(key: str) -> int:
    """Write order within a batch: FDr^k, then stability, then the rest (the UI plots the first-logged key)."""
    return 0 if key == FDRK else 1 if key.startswith(STABILITY_PREFIX) else 2


def summary_params(tags: dict[str, str]) -> dict[str, str]:
    """``{'1 objective': ..., '2 train_space': ...}`` from the run's ``objective``/``train_space`` values."""
    return {param: tags[tag] for tag, param in SUMMARY_PARAMS.items() if tag in tags}


def final_stability(latest_metrics: dict[str, float]) -> Optional[float]:
    """Mean of the latest ``eval/stability/<space>`` over the run's train spaces (one space: its value)."""
    values = [v for k, v in latest_metrics.items() if k.startswith(STABILITY_PREFIX)]
    return sum(values) / len(values) if values else None


def tracking_uri() -> str:
    """The tracking URI with a relative sqlite path made absolute (MLflow caches stores per URI string,
    so a relative path would keep pointing at the first working directory's database)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{Path(uri[len('sqlite:///') :]).resolve()}"
    return uri


def quiet_mlflow() -> None:
    for name in ("alembic", "mlflow", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)


def client():
    """An ``MlflowClient`` on :func:`tracking_uri`, creating ``runs/`` for the default sqlite store.

    Problems that would otherwise surface late (or as a crash) are one line up front: a store folder that
    cannot be created or written, a tracking server that does not answer (MLflow would retry for minutes)."""
    from mlflow.tracking import MlflowClient

    quiet_mlflow()  # after the import: importing mlflow configures its own loggers

    uri = _reachable_uri()
    if not uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri=uri)
    return open_sqlite_store(uri)


def open_sqlite_store(uri: str):
    """An ``MlflowClient`` on the sqlite store ``uri``, created and migrated under the store lock."""
    from mlflow.tracking import MlflowClient

    with store_creation_lock(_sqlite_path(uri)):
        mlflow_client = MlflowClient(tracking_uri=uri)
        mlflow_client.search_experiments(max_results=1)  # creates and migrates the schema of a new store
    return mlflow_client


def check_store() -> str:
    """The tracking URI, once it is known to take a run's writes (cheap: run before any long work). A
    read-only sqlite database otherwise fails mid-run, sometimes as a native abort ("terminate called
    without an active exception"); reading commands (``compare``) do not need this."""
    uri = _reachable_uri()
    if uri.startswith("sqlite:///"):
        db = _sqlite_path(uri)
        if db.exists() and not os.access(db, os.W_OK):
            raise MatchzooError(
                f"the MLflow store {db} is read-only; fix its permissions (chmod u+w) or set MLFLOW_TRACKING_URI"
            )
    return uri


def _sqlite_path(uri: str) -> Path:
    return Path(uri[len("sqlite:///") :])


def store_folder() -> Path:
    """The folder of the run store: the sqlite database's, else ``runs/`` (a tracking server's clients keep
    their sweep files and logs there)."""
    uri = tracking_uri()
    return _sqlite_path(uri).parent if uri.startswith("sqlite:///") else Path("runs").resolve()


# filesystems on which sqlite's file locks are not to be trusted with several writers (sqlite.org: "SQLite Over
# a Network"); read from /proc/mounts
NETWORK_FILESYSTEMS = frozenset(
    "nfs nfs4 cifs smb3 smbfs lustre gpfs beegfs ceph fuse.ceph glusterfs fuse.glusterfs fuse.sshfs 9p afs "
    "panfs wekafs fuse.s3fs fuse.gcsfuse".split()
)


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding ``path`` (longest mount point above it), '' where unknown."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines() if line.strip()]
    except OSError:
        return ""
    resolved = str(path.resolve())
    best, kind = "", ""
    for point, fs in mounts:
        point = point.replace("\\040", " ")
        if (resolved == point or resolved.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, kind = point, fs
    return kind


def check_concurrent_writers(remote: bool, allow_shared_sqlite: bool, what: str) -> str:
    """The tracking URI, once it can take the sweep's concurrent writers: a server or a database always; sqlite
    only on a local filesystem with every cell on this machine (``allow_shared_sqlite``: the user's risk)."""
    uri = check_store()
    if not uri.startswith("sqlite:///") or allow_shared_sqlite:
        return uri
    db = _sqlite_path(uri)
    serve = (
        "start `python -m matchzoo server --host 0.0.0.0` on a machine the cells reach and set "
        "MLFLOW_TRACKING_URI=http://THAT_HOST:5000"
    )
    if remote:
        raise MatchzooError(
            f"{what}: cells on other machines cannot share the sqlite store {db}; {serve} (or pass "
            f"--allow_shared_sqlite to use it on a shared filesystem at your own risk)"
        )
    kind = filesystem_type(db.parent)
    if kind in NETWORK_FILESYSTEMS:
        raise MatchzooError(
            f"{what}: the sqlite store {db} is on a network filesystem ({kind}), whose locks sqlite cannot trust "
            f"with concurrent writers; {serve} (or pass --allow_shared_sqlite at your own risk)"
        )
    return uri


def _reachable_uri() -> str:
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        check_reachable(uri)
    elif uri.startswith("sqlite:///"):
        check_folder(_sqlite_path(uri))
    return uri


def check_folder(db: Path) -> None:
    """sqlite writes journal files next to the database, so its folder must exist and be writable."""
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise MatchzooError(f"cannot create the MLflow store folder {db.parent}: {error.strerror}") from None
    if not os.access(db.parent, os.W_OK):
        raise MatchzooError(
            f"the MLflow store folder {db.parent} is not writable; fix its permissions or set MLFLOW_TRACKING_URI"
        )


@contextlib.contextmanager
def store_creation_lock(db: Path) -> Iterator[None]:
    """Serialise opening the sqlite store across processes: two first runs on an empty ``runs/`` would both
    create and migrate the schema, and one dies (``duplicate column name``)."""
    with open(db.parent / f".{db.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


def check_reachable(uri: str, timeout: float = 2.0) -> None:
    """A tracking server that does not accept connections is one line after ``timeout`` seconds."""
    parsed = urllib.parse.urlparse(uri)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "localhost", port), timeout=timeout).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__.replace("Error", "").lower() or "no answer"
        raise MatchzooError(
            f"MLflow tracking server {uri} is not reachable ({reason}); start it, or unset "
            f"MLFLOW_TRACKING_URI to use the local store {DEFAULT_TRACKING_URI}"
        ) from None


def search_all_runs(mlflow_client, experiment_ids: list, query: str = "") -> list:
    """Every run matching ``query`` in ``experiment_ids``, following MLflow's pagination."""
    runs, token = [], None
    while experiment_ids:
        page = mlflow_client.search_runs(experiment_ids, query, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            break
    return runs


def artifact_root() -> str:
    return (Path("runs") / "artifacts").resolve().as_uri()


_INVALID_KEY_CHARS = re.compile(r"[^\w\-. :/]")


def metric_key(key: str) -> str:
    """MLflow accepts alphanumerics, ``_ - . space : /`` in metric names; anything else becomes ``_``."""
    return _INVALID_KEY_CHARS.sub("_", key)


def ensure_experiment(mlflow_client, name: str) -> str:
    """The id of experiment ``name``, created if missing. Cells of a parallel sweep start together: when
    another process creates it first, its experiment is used (MLflow refuses the second creation)."""
    found = mlflow_client.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    # a tracking server stores (proxies) the artifacts of the experiments it creates; a local store puts them
    # under runs/artifacts/
    location = f"{artifact_root()}/{name}" if tracking_uri().startswith("sqlite:") else None
    try:
        return mlflow_client.create_experiment(name, artifact_location=location)
    except Exception:
        found = mlflow_client.get_experiment_by_name(name)
        if found:
            return found.experiment_id
        raise


class TrackingError(MatchzooError):
    """The MLflow store failed during a run (disk full, read-only database, server gone)."""


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class Tracker:
    """One MLflow run: params, tags, buffered metrics, artifacts, final status.

    A resumed run is set RUNNING only when it is created here, i.e. after the caller has checked that the
    checkpoint fits the config; :meth:`restore` puts its earlier status back if the run then fails before
    training starts."""

    def __init__(
        self, experiment: str, run_name: Optional[str], tags: dict[str, str], resume_run_id: Optional[str] = None
    ):
        self.previous_status: Optional[str] = None
        check_store()
        try:
            self.client = client()
            if resume_run_id:
                info = self.client.get_run(resume_run_id).info
                self.run_id, self.previous_status = info.run_id, info.status
                self.client.update_run(self.run_id, status="RUNNING")
            else:
                experiment_id = ensure_experiment(self.client, experiment)
                tags = {**tags, KEY_SCHEMA_TAG: KEY_SCHEMA}
                self.run_id = self.client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
        except MatchzooError:
            raise
        except Exception as error:  # mlflow raises many types (locked database, bad URI); report them in one line
            raise MatchzooError(f"MLflow store {tracking_uri()} unusable: {first_line(error)}") from None
        self._pending: list = []

    @contextlib.contextmanager
    def _store(self, action: str) -> Iterator[None]:
        """MLflow failures mid-run (``OSError``, sqlite's "database or disk is full", HTTP errors) as one line."""
        try:
            yield
        except MatchzooError:
            raise
        except Exception as error:
            raise TrackingError(f"MLflow store {tracking_uri()}: {action} failed: {first_line(error)}") from None

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        with self._store("logging params"):
            existing = self.client.get_run(self.run_id).data.params
            items = [Param(k[:250], str(v)[:6000]) for k, v in params.items() if k[:250] not in existing]
            for start in range(0, len(items), 100):
                self.client.log_batch(self.run_id, params=items[start : start + 100])

    def set_tags(self, tags: dict[str, str]) -> None:
        with self._store("setting tags"):
            for key, value in tags.items():
                self.client.set_tag(self.run_id, key, value)

    def tag(self, key: str) -> Optional[str]:
        with self._store("reading tags"):
            return self.client.get_run(self.run_id).data.tags.get(key)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending.extend(Metric(metric_key(key), float(value), now, step) for key, value in metrics.items())
        if len(self._pending) >= 500:
            self.flush()

    def flush(self) -> None:
        """Write buffered metrics; a batch leaves the buffer only once the store has taken it."""
        self._pending.sort(key=lambda metric: metric_rank(metric.key))  # stable: steps keep their order per key
        while self._pending:
            batch = self._pending[:1000]
            with self._store("logging metrics"):
                self.client.log_batch(self.run_id, metrics=batch)
            del self._pending[: len(batch)]

    def log_artifact(self, path: str | Path, artifact_path: Optional[str] = None) -> None:
        with self._store(f"storing artifact {Path(path).name}"):
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        with self._store(f"storing {artifact_file}"):
            self.client.log_text(self.run_id, text, artifact_file)

    def finish(self, status: str = "FINISHED") -> None:
        """Flush and set the final status; if the flush fails, the run is marked FAILED, not FINISHED."""
        try:
            self.flush()
            if status == "FINISHED":
                self.log_final_summary()
        except TrackingError:
            status = "FAILED" if status == "FINISHED" else status
            raise
        finally:
            with self._store(f"marking the run {status}"):
                self.client.set_terminated(self.run_id, status=status)

    def restore(self) -> None:
        """Give a resumed run back its status from before this process touched it."""
        with self._store("restoring the run status"):
            self.client.update_run(self.run_id, status=self.previous_status or "FAILED")

    def log_final_summary(self) -> None:
        """``3 stability`` = the final matching stability, copied from the metrics into a param only so
        the compare page's parallel-coordinates plot shows it by default (it preselects one metric);
        ``eval/stability/<space>`` stays the source of truth. Logged once, when the run finishes."""
        with self._store("reading the final metrics"):
            stability = final_stability(self.client.get_run(self.run_id).data.metrics)
        if stability is not None:
            self.log_params({STABILITY_PARAM: f"{stability:.6g}"})


@contextlib.contextmanager
def readable_store() -> Iterator[None]:
    """A store that is not a database (or a truncated one) is one line naming it, not a SQLAlchemy traceback."""
    import sqlite3

    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (MlflowException, SQLAlchemyError, sqlite3.DatabaseError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise MatchzooError(
            f"cannot read the MLflow store {tracking_uri()} ({reason}); "
            f"point MLFLOW_TRACKING_URI at a valid store or move the damaged file away"
        ) from None
