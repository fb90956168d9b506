import subprocess
import sys
from pathlib import Path

import pytest

from matchzoo import config
from matchzoo.errors import MatchzooError

REPO = Path(__file__).resolve().parent.parent


def cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_every_shipped_gin_file_parses():
    # gin/sweeps/ holds sweep definitions, read by matchzoo.sweep (tests/test_sweep.py expands every one)
    files = sorted(f for f in (REPO / "gin").rglob("*.gin") if "sweeps" not in f.parts)
    assert files, "no gin files shipped"
    for file in files:
        config.parse([str(file)])  # raises MatchzooError with file:line on any problem


def test_syntax_error_is_one_line_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.gin"
    bad.write_text("train.steps = 10\ntrain.lr = = 2\n")
    with pytest.raises(MatchzooError) as info:
        config.parse([str(bad)])
    message = str(info.value)
    assert f"{bad}:2:" in message and "\n" not in message


def test_unknown_configurable_suggests_closest(tmp_path):
    bad = tmp_path / "typo.gin"
    bad.write_text("term.objective = @sinkhon()\n")
    with pytest.raises(MatchzooError) as info:
        config.parse([str(bad)])
    assert f"{bad}:1:" in str(info.value) and "@sinkhon()" in str(info.value)


def test_includes_resolve_relative_to_file_and_gin_root(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "fragment.gin").write_text("train.steps = 7\n")
    main = tmp_path / "main.gin"
    main.write_text("include 'sub/fragment.gin'\ninclude 'quickstart.gin'\ntrain.steps = 9\n")
    config.parse([str(main)])
    assert config.query("train.steps") == 9
    assert config.query("train.batch_size") == 256  # from gin/quickstart.gin via the gin/ root


def test_gin_param_overrides_and_bad_param_is_one_line():
    config.parse(["gin/quickstart.gin"], ["train.steps = 3"])
    assert config.query("train.steps") == 3
    with pytest.raises(MatchzooError, match="--gin_param"):
        config.parse(["gin/quickstart.gin"], ["train.steps = = 3"])


def test_missing_gin_file():
    with pytest.raises(MatchzooError, match="gin file not found"):
        config.parse(["does/not/exist.gin"])


@pytest.mark.parametrize(
    "content, expected",
    [
        ("train.lr = = 1\n", ":1: gin syntax error"),
        ("term.objective = @not_an_objective()\n", "No configurable matching"),
    ],
)
def test_cli_exit_code_2_without_traceback(tmp_path, content, expected):
    bad = tmp_path / "bad.gin"
    bad.write_text(content)
    result = cli("-m", "matchzoo.run", "--gin", str(bad))
    assert result.returncode == 2
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_list_prints_every_registry():
    result = cli("-m", "matchzoo", "list")
    assert result.returncode == 0
    for header in ("objectives", "spaces", "generators", "datasets"):
        assert f"{header} (" in result.stdout
    assert "  fd " in result.stdout and "  digits " in result.stdout
