"""Every MLflow metric key, tag and param name matchzoo writes or reads, in one place.

Metric keys (schema 3):

* ``train/loss`` and ``train/<term>/<log>`` (``train/<term>/critic/<log>`` for a critic's logs);
* ``eval/<quantity>/<space>`` for every quantity a registered metric computes in one space
  (:mod:`matchzoo.metrics`), the same names ``matchzoo evaluate`` prints: ``fd`` (generated vs the
  reference, i.e. the train split), ``fd_to_heldout`` (generated vs the held-out split), ``fd_matched`` /
  ``fd_heldout`` / ``fdr`` / ``fdr_n`` (the FDr numerator, denominator, ratio and sample size), ...;
* ``eval/fdr_k`` (mean FDr over the evaluation spaces) and ``eval/stability/<space>``.

Schema 1 (runs without the :data:`KEY_SCHEMA_TAG` tag) logged FD *to the held-out split* as
``eval/fd/<space>``; :func:`upgrade_metrics` renames it when such runs are read, so one key never carries
two meanings in a table.
"""

from __future__ import annotations

from typing import Mapping

# ----------------------------------------------------------------------------- metrics

TRAIN_PREFIX, EVAL_PREFIX = "train/", "eval/"
TRAIN_LOSS = "train/loss"
TRAIN_LR, TRAIN_GRAD_NORM = "train/lr", "train/grad_norm"  # the learning rate of the step, the gradient norm
FDRK = "eval/fdr_k"
STABILITY_PREFIX = "eval/stability/"
# across spaces (matchzoo.metrics.summary): FDr^k's interval and the unseen-space summary with its interval
FDRK_LOW, FDRK_HIGH = "eval/fdr_k_low", "eval/fdr_k_high"
FDR_UNSEEN, FDR_UNSEEN_LOW, FDR_UNSEEN_HIGH = "eval/fdr_unseen", "eval/fdr_unseen_low", "eval/fdr_unseen_high"

# per-space quantities (the rows of `matchzoo evaluate`, the middle part of eval/<quantity>/<space>)
FD, FD_TO_HELDOUT = "fd", "fd_to_heldout"
FD_MATCHED, FD_HELDOUT, FDR, FDR_N = "fd_matched", "fd_heldout", "fdr", "fdr_n"
FDR_FIXED_BASELINE = "fdr_fixed_baseline"  # 1: FDr divides by a fixed number (fdr.baselines), 0: the held-out split
# confidence intervals (matchzoo.metrics.intervals) and the flag on an FDr whose whole interval lies below 1
FD_LOW, FD_HIGH, FDR_LOW, FDR_HIGH = "fd_low", "fd_high", "fdr_low", "fdr_high"
FDR_BELOW_ONE = "fdr_below_one"
INTERVAL_OF = {FD: (FD_LOW, FD_HIGH), FDR: (FDR_LOW, FDR_HIGH)}  # quantity -> its interval's keys


def train_key(term: str, log: str) -> str:
    return f"{TRAIN_PREFIX}{term}/{log}"


def eval_key(quantity: str, space: str) -> str:
    return f"{EVAL_PREFIX}{quantity}/{space}"


def eval_prefix(quantity: str) -> str:
    """``eval/<quantity>/``: the keys of one quantity in every space start with it."""
    return f"{EVAL_PREFIX}{quantity}/"


def stability_key(space: str) -> str:
    return f"{STABILITY_PREFIX}{space}"


def ema_key(decay: float, key: str) -> str:
    """The key of an evaluation of the EMA generator with ``decay`` when a run keeps several EMA decays:
    ``ema_0.9999/eval/fd/<space>``. The first decay of ``train.ema_decay`` logs under the plain keys."""
    return f"ema_{decay:g}/{key}"


# ----------------------------------------------------------------------------- key schema

KEY_SCHEMA_TAG, KEY_SCHEMA = "matchzoo.key_schema", "3"
LEGACY_QUANTITIES = {FD: FD_TO_HELDOUT}  # schema 1 quantity -> its schema 2 name
# schema 3: eval/fdr_unseen became a geometric mean over the spaces of unseen families (schema 2: an arithmetic
# mean over the spaces not trained in); a schema 1-2 run's logged value and interval are dropped when read, and
# `compare` recomputes the value from the run's final per-space FDr (without an interval).
SCHEMA_3_REDEFINED = (FDR_UNSEEN, FDR_UNSEEN_LOW, FDR_UNSEEN_HIGH)


