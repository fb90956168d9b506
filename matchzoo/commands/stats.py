"""``python -m matchzoo stats``: extract and cache real-data reference features and float64 statistics.

Example: ``python -m matchzoo stats --dataset digits --spaces digits_classifier,digits_ssl,pixels``.
Each (space, split) is extracted once (batched, ``inference_mode``, tqdm) and stored under the space
and dataset fingerprints in the cache directory (``runs/cache`` or ``$MATCHZOO_CACHE_DIR``); the trainer
and ``evaluate`` then reuse the file. The work is :func:`matchzoo.data.cache.load_or_build`.

``--export DIR`` also writes the statistics as portable npz files (float64 ``mu``/``sigma`` + ``n`` and the
space/dataset fingerprints; :mod:`matchzoo.stats_files`): ``DIR/<space>.npz`` for the train split (what
``fd.reference_stats`` and the other reference options read), ``DIR/<space>.<split>.npz`` for other splits.
Existing files are kept unless ``--force``; the check runs before any extraction.

``--workers N``: DataLoader processes decode the images. Under ``torchrun --nproc_per_node=W -m matchzoo stats``
every rank extracts a contiguous shard of each split and the float64 moments are merged
(:mod:`matchzoo.torchrun`, :func:`matchzoo.data.cache.load_or_build`): the cache file holds the features one
process extracts and statistics equal to its statistics to round-off; rank 0 alone prints and writes files.
"""

from __future__ import annotations

import argparse

from matchzoo import cli_args

HELP = "extract and cache reference features + float64 mean/covariance of a dataset in feature spaces"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cli_args.add_dataset(parser, "--dataset", required=True)
    cli_args.add_spaces(parser, required=True)
    cli_args.add_space_params(parser)
    parser.add_argument("--splits", default="train,heldout", help="comma-separated splits (default: train,heldout)")
    cli_args.add_batch_size(parser)
    cli_args.add_device(parser)
    cli_args.add_workers(parser)
    cli_args.add_cache_dir(parser)
    cli_args.add_progress(parser)
    parser.add_argument(
        "--export",
        metavar="DIR",
        default=None,
        help="also write DIR/<space>.npz (train split; DIR/<space>.<split>.npz for others): float64 mu, sigma and "
        "fingerprints, the npz format pytorch-fid and clean-fid read",
    )
    parser.add_argument("--force", action="store_true", help="with --export: overwrite existing statistics files")


def run(args: argparse.Namespace) -> int:
    from matchzoo.torchrun import command_ranks

    with command_ranks(args.device) as ranks:
        return _stats(args, ranks)


def _stats(args: argparse.Namespace, ranks) -> int:
    """The command on one rank (every rank runs it, in the same order; ``ranks.main`` prints and writes)."""
    from matchzoo import stats_files
    from matchzoo.data.cache import cache_path, load_or_build, on_rank_zero
    from matchzoo.errors import MatchzooError
    from matchzoo.spaces.resolve import check_weights, option_requests

    names = cli_args.space_names(args.spaces)
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    per_space = cli_args.space_params(args.space_param, names)
    check_weights(option_requests(per_space))  # every missing model in one line, before any work
    dataset = cli_args.make_dataset(args.dataset, args.dataset_param)
    for split in splits:
        dataset.check_split(split)
    if args.force and args.export is None:
        raise MatchzooError("--force only applies to --export DIR; add --export or drop --force")
    if args.export is not None:  # before minutes of extraction, not after
        targets = [stats_files.export_path(args.export, name, split) for name in names for split in splits]
        on_rank_zero(lambda: stats_files.check_writable(targets, args.force))
    make_space = cli_args.space_maker(per_space)
    for name in names:
        space = make_space(name)
        for split in splits:
            path = cache_path(space, dataset, split, args.cache_dir)
            record, built = load_or_build(
                space,
                dataset,
                split,
                batch_size=args.batch_size,
                device=ranks.device,
                cache_dir=args.cache_dir,
                progress=not args.no_progress,
                workers=args.workers,
            )
            n, dim = record["features"].shape
            state = "built" if built else "reused"
            if ranks.main:
                print(
                    f"{name:<18} {args.dataset}/{split:<8} n={n:<6} dim={dim:<5} "
                    f"tr(cov)={record['cov'].trace():.4g}  {state}  {path}"
                )
            if args.export is not None:
                target = stats_files.export_path(args.export, name, split)
                on_rank_zero(
                    lambda: stats_files.write_stats(
                        target, record["mean"], record["cov"], n, space, dataset, split, force=args.force
                    )
                )
                if ranks.main:
                    print(f"{'':<18} exported {target}")
    return 0
