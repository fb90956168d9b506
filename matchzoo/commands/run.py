"""``python -m matchzoo run --gin FILE ...``: the same as ``python -m matchzoo.run``."""

from __future__ import annotations

import argparse

HELP = "train one gin-configured experiment (same as python -m matchzoo.run)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from matchzoo.run import add_run_arguments

    add_run_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from matchzoo.run import run_experiment

    run_experiment(args.gin, args.gin_param, resume=args.resume)
    return 0
