"""Probes: weighted objectives (uniform = unweighted, integer = duplicated samples, oracles), the resample and
top-N probes on constructed cases, and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
import torch

import matchzoo
from matchzoo import linalg
from matchzoo.errors import MatchzooError
from matchzoo.probes import resample, topn, weighted


def gaussian(n, d, shift=0.0, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64) * scale + shift)


def counts_and_duplicates(x, seed=1):
    counts = torch.randint(1, 4, (x.shape[0],), generator=torch.Generator().manual_seed(seed))
    return counts.to(torch.float64), x.repeat_interleave(counts, dim=0)


def scipy_fd(a: np.ndarray, b: np.ndarray) -> float:
    """Independent oracle: unbiased moments and scipy.linalg.sqrtm of the product."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


# ----------------------------------------------------------------------------- weighted forms


def test_weighted_moments_uniform_and_integer():
    x = gaussian(30, 5)
    mu, cov = weighted.weighted_mean_cov(x, torch.ones(30))
    ref_mu, ref_cov = linalg.mean_cov(x)
    assert torch.allclose(mu, ref_mu, atol=1e-12) and torch.allclose(cov, ref_cov, atol=1e-12)
    counts, dup = counts_and_duplicates(x)
    mu, cov = weighted.weighted_mean_cov(x, counts)
    ref_mu, ref_cov = linalg.mean_cov(dup)
    assert torch.allclose(mu, ref_mu, atol=1e-12) and torch.allclose(cov, ref_cov, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Fréchet distance from n=")  # n < D on purpose
@pytest.mark.parametrize("n", [40, 4])  # primal (N >= D) and dual (N < D) forms
def test_weighted_frechet_matches_scipy_and_duplicates(n):
    d = 6
    x, y = gaussian(n, d, shift=0.5, seed=2), gaussian(80, d, seed=3)
    mu_ref, cov_ref = linalg.mean_cov(y)
    value = weighted.weighted_frechet(x, torch.ones(n), mu_ref, cov_ref)
    if n > d:  # sqrtm of a rank-deficient product is unreliable; the oracle is only trusted at full rank
        assert float(value) == pytest.approx(scipy_fd(x.numpy(), y.numpy()), rel=1e-8)
    # the dual form's null eigenvalue (centring) is round-off; its square root costs ~sqrt(eps) absolute
    tolerance = 1e-9 if n > d else 1e-7
    assert float(value) == pytest.approx(linalg.frechet_distance(x, y), rel=tolerance)
    counts, dup = counts_and_duplicates(x)
    assert float(weighted.weighted_frechet(x, counts, mu_ref, cov_ref)) == pytest.approx(linalg.frechet_distance(dup, y), rel=tolerance)


def test_weighted_frechet_gradient_matches_finite_differences():
    x, y = gaussian(12, 3, shift=0.3, seed=4), gaussian(50, 3, seed=5)
    mu_ref, cov_ref = linalg.mean_cov(y)
    logits = torch.randn(12, dtype=torch.float64, generator=torch.Generator().manual_seed(6), requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: weighted.weighted_frechet(x, 12 * torch.softmax(z, 0), mu_ref, cov_ref), (logits,))


@pytest.mark.parametrize("flags", [dict(), dict(normalize_rows=True), dict(divide_by_n=False, center=False)])
@pytest.mark.parametrize("n", [30, 4])
def test_weighted_bures_equals_bures_objective(flags, n):
    from matchzoo.objectives.bures import bures_squared

    x, y = gaussian(n, 5, shift=0.4, seed=7), gaussian(40, 5, seed=8)
    objective = matchzoo.make_objective("bures", **flags)
    form = weighted.weighted_loss_for(objective, y)
    tolerance = 1e-9 if n > 5 else 1e-7  # centred n < D: a round-off null eigenvalue under the square root
    assert float(form(x, torch.ones(n))) == pytest.approx(float(objective(x, y).loss), rel=tolerance, abs=1e-12)
    counts, dup = counts_and_duplicates(x)
    assert float(form(x, counts)) == pytest.approx(float(bures_squared(dup, y, **flags)), rel=tolerance, abs=1e-12)


def test_weighted_sinkhorn_equals_objective_and_duplicates():
    x, y = gaussian(20, 3, shift=0.5, seed=9), gaussian(25, 3, seed=10)
    objective = matchzoo.make_objective("sinkhorn", blur=0.3)
    form = weighted.weighted_loss_for(objective, y)
    assert float(form(x, torch.ones(20))) == pytest.approx(float(objective(x, y).loss), rel=1e-6)
    counts, dup = counts_and_duplicates(x)
    assert float(form(x, counts)) == pytest.approx(float(objective(dup, y).loss), rel=1e-5)


def test_weighted_mmd_is_the_v_statistic():
    from geomloss import SamplesLoss

    x, y = gaussian(15, 4, shift=0.5, seed=11), gaussian(20, 4, seed=12)
    sigma = 1.3
    value = float(weighted.weighted_mmd(x, torch.ones(15), y, weighted.gaussian_gram([sigma])))
    a, b = x.numpy(), y.numpy()
    k = lambda u, v: np.exp(-((u[:, None] - v[None]) ** 2).sum(-1) / (2 * sigma**2))  # noqa: E731
    assert value == pytest.approx(k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean(), rel=1e-10)
    probs = torch.rand(15, dtype=torch.float64, generator=torch.Generator().manual_seed(13))
    geom = SamplesLoss("gaussian", blur=sigma, backend="tensorized")(probs / probs.sum(), x, torch.full((20,), 1 / 20, dtype=torch.float64), y)
    assert float(weighted.weighted_mmd(x, probs, y, weighted.gaussian_gram([sigma]))) == pytest.approx(2 * float(geom), rel=1e-9)
    counts, dup = counts_and_duplicates(x)
    dup_value = weighted.weighted_mmd(dup, torch.ones(dup.shape[0]), y, weighted.gaussian_gram([sigma]))
    assert float(weighted.weighted_mmd(x, counts, y, weighted.gaussian_gram([sigma]))) == pytest.approx(float(dup_value), rel=1e-10)


@pytest.mark.parametrize("name", matchzoo.list_objectives())
def test_every_registered_objective_has_a_weighted_form_or_a_clear_error(name):
    x, y = gaussian(20, 4, shift=0.5, seed=14).float(), gaussian(30, 4, seed=15).float()
    kwargs = {"population": "batch"} if name == "fd" else {}
    objective = matchzoo.make_objective(name, **kwargs)
    if name not in weighted.WEIGHTED_BUILDERS:
        with pytest.raises(MatchzooError, match=f"objective '{name}' has no weighted form"):
            weighted.weighted_loss_for(objective, y)
        return
    form = weighted.weighted_loss_for(objective, y)
    uniform = float(form(x, torch.ones(20)))
    shifted = float(form(3.0 * x + 1.0, torch.ones(20)))
    assert np.isfinite(uniform) and shifted > uniform  # spreading and shifting away costs more
    if name != "mmd":  # mmd's objective is the unbiased U-statistic; its weighted form is the V-statistic
        assert uniform == pytest.approx(float(objective(x, y).loss), rel=1e-5, abs=1e-7)


# ----------------------------------------------------------------------------- resample probe


def constructed_case(seed=0):
    """Attacked space: half the candidates match the reference, half are shifted. Other space: candidates'
    features are independent of the attacked ones and all equally off, so no reweighting can help there."""
    n, d = 200, 4
    good, bad = gaussian(n // 2, d, seed=seed), gaussian(n // 2, d, shift=2.5, seed=seed + 1)
    attacked = resample.SpaceFeatures(torch.cat([good, bad]), gaussian(400, d, seed=seed + 2), gaussian(100, d, seed=seed + 3))
    other = resample.SpaceFeatures(gaussian(n, d, shift=1.0, seed=seed + 4), gaussian(400, d, seed=seed + 5), gaussian(100, d, seed=seed + 6))
    return {"attacked": attacked, "other": other}


def test_resample_lowers_attacked_space_fd_only():
    features = constructed_case()
    objective = matchzoo.make_objective("fd", population="batch")
    form = weighted.weighted_loss_for(objective, features["attacked"].reference)
    result = resample.resample_probe(features, "attacked", form, sample_size=100, steps=150, lr=0.1, draws=4, seed=0)
    rows = {r.space: r for r in result.rows}
    assert result.attack_value_after < 0.2 * result.attack_value_before
    assert rows["attacked"].attacked and rows["attacked"].fd_after < 0.3 * rows["attacked"].fd_before
    assert result.probabilities[:100].sum() > 0.9  # the weights moved onto the matching half
    assert abs(rows["other"].change) < 0.25  # nothing to gain in the independent space
    assert result.fdr_k_after < result.fdr_k_before
    assert rows["attacked"].fdr_after == pytest.approx(rows["attacked"].fd_after / rows["attacked"].fd_heldout)
    text = resample.format_result(result, "title")
    assert "attacked (attacked)" in text and "FDr^k" in text
    record = resample.result_record(result)
    assert record["spaces"]["attacked"]["attacked"] is True and json.dumps(record)


def test_draw_sets_follow_the_probabilities():
    probs = torch.tensor([0.0, 0.25, 0.75], dtype=torch.float64)
    sets = resample.draw_sets(probs, 2000, 2, seed=0)
    assert sets.shape == (2, 2000) and not (sets == 0).any()
    assert (sets == 2).double().mean().item() == pytest.approx(0.75, abs=0.03)


def test_resample_checks_its_inputs():
    features = constructed_case()
    form = lambda x, w: (w * x.sum(1)).sum()  # noqa: E731
    with pytest.raises(MatchzooError, match="attacked space 'nope'"):
        resample.resample_probe(features, "nope", form, sample_size=10, steps=1)
    with pytest.raises(MatchzooError, match="sample_size 500 must be in"):
        resample.resample_probe(features, "attacked", form, sample_size=500, steps=1)


# ----------------------------------------------------------------------------- top-N probe


def test_topn_indicators_and_histogram_matching():
    probs = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.1, 0.3, 0.6]], dtype=torch.float64)
    assert topn.topn_indicators(probs, 1).tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 1]]
    assert topn.topn_indicators(probs, 2).tolist() == [[0, 1, 1], [1, 0, 1], [0, 1, 1]]
    with pytest.raises(MatchzooError, match="1 <= N <= 3"):
        topn.topn_indicators(probs, 4)
    # candidates: 80% class 0, reference: uniform over 2 classes -> weights must rebalance to 50/50
    g = torch.Generator().manual_seed(0)
    labels = (torch.rand(100, generator=g) < 0.2).long()
    indicators = torch.nn.functional.one_hot(labels, 2).double()
    loss = topn.histogram_loss(indicators, torch.tensor([0.5, 0.5]))
    probs_opt, first, last = resample.optimise_logits(lambda p: loss(indicators, 100 * p), 100, steps=200, lr=0.1)
    assert first > 0.1 and last < 1e-4
    assert float(probs_opt[labels == 1].sum()) == pytest.approx(0.5, abs=0.01)


