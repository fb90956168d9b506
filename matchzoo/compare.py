"""``matchzoo compare``: read runs from MLflow and build the objective x train-space comparison.

For every run (filtered by experiment and/or the ``sweep`` tag; compare's own summary runs, tagged
``matchzoo.role = summary``, are left out) it collects

* the final value of every ``eval/*`` metric (``eval/fd/<space>``, ``eval/fd_to_heldout/<space>``,
  ``eval/fdr/<space>``, ``eval/fdr_k``, ``eval/stability/<space>``, ...), runs logged before key schema 2
  read with their old ``eval/fd/<space>`` (FD to the held-out split) as ``eval/fd_to_heldout/<space>``
  (:func:`matchzoo.keys.upgrade_metrics`);
* the mean over training of ``eval/fdr_k`` and ``eval/stability/<space>`` (mean of their metric history);
* **stability** of a run = ``eval/stability/<space>`` averaged over its train spaces (tag ``train_space``,
  comma-joined for multi-term runs); over every logged stability space only when the tag is missing.

Intervals: a run that logged them (``eval/fdr_k_low``/``_high``, ``eval/fd_low/<space>``, ...; see
:mod:`matchzoo.metrics.intervals`) shows ``1.23 [1.10, 1.40]``; ``fdr_unseen`` (:mod:`matchzoo.metrics.summary`)
is the logged value, else the mean final FDr over the eval spaces not in the run's ``train_space`` tag (no
interval then); spaces whose FDr interval lies wholly below 1 are listed with ``*``. Runs sharing a
``sweep_group`` tag (``sweep --seeds``) are aggregated over seeds as mean ± the half-width of a
``t``-interval (95%, ``n - 1`` degrees of freedom; ``n`` stated; one seed gives no interval).

and writes ``comparison.md`` (an objective x train-space pivot of FDr^k and stability, the seed groups, then one
row per run), ``comparison.csv``, ``stability_vs_fdrk.png`` (one labelled point per run,
colour = objective, marker = train space) and ``fdrk_over_steps.png``. Runs still RUNNING or FAILED are
listed with their status (and whatever metrics they logged) but only runs with both numbers are plotted.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from matchzoo import keys
from matchzoo import validate as check
from matchzoo.errors import MatchzooError
from matchzoo.keys import ROLE_TAG, SUMMARY_ROLE, SWEEP_TAG
from matchzoo.metrics.summary import unseen_value
from matchzoo.tracking import search_all_runs

FD, FD_TO_HELDOUT, FDR = (keys.eval_prefix(q) for q in (keys.FD, keys.FD_TO_HELDOUT, keys.FDR))
FDRK, STABILITY = keys.FDRK, keys.STABILITY_PREFIX
PER_SPACE = (FD, FD_TO_HELDOUT, FDR)  # per-space FD columns of the CSV, in this order
FD_LOW, FD_HIGH, BELOW_ONE = (keys.eval_prefix(q) for q in (keys.FD_LOW, keys.FD_HIGH, keys.FDR_BELOW_ONE))
INTERVAL_PER_SPACE = (FD_LOW, FD_HIGH, keys.eval_prefix(keys.FDR_LOW), keys.eval_prefix(keys.FDR_HIGH), BELOW_ONE)
SEED_LEVEL = 0.95  # the t-interval over seeds


@dataclass
class RunSummary:
    run_id: str
    run_name: str
    experiment: str
    status: str
    objective: str
    train_space: str
    sweep: str
    group: str = ""  # tag sweep_group: the sweep cell without its seed ("" outside `sweep --seeds`)
    seed: str = ""
    seen_space: str = ""  # tag seen_spaces: every space the weights were optimised in, when init_from added some
    final: dict[str, float] = field(default_factory=dict)  # metric key -> last logged value
    mean: dict[str, float] = field(default_factory=dict)  # eval/fdr_k, eval/stability/* -> mean over history
    fdrk_history: list[tuple[int, float]] = field(default_factory=list)  # (step, FDr^k)
    last_step: Optional[int] = None

    @property
    def train_spaces(self) -> list[str]:
        return [s for s in self.train_space.split(",") if s]

    def stability(self, which: str = "final") -> Optional[float]:
        values = self.final if which == "final" else self.mean
        logged = {k[len(STABILITY) :]: v for k, v in values.items() if k.startswith(STABILITY)}
        known = [s for s in self.train_spaces if s != "?"]
        chosen = [logged[s] for s in known if s in logged] if known else list(logged.values())
        return sum(chosen) / len(chosen) if chosen else None

    @property
    def label(self) -> str:
        return f"{self.objective}@{self.train_space}"

    def interval(self, key: str) -> Optional[tuple[float, float]]:
        """The logged interval of ``eval/<quantity>`` (``eval/fdr_k``) or ``eval/<quantity>/<space>``."""
        quantity, _, space = key[len(keys.EVAL_PREFIX) :].partition("/")
        low, high = (keys.EVAL_PREFIX + quantity + end + ("/" + space if space else "") for end in ("_low", "_high"))
        if low in self.final and high in self.final:
            return self.final[low], self.final[high]
        return None

    def fdr_unseen(self) -> Optional[float]:
        """Logged ``eval/fdr_unseen`` (key schema 3), else the geometric mean final FDr over the eval spaces in no
        family of a ``train_space`` (:mod:`matchzoo.metrics.summary`, registered families)."""
        if keys.FDR_UNSEEN in self.final:
            return self.final[keys.FDR_UNSEEN]
        seen = [s for s in self.seen_space.split(",") if s] or self.train_spaces  # seen_spaces: after init_from
        if "?" in seen or not seen:
            return None
        return unseen_value({k[len(FDR) :]: v for k, v in self.final.items() if k.startswith(FDR)}, seen)

    def below_one(self) -> list[str]:
        """Spaces whose final FDr interval lies wholly below 1."""
        return sorted(k[len(BELOW_ONE) :] for k, v in self.final.items() if k.startswith(BELOW_ONE) and v >= 0.5)


# ----------------------------------------------------------------------------- reading MLflow


def collect_runs(client, experiment: Optional[str] = None, sweep: Optional[str] = None) -> list[RunSummary]:
    """Every matching run as a :class:`RunSummary` (metric histories read for FDr^k and stability)."""
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    if experiment is not None:
        ids = [i for i, name in experiments.items() if name == experiment]
        if not ids:
            raise MatchzooError(
                f"no MLflow experiment named {experiment!r}; "
                f"known: {', '.join(sorted(experiments.values())) or '(none)'}"
            )
    else:
        ids = list(experiments)
    if sweep is not None and "'" in sweep:
        raise MatchzooError(f"sweep name {sweep!r} cannot contain quotes")
    query = f"tags.{SWEEP_TAG} = '{sweep}'" if sweep is not None else ""
    runs = search_all_runs(client, ids, query)
    summaries = [_summarize(client, run, experiments) for run in runs if run.data.tags.get(ROLE_TAG) != SUMMARY_ROLE]
    if not summaries:
        where = " and ".join(
            x for x in (experiment and f"experiment {experiment!r}", sweep and f"sweep {sweep!r}") if x
        )
        raise MatchzooError(
            f"no runs found{' for ' + where if where else ''} in the MLflow store; run an experiment or a sweep first"
        )
    return sorted(summaries, key=lambda r: (r.objective, r.train_space, r.run_name))


def _summarize(client, run, experiments: dict) -> RunSummary:
    tags = run.data.tags
    evaluation = {k: float(v) for k, v in run.data.metrics.items() if k.startswith(keys.EVAL_PREFIX)}
    summary = RunSummary(
        run_id=run.info.run_id,
        run_name=run.info.run_name or run.info.run_id[:8],
        experiment=experiments.get(run.info.experiment_id, run.info.experiment_id),
        status=run.info.status,
        objective=tags.get(keys.OBJECTIVE_TAG, "?"),
        train_space=tags.get(keys.TRAIN_SPACE_TAG, "?"),
        seen_space=tags.get(keys.SEEN_SPACES_TAG, ""),
        sweep=tags.get(SWEEP_TAG, ""),
        group=tags.get(keys.GROUP_TAG, ""),
        seed=tags.get(keys.SEED_TAG, ""),
        final=keys.upgrade_metrics(evaluation, tags),
    )
    for key in summary.final:
        if key == FDRK or key.startswith(STABILITY):
            history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            summary.mean[key] = sum(v for _, v in history) / len(history)
            if key == FDRK:
                summary.fdrk_history = history
                summary.last_step = history[-1][0]
    return summary


# ----------------------------------------------------------------------------- tables


def spaces_of(runs: Sequence[RunSummary], prefix: str) -> list[str]:
    return sorted({k[len(prefix) :] for r in runs for k in r.final if k.startswith(prefix)})


def table_rows(runs: Sequence[RunSummary]) -> list[dict[str, object]]:
    """One dict per run with every column of the CSV (``None`` where a run logged nothing)."""
    eval_spaces = sorted({space for prefix in PER_SPACE for space in spaces_of(runs, prefix)})
    stability_spaces = spaces_of(runs, STABILITY)
    rows = []
    for run in runs:
        row: dict[str, object] = {
            "objective": run.objective,
            "train_space": run.train_space,
            "status": run.status,
            "step": run.last_step,
            "fdr_k": run.final.get(FDRK),
            "fdr_k_low": run.final.get(keys.FDRK_LOW),
            "fdr_k_high": run.final.get(keys.FDRK_HIGH),
            "fdr_k_mean": run.mean.get(FDRK),
            "fdr_unseen": run.fdr_unseen(),
            "fdr_unseen_low": run.final.get(keys.FDR_UNSEEN_LOW),
            "fdr_unseen_high": run.final.get(keys.FDR_UNSEEN_HIGH),
            "fdr_below_one": ",".join(run.below_one()),
            "stability": run.stability("final"),
            "stability_mean": run.stability("mean"),
        }
        for space in eval_spaces:
            row.update({prefix[len(keys.EVAL_PREFIX) :] + space: run.final.get(prefix + space) for prefix in PER_SPACE})
            row.update(
                {
                    prefix[len(keys.EVAL_PREFIX) :] + space: run.final[prefix + space]
                    for prefix in INTERVAL_PER_SPACE
                    if prefix + space in run.final
                }
            )
        for space in stability_spaces:
            row[f"stability/{space}"] = run.final.get(STABILITY + space)
            row[f"stability_mean/{space}"] = run.mean.get(STABILITY + space)
        row.update({"run_name": run.run_name, "run_id": run.run_id, "experiment": run.experiment, "sweep": run.sweep})
        row.update({"sweep_group": run.group, "sweep_seed": run.seed})
        rows.append(row)
    return rows


def _number(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _with_interval(value: Optional[float], interval: Optional[tuple[float, float]]) -> object:
    if value is None or interval is None:
        return value
    return f"{_number(value)} [{_number(interval[0])}, {_number(interval[1])}]"


def markdown_table(runs: Sequence[RunSummary]) -> str:
    """Objective x train space with FDr^k and stability (final / mean over training) and FD to the reference
    per eval space."""
    fd_spaces = spaces_of(runs, FD)
    header = ["objective", "train space", "status", "step", "FDr^k", "FDr^k (mean)", "stability", "stability (mean)"]
    header += ["fdr_unseen", "FDr < 1 *"] + [f"FD {space}" for space in fd_spaces] + ["run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for run, row in zip(runs, table_rows(runs)):
        cells = [
            row["objective"],
            row["train_space"],
            row["status"],
            row["step"],
            _with_interval(row["fdr_k"], run.interval(FDRK)),
            row["fdr_k_mean"],
            row["stability"],
            row["stability_mean"],
            _with_interval(row["fdr_unseen"], run.interval(keys.FDR_UNSEEN)),
            " ".join(f"{space}*" for space in run.below_one()) or "–",
            *[_with_interval(row[f"fd/{s}"], run.interval(FD + s)) for s in fd_spaces],
            run.run_name,
        ]
        lines.append("| " + " | ".join(_number(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def pivot_table(runs: Sequence[RunSummary]) -> str:
    """Objectives (rows) x train spaces (columns): final FDr^k and, in brackets, stability; FINISHED runs
    only, averaged when a cell has several runs (seeds)."""
    cells: dict[tuple[str, str], list[RunSummary]] = {}
    for run in runs:
        if run.status == "FINISHED" and FDRK in run.final:
            cells.setdefault((run.objective, run.train_space), []).append(run)
    objectives = sorted({o for o, _ in cells})
    spaces = sorted({s for _, s in cells})
    if not cells:
        return "(no finished run has logged FDr^k yet)\n"
    lines = ["| objective \\ train space | " + " | ".join(spaces) + " |", "|" + "---|" * (len(spaces) + 1)]
    for objective in objectives:
        row = []
        for space in spaces:
            members = cells.get((objective, space), [])
            fdrk = [r.final[FDRK] for r in members]
            stability = [v for v in (r.stability() for r in members) if v is not None]
            text = _mean_interval(fdrk) if fdrk else "–"
            if stability:
                text += f" ({_number(sum(stability) / len(stability))})"
            row.append(text)
        lines.append(f"| {objective} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- seeds


def t_interval(values: Sequence[float], level: float = SEED_LEVEL) -> tuple[float, Optional[float]]:
    """``(mean, half-width)`` of the ``level`` Student-t interval over ``values`` (independent seeds); the
    half-width is ``None`` for one value (no spread to estimate)."""
    from scipy.stats import t

    count = len(values)
    mean = sum(values) / count
    if count < 2:
        return mean, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (count - 1))
    return mean, float(t.ppf((1.0 + level) / 2.0, count - 1)) * sd / math.sqrt(count)


def _mean_interval(values: Sequence[float]) -> str:
    mean, half = t_interval(values)
    return _number(mean) if half is None else f"{_number(mean)} ± {_number(half)} (n={len(values)})"


def seed_groups(runs: Sequence[RunSummary]) -> dict[str, list[RunSummary]]:
    """FINISHED runs with a ``sweep_group`` tag, by group."""
    groups: dict[str, list[RunSummary]] = {}
    for run in runs:
        if run.group and run.status == "FINISHED" and FDRK in run.final:
            groups.setdefault(run.group, []).append(run)
    return groups


def group_rows(runs: Sequence[RunSummary]) -> list[dict[str, object]]:
    """One dict per seed group: mean and t half-width over seeds of FDr^k, fdr_unseen and stability."""
    rows = []
    for group, members in sorted(seed_groups(runs).items()):
        row: dict[str, object] = {
            "sweep_group": group,
            "objective": members[0].objective,
            "train_space": members[0].train_space,
            "seeds": ",".join(sorted(r.seed for r in members)),
            "n": len(members),
        }
        for name, values in (
            ("fdr_k", [r.final[FDRK] for r in members]),
            ("fdr_unseen", [v for v in (r.fdr_unseen() for r in members) if v is not None]),
            ("stability", [v for v in (r.stability() for r in members) if v is not None]),
        ):
            mean, half = t_interval(values) if values else (None, None)
            row.update({name: mean, f"{name}_half_width": half, f"{name}_n": len(values)})
        rows.append(row)
    return rows


def groups_table(runs: Sequence[RunSummary]) -> str:
    """Markdown: one row per seed group, mean ± 95% t half-width over its seeds."""
    rows = group_rows(runs)
    if not rows:
        return ""
    lines = [
        "| sweep group | objective | train space | seeds (n) | FDr^k | fdr_unseen | stability |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [row["sweep_group"], row["objective"], row["train_space"], f"{row['seeds']} ({row['n']})"]
        for name in ("fdr_k", "fdr_unseen", "stability"):
            mean, half = row[name], row[f"{name}_half_width"]
            cells.append("–" if mean is None else _number(mean) + ("" if half is None else f" ± {_number(half)}"))
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(runs: Sequence[RunSummary], path: Path) -> None:
    rows = table_rows(runs)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})


# ----------------------------------------------------------------------------- plots

MARKERS = "osD^vP*XhP<>"


def _styles(runs: Sequence[RunSummary]) -> tuple[dict[str, object], dict[str, str]]:
    import matplotlib

    colours = matplotlib.colormaps["tab10"]
    objectives = sorted({r.objective for r in runs})
    spaces = sorted({r.train_space for r in runs})
    return (
        {o: colours(i % 10) for i, o in enumerate(objectives)},
        {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(spaces)},
    )


def _status_label(run: RunSummary) -> str:
    return run.label if run.status == "FINISHED" else f"{run.label} ({run.status.lower()})"


def plot_stability_vs_fdrk(runs: Sequence[RunSummary], path: Path, title: str) -> int:
    """Scatter: matching stability (x) vs final FDr^k (y), one labelled point per run. Returns points drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    colour, marker = _styles(runs)
    points = [(r, r.stability("final"), r.final.get(FDRK)) for r in runs]
    points = [(r, x, y) for r, x, y in points if x is not None and y is not None]
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for index, (run, x, y) in enumerate(sorted(points, key=lambda point: point[2])):
        ax.scatter(
            x, y, c=[colour[run.objective]], marker=marker[run.train_space], s=70, edgecolors="black", linewidths=0.5
        )
        ax.annotate(
            _status_label(run), (x, y), textcoords="offset points", xytext=(5, 4 if index % 2 == 0 else -10), fontsize=7
        )  # alternate so neighbours do not overlap
    ax.set_yscale("log")  # FDr^k is a ratio (> 0): equal factors look equal, and the line at 1 stays in view
    ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)  # FDr^k = 1: as close as held-out real data
    ax.set_xlabel("matching stability in the train space (mean pairwise gradient cosine; 1 = sample-independent)")
    ax.set_ylabel("FDr^k (final; 1 = held-out real data)")
    ax.set_title(title)
    handles = [Line2D([], [], linestyle="", marker="o", color=c, label=o) for o, c in colour.items()]
    handles += [
        Line2D([], [], linestyle="", marker=m, color="black", markerfacecolor="none", label=s)
        for s, m in marker.items()
    ]
    ax.legend(handles=handles, fontsize=7, loc="best", title="objective / train space", title_fontsize=7)
    if not points:
        ax.text(
            0.5, 0.5, "no run has logged both FDr^k and stability yet", ha="center", va="center", transform=ax.transAxes
        )
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return len(points)


