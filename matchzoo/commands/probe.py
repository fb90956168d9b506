"""``python -m matchzoo probe resample|topn``: metric-hacking probes (reweight candidates, measure every space)."""
from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

HELP = "metric-hacking probes: 'resample' (minimise a weighted objective in one space) and 'topn' (class histograms)"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--candidates", required=True, help="candidate images: .npz, or a run's checkpoint file/folder")
    parser.add_argument("--num_candidates", type=int, help="how many candidates to use/sample (default: all, or 5000 from a generator)")
    parser.add_argument("--reference", default="digits", help="dataset registry name; its train split is the reference (default digits)")
    parser.add_argument("--spaces", default="pixels,random_conv,digits_classifier,digits_ssl",
                        help="comma-separated evaluation spaces (default: the offline ones)")
    parser.add_argument("--sample_size", type=int, help="size of each drawn set (default: the held-out split size, for FDr)")
    parser.add_argument("--draws", type=int, default=5, help="resampled sets per condition (default 5)")
    parser.add_argument("--steps", type=int, default=300, help="Adam steps on the log-weights (default 300)")
    parser.add_argument("--lr", type=float, default=0.05, help="Adam learning rate on the log-weights (default 0.05)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    probes = parser.add_subparsers(dest="probe", metavar="PROBE", required=True)
    resample = probes.add_parser("resample", help="minimise a registered objective's weighted form in one space")
    _common(resample)
    resample.add_argument("--attack", required=True, help="the space whose distance is minimised (must be in --spaces)")
    resample.add_argument("--objective", default="fd", help="registered objective with a weighted form (default fd)")
    resample.add_argument("--objective_arg", action="append", default=[], metavar="KEY=VALUE",
                          help="constructor argument of the objective, e.g. blur=0.1 (repeatable)")
    resample.add_argument("--reference_size", type=int, default=5000,
                          help="reference samples the weighted objective sees (subsampled when larger; default 5000)")
    topn = probes.add_parser("topn", help="soft Top-N class-histogram matching with a classifier space")
    _common(topn)
    topn.add_argument("--classifier", default="digits_classifier", help="classifier space (default digits_classifier)")
    topn.add_argument("--top_n", default="1,2,3,5", help="comma-separated N values to sweep (default 1,2,3,5)")


def _objective_kwargs(items: list[str]) -> dict:
    from matchzoo.errors import MatchzooError

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
    import matchzoo
    from matchzoo.errors import MatchzooError
    from matchzoo.probes import inputs, resample, topn
    from matchzoo.probes.weighted import weighted_loss_for

    space_names = [s.strip() for s in args.spaces.split(",") if s.strip()]
    dataset = matchzoo.make_dataset(args.reference)
    candidates = inputs.load_candidates(args.candidates, args.num_candidates, args.seed)
    spaces, features = inputs.evaluation_features(space_names, dataset, candidates)
    common = dict(sample_size=args.sample_size, steps=args.steps, lr=args.lr, draws=args.draws, seed=args.seed)
    results = []
    if args.probe == "resample":
        if args.attack not in features:
            raise MatchzooError(f"--attack {args.attack!r} must be one of the --spaces ({', '.join(space_names)})")
        reference = features[args.attack].reference
        if reference.shape[0] > args.reference_size:
            order = torch_randperm(reference.shape[0], args.seed)[: args.reference_size]
            reference = reference[order]
        kwargs = _objective_kwargs(args.objective_arg)
        try:
            objective = matchzoo.make_objective(args.objective, **kwargs)
        except (TypeError, ValueError) as error:  # a wrong --objective_arg name or value
            first = str(error).splitlines()[0]
            raise MatchzooError(f"--objective_arg: cannot build {args.objective} with {kwargs}: {first}") from None
        objective.prepare_reference(reference)
        label = f"resample: minimise weighted {args.objective} in {args.attack}"
        result = resample.resample_probe(features, args.attack, weighted_loss_for(objective, reference), label=label, **common)
        results.append(result)
        print(resample.format_result(result, f"{label}; {candidates.shape[0]} candidates from {args.candidates}"))
    else:
        if args.classifier not in features:
            raise MatchzooError(f"--classifier {args.classifier!r} must be one of the --spaces ({', '.join(space_names)})")
        classifier = features[args.classifier]
        probs, reference_probs, source = topn.class_probabilities(
            spaces[args.classifier], dataset, candidates, classifier.reference, classifier.candidates, args.seed)
        for n in [int(v) for v in args.top_n.split(",") if v.strip()]:
            indicators = topn.topn_indicators(probs, n)
            target = topn.topn_indicators(reference_probs, n).mean(dim=0)
            label = f"topn: match top-{n} class histogram ({source})"
            result = resample.resample_probe(features, None, topn.histogram_loss(indicators, target),
                                             attack_candidates=indicators, label=label, **common)
            result.extra["top_n"] = n
            results.append(result)
            print(resample.format_result(result, label))
            print()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([resample.result_record(r) for r in results], indent=2))
        print(f"results written to {args.json}")
    return 0


def torch_randperm(n: int, seed: int):
    import torch

    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))
