"""``python -m matchzoo <command>``: run, list, ui and the other subcommands.

Each subcommand is a module in :mod:`matchzoo.commands` that defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``; modules are discovered automatically, so a new
command needs no edit here.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import matchzoo.commands
from matchzoo.cli import guarded
from matchzoo.validate import ArgumentParser


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m matchzoo", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=ArgumentParser)
    for info in sorted(pkgutil.iter_modules(matchzoo.commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"matchzoo.commands.{info.name}")
        name = getattr(module, "NAME", info.name)
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
