"""``python -m matchzoo stats``: extract and cache real-data reference features and float64 statistics.

Example: ``python -m matchzoo stats --dataset digits --spaces digits_classifier,digits_ssl,pixels``.
Each (space, split) is extracted once (batched, ``inference_mode``, tqdm) and stored under the space
and dataset fingerprints in the cache directory (``runs/cache`` or ``$MATCHZOO_CACHE_DIR``); the trainer
and ``evaluate`` then reuse the file.
"""

from __future__ import annotations

import argparse
import ast
import inspect

from matchzoo import validate as check
from matchzoo.errors import MatchzooError

HELP = "extract and cache reference features + float64 mean/covariance of a dataset in feature spaces"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="registered dataset name (see `list --datasets`)")
    parser.add_argument(
        "--dataset_param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="constructor argument of the dataset, e.g. path=/data/x.npz (repeatable)",
    )
    parser.add_argument("--spaces", required=True, help="comma-separated feature spaces, e.g. digits_ssl,pixels")
    parser.add_argument(
        "--space_param",
        action="append",
        default=[],
        metavar="SPACE.KEY=VALUE",
        help="constructor argument of one space, e.g. dinov2_vitl14.weights=/w/dino.pth (repeatable)",
    )
    parser.add_argument("--splits", default="train,heldout", help="comma-separated splits (default: train,heldout)")
    parser.add_argument("--batch_size", type=check.option(check.positive_int), default=256)
    parser.add_argument("--device", type=check.text_option(check.device), default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--cache_dir", default=None, help="default: $MATCHZOO_CACHE_DIR or runs/cache")
    parser.add_argument("--no_progress", action="store_true", help="hide the tqdm bars")


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


def space_params(items: list[str], names: list[str]) -> dict[str, dict[str, object]]:
    per_space: dict[str, dict[str, object]] = {name: {} for name in names}
    for key, value in parse_params(items, "--space_param").items():
        space, dot, arg = key.partition(".")
        if not dot or space not in per_space:
            raise MatchzooError(f"--space_param {key!r} must be SPACE.KEY with SPACE one of {', '.join(names)}")
        per_space[space][arg] = value
    return per_space


def space_names(text: str) -> list[str]:
    """Comma-separated registered space names; an empty list or an unknown name fails before any work."""
    import matchzoo

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise MatchzooError("--spaces is empty; give comma-separated names, e.g. --spaces digits_ssl,pixels")
    for name in names:
        matchzoo.FEATURE_SPACES.get(name)
    return names


def run(args: argparse.Namespace) -> int:
    import matchzoo
    from matchzoo.data.cache import cache_path, load_or_build
    from matchzoo.spaces.resolve import check_weights, option_requests

    names = space_names(args.spaces)
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    per_space = space_params(args.space_param, names)
    check_weights(option_requests(per_space))  # every missing model in one line, before any work
    dataset = make_dataset(args.dataset, args.dataset_param)
    for split in splits:
        dataset.check_split(split)
    for name in names:
        try:
            space = matchzoo.make_feature_space(name, **per_space[name])
        except TypeError as error:
            raise MatchzooError(f"{name}: bad --space_param ({error})") from None
        for split in splits:
            path = cache_path(space, dataset, split, args.cache_dir)
            record, built = load_or_build(
                space,
                dataset,
                split,
                batch_size=args.batch_size,
                device=args.device,
                cache_dir=args.cache_dir,
                progress=not args.no_progress,
            )
            n, dim = record["features"].shape
            state = "built" if built else "reused"
            print(
                f"{name:<18} {args.dataset}/{split:<8} n={n:<6} dim={dim:<5} tr(cov)={record['cov'].trace():.4g}  "
                f"{state}  {path}"
            )
    return 0
