"""The banana (Haario, Saksman & Tamminen 1999; inference-gym ``Banana``,
curvature b = 0.03): a Gaussian bent by a volume-preserving shear,

    z ~ N(0, diag(10^2, 1, ..., 1)),  x_1 = z_1,  x_2 = z_2 + b (z_1^2 - 100),  x_{3:} = z_{3:}.

The shear has Jacobian 1, so ``log p(x) = log N(x_1; 0, 100)
+ log N(x_2 - b (x_1^2 - 100); 0, 1) + Σ_{i>2} log N(x_i; 0, 1)`` exactly
(normalised, ``log Z = 0``). Exact moments: mean 0 (E z_1^2 = 100);
``Var x_2 = 1 + b^2 Var z_1^2 = 1 + 2 b^2 10^4`` (= 19 for b = 0.03);
``Cov(x_1, x_2) = b E[z_1^3] = 0``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..target import GroundTruth, Target

__all__ = ["banana"]

_X1_SD = 10.0


def banana(dim: int = 2, curvature: float = 0.03) -> Target:
    """The banana target in ``dim >= 2`` dimensions with the given curvature."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 2:
        raise ValueError(f"banana needs an int dim >= 2, got {dim!r}.")
    b = float(curvature)
    norm = jax.scipy.stats.norm.logpdf

    def logdensity(x):
        bent = x[1] - b * (x[0] ** 2 - _X1_SD**2)
        return norm(x[0], 0.0, _X1_SD) + norm(bent) + jnp.sum(norm(x[2:]))

    def sample(key, n):
        z = jax.random.normal(key, (n, dim)).at[:, 0].multiply(_X1_SD)
        return z.at[:, 1].add(b * (z[:, 0] ** 2 - _X1_SD**2))

    variances = np.ones(dim)
    variances[0] = _X1_SD**2
    variances[1] = 1.0 + 2.0 * b**2 * _X1_SD**4
    return Target(
        logdensity, dim=dim, name=f"banana-{dim}" if dim > 2 else "banana",
        truth=GroundTruth(sample=sample, mean=np.zeros(dim), cov=np.diag(variances), log_z=0.0),
    )
