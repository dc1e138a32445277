"""posteriordb ``eight_schools-eight_schools_noncentered``.

Stan model: https://github.com/stan-dev/posteriordb/blob/master/posterior_database/models/stan/eight_schools_noncentered.stan

The eight schools hierarchical model of Rubin (1981) (BDA3 section 5.5): coaching
effects ``y_j`` with known standard errors ``sigma_j``, non-centred
parameterisation ``theta = mu + tau * theta_trans``.

    parameters:  theta_trans in R^J,  mu in R,  tau > 0
    transformed: theta_j = mu + tau * theta_trans_j
    model:       theta_trans_j ~ N(0, 1)
                 y_j ~ N(theta_j, sigma_j)          j = 1..J
                 mu ~ N(0, 5),  tau ~ Cauchy+(0, 5)

The latent sites are ``theta_trans`` (shape ``(J,)``), ``mu`` and ``tau``;
``theta`` is recorded as a deterministic site (Stan's transformed parameter).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

POSTERIOR = "eight_schools-eight_schools_noncentered"

__all__ = ["POSTERIOR", "model"]


def model(J, y, sigma):
    """NumPyro model; call as ``model(**data)`` with the posteriordb data dict."""
    J = int(J)
    ftype = jnp.result_type(float)  # float32 or float64 following jax_enable_x64
    y = jnp.asarray(y, dtype=ftype)  # the data file stores y and sigma as integers
    sigma = jnp.asarray(sigma, dtype=ftype)
    theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0).expand([J]).to_event(1))
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    theta = numpyro.deterministic("theta", theta_trans * tau + mu)
    with numpyro.plate("J", J):
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)
