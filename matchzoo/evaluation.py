"""Evaluate existing samples: every registered metric in every feature space, against a dataset's splits.

The reference is the *train* split of the dataset (features cached on disk, see ``python -m matchzoo stats``);
its held-out split is the FDr baseline at the same sample size (or a fixed number per space,
``SuiteSettings.fdr_baselines``). :func:`evaluate_samples` returns ``{'spaces': {name: row}, 'fdr_k': ...,
'fdr_k_low': ..., 'fdr_unseen': ..., 'interval': {...}}`` with the same keys training logs as
``eval/<key>/<space>`` and ``eval/<key>``; :func:`format_table` and :func:`format_csv` render it (an interval as
``1.23 [1.10, 1.40]``, an FDr whose whole interval lies below 1 with ``*``). ``python -m matchzoo evaluate`` is the
command over it.
"""

from __future__ import annotations

import csv
import io
from typing import Callable, Optional, Sequence

from torch.utils.data import Dataset
from tqdm.auto import tqdm

from matchzoo import keys

ROW_COLUMNS = ("dim", "n")  # what every row says about its samples, before the metrics' numbers
DENOMINATORS = {0.0: "heldout", 1.0: "fixed"}  # fdr_fixed_baseline -> the row's fdr_denominator
ACROSS = ("fdr_k", "fdr_k_low", "fdr_k_high", "fdr_unseen", "fdr_unseen_low", "fdr_unseen_high")


def evaluate_samples(
    images: Dataset,
    dataset,
    space_names: Sequence[str],
    make_space: Callable[[str], object],
    settings,
    *,
    batch_size: int = 256,
    device: str = "cpu",
    cache_dir: Optional[str] = None,
    progress: bool = True,
    seen: Sequence[str] = (),
    workers: int = 0,
    reference_stats: Optional[str] = None,
) -> dict:
    """Every metric of ``settings`` (a :class:`~matchzoo.metrics.suite.SuiteSettings`) in every space, each space
    built by ``make_space(name)`` when its turn comes; returns ``{'spaces': {name: row}, 'fdr_k': ...}``.
    ``seen``: spaces the samples were optimised in (trained or attacked), left out of ``fdr_unseen`` with every
    space of their families.
    ``reference_stats``: a statistics file, or a folder of ``<space>.npz`` (``matchzoo stats --export``, pytorch-fid,
    clean-fid, ADM reference batches), that replaces the train split's statistics as every space's FD reference
    (the dataset still gives the held-out side and the samples KID/PRDC compare with); ``workers``: DataLoader
    processes decoding images."""
    from matchzoo.data.cache import reference_features, reference_record
    from matchzoo.data.features import extract_features
    from matchzoo.metrics.frechet import FrechetReference, GaussianStats
    from matchzoo.metrics.suite import evaluate_space
    from matchzoo.metrics.summary import space_family
    from matchzoo.stats_files import stats_file

    rows: dict[str, dict[str, float]] = {}
    files: dict[str, dict[str, str]] = {}  # space -> the statistics file read (path, SHA-256, arrays)
    families: dict[str, str] = {}  # space -> its family (fdr_unseen leaves seen families out)
    for name in tqdm(space_names, desc="spaces", disable=not progress):
        space = make_space(name)
        families[name] = space_family(space)
        cached = dict(batch_size=batch_size, device=device, cache_dir=cache_dir, progress=progress, workers=workers)
        train = reference_record(space, dataset, "train", **cached)  # features and float64 statistics, one read
        reference = train["features"]
        heldout = reference_features(space, dataset, "heldout", **cached)
        if reference_stats is None:
            frechet = FrechetReference(GaussianStats(train["mean"], train["cov"], reference.shape[0]))
            cache_key = None
        else:
            frechet, record = FrechetReference.from_stats_file(
                stats_file(reference_stats, name), space, "--reference_stats"
            )
            files[name] = record.record()
            cache_key = ("stats", record.sha256)  # the held-out FD is against the file's statistics
        generated = extract_features(
            space,
            images,
            batch_size=batch_size,
            device=device,
            desc=f"samples in {name}",
            progress=progress,
            workers=workers,
        )
        rows[name] = evaluate_space(
            generated,
            reference,
            heldout,
            settings,
            frechet,
            cache_key=(space.fingerprint, dataset.fingerprint, *(cache_key or ())),
            name=name,
        )
    result = summarize(rows, settings, seen, families)
    if files:
        result["reference_stats"] = files
    return result


