"""Neal's funnel (Neal 2003, "Slice sampling"; the d = 10 instance of
inference-gym ``NealsFunnel`` and of Blessing et al. 2024):

    x_0 ~ N(0, 3^2),     x_i | x_0 ~ N(0, e^{x_0})   (i = 1 .. d-1).

Exact ground truth: ancestral sampling; mean 0; ``Var x_0 = 9`` and
``Var x_i = E e^{x_0} = e^{9/2}`` (the lognormal mean), all covariances 0
(``E[x_i x_0] = E[x_0 E[x_i | x_0]] = 0``); normalised, so ``log Z = 0``.
The neck (x_0 ≈ -6, conditional std e^{-3} ≈ 0.05) and the mouth (x_0 ≈ 6,
std e^{3} ≈ 20) differ in scale by 400: no single step size fits both.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..target import GroundTruth, Target

__all__ = ["funnel"]

_X0_SD = 3.0


def funnel(dim: int = 10) -> Target:
    """Neal's funnel in ``dim`` dimensions (x_0 the scale coordinate)."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 2:
        raise ValueError(f"funnel needs an int dim >= 2, got {dim!r}.")

    def logdensity(x):
        x0, rest = x[0], x[1:]
        log_p0 = jax.scipy.stats.norm.logpdf(x0, 0.0, _X0_SD)
        return log_p0 + jnp.sum(jax.scipy.stats.norm.logpdf(rest, 0.0, jnp.exp(0.5 * x0)))

    def sample(key, n):
        scale_key, rest_key = jax.random.split(key)
        x0 = _X0_SD * jax.random.normal(scale_key, (n, 1))
        return jnp.concatenate([x0, jnp.exp(0.5 * x0) * jax.random.normal(rest_key, (n, dim - 1))], axis=1)

    variances = np.array([_X0_SD**2] + [np.exp(0.5 * _X0_SD**2)] * (dim - 1))
    return Target(
        logdensity, dim=dim, name=f"funnel-{dim}",
        truth=GroundTruth(sample=sample, mean=np.zeros(dim), cov=np.diag(variances), log_z=0.0),
    )
