"""``python -m matchzoo sample``: draw images from a checkpoint into an ADM-format ``.npz`` (``arr_0`` NHWC uint8,
``arr_1`` labels for a class-conditional generator), the file papers' evaluation code and ``evaluate`` read.

Example::

    python -m matchzoo sample --checkpoint runs/x/checkpoint.pt --num 50000 --out samples.npz --device cuda

Sample ``i`` depends only on ``--seed`` (generation runs in fixed blocks of 256), not on ``--batch_size`` (images
per write); conditional generators get class-balanced labels (``i % num_classes``) or ``--labels uniform``, and
``--cfg_scale`` applies classifier-free guidance to generators trained with label dropout. The archive is
streamed to a temporary file and renamed to ``--out`` when complete, so Ctrl-C leaves no partial file.
The work is :func:`matchzoo.sample_writer.write_samples`.
"""

from __future__ import annotations

import argparse
import json

from matchzoo import cli_args
from matchzoo import validate as check
from matchzoo.errors import MatchzooError

HELP = "draw images from a checkpoint into an ADM-format .npz (arr_0 NHWC uint8, arr_1 labels)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a training checkpoint .pt, or the run folder holding one")
    parser.add_argument("--num", type=check.option(check.integer, 1), required=True, help="how many images to draw")
    # dest differs from compare's --out (an output *folder*, checked as one): here it names the .npz file
    parser.add_argument("--out", dest="out_file", required=True, help="the .npz to write (replaced only when complete)")
    parser.add_argument(
        "--labels",
        choices=("balanced", "uniform"),
        default=None,
        help="class-conditional generators: balanced (i %% num_classes, the default) or uniform random labels",
    )
    parser.add_argument(
        "--cfg_scale",
        type=check.option(check.real, 0.0),
        default=1.0,
        help="classifier-free guidance scale (1 = none; needs a generator trained with label dropout)",
    )
    cli_args.add_seed(parser)
    cli_args.add_batch_size(parser)
    cli_args.add_device(parser)
    cli_args.add_progress(parser)


def run(args: argparse.Namespace) -> int:
    from matchzoo.sample_writer import check_out, write_samples
    from matchzoo.samples import CheckpointSamples

    check_out(args.out_file, 0, (0, 0, 0))  # name and folder before the checkpoint is read
    samples = CheckpointSamples.load(
        _checkpoint_path(args.checkpoint), args.num, args.seed, args.device, args.labels or "balanced", args.cfg_scale
    )
    if args.labels is not None and not samples.num_classes:
        raise MatchzooError(
            f"--labels {args.labels}: the checkpoint's generator is unconditional (num_classes = 0); drop --labels"
        )
    summary = write_samples(samples, args.out_file, batch_size=args.batch_size, progress=not args.no_progress)
    print(json.dumps(summary))
    return 0


def _checkpoint_path(text: str):
    from pathlib import Path

    from matchzoo.samples import CHECKPOINT_IN_RUN_DIR

    path = Path(text)
    if path.is_dir() and (path / CHECKPOINT_IN_RUN_DIR).is_file():
        return path / CHECKPOINT_IN_RUN_DIR
    if not path.exists():
        raise MatchzooError(f"--checkpoint {text!r} does not exist; pass a checkpoint .pt or its run folder")
    return path