def upgrade_metrics(metrics: Mapping[str, float], tags: Mapping[str, str]) -> dict[str, float]:
    """A run's metrics under schema-3 keys. A run logged before the schema tag existed (schema 1) has its
    ``eval/fd/<space>`` (FD to the held-out split) renamed ``eval/fd_to_heldout/<space>``; a run that has
    the new name too is a schema-1 run resumed by a newer version: its latest values already follow schema 2.
    A run of schema 1 or 2 loses ``eval/fdr_unseen`` and its interval (:data:`SCHEMA_3_REDEFINED`), whatever EMA
    prefix they carry: one key never carries two meanings in a table."""
    schema = tags.get(KEY_SCHEMA_TAG) or "1"
    upgraded = dict(metrics)
    if schema.isdigit() and int(schema) < 3:
        upgraded = {k: v for k, v in upgraded.items() if not any(k.endswith(name) for name in SCHEMA_3_REDEFINED)}
    if schema != "1":
        return upgraded
    for key in list(upgraded):
        new = legacy_key(key)
        if new != key and new not in metrics:
            upgraded[new] = upgraded.pop(key)
    return upgraded


def legacy_key(key: str) -> str:
    """The schema-2 name of a schema-1 key (unchanged for every key that did not change)."""
    for old, new in LEGACY_QUANTITIES.items():
        if key.startswith(eval_prefix(old)):
            return eval_prefix(new) + key[len(eval_prefix(old)) :]
    return key


# ----------------------------------------------------------------------------- tags

OBJECTIVE_TAG, TRAIN_SPACE_TAG, EVAL_SPACES_TAG, DATASET_TAG = "objective", "train_space", "eval_spaces", "dataset"
# every space the generator's weights were optimised in when more than its terms' (train.init_from a matchzoo
# checkpoint): fdr_unseen leaves their families out
SEEN_SPACES_TAG = "seen_spaces"
GIN_FILES_TAG, RUN_DIR_TAG = "gin_files", "run_dir"
UNUSED_BINDINGS_TAG, RESUME_CHANGES_TAG = "unused_bindings", "resume_changes"
SWEEP_TAG, CELL_TAG, LABEL_TAG, ERROR_TAG = "sweep", "sweep_cell", "sweep_cell_label", "sweep_error"
# `sweep --seeds`: each (cell, seed) is its own cell; GROUP_TAG names the cell without its seed, SEED_TAG the seed
GROUP_TAG, SEED_TAG = "sweep_group", "sweep_seed"
ROLE_TAG, SUMMARY_ROLE = "matchzoo.role", "summary"
COMPARED_RUNS_TAG, COMPARED_SWEEP_TAG = "compared_runs", "compared_sweep"
RUN_NAME_TAG = "mlflow.runName"  # MLflow's own: setting it renames the run
BEST_EMA_DECAY_TAG = "best_ema_decay"  # the EMA decay with the lowest final FDr^k in a run with several
INIT_FROM_SHA_TAG = "init_from_sha256"  # the SHA-256 of the train.init_from file a run started from
FDR_BASELINE_TAG = "fdr_baseline"  # where each eval space's FDr denominator comes from
EVAL_STATS_TAG = "eval_reference_stats"  # eval_reference_stats/<space>/<path|sha256|arrays|layout>
REFERENCE_STATS_TAG = "reference_stats"  # reference_stats/<term>/<path|sha256|arrays|layout>: a term's stats file
NO_DATASET = "none"  # the dataset tag of a run trained from statistics alone (train.dataset = None)

# ----------------------------------------------------------------------------- params

# the run summary as params, in the order the MLflow compare page preselects them (see matchzoo.tracking)
OBJECTIVE_PARAM, TRAIN_SPACE_PARAM, STABILITY_PARAM = "1 objective", "2 train_space", "3 stability"
SUMMARY_PARAMS = {OBJECTIVE_TAG: OBJECTIVE_PARAM, TRAIN_SPACE_TAG: TRAIN_SPACE_PARAM}  # run tag -> param
