"""posteriordb posterior ``low_dim_gauss_mix-low_dim_gauss_mix``.

Stan model: https://github.com/stan-dev/posteriordb/blob/master/posterior_database/models/stan/low_dim_gauss_mix.stan

Two-component univariate Gaussian mixture (N = 1000) with the component
means constrained to be ordered (mu[1] < mu[2]), which removes label switching.

Parameters and model (Stan, 1-based):

    mu in R^2 ordered, sigma[1], sigma[2] > 0, theta in (0, 1)
    sigma ~ Normal(0, 2);  mu ~ Normal(0, 2)  (on the ordered vector, no truncation
    normaliser);  theta ~ Beta(5, 5)
    target += sum_n log( theta N(y[n] | mu[1], sigma[1]) + (1 - theta) N(y[n] | mu[2], sigma[2]) )
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

POSTERIOR = "low_dim_gauss_mix-low_dim_gauss_mix"


def model(N, y):
    ftype = jnp.result_type(float)
    y = jnp.asarray(y, dtype=ftype)
    # ordered[2] mu with `mu ~ normal(0, 2)`: improper ordered base + the prior as a factor
    mu = numpyro.sample("mu", dist.ImproperUniform(constraints.ordered_vector, (), (2,)))
    numpyro.factor("mu_prior", dist.Normal(0.0, 2.0).log_prob(mu).sum())
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0).expand([2]).to_event(1))  # normal(0, 2) on sigma > 0
    theta = numpyro.sample("theta", dist.Beta(5.0, 5.0))
    # log_mix(theta, lp1, lp2), vectorised over n
    lp1 = jnp.log(theta) + dist.Normal(mu[0], sigma[0]).log_prob(y)
    lp2 = jnp.log1p(-theta) + dist.Normal(mu[1], sigma[1]).log_prob(y)
    numpyro.factor("loglik", jnp.logaddexp(lp1, lp2).sum())
