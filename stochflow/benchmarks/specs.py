"""The samplers the benchmark runs, with explicit per-target hyperparameters.

Every step size here is set from the target's known scale, never tuned on the
metrics the report shows:

* ULA: ``h = 0.1 * s_min^2`` with ``s_min`` the smallest marginal standard
  deviation: a 5% variance bias in the stiffest direction (ULA's Gaussian law
  inflates the variance by ``1 / (1 - h / (2 s^2))``).
* MALA: initial ``h = s_min^2``; warmup adapts it per chain to acceptance 0.574.
* underdamped: ``h = 0.5 * s_min`` (the stiffest direction's oscillation is
  resolved with about 12 steps per period) and friction ``1 / s_max``
  (critical damping of the softest direction, where mixing is slowest).

``s_min``/``s_max`` come from the target's exact covariance (benchmarks only);
for a mixture, ``s_min`` is the smallest component standard deviation (the
local scale a step must resolve) and ``s_max`` the largest overall one.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from ..samplers import mala, ula, underdamped
from ..samplers.base import Sampler
from ..target import Target

__all__ = ["SamplerSpec", "SAMPLERS", "marginal_scales"]


class SamplerSpec(NamedTuple):
    """How the benchmark builds one sampler for a target."""

    name: str
    build: Callable[[Target], Sampler]
    grads_per_step: int  # n_grad of one step, to turn a gradient budget into steps


def marginal_scales(target: Target) -> tuple[float, float]:
    """Smallest and largest marginal standard deviation of a target with known covariance."""
    if target.cov is None:
        raise ValueError(f"target {target.name!r} has no known covariance to set step sizes from.")
    eigenvalues = np.linalg.eigvalsh(target.cov)
    s_min, s_max = np.sqrt(eigenvalues.min()), np.sqrt(eigenvalues.max())
    components = getattr(target, "components", None)
    if components is not None:
        s_min = min(s_min, np.sqrt(min(np.linalg.eigvalsh(c).min() for c in components[2])))
    return float(s_min), float(s_max)


def _ula(target: Target) -> Sampler:
    s_min, _ = marginal_scales(target)
    return ula(0.1 * s_min**2)


def _mala(target: Target) -> Sampler:
    s_min, _ = marginal_scales(target)
    return mala(s_min**2)


def _underdamped(scheme: str) -> Callable[[Target], Sampler]:
    def build(target: Target) -> Sampler:
        s_min, s_max = marginal_scales(target)
        return underdamped(0.5 * s_min, friction=1.0 / s_max, scheme=scheme)

    return build


SAMPLERS: dict[str, SamplerSpec] = {
    spec.name: spec
    for spec in [
        SamplerSpec("ula", _ula, 1),
        SamplerSpec("mala", _mala, 1),
        SamplerSpec("underdamped-baoab", _underdamped("baoab"), 1),
        SamplerSpec("underdamped-obabo", _underdamped("obabo"), 1),
        SamplerSpec("underdamped-ubu", _underdamped("ubu"), 1),
    ]
}
