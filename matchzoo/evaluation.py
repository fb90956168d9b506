"""Evaluate existing samples: every registered metric in every feature space, against a dataset's splits.

The reference is the *train* split of the dataset (features cached on disk, see ``python -m matchzoo stats``);
its held-out split is the FDr baseline at the same sample size. :func:`evaluate_samples` returns
``{'spaces': {name: row}, 'fdr_k': ...}`` with the same keys training logs as ``eval/<key>/<space>``;
:func:`format_table` and :func:`format_csv` render it. ``python -m matchzoo evaluate`` is the command over it.
"""

from __future__ import annotations

import csv
import io
from typing import Callable, Optional, Sequence

from torch.utils.data import Dataset
from tqdm.auto import tqdm

ROW_COLUMNS = ("dim", "n")  # what every row says about its samples, before the metrics' numbers


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
) -> dict:
    """Every metric of ``settings`` (a :class:`~matchzoo.metrics.suite.SuiteSettings`) in every space, each space
    built by ``make_space(name)`` when its turn comes; returns ``{'spaces': {name: row}, 'fdr_k': ...}``."""
    from matchzoo.data.cache import reference_features, reference_stats
    from matchzoo.data.features import extract_features
    from matchzoo.metrics.fdrk import fdr_k
    from matchzoo.metrics.frechet import FrechetReference, GaussianStats
    from matchzoo.metrics.suite import evaluate_space

    rows: dict[str, dict[str, float]] = {}
    for name in tqdm(space_names, desc="spaces", disable=not progress):
        space = make_space(name)
        cached = dict(batch_size=batch_size, device=device, cache_dir=cache_dir, progress=progress)
        reference = reference_features(space, dataset, "train", **cached)
        heldout = reference_features(space, dataset, "heldout", **cached)
        mean, cov = reference_stats(space, dataset, "train", **cached)
        generated = extract_features(
            space, images, batch_size=batch_size, device=device, desc=f"samples in {name}", progress=progress
        )
        rows[name] = evaluate_space(
            generated,
            reference,
            heldout,
            settings,
            FrechetReference(GaussianStats(mean, cov, reference.shape[0])),
            cache_key=(space.fingerprint, dataset.fingerprint),
        )
    return {"spaces": rows, "fdr_k": fdr_k(rows)}


def table_columns(metrics) -> dict[str, str]:
    """Row key -> header of the printed table, in column order: the sample counts, then each metric's columns."""
    columns = {key: key for key in ROW_COLUMNS}
    for metric in metrics:
        columns.update(metric.table_headers())
    return columns


def format_table(result: dict, metrics) -> str:
    """One row per space, then the FDr^k line; ``result`` also names its ``reference`` dataset."""
    columns = table_columns(metrics)
    headers, keys = ("space", *columns.values()), tuple(columns)
    lines = [headers]
    for space, row in result["spaces"].items():
        cells = [space] + [_format_number(row.get(key)) for key in keys]
        lines.append(tuple(cells))
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    out = [
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths)))
        for line in lines
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    n = int(next(iter(result["spaces"].values()))["fdr_n"])
    out.append(
        f"FDr^k = {result['fdr_k']:.4g}  (mean over {len(result['spaces'])} spaces; FDr at n={n} "
        f"generated vs n held-out samples of {result['reference']}, both against its train split)"
    )
    return "\n".join(out)


def _format_number(value) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.4g}"


def format_csv(result: dict, metrics) -> str:
    fieldnames = ["space", *ROW_COLUMNS, *(key for metric in metrics for key in metric.keys), "fdr_k"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for space, row in result["spaces"].items():
        writer.writerow({"space": space, **row, "fdr_k": result["fdr_k"]})
    return buffer.getvalue()
