"""The README's commands are what CI and users run: its set-up commands, its "Adding a loss" recipe and its
sweep examples run verbatim here (from the repository root, as a user would type them)."""

import re
import shlex
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
TINY = ["train.steps=2", "train.batch_size=8", "train.eval_spaces=[]", "train.progress=False"]


def setup_commands():
    block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def block_after(marker: str, language: str = "") -> str:
    return re.search(rf"<!-- {marker} -->\n```{language}\n(.*?)```", README, re.S).group(1)


def commands_in(block: str) -> list[list[str]]:
    """Shell commands of a README block (continuation lines joined, comments dropped) as argv lists."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [shlex.split(line) for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one_verbatim():
    commands = setup_commands()
    assert len(commands) == 2
    assert "python -m matchzoo.run --gin gin/quickstart.gin" in commands[0]
    assert "pytest" in commands[1]
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci_lines


@pytest.fixture
def from_repo_root(tmp_path, monkeypatch):
    """The repository root as working directory, with MLflow and caches in ``tmp_path``."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("MATCHZOO_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def finished_runs(tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    ids = [e.experiment_id for e in client.search_experiments()]
    return client, [r for r in client.search_runs(ids) if r.info.status == "FINISHED"]


def test_readme_add_a_loss_recipe_runs_from_the_repository_root(from_repo_root, capsys):
    """my_losses.py and my_experiment.gin in a folder outside the repository; the README's command, run
    from the repository root, imports the module next to the config and trains with the new objective."""
    import matchzoo
    from matchzoo.run import main

    folder = from_repo_root / "my_experiment"
    folder.mkdir()
    example = block_after("example:add-loss", "python")
    assert len(example.strip().splitlines()) <= 12
    (folder / "my_losses.py").write_text(example)
    (folder / "my_experiment.gin").write_text(block_after("example:add-loss-gin"))
    (command,) = commands_in(block_after("example:add-loss-run", "bash"))
    assert command[:3] == ["python", "-m", "matchzoo.run"]
    argv = [arg.replace("/path/to/", f"{folder}/") for arg in command[3:]]
    assert "my_losses" not in sys.modules  # the gin file's import must be what finds it

    tiny = [f"--gin_param={p}" for p in TINY + [f"train.run_dir='{from_repo_root / 'run'}'"]]
    assert main(argv + tiny) == 0, capsys.readouterr().err
    assert "never used" not in capsys.readouterr().err
    client, (run,) = finished_runs(from_repo_root)
    assert run.data.tags["objective"] == "mean_gap_readme,kernel_bures"
    operative = Path(client.download_artifacts(run.info.run_id, "operative_config.gin")).read_text()
    assert "ssl/term.objective = @mean_gap_readme()" in operative

    import torch

    out = matchzoo.make_objective("mean_gap_readme")(torch.randn(64, 8, requires_grad=True), torch.randn(64, 8))
    assert out.loss.requires_grad and out.logs["gap"] >= 0


def readme_sweeps() -> list[list[str]]:
    section = README[README.index("### Sweeps") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = commands_in(block)
    assert len(commands) == 3 and all(c[:4] == ["python", "-m", "matchzoo", "sweep"] for c in commands)
    return [c[4:] for c in commands]


@pytest.mark.parametrize("index", range(3))
def test_readme_sweep_examples_run_verbatim(index, from_repo_root, capsys):
    from matchzoo.__main__ import main

    argv = readme_sweeps()[index]
    code = main(["sweep", *argv, *([] if "--dry_run" in argv else ["--dry_run"])])
    out, err = capsys.readouterr()
    assert code == 0, err
    cells = re.findall(r"^  (\w{12})  ", out, re.M)
    assert cells and len(set(cells)) == len(cells) == int(re.search(r"(\d+) cells", out).group(1))
    assert not (from_repo_root / "mlflow.db").exists()  # a dry run creates no store


def test_readme_offline_sweep_really_runs(from_repo_root, tmp_path, monkeypatch, capsys):
    """The README's two-file sweep, run for real with tiny settings: every cell a distinct finished run."""
    from matchzoo.__main__ import main

    (tmp_path / "gin").symlink_to(REPO / "gin")  # the README's relative paths, with run folders in tmp
    monkeypatch.chdir(tmp_path)
    argv = [a for a in readme_sweeps()[2] if a != "--dry_run"]
    assert main(["sweep", *argv, *[f"--gin_param={p}" for p in TINY]]) == 0, capsys.readouterr().err
    _, runs = finished_runs(tmp_path)
    cells = {(r.data.tags["objective"], r.data.tags["train_space"]) for r in runs}
    assert cells == {(o, s) for o in ("fd", "sinkhorn") for s in ("pixels", "digits_classifier")}
