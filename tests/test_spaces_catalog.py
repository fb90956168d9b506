"""`list --spaces`, the gin fragments in gin/spaces/, fingerprints and the offline spaces, driven by the registry."""

from pathlib import Path

import gin
import pytest
import torch

import matchzoo
from matchzoo.__main__ import main as cli_main
from matchzoo.config import parse
from matchzoo.metrics.summary import space_family

GIN_SPACES = Path(__file__).resolve().parents[1] / "gin" / "spaces"
OFFLINE = ["pixels", "random_conv", "digits_classifier", "digits_ssl"]


def test_list_spaces_shows_dim_preprocessing_layer_and_weights_for_every_space(capsys):
    assert cli_main(["list", "--spaces"]) == 0
    out = capsys.readouterr().out
    blocks, current = {}, None
    for line in out.splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            current = line.split()[0]
            blocks[current] = ""
        elif current is not None:
            blocks[current] += line + "\n"
    for name, cls in matchzoo.FEATURE_SPACES.items():
        block = blocks.get(name, "")
        assert block, f"{name} missing from list --spaces"
        entry = cls.catalog()
        assert f"dim {entry['dim']};" in block and "layer/token:" in block and "weights:" in block
        assert f"family (fdr_unseen): {space_family(name)}" in block
        assert entry["preprocessing"].resize in block and "mean=(" in block


def test_list_output_names_the_conventions_the_issue_asks_for(capsys):
    cli_main(["list", "--spaces"])
    out = capsys.readouterr().out
    assert "299px tf1_bilinear" in out and "pt_inception-2015-12-05-6726825d.pth" in out
    assert "CLS token after final LayerNorm" in out and "224px pil_bicubic" in out
    assert "shipped digits_ssl.pt (sha256-checked)" in out


@pytest.mark.parametrize("name", matchzoo.list_feature_spaces())
def test_every_space_has_a_gin_fragment_that_parses(name):
    fragment = GIN_SPACES / f"{name}.gin"
    assert fragment.is_file()
    try:
        parse([str(fragment)])
        assert gin.query_parameter(f"{name}.{fragment.read_text().split(f'{name}.')[1].split(' ')[0]}") is not None
    finally:
        gin.clear_config()


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_spaces_are_frozen_differentiable_and_match_their_catalog(name):
    space = matchzoo.make_feature_space(name)
    space.train()
    assert not space.training and not any(p.requires_grad for p in space.parameters())
    images = (torch.rand(3, 1, 8, 8) * 2 - 1).requires_grad_(True)
    features = space(images)
    assert features.shape == (3, space.dim) and space.dim == type(space).catalog()["dim"]
    (grad,) = torch.autograd.grad(features.square().sum(), images)
    assert grad.abs().sum() > 0


def test_fingerprint_follows_preprocessing_and_weights():
    assert (
        matchzoo.make_feature_space("pixels", size=8).fingerprint
        != matchzoo.make_feature_space("pixels", size=4).fingerprint
    )
    ssl, clf = matchzoo.make_feature_space("digits_ssl"), matchzoo.make_feature_space("digits_classifier")
    assert ssl.fingerprint != clf.fingerprint  # same architecture and preprocessing, different weights
    assert ssl.fingerprint == matchzoo.make_feature_space("digits_ssl").fingerprint


def test_shipped_spaces_represent_digits_differently():
    """The quickstart needs representations that disagree: the two encoders are not linear re-mappings."""
    dataset = matchzoo.make_dataset("digits")
    images = dataset.split("heldout").images
    with torch.no_grad():
        a = matchzoo.make_feature_space("digits_classifier")(images).double()
        b = matchzoo.make_feature_space("digits_ssl")(images).double()
    a, b = a - a.mean(0), b - b.mean(0)
    fit = torch.linalg.lstsq(b, a).solution  # best linear map from SSL to classifier features
    explained = 1 - (a - b @ fit).square().sum() / a.square().sum()
    assert explained < 0.99
