r"""``fd``: FD-loss -- the Fréchet distance of a large generated *population* to the real statistics.

.. math:: \mathrm{FD} = \|\mu-\mu_r\|^2 + \operatorname{Tr}\Sigma + \operatorname{Tr}\Sigma_r
          - 2\operatorname{Tr}(\Sigma_r^{1/2}\Sigma\Sigma_r^{1/2})^{1/2}

Reference side: float64 mean/covariance (unbiased) of *all* real training features, given once by
:meth:`prepare_reference`, with :math:`\Sigma_r^{1/2}` computed once -- or read from a statistics file,
``fd.reference_stats = 'path.npz'`` (a ``matchzoo stats --export`` file, a pytorch-fid / clean-fid / FD-loss
``mu``/``sigma`` npz or an ADM reference batch; see :mod:`matchzoo.stats_files`), in which case the real
features are never needed: :meth:`prepare_reference` only checks their dimension, ``real`` may be ``None`` and
:attr:`needs_real_samples` is ``False``. Standalone without a file, ``objective(fake, real)`` treats ``real`` as
the reference sample. Generated side (``population=``):

* ``queue`` -- FIFO of the last ``population_size`` detached features; the live batch replaces the oldest;
* ``ema``   -- moving first/second moments with rate ``beta`` (see :mod:`matchzoo.objectives.population`);
* ``batch`` -- the batch alone (unbiased covariance), the plain differentiable FD.

Gradient (exact, float64). With :math:`T = \Sigma_r^{1/2}(\Sigma_r^{1/2}\Sigma\Sigma_r^{1/2})^{-1/2}\Sigma_r^{1/2}`
the Gaussian OT map's linear part, :math:`\partial\mathrm{FD}/\partial\Sigma = I - T` and
:math:`\partial\mathrm{FD}/\partial\mu = 2(\mu-\mu_r)`. For ``queue``/``ema`` the population covariance is
:math:`M_2-\mu\mu^\top`, so for a live sample :math:`f_i` with weight :math:`w = \partial\mu/\partial f_i`
(``1/n`` for a queue of ``n`` samples, ``w_t/B`` with ``w_t = max(1-beta, 1/t)`` for the ema)

.. math:: \nabla_{f_i}\mathrm{FD} = 2w\,\big[f_i - (\mu_r + T(f_i-\mu))\big],

i.e. ``c = 2w`` times the displacement from the OT target of ``f_i``. (``batch`` uses the unbiased
covariance: :math:`\tfrac{2}{B-1}(I-T)(f_i-\mu) + \tfrac2B(\mu-\mu_r)`.)

The trace uses the eigenvalues of the symmetric PSD :math:`\Sigma_r^{1/2}\Sigma\Sigma_r^{1/2}` (``n x n``
dual form when the population has fewer samples than dimensions) with the finite pseudo-inverse backward
of :func:`matchzoo.linalg.trace_sqrt_psd`: no NaN when ``n < D`` or eigenvalues repeat.

Several representations: ``normalize=True`` returns :math:`\mathrm{FD}/(sg(\mathrm{FD})+c)` (``c =
normalize_eps``), so every space contributes a unit-scale term whatever its feature scale.

Weighted form (resample probe): the frequency-weighted moments :math:`\mu_w = \sum_i p_i x_i`,
:math:`\Sigma_w = \tfrac{n}{n-1}\sum_i p_i(x_i-\mu_w)(x_i-\mu_w)^\top` in the same FD; when ``N < D`` the trace
uses the ``N x N`` dual with rows :math:`\sqrt{\tfrac{n}{n-1}p_i}\,(x_i-\mu_w)`.
The population advances on each forward in training mode with grad enabled (``.eval()`` or
``torch.no_grad()`` evaluate without advancing).
"""

from __future__ import annotations

from typing import Optional

import torch

from matchzoo import linalg, stats_files
from matchzoo.errors import MatchzooError
from matchzoo.objectives.base import LossOutput, Objective
from matchzoo.objectives.population import EmaPopulation, PopulationMoments, QueuePopulation
from matchzoo.objectives.weighting import WeightedLoss, probabilities
from matchzoo.registry import register_objective

