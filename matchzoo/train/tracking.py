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
objective | train space | stability | FDr^k, coloured by FDr^k.
"""
from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Optional

from matchzoo.errors import MatchzooError

DEFAULT_TRACKING_URI = "sqlite:///runs/mlflow.db"

# run summary as params, in the order the compare page's parallel-coordinates plot preselects them
OBJECTIVE_PARAM, TRAIN_SPACE_PARAM, STABILITY_PARAM = "1 objective", "2 train_space", "3 stability"
SUMMARY_PARAMS = {"objective": OBJECTIVE_PARAM, "train_space": TRAIN_SPACE_PARAM}  # run tag -> param key
FDRK_METRIC, STABILITY_PREFIX = "eval/fdr_k", "eval/stability/"


def metric_rank(key: str) -> int:
    """Write order within a batch: FDr^k, then stability, then the rest (the UI plots the first-logged key)."""
    return 0 if key == FDRK_METRIC else 1 if key.startswith(STABILITY_PREFIX) else 2


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
        uri = f"sqlite:///{Path(uri[len('sqlite:///'):]).resolve()}"
    return uri


def quiet_mlflow() -> None:
    for name in ("alembic", "mlflow", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)


def client():
    """An ``MlflowClient`` on :func:`tracking_uri`, creating ``runs/`` for the default sqlite store."""
    from mlflow.tracking import MlflowClient

    quiet_mlflow()  # after the import: importing mlflow configures its own loggers

    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise MatchzooError(f"cannot create the MLflow store folder {db.parent}: {error.strerror}") from None
        if not os.access(db.parent, os.W_OK):
            raise MatchzooError(f"the MLflow store folder {db.parent} is not writable; fix its permissions or set MLFLOW_TRACKING_URI")
    return MlflowClient(tracking_uri=uri)


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


class Tracker:
    """One MLflow run: params, tags, buffered metrics, artifacts, final status."""

    def __init__(self, experiment: str, run_name: Optional[str], tags: dict[str, str], resume_run_id: Optional[str] = None):
        try:
            self.client = client()
            if resume_run_id:
                self.run_id = self.client.get_run(resume_run_id).info.run_id
                self.client.update_run(self.run_id, status="RUNNING")
            else:
                found = self.client.get_experiment_by_name(experiment)
                experiment_id = found.experiment_id if found else self.client.create_experiment(
                    experiment, artifact_location=f"{artifact_root()}/{experiment}")
                self.run_id = self.client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
        except MatchzooError:
            raise
        except Exception as error:  # mlflow raises many types (locked database, bad URI); report them in one line
            raise MatchzooError(f"MLflow store {tracking_uri()} unusable: {str(error).splitlines()[0]}") from None
        self._pending: list = []

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params
        items = [Param(k[:250], str(v)[:6000]) for k, v in params.items() if k[:250] not in existing]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start:start + 100])

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending.extend(Metric(metric_key(key), float(value), now, step) for key, value in metrics.items())
        if len(self._pending) >= 500:
            self.flush()

    def flush(self) -> None:
        self._pending.sort(key=lambda metric: metric_rank(metric.key))  # stable: steps keep their order per key
        while self._pending:
            batch, self._pending = self._pending[:1000], self._pending[1000:]
            self.client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: str | Path, artifact_path: Optional[str] = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def finish(self, status: str = "FINISHED") -> None:
        self.flush()
        if status == "FINISHED":
            self.log_final_summary()
        self.client.set_terminated(self.run_id, status=status)

    def log_final_summary(self) -> None:
        """``3 stability`` = the final matching stability, copied from the metrics into a param only so
        the compare page's parallel-coordinates plot shows it by default (it preselects one metric);
        ``eval/stability/<space>`` stays the source of truth. Logged once, when the run finishes."""
        stability = final_stability(self.client.get_run(self.run_id).data.metrics)
        if stability is not None:
            self.log_params({STABILITY_PARAM: f"{stability:.6g}"})
