"""The resample-attack table of the README: every run folder x every attacked space, one ``probe resample`` each.

For each run (a trained generator) and each evaluation space, ``python -m matchzoo probe resample`` reweights
the run's samples to lower FD in that space (``--attack``) and reports every space before and after. This script
runs those probes (``--jobs`` at once, each in its own process with one thread), keeps their JSON, and prints a
markdown table with, per probe, the attacked space's FDr, FDr^k and ``fdr_unseen`` before -> after with their
intervals, and whether each summary fell *below its before-interval* (after < the interval's low end) -- the
"Done when" test of a hack-resistant summary. Summaries are recomputed from the per-draw FDr in the JSON:

* ``fdr_unseen`` (key schema 3, :mod:`matchzoo.metrics.summary`): geometric mean over the spaces in no family of
  the attacked or trained spaces (what the probe itself reports);
* ``v2``: the schema-2 definition (arithmetic mean over the spaces neither attacked nor trained), for comparison.

Usage (the README's table)::

    python scripts/attack_table.py --runs runs/offline/fd-*/ runs/offline/mmd-*/ --out attack/ --jobs 2

A probe whose JSON already exists in ``--out`` is not rerun (delete it to redo); ``--table_only`` prints the table
from the files alone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from matchzoo.errors import MatchzooError
from matchzoo.metrics.intervals import percentile_interval
from matchzoo.metrics.summary import geometric_mean, unseen_spaces
from matchzoo.validate import option, positive_int

SPACES = "pixels,random_conv,digits_classifier,digits_ssl"
LEVEL = 0.95


def run_label(run: Path) -> tuple[str, str]:
    """(objective, seed) of a run folder: the folder name's prefix and the checkpoint's ``train.seed``."""
    from matchzoo.train import checkpoint

    state = checkpoint.load(run)  # a missing, corrupt or foreign file is a one-line MatchzooError
    seed = re.search(r"^train\.seed = (\d+)$", state.get("operative_config", ""), re.MULTILINE)
    return run.name.split("-")[0], seed.group(1) if seed else "?"


def probe(run: Path, attack: str, args: argparse.Namespace, out: Path) -> tuple[Path, float]:
    if out.exists():
        return out, 0.0
    command = [sys.executable, "-m", "matchzoo", "probe", "resample", "--candidates", str(run)]
    command += ["--reference", "digits", "--spaces", args.spaces, "--attack", attack, "--draws", str(args.draws)]
    command += ["--seen_spaces", args.seen_spaces, "--num_candidates", str(args.num_candidates), "--no_progress"]
    command += ["--json", str(out) + ".part"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise SystemExit(f"attack_table: error: the probe of {run} attacking {attack} failed: {last}")
    os.replace(str(out) + ".part", out)
    return out, time.perf_counter() - start


def summaries(record: dict, attacked: str, seen: list[str]) -> dict[str, dict]:
    """{name: {before, after, before_interval, after_interval, spaces}} for FDr^k, fdr_unseen (v3) and v2."""
    spaces = record["spaces"]
    names = list(spaces)
    v3 = unseen_spaces(names, [attacked, *seen])
    v2 = [s for s in names if s != attacked and s not in seen]
    if v3 != record["fdr_unseen_spaces"]:
        raise SystemExit(f"fdr_unseen spaces differ from the probe's: {v3} vs {record['fdr_unseen_spaces']}")
    out = {}
    for label, chosen, combine in (
        ("fdr_k", names, lambda t: t.mean(dim=0)),
        ("fdr_unseen", v3, lambda t: geometric_mean(t, dim=0)),
        ("v2", v2, lambda t: t.mean(dim=0)),
    ):
        if not chosen:
            continue
        row = {"spaces": chosen}
        for which in ("before", "after"):
            draws = torch.tensor([spaces[s][f"fdr_{which}_draws"] for s in chosen], dtype=torch.float64)
            point = torch.tensor([spaces[s][f"fdr_{which}"] for s in chosen], dtype=torch.float64)
            row[which] = float(combine(point.unsqueeze(1)).squeeze())
            row[f"{which}_interval"] = percentile_interval(combine(draws), LEVEL)
        row["fell"] = row["after"] < row["before_interval"][0]
        out[label] = row
    if "fdr_unseen" in out:  # the probe's own numbers, recomputed from its draws
        assert abs(out["fdr_unseen"]["after"] / record["fdr_unseen_after"] - 1) < 1e-9
        assert abs(out["fdr_unseen"]["before_interval"][0] / record["fdr_unseen_before_interval"][0] - 1) < 1e-9
    return out


def fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def span(row: dict, which: str) -> str:
    low, high = row[f"{which}_interval"]
    return f"{fmt(row[which])} [{fmt(low)}, {fmt(high)}]"


def moved(record: dict, spaces: list[str]) -> str:
    """How many of ``spaces`` ended below (↓) or above (↑) their own before-interval: whether a moving summary
    is one space or all of them."""
    down = sum(record["spaces"][s]["fdr_after"] < record["spaces"][s]["fdr_before_interval"][0] for s in spaces)
    up = sum(record["spaces"][s]["fdr_after"] > record["spaces"][s]["fdr_before_interval"][1] for s in spaces)
    return f"{down}↓ {up}↑ of {len(spaces)}"


def table(results: list[tuple[str, str, str, dict]], seen: list[str]) -> str:
    lines = [
        "| generator | seed | attacked | eff. cand. | attacked FDr before → after | FDr^k before → after | fell? "
        "| fdr_unseen before → after | over | fell? | its spaces beyond their own interval | v2 fell? |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    counts = {"fdr_k": 0, "fdr_unseen": 0, "v2": 0}
    for objective, seed, attacked, record in results:
        found = summaries(record, attacked, seen)
        for name in counts:
            counts[name] += bool(found.get(name, {}).get("fell"))
        space = record["spaces"][attacked]
        attacked_row = {
            "before": space["fdr_before"],
            "after": space["fdr_after"],
            "before_interval": space["fdr_before_interval"],
            "after_interval": space["fdr_after_interval"],
        }
        k, u, v2 = found["fdr_k"], found.get("fdr_unseen"), found.get("v2")
        lines.append(
            f"| {objective} | {seed} | {attacked} | {record['effective_size']:.0f} | "
            f"{span(attacked_row, 'before')} → {span(attacked_row, 'after')} | "
            f"{span(k, 'before')} → {span(k, 'after')} | {'**yes**' if k['fell'] else 'no'} | "
            + (f"{span(u, 'before')} → {span(u, 'after')} | {', '.join(u['spaces'])} | " if u else "- | - | ")
            + f"{'**yes**' if u and u['fell'] else 'no'} | {moved(record, u['spaces']) if u else '-'} | "
            f"{'**yes**' if v2 and v2['fell'] else 'no'} |"
        )
    total = len(results)
    lines.append("")
    lines.append(
        f"Fell below the before-interval: FDr^k {counts['fdr_k']} of {total}, fdr_unseen {counts['fdr_unseen']} of "
        f"{total}, v2 (schema-2 fdr_unseen) {counts['v2']} of {total}."
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, type=Path, help="run folders (with checkpoint.pt)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the probes' JSON files")
    parser.add_argument("--spaces", default=SPACES, help=f"evaluation spaces, each attacked in turn ({SPACES})")
    parser.add_argument("--seen_spaces", default="digits_ssl", help="the runs' training spaces (digits_ssl)")
    parser.add_argument("--draws", type=option(positive_int, 10**5), default=50)
    parser.add_argument("--num_candidates", type=option(positive_int, 10**7), default=2000)
    parser.add_argument("--jobs", type=option(positive_int, 64), default=1, help="probes at once (one thread each)")
    parser.add_argument("--table_only", action="store_true", help="print the table from the JSON files in --out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    seen = [s for s in args.seen_spaces.split(",") if s]
    jobs = []
    for run in args.runs:
        try:
            objective, seed = run_label(run)
        except MatchzooError as error:
            print(f"attack_table: error: --runs {run}: {error}", file=sys.stderr)
            return 2
        for attack in args.spaces.split(","):
            jobs.append((objective, seed, attack, run, args.out / f"probe_{objective}_{seed}_{attack}.json"))
    if not args.table_only:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(probe, run, attack, args, out) for _, _, attack, run, out in jobs]
            for (objective, seed, attack, _, _), future in zip(jobs, futures):
                _, seconds = future.result()
                print(f"{objective} seed {seed} attack {attack}: {seconds:.1f} s", file=sys.stderr, flush=True)
        print(f"{len(jobs)} probes in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    results = []
    for objective, seed, attack, _, out in jobs:
        if out.exists():
            results.append((objective, seed, attack, json.loads(out.read_text())[0]))
    print(table(results, seen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