POPULATION_MODES = ("queue", "ema", "batch")
REFERENCE_STATS_OPTION = "fd.reference_stats"


def frechet_from_moments(
    moments: PopulationMoments, mu_ref: torch.Tensor, cov_ref: torch.Tensor, sqrt_cov_ref: torch.Tensor
) -> torch.Tensor:
    """Differentiable float64 FD between population moments and the reference N(mu_ref, cov_ref)."""
    centered = moments.centered  # (n, D) or None: Sigma = Xc^T Xc / n
    population = linalg.Gaussian(
        moments.mean, moments.cov, centered, divisor=centered.shape[0] if centered is not None else 1.0
    )
    return linalg.frechet_sum(population, linalg.Gaussian(mu_ref, cov_ref, factor=sqrt_cov_ref))


def frechet_loss(
    fake: torch.Tensor, mu_ref: torch.Tensor, cov_ref: torch.Tensor, sqrt_cov_ref: torch.Tensor
) -> torch.Tensor:
    """Differentiable FD of the batch ``fake`` ``(B, D)`` (unbiased covariance) to N(mu_ref, cov_ref)."""
    mu, cov = linalg.mean_cov(fake)
    batch = linalg.Gaussian(mu, cov, fake.to(torch.float64) - mu, divisor=fake.shape[0] - 1)
    return linalg.frechet_sum(batch, linalg.Gaussian(mu_ref, cov_ref, factor=sqrt_cov_ref))


