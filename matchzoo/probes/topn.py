r"""The ``topn`` probe: soft Top-N class-histogram matching (Kynkäänniemi et al., Section 3).

A classifier gives each image class probabilities; its **binarised top-N indicator** :math:`h_i\in\{0,1\}^C`
marks the N most likely classes. The reference histogram is the mean indicator of the real training
images, :math:`\bar h_r`. Candidate weights :math:`p=\mathrm{softmax}(z)` are optimised so the weighted
histogram matches it,

.. math:: L(p) = \big\| \textstyle\sum_i p_i h_i - \bar h_r \big\|_2^2 ,

and the resampled sets are evaluated in every space (:func:`matchzoo.probes.resample.resample_probe`).
Only *which classes the classifier sees* is matched, never a feature: whatever FD drops is explained by
class statistics alone. The probe sweeps N.

Class probabilities come from the classifier space's ``logits(images) -> (N, C)`` when it has one, else
from a multinomial logistic-regression probe fitted on the space's reference features and the dataset's
``labels`` (the training split).
"""

from __future__ import annotations

from typing import Sequence

import torch

from matchzoo.errors import MatchzooError


def topn_indicators(probabilities: torch.Tensor, n: int) -> torch.Tensor:
    """``(N, C)`` 0/1 float64 indicators of each row's ``n`` largest entries."""
    if not 1 <= n <= probabilities.shape[1]:
        raise MatchzooError(f"top-N needs 1 <= N <= {probabilities.shape[1]} classes; got N={n}")
    top = probabilities.topk(n, dim=1).indices  # (N, n)
    return torch.zeros(probabilities.shape, dtype=torch.float64).scatter_(1, top, 1.0)


def histogram_loss(indicators: torch.Tensor, reference_histogram: torch.Tensor):
    """``(candidates (N, C), weights (N,)) -> ‖Σ p_i h_i − h̄_r‖²`` with ``p = w / Σ w``."""
    target = reference_histogram.to(torch.float64)

    def loss(h: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        p = weights.to(torch.float64) / weights.sum()
        return (p @ h - target).square().sum()

    return loss


def linear_probe_probabilities(
    train_features: torch.Tensor, train_labels: torch.Tensor, others: Sequence[torch.Tensor], seed: int = 0
) -> list[torch.Tensor]:
    """Class probabilities of ``others`` from logistic regression fitted on ``(train_features, train_labels)``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_features.double().numpy())
    model = LogisticRegression(max_iter=2000, random_state=seed)
    model.fit(scaler.transform(train_features.double().numpy()), train_labels.numpy())
    return [torch.from_numpy(model.predict_proba(scaler.transform(x.double().numpy()))) for x in others]


def class_probabilities(
    space,
    dataset,
    candidate_images: torch.Tensor,
    reference_features: torch.Tensor,
    candidate_features: torch.Tensor,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``(candidate probs (N, C), reference probs (M, C), source)`` from ``space.logits`` or a linear probe."""
    logits = getattr(space, "logits", None)
    if callable(logits):
        train = dataset.split("train")
        with torch.no_grad():
            candidate = torch.softmax(_batched(logits, candidate_images).double(), dim=1)
            reference_images = torch.stack([train[i] for i in range(len(train))])
            reference = torch.softmax(_batched(logits, reference_images).double(), dim=1)
        return candidate, reference, f"{space.name}.logits"
    train_labels = dataset.labels("train") if getattr(dataset, "num_classes", 0) else None
    if train_labels is None:
        raise MatchzooError(
            f"space {space.name!r} has no logits(images) method and dataset {dataset.name!r} has no labels for a "
            f"linear probe; use a classifier space or a labelled dataset (e.g. digits)"
        )
    candidate, reference = linear_probe_probabilities(
        reference_features, train_labels, [candidate_features, reference_features], seed
    )
    return candidate, reference, f"logistic-regression probe on {space.name} features"


def _batched(fn, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    return torch.cat([fn(images[i : i + batch_size]) for i in range(0, images.shape[0], batch_size)])
