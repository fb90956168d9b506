"""Evaluation metrics on ``(N, D)`` features: FD (streaming float64 statistics), FDr^k, KID,
improved precision/recall, density/coverage, and matching stability of an objective."""
from matchzoo.metrics.fdrk import fdr_table, heldout_frechet_distance
from matchzoo.metrics.frechet import FrechetReference, GaussianStats, StreamingMoments
from matchzoo.metrics.kid import kernel_inception_distance
from matchzoo.metrics.prdc import density_coverage, precision_recall, prdc
from matchzoo.metrics.stability import matching_stability
from matchzoo.metrics.suite import SuiteSettings, evaluate_space

__all__ = [
    "FrechetReference", "GaussianStats", "StreamingMoments", "fdr_table", "heldout_frechet_distance",
    "kernel_inception_distance", "precision_recall", "density_coverage", "prdc", "matching_stability",
    "SuiteSettings", "evaluate_space",
]
