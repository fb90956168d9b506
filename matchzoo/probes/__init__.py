"""Metric-hacking probes: reweight candidates to lower a distance in one space and see what every other space says."""

from matchzoo.probes.resample import ProbeResult, SpaceFeatures, resample_probe
from matchzoo.probes.weighted import weighted_loss_for

__all__ = ["ProbeResult", "SpaceFeatures", "resample_probe", "weighted_loss_for"]
