"""Evaluation metrics on ``(N, D)`` features: FD (streaming float64 statistics; sFID is FD in the
``inception_sfid`` space), FDr^k, KID, improved precision/recall, density/coverage, Inception Score (on the
``inception_logits`` space), and matching stability of an objective.

Per-space metrics are registered (``@register_metric``, :mod:`matchzoo.metrics.registry`); importing a
module here registers its metrics, so this list is the catalogue both evaluation paths draw from."""

from matchzoo.metrics.fdrk import fdr_k, fdr_table, heldout_frechet_distance
from matchzoo.metrics.frechet import FrechetReference, GaussianStats, SpaceReference, StreamingMoments
from matchzoo.metrics.inception_score import InceptionScore, inception_score, inception_score_of_probs
from matchzoo.metrics.kid import kernel_inception_distance
from matchzoo.metrics.prdc import density_coverage, prdc, precision_recall
from matchzoo.metrics.registry import METRICS, Metric, make_metrics, metric_names, register_metric
from matchzoo.metrics.stability import matching_stability
from matchzoo.metrics.suite import SuiteSettings, compute_row, evaluate_space

__all__ = [
    "METRICS",
    "Metric",
    "make_metrics",
    "metric_names",
    "register_metric",
    "FrechetReference",
    "GaussianStats",
    "SpaceReference",
    "StreamingMoments",
    "fdr_k",
    "fdr_table",
    "heldout_frechet_distance",
    "kernel_inception_distance",
    "InceptionScore",
    "inception_score",
    "inception_score_of_probs",
    "precision_recall",
    "density_coverage",
    "prdc",
    "matching_stability",
    "SuiteSettings",
    "compute_row",
    "evaluate_space",
]
