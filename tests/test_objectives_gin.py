"""Every objective has a gin fragment and an offline experiment; their bindings reach the constructors."""
from pathlib import Path

import gin
import pytest

import matchzoo.objectives  # noqa: F401  (registers every objective)
from matchzoo import config
from matchzoo.registry import OBJECTIVES

GIN = Path(__file__).resolve().parents[1] / "gin"
REAL_SPACE_FILES = ["fd_inception", "sinkhorn_dino", "bures_clip", "kernel_bures_dino", "san_dino", "fd_sim"]


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_fragment_binds_every_constructor_default(name):
    fragment = GIN / "objectives" / f"{name}.gin"
    assert fragment.is_file(), f"missing gin fragment for objective {name}"
    config.parse([str(fragment)], [])
    objective = OBJECTIVES.make(name)
    assert type(objective).registry_name == name


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_offline_experiment_uses_its_objective_on_digits(name):
    path = GIN / "offline" / f"{name}.gin"
    assert path.is_file(), f"missing offline experiment for objective {name}"
    config.parse([str(path)], [])
    text = path.read_text()
    assert f"term.objective = @{name}()" in text and "train.dataset = @digits()" in text


def test_fragment_values_reach_the_objective():
    config.parse([str(GIN / "objectives" / "fd.gin")], ["fd.population_size = 1234", "fd.population = 'queue'"])
    objective = OBJECTIVES.make("fd")
    assert objective.population.size == 1234
    gin.clear_config()
    config.parse([str(GIN / "objectives" / "bures.gin")], ["bures.preset = 'bures_gan'"])
    assert OBJECTIVES.make("bures").normalize_rows is True


@pytest.mark.parametrize("stem", REAL_SPACE_FILES)
def test_real_space_experiments_parse(stem):
    config.parse([str(GIN / f"{stem}.gin")], [])
