"""Overrides that change nothing are refused, gin files import modules next to them, broken gin files are
one line, and users run the objective contract on their own losses (issue 11, items 4-6)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import gin
import pytest

from matchzoo import config, sweep
from matchzoo.errors import MatchzooError
from matchzoo.registry import RegistrationError, Registry

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = str(REPO / "gin" / "quickstart.gin")


@pytest.fixture(autouse=True)
def clean_gin():
    yield
    gin.clear_config()


# ----------------------------------------------------------------------------- shadowed overrides


def test_shadowed_gin_param_is_one_line_exit_2_before_anything_is_built(capsys):
    from matchzoo.run import main

    assert main(["--gin", QUICKSTART, "--gin_param", "term.objective=@sinkhorn()"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        "matchzoo: error: --gin_param 'term.objective=@sinkhorn()' changes nothing: it is shadowed by "
        "ssl/term.objective, px/term.objective (set those instead, e.g. --gin_param "
        "'ssl/term.objective=@sinkhorn()')"
    )


@pytest.mark.parametrize(
    "params, phrase",
    [
        (["term.space=@pixels()"], "shadowed by ssl/term.space, px/term.space"),
        (["nope/term.objective=@fd()"], "term is only called in scopes ssl, px here"),
    ],
)
def test_other_dead_overrides_are_refused(params, phrase):
    with pytest.raises(MatchzooError, match=phrase):
        config.parse([QUICKSTART], params)


@pytest.mark.parametrize(
    "params",
    [
        ["ssl/term.objective=@sinkhorn()"],
        ["train.terms=[@term()]", "term.objective=@sinkhorn()", "term.space=@pixels()"],  # now an unscoped call
        ["kernel_bures.kernel='linear'", "train.steps=3"],
    ],
)
def test_overrides_that_take_effect_are_accepted(params):
    config.parse([QUICKSTART], params)


@gin.configurable("trust_leaf", module="trust_test")
def leaf(x=0, y=0):
    return gin.current_scope_str(), x, y


@gin.configurable("trust_node", module="trust_test")
def node(children=()):
    return list(children)


@gin.configurable("trust_root", module="trust_test")
def root(nodes=()):
    return list(nodes)


TOY = """
trust_root.nodes = [@a/trust_node(), @trust_node(), @trust_leaf()]
a/trust_node.children = [@trust_leaf(), @b/trust_leaf()]
trust_node.children = [@trust_leaf()]
trust_leaf.x = 1
trust_leaf.y = 1
a/trust_leaf.x = 2
b/trust_leaf.x = 3
b/trust_leaf.y = 3
c/trust_leaf.x = 4
"""


def test_predicted_call_scopes_match_what_gin_really_calls():
    gin.clear_config()
    gin.parse_config(TOY)
    predicted = config.call_scopes()["trust_test.trust_leaf"]
    root()
    called = {
        config._scope(scope) for scope, selector in gin.config._OPERATIVE_CONFIG if selector == "trust_test.trust_leaf"
    }
    assert predicted == called == {(), ("a",), ("b",)}


def test_unused_bindings_reports_shadowed_ones_and_names_what_shadows_them():
    gin.clear_config()
    gin.parse_config(TOY)
    root()
    # trust_leaf.x is used by the unscoped calls; c/ is never called; b/ shadows y everywhere it is called in b
    assert config.unused_bindings() == ["c/trust_leaf.x"]
    gin.clear_config()
    gin.parse_config(
        TOY.replace(
            "trust_root.nodes = [@a/trust_node(), @trust_node(), @trust_leaf()]",
            "trust_root.nodes = [@a/trust_node(), @b/trust_leaf()]",
        )
    )
    root()
    assert config.unused_bindings() == [
        "c/trust_leaf.x",
        "trust_leaf.x (shadowed by a/trust_leaf.x, b/trust_leaf.x)",
        "trust_node.children (shadowed by a/trust_node.children)",
    ]


# ----------------------------------------------------------------------------- sweeps


def never_runs(*_):
    raise AssertionError("no cell may run when the grid is refused")


@pytest.mark.parametrize(
    "grid, phrase",
    [
        (
            "term.objective=[@fd(), @sinkhorn()]",
            "with quickstart.gin changes nothing: it is shadowed by ssl/term.objective",
        ),
        ("ssl/term.objective=[@fd(), @mmd(), @fd()]", r"@fd\(\) appears more than once"),
    ],
)
def test_sweep_refuses_no_op_axes_before_any_cell_runs(grid, phrase, tmp_path):
    spec = sweep.build_spec([QUICKSTART], [grid], [], "refused", None)
    with pytest.raises(MatchzooError, match=phrase) as error:
        sweep.run_sweep(spec, runner=never_runs, client=object(), log=lambda _: None)
    assert "\n" not in str(error.value)


def test_sweep_refuses_a_shadowed_fixed_binding_and_names_the_sweep_file(tmp_path):
    sweep_file = tmp_path / "s.gin"
    sweep_file.write_text(
        f"sweep.experiments = [{QUICKSTART!r}]\n"
        "sweep.gin_params = ['term.space = @pixels()']\n"
        "sweep.grid = {'ssl/term.objective': [@fd(), @mmd()]}\n"
    )
    spec = sweep.build_spec([str(sweep_file)], [], [], "refused", None)
    with pytest.raises(
        MatchzooError,
        match=r"sweep.gin_params entry 'term.space = @pixels\(\)' of .*s.gin with "
        r"quickstart.gin changes nothing",
    ):
        sweep.run_sweep(spec, runner=never_runs, client=object(), log=lambda _: None)


def test_experiment_files_with_include_and_import_are_experiments_not_sweep_files(tmp_path):
    (tmp_path / "trust_exp_mod.py").write_text("LOADED = True\n")
    experiment = tmp_path / "exp.gin"
    experiment.write_text("import trust_exp_mod\ninclude 'quickstart.gin'\ntrain.steps = 3\n")
    spec = sweep.build_spec([str(experiment)], ["ssl/term.objective=[@fd(), @mmd()]"], [], None, None)
    assert spec.experiments == [str(experiment.resolve())]
    sweep.refuse_no_op_cells(spec, sweep.expand(spec))


# ----------------------------------------------------------------------------- imports next to the gin file


def test_gin_import_finds_the_module_next_to_the_file_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "trust_next_to.py").write_text("import gin\nVALUE = 41\n")
    (folder / "exp.gin").write_text("import trust_next_to\ninclude 'quickstart.gin'\n")
    path_before = list(sys.path)
    config.parse([str(folder / "exp.gin")])
    assert sys.modules["trust_next_to"].VALUE == 41
    assert sys.path == path_before  # the folder is on sys.path only while the imports run


def test_failing_gin_import_is_one_line_with_file_and_line(tmp_path, capsys):
    from matchzoo.run import main

    bad = tmp_path / "exp.gin"
    bad.write_text("train.steps = 3\nimport trust_no_such_module\n")
    assert main(["--gin", str(bad)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        f"matchzoo: error: {bad}:2: cannot import 'trust_no_such_module': ModuleNotFoundError: "
        f"No module named 'trust_no_such_module' (looked next to {bad} and on sys.path)"
    )


def test_module_registering_a_taken_name_is_one_line(tmp_path):
    (tmp_path / "trust_taken.py").write_text(
        "import matchzoo\n@matchzoo.register_objective('fd')\nclass Again(matchzoo.Objective):\n    pass\n"
    )
    (tmp_path / "exp.gin").write_text("import trust_taken\n")
    with pytest.raises(
        MatchzooError, match=r"exp.gin:1: importing 'trust_taken': objective 'fd' is already registered"
    ):
        config.parse([str(tmp_path / "exp.gin")])
    assert issubclass(RegistrationError, ValueError)
    with pytest.raises(RegistrationError):
        Registry("widget", "trust_widgets").register("not-an-identifier")


# ----------------------------------------------------------------------------- broken gin files


def test_include_cycle_is_one_line_naming_the_cycle(tmp_path, capsys):
    from matchzoo.run import main

    (tmp_path / "a.gin").write_text("include 'b.gin'\ntrain.steps = 1\n")
    (tmp_path / "b.gin").write_text("include 'a.gin'\n")
    assert main(["--gin", str(tmp_path / "a.gin")]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"matchzoo: error: include cycle: {tmp_path}/a.gin -> {tmp_path}/b.gin -> {tmp_path}/a.gin; "
        "remove one of these includes\n"
    )


def test_non_utf8_gin_file_is_one_line_with_the_byte_offset(tmp_path, capsys):
    from matchzoo.__main__ import main as cli
    from matchzoo.run import main

    bad = tmp_path / "latin1.gin"
    bad.write_bytes("# café\ntrain.steps = 3\n".encode("latin-1"))
    including = tmp_path / "main.gin"
    including.write_text("include 'latin1.gin'\n")
    expected = f"matchzoo: error: {bad}: not UTF-8 text (byte 0xe9 at byte offset 5); save the file as UTF-8\n"
    assert main(["--gin", str(including)]) == 2
    assert capsys.readouterr().err == expected
    assert cli(["sweep", "--gin", str(bad), "--dry_run"]) == 2
    assert capsys.readouterr().err == expected


# ----------------------------------------------------------------------------- the contract plugin


def test_contract_plugin_passes_a_good_user_objective_and_fails_a_broken_one(tmp_path):
    (tmp_path / "trust_user_losses.py").write_text(
        textwrap.dedent('''
        import matchzoo

        @matchzoo.register_objective("trust_good_gap")
        class GoodGap(matchzoo.Objective):
            def forward(self, fake, real):
                loss = (fake.mean(0) - real.mean(0)).square().sum()
                return matchzoo.LossOutput(loss, {})

        @matchzoo.register_objective("trust_first_sample")
        class FirstSample(matchzoo.Objective):
            """Broken: looks at the first generated sample only, so the order of the batch matters."""
            def forward(self, fake, real):
                return matchzoo.LossOutput((fake[0] - real.mean(0)).square().sum(), {})
        ''')
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "matchzoo.testing",
            "--matchzoo-import",
            "trust_user_losses",
            "--matchzoo-only",
            "trust_good_gap",
            "--matchzoo-only",
            "trust_first_sample",
            "-q",
            "-rA",
            "-p",
            "no:cacheprovider",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = result.stdout.splitlines()
    passed = [line for line in lines if line.startswith("PASSED")]
    failed = [line for line in lines if line.startswith("FAILED")]
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        len([line for line in passed if "trust_good_gap" in line]) == 9
    )  # 4 dtype x shape + 2 shapes + 2 shifts + 1 state dict
    assert failed and all("trust_first_sample" in line for line in failed)
    assert any("test_objective_permutation_invariant" in line for line in failed)
    assert "reordering the samples changed the loss" in result.stdout


def _needs_no_download(name: str) -> bool:
    import matchzoo

    return not hasattr(matchzoo.FEATURE_SPACES.get(name), "weights_location")


@pytest.mark.parametrize("name", [n for n in __import__("matchzoo").list_feature_spaces() if _needs_no_download(n)])
def test_every_offline_space_keeps_the_contract_the_plugin_checks(name):
    """Spaces with pretrained weights are checked at random init by tests/test_spaces_pretrained.py (frozen,
    differentiable, their dim; ~50 s here for the large ViTs), and with weight files the tests write; the
    plugin itself skips a space whose weights are missing."""
    from matchzoo import testing as contract

    contract.check_space_contract(contract.make_space_or_skip(name))
    contract.check_space_fingerprint_is_stable(name)
