"""The command-line vocabulary every subcommand shares: each option is declared once, here, with its check and help.

A command calls ``add_spaces(parser)``, ``add_dataset(parser, '--reference')``, ``add_seed(parser)``, ... so that
``--spaces`` or ``--seed`` means the same thing, takes the same values and is refused with the same words in every
command; the parsers of the values (``space_names``, ``space_params``, ``make_dataset``) live beside them.
A command may only choose whether an option is required (a required option has no default).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import sys
from pathlib import Path
from typing import Optional

from matchzoo import validate as check
from matchzoo.errors import MatchzooError

OFFLINE_SPACES = "pixels,random_conv,digits_classifier,digits_ssl"  # shipped with the install: no download
DEFAULT_DATASET = "digits"

_DATASET_HELP = {
    "--dataset": "registered dataset name (see `list --datasets`)",
    "--reference": "registered dataset: its train split is the reference, its held-out split the FDr baseline "
    f"({DEFAULT_DATASET} where optional)",
}


def add_spaces(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument(
        "--spaces",
        required=required,
        default=None if required else OFFLINE_SPACES,
        help=f"comma-separated feature spaces, e.g. digits_ssl,pixels (where optional: {OFFLINE_SPACES})",
    )


def add_space_params(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--space_param",
        action="append",
        default=[],
        metavar="SPACE.KEY=VALUE",
        help="constructor argument of one space, e.g. inception.weights=/w/pt_inception.pth (repeatable)",
    )


def add_dataset(parser: argparse.ArgumentParser, flag: str, required: bool = False) -> None:
    """``flag`` (``--dataset`` or ``--reference``) names a registered dataset; ``--dataset_param`` builds it."""
    parser.add_argument(
        flag,
        required=required,
        default=None if required else DEFAULT_DATASET,
        help=_DATASET_HELP[flag],
    )
    parser.add_argument(
        "--dataset_param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="constructor argument of the dataset, e.g. path=/data/x.npz (repeatable)",
    )


def add_seed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seed",
        type=check.option(check.seed),
        default=0,
        help="seed of every random choice: subsets, subsamples, sampling from a checkpoint (default 0)",
    )


def add_batch_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch_size", type=check.option(check.positive_int), default=256, help="images per forward pass (default 256)"
    )


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", type=check.text_option(check.device), default="cpu", help="torch device, e.g. cuda (default cpu)"
    )


def add_workers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=check.option(check.non_negative_int, 64),
        default=0,
        help="DataLoader processes decoding images; 0 = the main process (default 0)",
    )


def add_cache_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache_dir", default=None, help="reference feature cache (default: $MATCHZOO_CACHE_DIR or runs/cache)"
    )


def add_output(parser: argparse.ArgumentParser, csv: bool = True) -> None:
    """``--json`` (and ``--csv``): machine-readable results in a file, or on stdout instead of the table with ``-``."""
    parser.add_argument(
        "--json", default=None, metavar="PATH", help="write results as JSON to PATH ('-' = stdout instead of the table)"
    )
    if csv:
        parser.add_argument(
            "--csv",
            default=None,
            metavar="PATH",
            help="write one CSV row per space to PATH ('-' = stdout instead of the table)",
        )


def add_gin(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gin",
        action="append",
        required=True,
        metavar="FILE",
        help="gin file (repeatable): run reads them all as one config, sweep takes each as one value of an axis "
        "or reads a sweep file's sweep.* bindings",
    )


def add_gin_params(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gin_param",
        action="append",
        default=[],
        metavar="BINDING",
        help="extra binding, e.g. 'train.steps=200' (repeatable; in a sweep, shared by every cell)",
    )


def add_resume(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run whose checkpoint is in RUN_DIR")


def add_experiment(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--experiment",
        help="MLflow experiment name (sweep: where every cell logs, binding train.experiment; compare: only its runs)",
    )


def add_dry_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry_run",
        "--dry-run",
        action="store_true",
        help="print what would run (the cells and their status, or the command) and run nothing",
    )


def add_port(parser: argparse.ArgumentParser) -> None:
    """``--port`` of a server command (``ui``, ``server``)."""
    parser.add_argument(
        "--port", type=check.option(check.integer, 1, 65535), default=5000, help="port on 127.0.0.1 (default 5000)"
    )


def add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no_progress", action="store_true", help="hide the tqdm bars (shown on stderr by default)")


def write_output(text: str, path: str) -> None:
    """``text`` to the ``--json``/``--csv`` PATH (``-``: stdout), ending in one newline."""
    text = text if text.endswith("\n") else text + "\n"
    if path == "-":
        sys.stdout.write(text)
        return
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    except OSError as error:
        raise MatchzooError(f"cannot write {path}: {error.strerror}") from None


def parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # plain strings need no quotes on the command line


def parse_params(items: list[str], what: str) -> dict[str, object]:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise MatchzooError(f"{what} must look like KEY=VALUE, got {item!r}")
        params[key.strip()] = parse_value(value.strip())
    return params


def space_names(text: str) -> list[str]:
    """Comma-separated registered space names; an empty list or an unknown name fails before any work."""
    import matchzoo

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise MatchzooError("--spaces is empty; give comma-separated names, e.g. --spaces digits_ssl,pixels")
    for name in names:
        matchzoo.FEATURE_SPACES.get(name)
    return names


def space_params(items: list[str], names: list[str]) -> dict[str, dict[str, object]]:
    """``{space: {KEY: value}}`` from ``--space_param SPACE.KEY=VALUE`` items, one entry per named space."""
    per_space: dict[str, dict[str, object]] = {name: {} for name in names}
    for key, value in parse_params(items, "--space_param").items():
        space, dot, arg = key.partition(".")
        if not dot or space not in per_space:
            raise MatchzooError(f"--space_param {key!r} must be SPACE.KEY with SPACE one of {', '.join(names)}")
        per_space[space][arg] = value
    return per_space


def space_maker(per_space: dict[str, dict[str, object]]):
    """``make(name) -> FeatureSpace`` with that space's ``--space_param`` values; a keyword it does not take is one
    line. Spaces are built one at a time, when needed, so only one large model is in memory at once."""
    import matchzoo

    def make(name: str):
        try:
            return matchzoo.make_feature_space(name, **per_space[name])
        except TypeError as error:
            raise MatchzooError(f"{name}: bad --space_param ({error})") from None

    return make


def make_dataset(name: str, items: list[str]):
    """The registered dataset ``name`` built from ``--dataset_param KEY=VALUE`` items; a keyword it does not
    take is one line listing the ones it does."""
    import matchzoo

    cls = matchzoo.DATASETS.get(name)
    params = parse_params(items, "--dataset_param")
    signature = inspect.signature(cls)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    unknown = [key for key in params if key not in signature.parameters]
    if unknown and not takes_any:
        accepted = ", ".join(signature.parameters) or "no parameters"
        raise MatchzooError(
            f"--dataset_param {unknown[0]}: dataset {name!r} has no parameter {unknown[0]!r}; it takes {accepted}"
        )
    try:
        return cls(**params)
    except TypeError as error:  # a value of the wrong type deep in the constructor
        raise MatchzooError(f"--dataset_param: dataset {name!r} cannot use {params} ({error})") from None


def add_seen_spaces(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seen_spaces",
        default=None,
        metavar="A,B",
        help="spaces the samples were optimised in (trained or attacked): left out of fdr_unseen with their families "
        "(default: a checkpoint's own record; '' for none)",
    )


def seen_spaces(text: Optional[str], names: list[str], samples: str, option: str) -> list[str]:
    """The spaces the samples were optimised in: ``--seen_spaces A,B`` when given (each among the ``--spaces``,
    else one line), else the record of a checkpoint given as ``option`` (``samples``): the spaces its generator was
    optimised in (none for other samples), announced on stderr."""
    if text is not None:
        seen = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in seen if name not in names]
        if unknown:
            raise MatchzooError(f"--seen_spaces {', '.join(unknown)} must be among the --spaces ({', '.join(names)})")
        return seen
    from matchzoo.samples import checkpoint_seen_spaces

    seen = checkpoint_seen_spaces(samples) or []
    if seen:
        print(
            f"fdr_unseen: the {option} checkpoint's generator was optimised in {', '.join(seen)} "
            "(its record; --seen_spaces overrides it)",
            file=sys.stderr,
        )
    return seen
