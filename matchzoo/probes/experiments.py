"""The two probes end to end, on features already extracted (:func:`matchzoo.probes.inputs.evaluation_features`).

``resample_attack`` minimises one objective's weighted form in one space; ``topn_sweep`` matches the top-N class
histogram of a classifier space for each N. Both report FD/FDr in every space before and after
(:func:`matchzoo.probes.resample.resample_probe`); ``python -m matchzoo probe`` is the command over them.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from matchzoo.probes import topn
from matchzoo.probes.resample import ProbeResult, SpaceFeatures, resample_probe
from matchzoo.probes.weighted import weighted_loss_for


def resample_attack(
    objective, features: dict[str, SpaceFeatures], attack: str, reference_size: int, seed: int, label: str, **common
) -> ProbeResult:
    """Reweight candidates to minimise ``objective`` in ``attack`` against at most ``reference_size`` reference
    features (a seeded subsample: the weighted forms cost O(N·M)); ``common`` goes to ``resample_probe``."""
    reference = features[attack].reference
    if reference.shape[0] > reference_size:
        order = torch.randperm(reference.shape[0], generator=torch.Generator().manual_seed(seed))[:reference_size]
        reference = reference[order]
    objective.prepare_reference(reference)
    return resample_probe(features, attack, weighted_loss_for(objective, reference), label=label, seed=seed, **common)


def topn_sweep(
    classifier_space,
    classifier: SpaceFeatures,
    features: dict[str, SpaceFeatures],
    dataset,
    candidates: torch.Tensor,
    top_n: Sequence[int],
    seed: int,
    **common,
) -> Iterator[ProbeResult]:
    """One result per N (``extra['top_n']``), each as soon as it is ready."""
    probs, reference_probs, source = topn.class_probabilities(
        classifier_space, dataset, candidates, classifier.reference, classifier.candidates, seed
    )
    for n in top_n:
        indicators = topn.topn_indicators(probs, n)
        target = topn.topn_indicators(reference_probs, n).mean(dim=0)
        label = f"topn: match top-{n} class histogram ({source})"
        result = resample_probe(
            features,
            None,
            topn.histogram_loss(indicators, target),
            attack_candidates=indicators,
            label=label,
            seed=seed,
            **common,
        )
        result.extra["top_n"] = n
        yield result
