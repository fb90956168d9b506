r"""Weighted forms of the matching objectives: the distance from a *weighted* candidate set to a reference.

Weights are **frequency weights** ``w`` ``(N,)``: ``w_i`` is the (possibly fractional) number of copies of
candidate ``i``, so integer weights give exactly the value of the set with every sample duplicated
``w_i`` times, and all-ones weights give the plain unweighted value. With ``p = w / n`` and ``n = Σ w``:

* weighted moments (the paper's Algorithm 1, with the unbiased n/(n-1) factor)

  .. math:: \mu_w = \sum_i p_i x_i, \qquad
            \Sigma_w = \tfrac{n}{n-1}\sum_i p_i (x_i-\mu_w)(x_i-\mu_w)^\top

* **FD**: :math:`\|\mu_w-\mu_r\|^2 + \operatorname{Tr}\Sigma_w + \operatorname{Tr}\Sigma_r
  - 2\operatorname{Tr}(\Sigma_r^{1/2}\Sigma_w\Sigma_r^{1/2})^{1/2}`; when ``N < D`` the trace uses the
  ``N x N`` dual matrix :math:`Y \Sigma_r Y^\top` with rows :math:`y_i=\sqrt{\tfrac{n}{n-1}p_i}\,(x_i-\mu_w)`.
* **Bures** (the ``bures`` objective's convention, covariance :math:`X^\top X/n` of optionally
  row-normalised, centred rows): :math:`\Sigma_w=\sum_i p_i \tilde x_i\tilde x_i^\top` (times ``n`` when
  ``divide_by_n=False``), then :math:`\operatorname{Tr}\Sigma_w+\operatorname{Tr}\Sigma_r-2\operatorname{Tr}(\cdot)^{1/2}`.
* **Sinkhorn divergence**: geomloss ``SamplesLoss("sinkhorn", p=2)`` with the measure
  :math:`\sum_i p_i\delta_{x_i}` against the uniform reference (tensorized backend; cost
  :math:`\tfrac12\|x-y\|^2`, :math:`\varepsilon=\text{blur}^2`; both sides divided by the ``sinkhorn``
  objective's reference scale when it standardises).
* **MMD²** (V-statistic): :math:`p^\top K_{xx}p - 2p^\top K_{xy}q + q^\top K_{yy}q` with ``q`` uniform and
  the ``mmd`` objective's own kernel (its ``gram`` and median-relative bandwidths).

The other registered objectives have their forms in their own modules (formulas there):

* **kernel Bures²** (:mod:`~matchzoo.probes.weighted_kernel`): the weighted kernel covariance operator,
  :math:`\sum_i s_i(H_pK_{ff}H_p^\top)_{ii} + t\operatorname{Tr}\tilde K_{rr} - 2\|\operatorname{diag}(\sqrt s)H_pK_{fr}H_q^\top\sqrt t\|_*`;
* **sliced W₂²** (:mod:`~matchzoo.probes.weighted_sliced`): per direction, 1-D OT between the weighted and the
  uniform quantile functions, the weights entering through the cumulative-weight breakpoints; one fixed draw
  of the objective's ``num_projections`` directions;
* **sinkhorn_transport** (:mod:`~matchzoo.probes.weighted_transport`): the debiased entropic OT divergence
  (cost :math:`\|x-y\|^2`, no self-transport) whose feature gradient is the objective's displacement;
* **adversarial** objectives, ``san`` and max-sliced ``sliced_wasserstein``
  (:mod:`~matchzoo.probes.weighted_adversarial`): the weighted generator loss against the objective's own
  critic, which keeps training on the weighted measure between weight updates.

Where ``w = 1`` cannot give the objective's own value: ``mmd`` (the objective is the unbiased U-statistic,
which is not a function of the measure and so has no weighted form that agrees with duplicated samples; the
form is the V-statistic); ``sinkhorn_transport`` (its value is a constant-scale surrogate; the form
reproduces its gradient, ``D`` times); ``sliced_wasserstein`` with random directions agrees when the objective
is evaluated along the same directions (it draws fresh ones on every call); the adversarial forms agree for
the critic of that moment. Everywhere else (FD with ``population='batch'``, Bures, kernel Bures, Sinkhorn)
uniform weights give the objective's value, and every form gives the duplicated set's value at integer
weights.

An objective supports the resample probe when its registry name is in :data:`WEIGHTED_BUILDERS` or when
its class defines ``weighted_loss(candidates, weights, reference) -> scalar tensor`` itself.
"""
from __future__ import annotations

import math

from typing import Callable, Sequence

import torch

from matchzoo import linalg
from matchzoo.errors import MatchzooError

WeightedLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (candidates (N, D), weights (N,)) -> scalar


def _probabilities(weights: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(p, n)``: weights normalised to sum 1 (float64) and their total ``n = Σ w``."""
    if weights.ndim != 1 or weights.shape[0] != count:
        raise ValueError(f"need one weight per sample: weights {tuple(weights.shape)} for {count} samples")
    w = weights.to(torch.float64)
    total = w.sum()
    return w / total, total


def weighted_mean_cov(x: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Frequency-weighted mean ``(D,)`` and unbiased covariance ``(D, D)`` of ``x`` ``(N, D)``, float64."""
    p, n = _probabilities(weights, x.shape[0])
    x = x.to(torch.float64)
    mu = p @ x  # (D,)
    centered = x - mu  # (N, D)
    cov = (centered * p[:, None]).T @ centered * (n / (n - 1))  # (D, D)
    return mu, cov


def weighted_frechet(
    x: torch.Tensor, weights: torch.Tensor, mu_ref: torch.Tensor, cov_ref: torch.Tensor,
    sqrt_cov_ref: torch.Tensor | None = None,
) -> torch.Tensor:
    """FD of the weighted set to N(mu_ref, cov_ref); float64 scalar."""
    p, n = _probabilities(weights, x.shape[0])
    x = x.to(torch.float64)
    mu = p @ x  # (D,)
    centered = x - mu  # (N, D)
    if x.shape[0] < x.shape[1]:
        rows = centered * (p * n / (n - 1)).sqrt()[:, None]  # (N, D): Σ_w = rowsᵀ rows
        trace_term = linalg.trace_sqrt_psd(rows @ cov_ref @ rows.T)
        trace_cov = rows.square().sum()
    else:
        cov = (centered * p[:, None]).T @ centered * (n / (n - 1))  # (D, D)
        root = sqrt_cov_ref if sqrt_cov_ref is not None else linalg.psd_sqrt(cov_ref)
        trace_term = linalg.trace_sqrt_product(cov, root)
        trace_cov = cov.trace()
    return (mu - mu_ref).square().sum() + trace_cov + cov_ref.trace() - 2.0 * trace_term


def weighted_bures(
    x: torch.Tensor, weights: torch.Tensor, reference: torch.Tensor,
    center: bool = True, normalize_rows: bool = False, divide_by_n: bool = True,
) -> torch.Tensor:
    """Covariance-form Bures² (the ``bures`` objective's convention: covariance ``XᵀX/n``) of the weighted set."""
    from matchzoo.objectives.bures import nuclear_norm, prepare_rows

    p, n = _probabilities(weights, x.shape[0])
    x = x.to(torch.float64)
    if normalize_rows:
        x = x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    if center:
        x = x - p @ x
    y = prepare_rows(reference.detach(), center, normalize_rows)  # (M, D)
    scale = p if divide_by_n else p * n  # Σ_w = Σ_i scale_i x_i x_iᵀ
    cov_ref = y.T @ y / (y.shape[0] if divide_by_n else 1)  # (D, D)
    rows = x * scale.sqrt()[:, None]  # (N, D)
    if x.shape[0] < x.shape[1]:  # Tr (R C Rᵀ)^{1/2} = ‖R yᵀ‖_* / √m, exact (no round-off null eigenvalues)
        trace_term = nuclear_norm(rows @ y.T) / math.sqrt(y.shape[0] if divide_by_n else 1)
    else:
        trace_term = linalg.trace_sqrt_product(rows.T @ rows, linalg.psd_sqrt(cov_ref))
    return rows.square().sum() + cov_ref.trace() - 2.0 * trace_term


def weighted_sinkhorn(
    x: torch.Tensor, weights: torch.Tensor, reference: torch.Tensor,
    blur: float = 0.5, scaling: float = 0.995, diameter: float | None = None, scale: float = 1.0,
) -> torch.Tensor:
    """geomloss Sinkhorn divergence (p=2) between Σ p_i δ_{x_i/scale} and the uniform measure on ``reference/scale``."""
    from geomloss import SamplesLoss

    probs, _ = _probabilities(weights, x.shape[0])
    dtype = x.dtype
    uniform = torch.full((reference.shape[0],), 1.0 / reference.shape[0], dtype=dtype, device=x.device)
    loss = SamplesLoss("sinkhorn", p=2, blur=blur, scaling=scaling, diameter=diameter, debias=True, backend="tensorized")
    grad_mode = torch.is_grad_enabled()  # geomloss 0.3.1 can flip the global grad mode
    try:
        return loss(probs.to(dtype), x / scale, uniform, reference.detach().to(dtype) / scale)
    finally:
        torch.set_grad_enabled(grad_mode)


Gram = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (a (Na, D), b (Nb, D)) -> (Na, Nb)


def gaussian_gram(bandwidths: Sequence[float]) -> Gram:
    """Sum of Gaussian kernels exp(-‖a-b‖²/2σ²) over ``bandwidths``."""

    def gram(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        sq = (a.square().sum(1)[:, None] + b.square().sum(1)[None, :] - 2.0 * a @ b.T).clamp_min(0.0)
        return sum(torch.exp(-sq / (2.0 * s * s)) for s in bandwidths)

    return gram


def weighted_mmd(x: torch.Tensor, weights: torch.Tensor, reference: torch.Tensor, gram: Gram) -> torch.Tensor:
    """Squared MMD (V-statistic) between Σ p_i δ_{x_i} and the uniform measure on ``reference``; float64.

    The V-statistic, not the unbiased U-statistic of the ``mmd`` objective: only the V-statistic is a
    function of the measure, so only it gives the duplicated-sample value at integer weights.
    """
    probs, _ = _probabilities(weights, x.shape[0])
    x, y = x.to(torch.float64), reference.detach().to(torch.float64)
    q = torch.full((y.shape[0],), 1.0 / y.shape[0], dtype=torch.float64, device=y.device)
    return probs @ gram(x, x) @ probs - 2.0 * probs @ gram(x, y) @ q + q @ gram(y, y) @ q


# ----------------------------------------------------------------------------- objective -> weighted loss


def _frechet_builder(objective, reference: torch.Tensor) -> WeightedLoss:
    mu_ref, cov_ref = linalg.mean_cov(reference.detach())
    sqrt_ref = linalg.psd_sqrt(cov_ref)
    return lambda x, w: weighted_frechet(x, w, mu_ref, cov_ref, sqrt_ref)


def _bures_builder(objective, reference: torch.Tensor) -> WeightedLoss:
    flags = dict(center=objective.center, normalize_rows=objective.normalize_rows, divide_by_n=objective.divide_by_n)
    return lambda x, w: weighted_bures(x, w, reference, **flags)


def _sinkhorn_builder(objective, reference: torch.Tensor) -> WeightedLoss:
    from matchzoo.objectives.sinkhorn import feature_scale

    scale = float(feature_scale(reference)) if objective.standardize else 1.0
    settings = dict(blur=objective.blur, scaling=objective.scaling, diameter=objective.diameter, scale=scale)
    return lambda x, w: weighted_sinkhorn(x, w, reference, **settings)


def _mmd_builder(objective, reference: torch.Tensor) -> WeightedLoss:
    from matchzoo.objectives.bures import median_bandwidth

    sigmas = objective.bandwidths
    if objective.kernel == "gaussian" and not objective.absolute_bandwidths:
        base = median_bandwidth(reference.detach().to(torch.float64))  # as the objective does on its real side
        sigmas = tuple(b * base for b in objective.bandwidths)
    return lambda x, w: weighted_mmd(x, w, reference, lambda a, b: objective.gram(a, b, sigmas))


def _builders() -> dict[str, Callable]:
    from matchzoo.probes.weighted_adversarial import san_builder
    from matchzoo.probes.weighted_kernel import kernel_bures_builder
    from matchzoo.probes.weighted_sliced import sliced_builder
    from matchzoo.probes.weighted_transport import transport_builder

    return {
        "fd": _frechet_builder,
        "bures": _bures_builder,
        "sinkhorn": _sinkhorn_builder,
        "mmd": _mmd_builder,
        "kernel_bures": kernel_bures_builder,
        "sliced_wasserstein": sliced_builder,
        "sinkhorn_transport": transport_builder,
        "san": san_builder,
    }


WEIGHTED_BUILDERS: dict[str, Callable] = _builders()


def weighted_loss_for(objective, reference: torch.Tensor) -> WeightedLoss:
    """The weighted form of a registered objective against ``reference`` ``(M, D)``: ``(x, w) -> scalar``."""
    own = getattr(objective, "weighted_loss", None)
    if callable(own):
        return lambda x, w: own(x, w, reference.detach())
    name = getattr(type(objective), "registry_name", type(objective).__name__)
    if name not in WEIGHTED_BUILDERS:
        raise MatchzooError(
            f"objective {name!r} has no weighted form for the resample probe; supported: "
            f"{', '.join(sorted(WEIGHTED_BUILDERS))} (or define weighted_loss(candidates, weights, reference) on the class)"
        )
    return WEIGHTED_BUILDERS[name](objective, reference)
