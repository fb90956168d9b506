"""``python -m matchzoo probe resample|topn``: metric-hacking probes (reweight candidates, measure every space).

The probes are :mod:`matchzoo.probes` (:func:`~matchzoo.probes.experiments.resample_attack`,
:func:`~matchzoo.probes.experiments.topn_sweep`); this module maps options to them and prints the tables.
"""

from __future__ import annotations

import argparse
import ast
import json

from matchzoo import cli_args
from matchzoo.errors import MatchzooError
from matchzoo.validate import integer, non_negative_int, option, positive_int, positive_real

HELP = "metric-hacking probes: 'resample' (minimise a weighted objective in one space) and 'topn' (class histograms)"


# Upper bounds keep a typo (an extra zero or two) from allocating for hours instead of failing at once.
MAX_COUNT = 10**7


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--candidates", required=True, help="candidate images: .npz, or a run's checkpoint file/folder")
    parser.add_argument(
        "--num_candidates",
        type=option(positive_int, MAX_COUNT),
        help="how many candidates to use/sample (default: all, or 5000 from a generator)",
    )
    cli_args.add_dataset(parser, "--reference")
    cli_args.add_spaces(parser)
    cli_args.add_space_params(parser)
    parser.add_argument(
        "--sample_size",
        type=option(integer, 2, MAX_COUNT),
        help="size of each drawn set (default: the held-out split size, for FDr)",
    )
    parser.add_argument(
        "--draws", type=option(positive_int, 10**5), default=5, help="resampled sets per condition (default 5)"
    )
    parser.add_argument(
        "--steps",
        type=option(non_negative_int, MAX_COUNT),
        default=300,
        help="Adam steps on the log-weights (default 300; 0 keeps uniform weights)",
    )
    parser.add_argument(
        "--lr", type=option(positive_real), default=0.05, help="Adam learning rate on the log-weights (default 0.05)"
    )
    cli_args.add_seen_spaces(parser)
    cli_args.add_seed(parser)
    cli_args.add_output(parser, csv=False)
    cli_args.add_progress(parser)


def top_n_values(text: str) -> list[int]:
    """``--top_n 1,2,3``: a comma-separated list of positive integers."""
    values = [item.strip() for item in text.split(",") if item.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers such as 1,2,3, got {text!r}")
    check = option(positive_int, MAX_COUNT)
    try:
        return [check(item) for item in values]
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(
            f"{error} (in {text!r}; expected comma-separated positive integers such as 1,2,3)"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    probes = parser.add_subparsers(dest="probe", metavar="PROBE", required=True)
    resample = probes.add_parser("resample", help="minimise a registered objective's weighted form in one space")
    _common(resample)
    resample.add_argument("--attack", required=True, help="the space whose distance is minimised (must be in --spaces)")
    resample.add_argument("--objective", default="fd", help="registered objective with a weighted form (default fd)")
    resample.add_argument(
        "--objective_arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="constructor argument of the objective, e.g. blur=0.1 (repeatable)",
    )
    resample.add_argument(
        "--reference_size",
        type=option(integer, 2, MAX_COUNT),
        default=5000,
        help="reference samples the weighted objective sees (subsampled when larger; default 5000)",
    )
    topn = probes.add_parser("topn", help="soft Top-N class-histogram matching with a classifier space")
    _common(topn)
    topn.add_argument("--classifier", default="digits_classifier", help="classifier space (default digits_classifier)")
    topn.add_argument(
        "--top_n", type=top_n_values, default=[1, 2, 3, 5], help="comma-separated N values to sweep (default 1,2,3,5)"
    )


def _objective_kwargs(items: list[str]) -> dict:
    kwargs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise MatchzooError(f"--objective_arg {item!r}: expected KEY=VALUE, e.g. blur=0.1")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value  # a bare word is a string
    return kwargs


def run(args: argparse.Namespace) -> int:
    from matchzoo.metrics.summary import families_of
    from matchzoo.probes import inputs, resample
    from matchzoo.spaces.resolve import check_weights, option_requests

    space_names = cli_args.space_names(args.spaces)
    _check_space_choice(args, space_names)
    seen = cli_args.seen_spaces(args.seen_spaces, space_names, args.candidates, "--candidates")
    # mistakes in the options and missing weights (all of them, one line) are reported before any slow work
    per_space = cli_args.space_params(args.space_param, space_names)
    objective = _build_objective(args) if args.probe == "resample" else None
    check_weights(option_requests(per_space))
    progress = not args.no_progress
    dataset = cli_args.make_dataset(args.reference, args.dataset_param)
    candidates = inputs.load_candidates(args.candidates, args.num_candidates, args.seed, progress=progress)
    spaces, features = inputs.evaluation_features(
        space_names, dataset, candidates, progress=progress, make_space=cli_args.space_maker(per_space)
    )
    common = dict(
        sample_size=args.sample_size,
        steps=args.steps,
        lr=args.lr,
        draws=args.draws,
        progress=progress,
        seen=seen,
        families=families_of(spaces),
    )
    if args.probe == "resample":
        results = [_resample(args, objective, features, candidates.shape[0], common)]
    else:
        results = _topn(args, spaces, features, dataset, candidates, common)
    if args.json is not None:
        cli_args.write_output(json.dumps([resample.result_record(r) for r in results], indent=2), args.json)
        if args.json != "-":
            print(f"results written to {args.json}")
    return 0


def _check_space_choice(args: argparse.Namespace, space_names: list[str]) -> None:
    option, chosen = ("--attack", args.attack) if args.probe == "resample" else ("--classifier", args.classifier)
    if chosen not in space_names:
        raise MatchzooError(f"{option} {chosen!r} must be one of the --spaces ({', '.join(space_names)})")


def _build_objective(args: argparse.Namespace):
    import matchzoo

    kwargs = _objective_kwargs(args.objective_arg)
    try:
        return matchzoo.make_objective(args.objective, **kwargs)
    except (TypeError, ValueError) as error:  # a wrong --objective_arg name or value
        first = str(error).splitlines()[0]
        raise MatchzooError(f"--objective_arg: cannot build {args.objective} with {kwargs}: {first}") from None


def _resample(args: argparse.Namespace, objective, features: dict, count: int, common: dict):
    from matchzoo.probes.experiments import resample_attack
    from matchzoo.probes.resample import format_result

    label = f"resample: minimise weighted {args.objective} in {args.attack}"
    result = resample_attack(objective, features, args.attack, args.reference_size, args.seed, label, **common)
    if args.json != "-":  # stdout carries the JSON alone
        print(format_result(result, f"{label}; {count} candidates from {args.candidates}"))
    return result


def _topn(args: argparse.Namespace, spaces: dict, features: dict, dataset, candidates, common: dict) -> list:
    from matchzoo.probes.experiments import topn_sweep
    from matchzoo.probes.resample import format_result

    classifier = args.classifier
    sweep = topn_sweep(
        spaces[classifier], features[classifier], features, dataset, candidates, args.top_n, args.seed, **common
    )
    results = []
    for result in sweep:
        results.append(result)
        if args.json != "-":
            print(format_result(result, result.label))
            print()
    return results
