"""The FID Inception readouts beside pool3, on a random-weight network written to a local file: ``inception_sfid``
(ADM's sFID features: ``mixed_6/conv``'s first 7 channels, 17x17x7 NHWC = 2023-d; FD in it is sFID, checked against
SciPy; reading ADM batches' ``mu_s``/``sigma_s`` for it is in ``tests/test_stats_files.py``) and
``inception_logits`` (the Inception Score's 1008 logits, without the fc bias).

A random-init FID Inception shrinks activations layer by layer (pool3 values near 1e-10), which would let a wrong
readout pass any absolute tolerance; the fixture first sets every BatchNorm's running statistics from the batch it
sees (one forward), so every layer works at unit scale. That same forward, hooked, is the independent reference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

import matchzoo
from matchzoo.spaces.base import preprocess
from matchzoo.spaces.inception import INCEPTION_PREPROCESSING, build_fid_inception

N_IMAGES = 6


def images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    """A calibrated random FID Inception saved as a weights file, and its own outputs on ``images(2, 0)``:
    the unbiased logits and the ``Mixed_6d.branch1x1`` map (the TF graph's ``mixed_6/conv``)."""
    net = build_fid_inception(seed=11).eval()

    def calibrate(module, inputs):
        x = inputs[0]  # (N, C, H, W): this batch's statistics become the running ones used right now
        module.running_mean.copy_(x.mean((0, 2, 3)))
        module.running_var.copy_(x.var((0, 2, 3)))

    hooks = [m.register_forward_pre_hook(calibrate) for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    spatial = []
    hooks.append(net.Mixed_6d.branch1x1.register_forward_hook(lambda module, inputs, out: spatial.append(out)))
    with torch.no_grad():
        logits_with_bias = net(preprocess(images(2, 0), INCEPTION_PREPROCESSING))
        unbiased = logits_with_bias - net.fc.bias
        net.fc.bias.normal_(std=0.3)  # a visible bias in the file: the IS convention must leave it out
    for hook in hooks:
        hook.remove()
    path = tmp_path_factory.mktemp("fid_inception") / "pt_inception-random.pth"
    torch.save(net.state_dict(), path)
    return path, unbiased, spatial[0]


@pytest.fixture(scope="module")
def sfid_space(network):
    return matchzoo.make_feature_space("inception_sfid", weights=str(network[0]))


def test_sfid_features_are_the_first_7_channels_of_mixed_6_conv_in_nhwc_order(network, sfid_space):
    space, spatial = sfid_space, network[2]
    assert space.dim == type(space).catalog()["dim"] == 17 * 17 * 7 == 2023
    with torch.no_grad():
        features = space(images(2, 0))
    assert spatial.shape == (2, 192, 17, 17) and features.shape == (2, 2023)
    expected = spatial.movedim(1, -1)[..., :7].reshape(2, -1)  # ADM: mixed_6/conv:0[..., :7], NHWC, flattened
    assert expected.abs().max() > 0.1  # unit-scale activations: the comparison below can fail
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-5)


def test_fd_in_the_sfid_space_equals_scipy(sfid_space):
    with torch.no_grad():
        features = sfid_space(images(N_IMAGES, 1)).double()  # (6, 2023)
    real, generated = features[:3], features[3:]
    with pytest.warns(UserWarning, match="samples in D=2023"):  # n < D: matchzoo's exact n x m form, no D x D matrix
        fd = matchzoo.frechet_distance(generated, real)
    # SciPy, independently: Tr (S_r^1/2 S_g S_r^1/2)^1/2 = ||A_r A_g^T||_* / sqrt((n_r-1)(n_g-1)) for centred rows A
    a_r, a_g = (x.numpy() - x.numpy().mean(0) for x in (real, generated))
    trace_sqrt = scipy.linalg.svdvals(a_r @ a_g.T).sum() / np.sqrt(2 * 2)
    mean_gap = np.sum((real.numpy().mean(0) - generated.numpy().mean(0)) ** 2)
    expected = mean_gap + (a_r**2).sum() / 2 + (a_g**2).sum() / 2 - 2 * trace_sqrt
    assert fd > 1e-3 and fd == pytest.approx(expected, rel=1e-9)


def test_inception_logits_are_pool3_times_the_fc_weight_without_the_bias(network):
    path, unbiased, _ = network
    space = matchzoo.make_feature_space("inception_logits", weights=str(path))
    assert space.dim == 1008 and "no bias" in space.preprocessing.layer
    with torch.no_grad():
        logits = space(images(2, 0))
    assert unbiased.std(dim=0).mean() > 1e-3  # logits differ between images: the comparison can fail
    torch.testing.assert_close(logits, unbiased, rtol=1e-4, atol=1e-5)