def test_linear_probe_probabilities_separate_classes():
    a, b = gaussian(50, 3, seed=1), gaussian(50, 3, shift=4.0, seed=2)
    train = torch.cat([a, b]).float()
    labels = torch.cat([torch.zeros(50), torch.ones(50)]).long()
    (probs,) = topn.linear_probe_probabilities(train, labels, [torch.tensor([[0.0, 0, 0], [4.0, 4, 4]])])
    assert probs.shape == (2, 2) and probs[0, 0] > 0.9 and probs[1, 1] > 0.9


# ----------------------------------------------------------------------------- CLI


@pytest.fixture
def noisy_digits(tmp_path, monkeypatch):
    monkeypatch.setenv("MATCHZOO_CACHE_DIR", str(tmp_path / "cache"))
    images = matchzoo.make_dataset("digits").images.numpy()
    rng = np.random.default_rng(0)
    path = tmp_path / "noisy.npz"
    np.savez(path, images=np.clip(images[:300] + rng.normal(0, 0.5, images[:300].shape), -1, 1).astype(np.float32))
    return path


def test_cli_resample_prints_before_after_table(noisy_digits, tmp_path, capsys):
    from matchzoo.__main__ import main

    out_json = tmp_path / "r.json"
    code = main(["probe", "resample", "--candidates", str(noisy_digits), "--spaces", "pixels,random_conv",
                 "--attack", "random_conv", "--objective", "fd", "--objective_arg", "population='batch'",
                 "--steps", "15", "--draws", "2", "--sample_size", "150", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert code == 0
    assert "random_conv (attacked)" in out and "pixels" in out and "FDr^k" in out
    record = json.loads(out_json.read_text())[0]
    assert record["spaces"]["random_conv"]["fd_after"] < record["spaces"]["random_conv"]["fd_before"]


def test_cli_topn_with_linear_probe_and_errors(noisy_digits, capsys):
    from matchzoo.__main__ import main

    code = main(["probe", "topn", "--candidates", str(noisy_digits), "--spaces", "pixels", "--classifier", "pixels",
                 "--top_n", "1,2", "--steps", "10", "--draws", "1", "--sample_size", "100"])
    out = capsys.readouterr().out
    assert code == 0 and "top-1 class histogram" in out and "top-2 class histogram" in out
    assert main(["probe", "resample", "--candidates", str(noisy_digits), "--spaces", "pixels", "--attack", "random_conv"]) == 2
    assert "--attack 'random_conv' must be one of the --spaces" in capsys.readouterr().err
    assert main(["probe", "resample", "--candidates", "/nonexistent.npz", "--attack", "pixels", "--spaces", "pixels"]) == 2


def test_unchanged_weights_give_identical_before_and_after():
    features = constructed_case()
    result = resample.resample_probe(features, "attacked", lambda x, w: w.sum() * 0.0 + 1.0, sample_size=50, steps=3, draws=2)
    assert all(r.fd_after == r.fd_before for r in result.rows)
