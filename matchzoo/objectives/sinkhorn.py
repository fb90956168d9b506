r"""``sinkhorn``: debiased Sinkhorn divergence between generated and real features (geomloss).

.. math:: S_\varepsilon(\alpha,\beta) = \mathrm{OT}_\varepsilon(\alpha,\beta)
          - \tfrac12\mathrm{OT}_\varepsilon(\alpha,\alpha) - \tfrac12\mathrm{OT}_\varepsilon(\beta,\beta),
          \qquad C(x,y) = \tfrac12\|x-y\|^2,\ \varepsilon = \mathrm{blur}^2

computed by geomloss ``SamplesLoss("sinkhorn", p=2)``. Note geomloss's ``p = 2`` cost is *half* the
squared distance, so as ``blur -> 0`` the value tends to :math:`\tfrac12 W_2^2`. ε-scaling anneals ε from
``diameter^2`` down to ``blur^2`` by ``scaling^2`` per iteration (``scaling >= 0.7`` for accuracy).

High-dimensional features: with ``standardize=True`` (default) both sides are divided by the reference
feature scale :math:`s = \sqrt{\operatorname{Tr}\Sigma_r / D}` (from :meth:`prepare_reference`, else from
``real``), so ``blur`` is in units of one feature's standard deviation whatever the backbone; the
value is reported in those units. ``diameter=None`` lets geomloss bound it from the data.

Backend: ``tensorized`` unless pykeops imports (``online`` then); geomloss 0.3.1 can leave autograd
switched on, so the caller's grad mode is restored after every call.
"""
from __future__ import annotations

import importlib.util
from typing import Optional

import torch

from matchzoo.errors import MatchzooError
from matchzoo.objectives.base import LossOutput, Objective
from matchzoo.registry import register_objective


def default_backend() -> str:
    """``online`` (KeOps, linear memory) when pykeops is importable, else ``tensorized``."""
    return "online" if importlib.util.find_spec("pykeops") is not None else "tensorized"


def feature_scale(real: torch.Tensor) -> torch.Tensor:
    """Root mean per-dimension variance of ``real`` ``(N, D)`` as a float64 scalar (no gradient)."""
    real64 = real.detach().to(torch.float64)
    return real64.var(dim=0, unbiased=True).mean().clamp_min(torch.finfo(torch.float64).tiny).sqrt()


class GradModeRestored:
    """Context manager restoring the caller's autograd mode (some geomloss paths flip it globally)."""

    def __enter__(self):
        self.mode = torch.is_grad_enabled()

    def __exit__(self, *exc):
        torch.set_grad_enabled(self.mode)
        return False


def sinkhorn_divergence(fake: torch.Tensor, real: torch.Tensor, blur: float, scaling: float,
                        diameter: Optional[float], backend: str) -> torch.Tensor:
    """geomloss debiased Sinkhorn divergence (cost ½‖x−y‖²) between uniform measures on the rows."""
    from geomloss import SamplesLoss

    loss = SamplesLoss("sinkhorn", p=2, blur=blur, scaling=scaling, diameter=diameter, debias=True, backend=backend)
    with GradModeRestored():
        return loss(fake, real.detach())


@register_objective("sinkhorn")
class Sinkhorn(Objective):
    """Debiased Sinkhorn divergence (geomloss, cost ½‖x−y‖², standardised features)."""

    def __init__(self, blur: float = 0.5, scaling: float = 0.9, diameter: Optional[float] = None,
                 standardize: bool = True, backend: Optional[str] = None):
        super().__init__()
        if blur <= 0 or not 0.0 < scaling < 1.0:
            raise MatchzooError(f"sinkhorn needs blur > 0 and 0 < scaling < 1; got blur={blur}, scaling={scaling}")
        if backend not in (None, "tensorized", "online", "multiscale"):
            raise MatchzooError(f"sinkhorn backend must be tensorized, online or multiscale; got {backend!r}")
        self.blur, self.scaling, self.diameter = float(blur), float(scaling), diameter
        self.standardize = bool(standardize)
        self.backend = backend or default_backend()
        self._scale: Optional[torch.Tensor] = None

    def prepare_reference(self, features: torch.Tensor) -> None:
        self._scale = feature_scale(features)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> LossOutput:
        self.check_features(fake, real)
        if self.standardize:
            scale = (self._scale if self._scale is not None else feature_scale(real)).to(fake.device, fake.dtype)
            fake, real = fake / scale, real / scale
        value = sinkhorn_divergence(fake, real, self.blur, self.scaling, self.diameter, self.backend)
        return LossOutput(value, {"sinkhorn": float(value.detach())})
