"""``python -m matchzoo run --gin FILE ...``: the same as ``python -m matchzoo.run``."""

from __future__ import annotations

import argparse

from matchzoo import cli_args

HELP = "train one gin-configured experiment (same as python -m matchzoo.run)"


def add_arguments(parser: argparse.ArgumentParser) -> None:  # the same calls as matchzoo.run.add_run_arguments
    cli_args.add_gin(parser)
    cli_args.add_gin_params(parser)
    cli_args.add_resume(parser)


def run(args: argparse.Namespace) -> int:
    from matchzoo.run import run_experiment

    run_experiment(args.gin, args.gin_param, resume=args.resume)
    return 0
