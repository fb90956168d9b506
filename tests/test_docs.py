"""The README's set-up commands are what CI runs, and its code example works when pasted."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def setup_commands():
    text = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one_verbatim():
    commands = setup_commands()
    assert len(commands) == 2
    assert "python -m matchzoo.run --gin gin/quickstart.gin" in commands[0]
    assert "pytest" in commands[1]
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci_lines


def test_readme_extension_example_runs():
    text = (REPO / "README.md").read_text()
    example = re.search(r"<!-- example:add-loss -->\n```python\n(.*?)```", text, re.S).group(1)
    assert len(example.strip().splitlines()) <= 12
    namespace: dict = {}
    exec(compile(example, "README-example", "exec"), namespace)  # noqa: S102 - our own README
    import matchzoo

    assert "mean_gap_readme" in matchzoo.list_objectives()
