"""The bad-input catalogue (README): each mistake gives one line on stderr, exit status 2, nothing deleted."""

from pathlib import Path

import pytest
import torch

from matchzoo.run import main

REPO = Path(__file__).resolve().parent.parent
QUICK = str(REPO / "gin" / "quickstart.gin")
FAST = [
    "--gin_param",
    "train.steps = 2",
    "--gin_param",
    "train.progress = False",
    "--gin_param",
    "train.batch_size = 8",
    "--gin_param",
    "train.eval_spaces = []",
]


def run(capsys, *args):
    code = main(["--gin", QUICK, *FAST, *args])
    err = capsys.readouterr().err.strip().splitlines()
    return code, [line for line in err if line.startswith("matchzoo: error")]


@pytest.mark.parametrize(
    "binding, expected",
    [
        ("term.objective = @sinkhornn()", "No configurable matching reference '@sinkhornn()'"),
        ("term.space = @dino()", "No configurable matching reference '@dino()'"),
        ("train.dataset = @digitz()", "No configurable matching reference '@digitz()'"),
        ("train.batch_size = 1", "batch_size must be at least 2"),
        ("train.dataset = @npz()", "npz file not found"),
        ("mlp.image_shape = (3, 8, 8)", "returned shape"),
    ],
)
def test_config_mistakes(isolated_runs, capsys, binding, expected):
    code, errors = run(capsys, "--gin_param", binding)
    assert code == 2 and len(errors) == 1 and expected in errors[0], errors


def test_generator_out_of_range(isolated_runs, capsys):
    import matchzoo
    from matchzoo.generators import Generator

    if "test_unbounded" not in matchzoo.list_generators():

        @matchzoo.register_generator("test_unbounded")
        class Unbounded(Generator):
            def __init__(self):
                super().__init__()
                self.noise_dim, self.image_shape = 4, (1, 8, 8)
                self.linear = torch.nn.Linear(4, 64)

            def forward(self, noise):
                return 5 * self.linear(noise).view(-1, 1, 8, 8)

    code, errors = run(capsys, "--gin_param", "train.generator = @test_unbounded")
    assert code == 2 and "must lie in [-1, 1]" in errors[0]


def test_corrupt_checkpoint_is_reported_and_kept(isolated_runs, capsys):
    run_dir = isolated_runs / "runs" / "broken"
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoint.pt").write_bytes(b"not a checkpoint")
    code, errors = run(capsys, "--resume", str(run_dir))
    assert code == 2 and "corrupt or unreadable" in errors[0]
    assert (run_dir / "checkpoint.pt").read_bytes() == b"not a checkpoint"


def test_resume_without_checkpoint(isolated_runs, capsys):
    code, errors = run(capsys, "--resume", str(isolated_runs / "nothing-here"))
    assert code == 2 and "no checkpoint.pt there" in errors[0]


def test_unwritable_runs_folder(isolated_runs, capsys):
    (isolated_runs / "runs").write_text("a file where the runs folder should be")  # unwritable even for root
    code, errors = run(capsys)
    assert code == 2 and "cannot create the MLflow store folder" in errors[0]
    assert (isolated_runs / "runs").read_text() == "a file where the runs folder should be"


def test_unusable_tracking_store(isolated_runs, capsys, monkeypatch):
    (isolated_runs / "not-a-db").write_text("plain text, not sqlite")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{isolated_runs / 'not-a-db'}")
    code, errors = run(capsys)
    assert code == 2 and "MLflow store" in errors[0]
    assert (isolated_runs / "not-a-db").read_text() == "plain text, not sqlite"


def test_full_disk_on_checkpoint_keeps_previous(tmp_path, monkeypatch):
    from matchzoo.errors import MatchzooError
    from matchzoo.train import checkpoint

    path = tmp_path / "checkpoint.pt"
    checkpoint.save_atomic({"step": 1}, path)

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(MatchzooError, match="No space left on device.*previous checkpoint is kept"):
        checkpoint.save_atomic({"step": 2}, path)
    monkeypatch.undo()
    assert checkpoint.load(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp file left behind


def test_feature_dimension_mismatch_between_fake_and_real():
    import matchzoo
    from matchzoo.errors import MatchzooError

    for name in [n for n in matchzoo.list_objectives() if not n.startswith(("test_", "mean_gap"))]:
        objective = matchzoo.make_objective(name)
        with pytest.raises(MatchzooError, match="dimension"):
            objective(torch.randn(8, 5, requires_grad=True), torch.randn(8, 6))