def plot_fdrk_over_steps(runs: Sequence[RunSummary], path: Path, title: str) -> int:
    """FDr^k against training step, one line per run (colour = objective, marker = train space)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colour, marker = _styles(runs)
    drawn = [r for r in runs if r.fdrk_history]
    fig, ax = plt.subplots(figsize=(7.5, 5.0))
    for run in drawn:
        steps, values = zip(*run.fdrk_history)
        ax.plot(
            steps,
            values,
            color=colour[run.objective],
            marker=marker[run.train_space],
            markersize=4,
            linewidth=1.2,
            label=_status_label(run),
        )
    ax.set_yscale("log")
    ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("training step")
    ax.set_ylabel("FDr^k")
    ax.set_title(title)
    if drawn:
        ax.legend(fontsize=6, ncol=2, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return len(drawn)


# ----------------------------------------------------------------------------- the whole report


@dataclass
class Report:
    runs: list[RunSummary]
    markdown: str
    files: dict[str, Path]
    summary_run_id: Optional[str] = None


def compare(
    client,
    experiment: Optional[str] = None,
    sweep: Optional[str] = None,
    out_dir: Optional[Path] = None,
    log_summary: bool = True,
) -> Report:
    """Collect runs, write the table (Markdown, CSV) and both plots, and log them to a summary run."""
    runs = collect_runs(client, experiment, sweep)
    subject = sweep or experiment or "all runs"
    out_dir = output_folder(Path(out_dir or Path("runs") / "compare" / _slug(subject)))
    groups = groups_table(runs)
    markdown = (
        "FDr^k (final; matching stability in brackets; several runs: mean ± 95% t half-width), "
        "objective x train space:\n\n"
        + pivot_table(runs)
        + (
            "\nSeed groups (tag sweep_group; mean ± 95% t half-width over n seeds, n - 1 degrees of freedom):\n\n"
            + groups
            if groups
            else ""
        )
        + "\nIntervals [low, high] where a run logged them; * = a space whose FDr interval lies wholly below 1.\n"
        + "\nEvery run:\n\n"
        + markdown_table(runs)
    )
    files = {
        "markdown": out_dir / "comparison.md",
        "csv": out_dir / "comparison.csv",
        "scatter": out_dir / "stability_vs_fdrk.png",
        "curves": out_dir / "fdrk_over_steps.png",
    }
    files["markdown"].write_text(f"# Comparison: {subject}\n\n{markdown}")
    write_csv(runs, files["csv"])
    plot_stability_vs_fdrk(runs, files["scatter"], f"matching stability vs FDr^k: {subject}")
    plot_fdrk_over_steps(runs, files["curves"], f"FDr^k over training: {subject}")
    report = Report(runs, markdown, files)
    if log_summary:
        report.summary_run_id = log_summary_run(client, runs, files, subject, sweep)
    return report


def output_folder(path: Path) -> Path:
    """``path`` as an existing or new folder; a file there is kept and refused in one line."""
    check.folder("--out", path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise MatchzooError(f"cannot create the output folder {path}: {error.strerror}; choose another --out") from None
    return path


def log_summary_run(
    client, runs: Sequence[RunSummary], files: dict[str, Path], subject: str, sweep: Optional[str]
) -> str:
    """A FINISHED run (tag ``matchzoo.role = summary``) holding the table and plots as artifacts."""
    names = {r.experiment for r in runs}
    experiment_name = names.pop() if len(names) == 1 else "compare"
    found = client.get_experiment_by_name(experiment_name)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment_name)
    tags = {ROLE_TAG: SUMMARY_ROLE, keys.COMPARED_RUNS_TAG: ",".join(r.run_id for r in runs)[:5000]}
    if sweep:
        tags[keys.COMPARED_SWEEP_TAG] = sweep  # not the 'sweep' tag: the summary must not count as a member run
    run_id = client.create_run(experiment_id, run_name=f"compare {subject}"[:250], tags=tags).info.run_id
    for path in files.values():
        client.log_artifact(run_id, str(path), artifact_path="comparison")
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
