"""``python -m matchzoo evaluate``: FD, FDr^k, KID, precision/recall, density/coverage of existing samples.

Every registered metric (:mod:`matchzoo.metrics.registry`) runs in every space, the same quantities training
logs as ``eval/<key>/<space>``; ``--no_prdc`` leaves out precision/recall/density/coverage.

Example::

    python -m matchzoo evaluate --samples samples.npz --reference digits --spaces pixels,random_conv,digits_ssl

``--samples`` is a ``.npz`` of images (uint8 [0, 255] or float [-1, 1], NCHW or NHWC), a folder of
PNG/JPEG files, or a training checkpoint (``.pt``, or the run folder holding ``checkpoint.pt``; its EMA
generator draws ``--num_samples`` images, default 5000).
The reference is the *train* split of ``--reference`` (features cached on disk, see ``stats``); its
held-out split is the FDr baseline at the same sample size. Prints a table (one row per space, then
FDr^k); ``--json`` / ``--csv`` write machine-readable output to a file, or to stdout with ``-``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import warnings
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, Dataset
from tqdm.auto import tqdm

from matchzoo import validate as check
from matchzoo.data.datasets import TensorImages
from matchzoo.errors import MatchzooError
from matchzoo.linalg import FewSamplesWarning

HELP = "evaluate samples (npz, image folder or checkpoint) against a dataset in several feature spaces"
DEFAULT_SPACES = "pixels,random_conv,digits_classifier,digits_ssl"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
CHECKPOINT_IN_RUN_DIR = "checkpoint.pt"  # what the trainer writes in its run folder
ROW_COLUMNS = ("dim", "n")  # what every row says about its samples, before the metrics' numbers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--samples",
        required=True,
        help=".npz of images, a folder of PNG/JPEG files, or a checkpoint .pt (or its run folder)",
    )
    parser.add_argument(
        "--reference", required=True, help="registered dataset (train split = reference, heldout = FDr baseline)"
    )
    parser.add_argument(
        "--dataset_param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="constructor argument of the reference dataset (repeatable)",
    )
    parser.add_argument(
        "--spaces", default=DEFAULT_SPACES, help=f"comma-separated feature spaces (default: {DEFAULT_SPACES})"
    )
    parser.add_argument(
        "--space_param",
        action="append",
        default=[],
        metavar="SPACE.KEY=VALUE",
        help="constructor argument of one space, e.g. inception.weights=/w/pt_inception.pth (repeatable)",
    )
    parser.add_argument(
        "--num_samples",
        type=check.option(check.integer, 2),
        default=None,
        help="use at most this many samples (checkpoints: how many to draw; default 5000)",
    )
    parser.add_argument("--kid_subsets", type=check.option(check.integer, 1), default=100)
    parser.add_argument("--kid_subset_size", type=check.option(check.integer, 2), default=1000)
    parser.add_argument(
        "--prdc_samples",
        type=check.option(check.integer, 6),
        default=10000,
        help="cap on samples per side for precision/recall/density/coverage",
    )
    parser.add_argument("--no_prdc", action="store_true", help="skip precision/recall/density/coverage")
    parser.add_argument(
        "--seed", type=check.option(check.seed), default=0, help="seeds subsets, subsamples and checkpoint sampling"
    )
    parser.add_argument("--batch_size", type=check.option(check.integer, 1), default=256)
    parser.add_argument("--device", type=check.text_option(check.device), default="cpu", help="torch device, e.g. cuda")
    parser.add_argument(
        "--cache_dir", default=None, help="reference feature cache (default: $MATCHZOO_CACHE_DIR or runs/cache)"
    )
    parser.add_argument(
        "--json", default=None, metavar="PATH", help="write results as JSON to PATH ('-' = stdout instead of the table)"
    )
    parser.add_argument(
        "--csv",
        default=None,
        metavar="PATH",
        help="write one CSV row per space to PATH ('-' = stdout instead of the table)",
    )
    parser.add_argument("--no_progress", action="store_true", help="hide the tqdm bars")


def load_samples(path: str, reference, num_samples: int | None, seed: int, device: str) -> Dataset:
    """The images to evaluate, as a Dataset of ``(C, H, W)`` tensors in [-1, 1]."""
    from matchzoo.data import load_npz_images
    from matchzoo.data.datasets import ImageFolder

    source = Path(path)
    if source.is_dir() and (source / CHECKPOINT_IN_RUN_DIR).is_file():  # a training run folder
        images = TensorImages(_sample_checkpoint(source / CHECKPOINT_IN_RUN_DIR, num_samples or 5000, seed, device))
    elif source.is_dir():
        folder = ImageFolder(str(source), size=reference.size, channels=reference.channels)
        images: Dataset = ConcatDataset([folder.split("train"), folder.split("heldout")])
    elif source.suffix.lower() == ".npz":
        images = TensorImages(load_npz_images(str(source)))
    elif source.suffix.lower() in CHECKPOINT_SUFFIXES and source.is_file():
        images = TensorImages(_sample_checkpoint(source, num_samples or 5000, seed, device))
    elif not source.exists():
        raise MatchzooError(f"--samples {path!r} does not exist; pass a .npz file, an image folder or a checkpoint .pt")
    else:
        raise MatchzooError(
            f"--samples {path!r}: expected a .npz file, a folder of PNG/JPEG files "
            f"or a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)})"
        )
    if num_samples is not None and num_samples < len(images):
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:num_samples]
        images = torch.utils.data.Subset(images, order.tolist())
    if len(images) < 2:
        raise MatchzooError(f"--samples {path!r} holds {len(images)} image(s); need at least 2")
    return images


def _sample_checkpoint(path: Path, count: int, seed: int, device: str) -> torch.Tensor:
    from matchzoo.stored_config import load_generator

    generator = load_generator(path, device=device).eval()
    rng = torch.Generator().manual_seed(seed)
    chunks = []
    with torch.no_grad():
        for start in range(0, count, 256):
            chunks.append(generator.sample(min(256, count - start), generator=rng).float().cpu())
    return torch.cat(chunks)


def suite_settings(args: argparse.Namespace):
    from matchzoo.metrics.suite import SuiteSettings

    return SuiteSettings(args.kid_subsets, args.kid_subset_size, not args.no_prdc, args.prdc_samples, args.seed)


def evaluate(args: argparse.Namespace) -> dict:
    """Compute every metric in every space; returns ``{'spaces': {name: row}, 'fdr_k': ..., ...}``."""
    import matchzoo
    from matchzoo.commands.stats import make_dataset, space_names, space_params
    from matchzoo.data.cache import reference_features, reference_stats
    from matchzoo.data.features import extract_features
    from matchzoo.metrics.fdrk import fdr_k
    from matchzoo.metrics.frechet import FrechetReference, GaussianStats
    from matchzoo.metrics.suite import evaluate_space
    from matchzoo.spaces.resolve import check_weights, option_requests

    names = space_names(args.spaces)
    per_space = space_params(args.space_param, names)
    check_weights(option_requests(per_space))  # every missing model in one line, before any work
    dataset = make_dataset(args.reference, args.dataset_param)
    images = load_samples(args.samples, dataset, args.num_samples, args.seed, args.device)
    settings = suite_settings(args)
    quiet = args.no_progress
    rows: dict[str, dict[str, float]] = {}
    for name in tqdm(names, desc="spaces", disable=quiet):
        try:
            space = matchzoo.make_feature_space(name, **per_space[name])
        except TypeError as error:
            raise MatchzooError(f"{name}: bad --space_param ({error})") from None
        cached = dict(batch_size=args.batch_size, device=args.device, cache_dir=args.cache_dir, progress=not quiet)
        reference = reference_features(space, dataset, "train", **cached)
        heldout = reference_features(space, dataset, "heldout", **cached)
        mean, cov = reference_stats(space, dataset, "train", **cached)
        generated = extract_features(
            space, images, batch_size=args.batch_size, device=args.device, desc=f"samples in {name}", progress=not quiet
        )
        rows[name] = evaluate_space(
            generated,
            reference,
            heldout,
            settings,
            FrechetReference(GaussianStats(mean, cov, reference.shape[0])),
            cache_key=(space.fingerprint, dataset.fingerprint),
        )
    return {
        "samples": str(args.samples),
        "reference": args.reference,
        "num_samples": len(images),
        "spaces": rows,
        "fdr_k": fdr_k(rows),
    }


def table_columns(metrics) -> dict[str, str]:
    """Row key -> header of the printed table, in column order: the sample counts, then each metric's columns."""
    columns = {key: key for key in ROW_COLUMNS}
    for metric in metrics:
        columns.update(metric.table_headers())
    return columns


def format_table(result: dict, metrics) -> str:
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


def _write(text: str, path: str) -> None:
    if path == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    try:
        Path(path).write_text(text if text.endswith("\n") else text + "\n")
    except OSError as error:
        raise MatchzooError(f"cannot write {path}: {error.strerror}") from None


def run(args: argparse.Namespace) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FewSamplesWarning)
        result = evaluate(args)
    metrics = suite_settings(args).metrics()
    for message in dict.fromkeys(str(w.message) for w in caught):  # one line each, no duplicates
        print(f"matchzoo: warning: {message}", file=sys.stderr)
    if args.json is not None:
        _write(json.dumps(result, indent=2), args.json)
    if args.csv is not None:
        _write(format_csv(result, metrics), args.csv)
    if "-" not in (args.json, args.csv):
        print(format_table(result, metrics))
    return 0
