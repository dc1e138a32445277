"""posteriordb posterior ``earnings-earn_height``.

Stan model: https://github.com/stan-dev/posteriordb/blob/master/posterior_database/models/stan/earn_height.stan

Linear regression of yearly earnings (dollars, ~1e4) on height (inches, ~66)
from Gelman & Hill (ARM ch. 4), with flat priors: badly scaled (sigma ~ 2e4,
beta[1] ~ 1e4, beta[2] ~ 1e3) and beta[1], beta[2] are strongly correlated
because height is not centred.

Parameters and model (Stan, 1-based):

    beta in R^2 (flat), sigma > 0 (flat)
    earn[n] ~ Normal(beta[1] + beta[2] * height[n], sigma),  n = 1..N

The data entry ``male`` is in the posteriordb data but unused by the model.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

POSTERIOR = "earnings-earn_height"


def model(N, earn, height, male=None):
    ftype = jnp.result_type(float)
    earn = jnp.asarray(earn, dtype=ftype)
    height = jnp.asarray(height, dtype=ftype)
    beta = numpyro.sample("beta", dist.ImproperUniform(constraints.real, (), (2,)))
    sigma = numpyro.sample("sigma", dist.ImproperUniform(constraints.positive, (), ()))
    with numpyro.plate("N", N):
        numpyro.sample("earn", dist.Normal(beta[0] + beta[1] * height, sigma), obs=earn)
