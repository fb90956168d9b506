"""The subcommands are thin adapters over one argument vocabulary (:mod:`matchzoo.cli_args`).

An option such as ``--spaces`` or ``--seed`` must mean the same in every command that has it: same type (so the
same check and message), default, help and metavar; a command may only make it required. No command module
imports another, and no library module imports a command, so each command is options -> library call -> print.
"""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

import pytest

from matchzoo.__main__ import build_parser, main

PACKAGE = Path(__file__).resolve().parents[1] / "matchzoo"
REQUIRED = "(required: no default)"


def subcommand_parsers(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """``{'evaluate': parser, 'probe resample': parser, ...}``: every leaf parser under ``parser``."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = subcommand_parsers(sub, f"{prefix}{name} ")
                found.update(nested or {f"{prefix}{name}": sub})
    return found


def declaration(action: argparse.Action) -> dict:
    """What a user sees of an option, except whether it is required (a required option has no default)."""
    return {
        "option_strings": tuple(action.option_strings),
        "action": type(action).__name__,
        "type": getattr(action.type, "__qualname__", action.type),
        "check": [cell.cell_contents for cell in getattr(action.type, "__closure__", None) or ()],
        "default": REQUIRED if action.required else action.default,
        "help": action.help,
        "metavar": action.metavar,
        "nargs": action.nargs,
        "choices": action.choices,
    }


# `list --spaces` names a registry to show (documented in the README), not spaces to compute in: a switch of its
# own vocabulary, one per registry, kept as the public command line has it.
REGISTRY_FILTERS = "list"


def option_declarations() -> dict[str, dict[str, dict]]:
    """``{dest: {command: declaration}}`` over every subcommand's options (help excluded)."""
    options: dict[str, dict[str, dict]] = {}
    for command, parser in subcommand_parsers(build_parser()).items():
        if command == REGISTRY_FILTERS:
            continue
        for action in parser._actions:
            if action.option_strings and not isinstance(action, argparse._HelpAction):
                options.setdefault(action.dest, {})[command] = declaration(action)
    return options


def test_an_option_is_declared_the_same_in_every_command_that_has_it():
    shared = {dest: per_command for dest, per_command in option_declarations().items() if len(per_command) > 1}
    assert {"spaces", "space_param", "dataset_param", "seed", "device", "batch_size", "json", "no_progress"} <= set(
        shared
    )
    for dest, per_command in shared.items():
        optional = {command: declared for command, declared in per_command.items() if declared["default"] != REQUIRED}
        defaults = [declared["default"] for declared in optional.values()]
        assert defaults[1:] == defaults[:-1], f"--{dest} has different defaults: {optional}"
        first_command, first = next(iter(per_command.items()))
        for command, declared in per_command.items():
            same = {**declared, "default": first["default"]}
            assert same == first, f"--{dest}: `{command}` declares {declared}, `{first_command}` {first}"


COMMANDS = sorted(subcommand_parsers(build_parser()))


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command.split(), "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m matchzoo {command}") and "--" in out


def matchzoo_imports(path: Path) -> set[str]:
    """Every ``matchzoo.*`` module named by an import statement in ``path``, wherever it sits."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.startswith("matchzoo.")}


def test_commands_import_no_command_and_libraries_import_no_command():
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__main__.py" and path.parent == PACKAGE:
            continue  # the entry point discovers the commands
        reaching = sorted(name for name in matchzoo_imports(path) if name.startswith("matchzoo.commands."))
        assert not reaching, f"{path.relative_to(PACKAGE.parent)} imports {reaching}"


def test_probe_takes_space_params_with_the_shared_check(capsys):
    code = main(
        [
            "probe",
            "resample",
            "--candidates",
            "/nonexistent.npz",
            "--spaces",
            "pixels",
            "--attack",
            "pixels",
            "--space_param",
            "random_conv.width=4",
        ]
    )
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(errors) == 1
    assert errors[0] == (
        "matchzoo: error: --space_param 'random_conv.width' must be SPACE.KEY with SPACE one of pixels"
    )


def test_probe_json_to_stdout_is_the_only_output(tmp_path, capsys, monkeypatch):
    import numpy as np

    monkeypatch.setenv("MATCHZOO_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    candidates = tmp_path / "candidates.npz"
    np.savez(candidates, images=rng.integers(0, 256, size=(120, 1, 16, 16), dtype=np.uint8))
    code = main(
        [
            "probe",
            "topn",
            "--candidates",
            str(candidates),
            "--spaces",
            "pixels",
            "--classifier",
            "pixels",
            "--top_n",
            "1",
            "--steps",
            "2",
            "--draws",
            "1",
            "--sample_size",
            "80",
            "--no_progress",
            "--json",
            "-",
        ]
    )
    assert code == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["top_n"] == 1 and set(record["spaces"]) == {"pixels"}
