"""Gin fragments and offline experiments (optional per objective): what exists parses and reaches the constructors."""

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


FRAGMENTS = sorted((GIN / "objectives").glob("*.gin"))
# the one-objective files (gin/offline/<objective>.gin); conditional.gin and posttrain*.gin are recipes
OFFLINE = sorted(path for path in (GIN / "offline").glob("*.gin") if path.stem in OBJECTIVES.names())


@pytest.mark.parametrize("fragment", FRAGMENTS, ids=lambda path: path.stem)
def test_fragment_binds_every_constructor_default(fragment):
    """Fragments are optional; each one that exists names a registered objective and builds it."""
    assert fragment.stem in OBJECTIVES.names(), f"gin/objectives/{fragment.name} names no registered objective"
    config.parse([str(fragment)], [])
    objective = OBJECTIVES.make(fragment.stem)
    assert type(objective).registry_name == fragment.stem


def test_the_shipped_objectives_have_their_fragments_and_offline_experiments():
    shipped = {"fd", "sinkhorn", "sinkhorn_transport", "bures", "kernel_bures", "mmd", "sliced_wasserstein", "san"}
    assert shipped <= {path.stem for path in FRAGMENTS} and shipped <= {path.stem for path in OFFLINE}


@pytest.mark.parametrize("path", OFFLINE, ids=lambda path: path.stem)
def test_offline_experiment_uses_its_objective_on_digits(path):
    """What an offline experiment means, read from the parsed bindings (the base file plus its own lines)."""
    config.parse([str(path)], [])
    assert gin.query_parameter("term.objective").configurable.name == path.stem
    assert gin.query_parameter("train.dataset").configurable.name == "digits"
    assert gin.query_parameter("term.space").configurable.name == "digits_ssl"
    spaces = [space.configurable.name for space in gin.query_parameter("train.eval_spaces")]
    assert spaces == ["pixels", "random_conv", "digits_classifier", "digits_ssl"]
    assert gin.query_parameter("train.steps") == 1000 and gin.query_parameter("train.experiment") == "offline"


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