def weighted_mean_cov(x: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Frequency-weighted mean ``(D,)`` and unbiased covariance ``(D, D)`` of ``x`` ``(N, D)``, float64.

    .. math:: \mu_w = \sum_i p_i x_i, \qquad \Sigma_w = \tfrac{n}{n-1}\sum_i p_i (x_i-\mu_w)(x_i-\mu_w)^\top
    """
    p, n = probabilities(weights, x.shape[0])
    x = x.to(torch.float64)
    mu = p @ x  # (D,)
    centered = x - mu  # (N, D)
    cov = (centered * p[:, None]).T @ centered * (n / (n - 1))  # (D, D)
    return mu, cov


def weighted_frechet(
    x: torch.Tensor,
    weights: torch.Tensor,
    mu_ref: torch.Tensor,
    cov_ref: torch.Tensor,
    sqrt_cov_ref: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """FD of the weighted set (moments of :func:`weighted_mean_cov`) to N(mu_ref, cov_ref); float64 scalar."""
    p, n = probabilities(weights, x.shape[0])
    x = x.to(torch.float64)
    mu = p @ x  # (D,)
    rows = (x - mu) * (p * n / (n - 1)).sqrt()[:, None]  # (N, D): Sigma_w = rows^T rows
    reference = linalg.Gaussian(mu_ref, cov_ref, factor=sqrt_cov_ref)
    return linalg.frechet_sum(linalg.Gaussian(mu, samples=rows), reference)


def reference_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float64 mean ``(D,)``, unbiased covariance ``(D, D)`` and its PSD square root of real features (in chunks
    of rows when there are many: no float64 copy of a full-dataset reference)."""
    mu, cov = linalg.mean_cov_chunked(features.detach())
    return mu, cov, linalg.psd_sqrt(cov)


@register_objective("fd")
class FrechetDistance(Objective):
    """FD-loss: Fréchet distance of a queue/EMA generated population to the full real statistics."""

    def __init__(
        self,
        population: str = "queue",
        population_size: int = 50_000,
        beta: float = 0.999,
        normalize: bool = False,
        normalize_eps: float = 0.01,
        reference_stats: Optional[str] = None,
    ):
        super().__init__()
        if population not in POPULATION_MODES:
            raise MatchzooError(f"fd population must be one of {', '.join(POPULATION_MODES)}; got {population!r}")
        self.population_mode = population
        self.normalize, self.normalize_eps = bool(normalize), float(normalize_eps)
        self.population: Optional[torch.nn.Module] = None
        if population == "queue":
            self.population = QueuePopulation(population_size)
        elif population == "ema":
            self.population = EmaPopulation(beta)
        self._reference: Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None
        self.reference_file: Optional[stats_files.ReferenceStats] = None
        if reference_stats is not None:
            self.reference_file = stats_files.load_stats(reference_stats, option=REFERENCE_STATS_OPTION)
            mean, cov = self.reference_file.mean, self.reference_file.cov
            self._reference = (mean, cov, linalg.psd_sqrt(cov))

    @property
    def needs_real_samples(self) -> bool:
        """False with ``reference_stats``: the loss then never reads real features (the trainer may skip them)."""
        return self.reference_file is None

    def use_space(self, space) -> None:
        """Check a statistics file against the term's space (dimension, fingerprint or the convention warning)."""
        if self.reference_file is not None:
            stats_files.check_space(self.reference_file, space, REFERENCE_STATS_OPTION)

    def prepare_reference(self, features: Optional[torch.Tensor]) -> None:
        """All real training features of the space; ignored (beyond their dimension) with ``reference_stats``."""
        if self.reference_file is None:
            self._reference = reference_statistics(features)
        elif features is not None:
            self._check_dim(features)

    def _check_dim(self, features: torch.Tensor) -> None:
        if self.reference_file is not None and features.shape[-1] != self.reference_file.dim:
            raise MatchzooError(
                f"{REFERENCE_STATS_OPTION} = {str(self.reference_file.path)!r} holds {self.reference_file.dim}-d "
                f"statistics but the term's space gives {features.shape[-1]}-d features; give the statistics of "
                "that space"
            )

    def reference(
        self, real: Optional[torch.Tensor], device: Optional[torch.device] = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cached full-dataset (or file) statistics, or those of ``real`` when none were prepared."""
        if self._reference is None:
            if real is None:
                raise MatchzooError(
                    "fd was given no real features and has no reference; set fd.reference_stats = 'path.npz' "
                    "or give the dataset"
                )
            return reference_statistics(real)
        device = real.device if real is not None else device
        if device is not None and self._reference[0].device != device:
            self._reference = tuple(t.to(device) for t in self._reference)  # type: ignore[assignment]
        return self._reference

    def weighted_form(self, reference: Optional[torch.Tensor]) -> WeightedLoss:
        """FD of the weighted candidates to the statistics of ``reference`` (the ``batch`` population's FD), or to
        the statistics file when ``reference_stats`` is set."""
        if self.reference_file is not None:
            if reference is not None:
                self._check_dim(reference)
            mu_ref, cov_ref, sqrt_ref = self.reference(None)
        else:
            mu_ref, cov_ref = linalg.mean_cov(reference.detach())
            sqrt_ref = linalg.psd_sqrt(cov_ref)
        return lambda x, w: weighted_frechet(x, w, mu_ref, cov_ref, sqrt_ref)

    def population_moments(self, fake: torch.Tensor) -> PopulationMoments:
        """Moments of the generated population including the live batch (differentiable w.r.t. ``fake``)."""
        assert self.population is not None
        return self.population.moments(fake, need_samples=self.population_mode == "queue")

    def forward(self, fake: torch.Tensor, real: Optional[torch.Tensor] = None) -> LossOutput:
        if real is not None:
            self.check_features(fake, real)
        self._check_dim(fake)
        mu_ref, cov_ref, sqrt_ref = self.reference(real, fake.device)
        if self.population is None:
            value = frechet_loss(fake, mu_ref, cov_ref, sqrt_ref)
            size = fake.shape[0]
        else:
            moments = self.population_moments(fake)
            value = frechet_from_moments(moments, mu_ref, cov_ref, sqrt_ref)
            size = moments.size
            if self.training and torch.is_grad_enabled():
                self.population.advance(fake)
        logs = {"fd": float(value.detach()), "population": float(size)}
        if self.normalize:
            value = value / (value.detach() + self.normalize_eps)
        return LossOutput(value.to(fake.dtype), logs)
