"""``python -m matchzoo evaluate``: FD, FDr^k, KID, precision/recall, density/coverage of existing samples.

Every registered metric (:mod:`matchzoo.metrics.registry`) runs in every space, the same quantities training
logs as ``eval/<key>/<space>``; ``--no_prdc`` leaves out precision/recall/density/coverage.

Example::

    python -m matchzoo evaluate --samples samples.npz --reference digits --spaces pixels,random_conv,digits_ssl

``--samples`` is a ``.npz`` of images (uint8 [0, 255] or float [-1, 1], NCHW or NHWC), a folder of
PNG/JPEG files, or a training checkpoint (``.pt``, or the run folder holding ``checkpoint.pt``; its EMA
generator draws ``--num_samples`` images, default 5000).
The reference is the *train* split of ``--reference`` (features cached on disk, see ``stats``); its
held-out split is the FDr baseline at the same sample size, unless ``--fdr_baselines inception=1.68,...`` fixes
the denominator of a space (the FD-loss paper's convention; the JSON says which per space, ``fdr_denominator``).
FD, FDr, FDr^k and ``fdr_unseen`` (geometric mean FDr over the spaces in no family of ``--seen_spaces``) carry
``--interval_level`` bootstrap intervals from ``--interval_draws`` resamples at the reported n (0: none; see
:mod:`matchzoo.metrics.intervals`). Prints a table (one row per space, ``1.23 [1.10, 1.40]``, ``*`` on an FDr
whose whole interval lies below 1, then FDr^k); ``--json`` / ``--csv`` write machine-readable output (all numbers,
the intervals' method, draws and level) to a file, or to stdout with ``-``.
The computation is :func:`matchzoo.evaluation.evaluate_samples`.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from matchzoo import cli_args
from matchzoo import validate as check
from matchzoo.errors import MatchzooError

HELP = "evaluate samples (npz, image folder or checkpoint) against a dataset in several feature spaces"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--samples",
        required=True,
        help=".npz of images, a folder of PNG/JPEG files, or a checkpoint .pt (or its run folder)",
    )
    cli_args.add_dataset(parser, "--reference", required=True)
    cli_args.add_spaces(parser)
    cli_args.add_space_params(parser)
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
        "--interval_draws",
        type=check.option(check.non_negative_int, 10**5),
        default=100,
        help="bootstrap resamples for the FD/FDr/FDr^k intervals (default 100; 0: no intervals)",
    )
    parser.add_argument(
        "--interval_level",
        type=check.option(check.fraction, True, True),
        default=0.95,
        help="confidence level of the intervals (default 0.95)",
    )
    parser.add_argument(
        "--fdr_baselines",
        type=_baselines,
        default=None,
        metavar="SPACE=FD,...",
        help="fixed FDr denominators per space, e.g. inception=1.68 (default: FD of the held-out split at the same n)",
    )
    cli_args.add_seen_spaces(parser)
    parser.add_argument(
        "--reference_stats",
        default=None,
        metavar="FILE_OR_DIR",
        help="FD reference statistics instead of the --reference train split: an npz with mu/sigma (matchzoo stats "
        "--export, pytorch-fid, clean-fid, an ADM reference batch) or a folder of <space>.npz",
    )
    cli_args.add_seed(parser)
    cli_args.add_workers(parser)
    cli_args.add_batch_size(parser)
    cli_args.add_device(parser)
    cli_args.add_cache_dir(parser)
    cli_args.add_output(parser)
    cli_args.add_progress(parser)


def _baselines(text: str) -> dict:
    from matchzoo.errors import MatchzooError
    from matchzoo.metrics.fdrk import parse_baselines

    try:
        return parse_baselines(text)
    except MatchzooError as error:
        raise argparse.ArgumentTypeError(str(error).replace("--fdr_baselines: ", "", 1)) from None


def suite_settings(args: argparse.Namespace):
    from matchzoo.metrics.suite import SuiteSettings

    return SuiteSettings(
        args.kid_subsets,
        args.kid_subset_size,
        not args.no_prdc,
        args.prdc_samples,
        args.seed,
        interval_draws=args.interval_draws,
        interval_level=args.interval_level,
        fdr_baselines=args.fdr_baselines,
    )


def check_baselines(args: argparse.Namespace, names: list[str]) -> None:
    from matchzoo.errors import MatchzooError

    stray = sorted(set(args.fdr_baselines or {}) - set(names))
    if stray:
        raise MatchzooError(f"--fdr_baselines names {', '.join(stray)}, not among the --spaces ({', '.join(names)})")


def evaluate(args: argparse.Namespace, device: str | None = None) -> dict:
    """The options, checked in order (every missing model in one line before any work), then the library call."""
    from matchzoo.evaluation import evaluate_samples
    from matchzoo.samples import load_samples
    from matchzoo.spaces.resolve import check_weights, option_requests

    names = cli_args.space_names(args.spaces)
    check_baselines(args, names)  # before the checkpoint's record is read and announced
    seen = cli_args.seen_spaces(args.seen_spaces, names, args.samples, "--samples")
    per_space = cli_args.space_params(args.space_param, names)
    check_weights(option_requests(per_space))
    dataset = cli_args.make_dataset(args.reference, args.dataset_param)
    device = device or args.device
    if args.reference_stats is not None and not Path(args.reference_stats).exists():
        raise MatchzooError(
            f"--reference_stats {args.reference_stats!r} does not exist; give an npz with mu and sigma or a folder "
            f"written by `python -m matchzoo stats --export DIR`"
        )
    images = load_samples(args.samples, dataset, args.num_samples, args.seed, device)
    scores = evaluate_samples(
        images,
        dataset,
        names,
        cli_args.space_maker(per_space),
        suite_settings(args),
        batch_size=args.batch_size,
        device=device,
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
        seen=seen,
        workers=args.workers,
        reference_stats=args.reference_stats,
    )
    return {"samples": str(args.samples), "reference": args.reference, "num_samples": len(images), **scores}


def run(args: argparse.Namespace) -> int:
    from matchzoo.evaluation import format_csv, format_table
    from matchzoo.linalg import FewSamplesWarning
    from matchzoo.torchrun import command_ranks

    # under torchrun every rank extracts its shard of the samples (and of an uncached reference); rank 0 prints
    with command_ranks(args.device) as ranks, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FewSamplesWarning)
        result = evaluate(args, ranks.device)
    if not ranks.main:
        return 0
    metrics = suite_settings(args).metrics()
    for message in dict.fromkeys(str(w.message) for w in caught):  # one line each, no duplicates
        print(f"matchzoo: warning: {message}", file=sys.stderr)
    if args.json is not None:
        cli_args.write_output(json.dumps(result, indent=2), args.json)
    if args.csv is not None:
        cli_args.write_output(format_csv(result, metrics), args.csv)
    if "-" not in (args.json, args.csv):
        print(format_table(result, metrics))
    return 0
