"""posteriordb ``eight_schools-eight_schools_centered``.

Stan model: https://github.com/stan-dev/posteriordb/blob/master/posterior_database/models/stan/eight_schools_centered.stan

The eight schools hierarchical model of Rubin (1981) (BDA3 section 5.5) in the
centred parameterisation, whose funnel makes HMC diverge. posteriordb gives it
the reference posterior of ``eight_schools-eight_schools_noncentered`` (the same
posterior in ``theta, mu, tau``).

    parameters:  theta in R^J,  mu in R,  tau > 0
    model:       tau ~ Cauchy+(0, 5)
                 theta_j ~ N(mu, tau)
                 y_j ~ N(theta_j, sigma_j)          j = 1..J
                 mu ~ N(0, 5)
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

POSTERIOR = "eight_schools-eight_schools_centered"

__all__ = ["POSTERIOR", "model"]


def model(J, y, sigma):
    """NumPyro model; call as ``model(**data)`` with the posteriordb data dict."""
    J = int(J)
    ftype = jnp.result_type(float)  # float32 or float64 following jax_enable_x64
    y = jnp.asarray(y, dtype=ftype)  # the data file stores y and sigma as integers
    sigma = jnp.asarray(sigma, dtype=ftype)
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    with numpyro.plate("J", J):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)