def summarize(rows: dict, settings, seen: Sequence[str] = (), families: Optional[dict] = None) -> dict:
    """The result record: rows (JSON-ready: ``fdr_below_one`` a boolean, ``fdr_denominator`` named), the numbers
    across spaces with their intervals, and how the intervals were made. ``families``: ``{space: family}`` of the
    built spaces (default: the registered families)."""
    from matchzoo.metrics.summary import across_spaces, unseen_spaces

    across = across_spaces(rows, seen, families)
    result = {"spaces": {space: json_row(row) for space, row in rows.items()}}
    result.update({name: across.get(name) for name in ACROSS})
    result["seen_spaces"] = list(dict.fromkeys(seen))  # evaluated or not: their families are left out
    result["unseen_spaces"] = unseen_spaces(rows, seen, families)
    result["interval"] = settings.intervals.record() if settings.interval_draws else None
    return result


def json_row(row) -> dict:
    out = dict(row)
    if keys.FDR_BELOW_ONE in out:
        out[keys.FDR_BELOW_ONE] = bool(out[keys.FDR_BELOW_ONE])
    if keys.FDR_FIXED_BASELINE in out:
        out["fdr_denominator"] = DENOMINATORS[out[keys.FDR_FIXED_BASELINE]]
    return out


def table_columns(metrics) -> dict[str, str]:
    """Row key -> header of the printed table, in column order: the sample counts, then each metric's columns."""
    columns = {key: key for key in ROW_COLUMNS}
    for metric in metrics:
        columns.update(metric.table_headers())
    return columns


def format_table(result: dict, metrics) -> str:
    """One row per space (FD and FDr with their intervals, ``*`` on an FDr whose interval lies below 1), then
    FDr^k and ``fdr_unseen`` with theirs; ``result`` also names its ``reference`` dataset."""
    columns = table_columns(metrics)
    headers, keys_ = ("space", *columns.values()), tuple(columns)
    lines = [headers]
    for space, row in result["spaces"].items():
        cells = [space] + [_cell(row, key) for key in keys_]
        lines.append(tuple(cells))
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    out = [
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths)))
        for line in lines
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    rows = list(result["spaces"].values())
    n = int(rows[0]["fdr_n"])
    fixed = [space for space, row in result["spaces"].items() if row.get("fdr_denominator") == "fixed"]
    denominator = (
        f"n held-out samples of {result['reference']}"
        if not fixed
        else f"fixed baselines in {', '.join(fixed)}, n held-out samples elsewhere"
    )
    interval = result.get("interval")
    if interval:
        out.append(
            f"[low, high]: {100 * interval['level']:g}% intervals, {interval['method']}, {interval['draws']} draws; "
            f"* = FDr below 1 with its whole interval below 1"
        )
    if result.get("fdr_unseen") is not None and result.get("seen_spaces"):
        out.append(
            f"fdr_unseen = {_with_interval(result, 'fdr_unseen')}  (geometric mean FDr over the spaces in no family "
            f"the samples were optimised in: {', '.join(result['unseen_spaces'])})"
        )
    against = (
        "the --reference_stats files" if result.get("reference_stats") else f"the train split of {result['reference']}"
    )
    out.append(
        f"FDr^k = {_with_interval(result, 'fdr_k')}  (mean over {len(rows)} spaces; FDr at n={n} generated vs "
        f"{denominator}, against {against})"
    )
    return "\n".join(out)


def _cell(row: dict, key: str) -> str:
    text = _format_number(row.get(key))
    low_high = keys.INTERVAL_OF.get(key)
    if low_high and all(row.get(k) is not None for k in low_high):
        text += f" [{_format_number(row[low_high[0]])}, {_format_number(row[low_high[1]])}]"
    if key == keys.FDR and row.get(keys.FDR_BELOW_ONE):
        text += "*"
    return text


def _with_interval(result: dict, name: str) -> str:
    text = f"{result[name]:.4g}"
    if result.get(f"{name}_low") is not None:
        text += f" [{result[f'{name}_low']:.4g}, {result[f'{name}_high']:.4g}]"
    return text


def _format_number(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.4g}"


def format_csv(result: dict, metrics) -> str:
    """One line per space; the numbers across spaces (FDr^k, fdr_unseen, their intervals) repeated on each."""
    per_space = [key for metric in metrics for key in metric.keys]
    extra = ["fdr_denominator"] if keys.FDR_FIXED_BASELINE in per_space else []
    fieldnames = ["space", *ROW_COLUMNS, *per_space, *extra, *ACROSS]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    across = {name: result.get(name) for name in ACROSS}
    for space, row in result["spaces"].items():
        writer.writerow({"space": space, **row, **across})
    return buffer.getvalue()
