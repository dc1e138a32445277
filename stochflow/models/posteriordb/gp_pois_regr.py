"""posteriordb posterior ``gp_pois_regr-gp_pois_regr``.

Stan model: https://github.com/stan-dev/posteriordb/blob/master/posterior_database/models/stan/gp_pois_regr.stan

Latent Gaussian-process Poisson regression on 11 points (x = -10, -8, ..., 10):
squared-exponential GP with non-centred parameterisation f = L f_tilde, where
L is the Cholesky factor of the covariance plus Stan's 1e-10 jitter.

Parameters and model (Stan):

    rho > 0, alpha > 0, f_tilde in R^N
    K[i,j] = alpha^2 exp(-(x[i] - x[j])^2 / (2 rho^2)) + 1e-10 [i = j]
    f = cholesky(K) f_tilde                       (transformed parameter)
    rho ~ Gamma(25, 4)   (shape, rate);   alpha ~ Normal(0, 2)  (half-normal via alpha > 0)
    f_tilde ~ Normal(0, 1);   k[n] ~ Poisson(exp(f[n]))

The reference draws hold rho, alpha and the transformed parameter f (not
f_tilde); ``f`` is recorded here as a deterministic site so it can be compared.
The data entry ``y`` is in the posteriordb data but unused by the model.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

POSTERIOR = "gp_pois_regr-gp_pois_regr"

JITTER = 1e-10


def model(N, x, k, y=None):
    ftype = jnp.result_type(float)
    x = jnp.asarray(x, dtype=ftype)
    k = jnp.asarray(k)
    rho = numpyro.sample("rho", dist.Gamma(25.0, 4.0))
    alpha = numpyro.sample("alpha", dist.HalfNormal(2.0))  # normal(0, 2) on alpha > 0
    f_tilde = numpyro.sample("f_tilde", dist.Normal(0.0, 1.0).expand([N]).to_event(1))
    d2 = (x[:, None] - x[None, :]) ** 2
    cov = alpha**2 * jnp.exp(-0.5 * d2 / rho**2) + JITTER * jnp.eye(N, dtype=ftype)
    L_cov = jnp.linalg.cholesky(cov)
    f = numpyro.deterministic("f", L_cov @ f_tilde)
    with numpyro.plate("N", N):
        numpyro.sample("k", dist.Poisson(jnp.exp(f)), obs=k)
