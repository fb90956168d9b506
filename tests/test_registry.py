import gin
import pytest
import torch

import matchzoo
from matchzoo.errors import MatchzooError, UnknownNameError
from matchzoo.registry import Registry


def test_register_make_and_list():
    registry = Registry("widget", "test_widgets_a")

    @registry.register("plain_widget")
    class Widget:
        def __init__(self, size: int = 1):
            self.size = size

    assert registry.names() == ["plain_widget"]
    assert registry.make("plain_widget", size=3).size == 3
    assert Widget.registry_name == "plain_widget"


def test_registered_class_is_gin_configurable_under_its_name():
    registry = Registry("widget", "test_widgets_b")

    @registry.register("gin_widget")
    class Widget:
        def __init__(self, size: int = 1):
            self.size = size

    gin.clear_config()
    gin.parse_config("gin_widget.size = 7")
    try:
        assert Widget().size == 7
        assert registry.make("gin_widget", size=2).size == 2  # explicit kwargs win over bindings
    finally:
        gin.clear_config()


def test_duplicate_name_raises():
    registry = Registry("widget", "test_widgets_c")

    @registry.register("dup_widget")
    class First:
        pass

    with pytest.raises(ValueError, match="already registered"):

        @registry.register("dup_widget")
        class Second:
            pass


def test_unknown_name_lists_known_and_closest():
    with pytest.raises(UnknownNameError) as info:
        matchzoo.make_objective("fdd")
    message = str(info.value)
    assert "did you mean 'fd'" in message and "known:" in message
    assert isinstance(info.value, MatchzooError) and isinstance(info.value, KeyError)


def test_invalid_name_rejected():
    with pytest.raises(ValueError, match="identifier"):
        Registry("widget", "test_widgets_d").register("not-an-identifier")


def test_public_api_names():
    for name in [
        "register_objective",
        "register_feature_space",
        "register_generator",
        "register_dataset",
        "make_objective",
        "make_feature_space",
        "make_generator",
        "make_dataset",
        "list_objectives",
        "list_feature_spaces",
        "list_generators",
        "list_datasets",
        "frechet_distance",
        "frechet_distance_from_stats",
    ]:
        assert callable(getattr(matchzoo, name)), name
    assert "fd" in matchzoo.list_objectives()
    assert {"pixels", "random_conv"} <= set(matchzoo.list_feature_spaces())
    assert "mlp" in matchzoo.list_generators()
    assert {"digits", "image_folder", "npz"} <= set(matchzoo.list_datasets())


def test_user_objective_from_readme_pattern_is_usable():
    @matchzoo.register_objective("test_mean_gap")
    class MeanGap(matchzoo.Objective):
        def forward(self, fake, real):
            loss = (fake.mean(0) - real.mean(0)).square().sum()
            return matchzoo.LossOutput(loss, {"gap": float(loss.detach())})

    fake = torch.randn(8, 3, requires_grad=True)
    out = matchzoo.make_objective("test_mean_gap")(fake, torch.zeros(8, 3))
    out.loss.backward()
    assert fake.grad is not None and out.logs["gap"] >= 0
