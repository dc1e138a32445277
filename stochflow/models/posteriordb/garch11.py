"""posteriordb ``garch-garch11``.

Stan model: https://github.com/stan-dev/posteriordb/blob/master/posterior_database/models/stan/garch11.stan

A GARCH(1, 1) volatility model (T = 200 simulated returns, from Stan's
stat_comp_benchmarks) with a known initial volatility ``sigma1`` and flat priors.

    parameters:  mu in R,  alpha0 > 0,  0 < alpha1 < 1,  0 < beta1 < 1 - alpha1
                 (no prior statements: flat on this constrained set)
    model:       sigma_1 = sigma1
                 sigma_t^2 = alpha0 + alpha1 (y_{t-1} - mu)^2 + beta1 sigma_{t-1}^2   t = 2..T
                 y_t ~ N(mu, sigma_t)                                              t = 1..T

Stan's parameter-dependent bound ``real<lower=0, upper=(1 - alpha1)> beta1`` with
no prior (flat on the triangle 0 < beta1 < 1 - alpha1) is written as
``beta1 ~ Uniform(0, 1 - alpha1)`` plus ``factor(log(1 - alpha1))`` to cancel the
uniform's normalisation. Not ``ImproperUniform(interval(0, 1 - alpha1))``: its
log density is the same, but ImproperUniform wraps its support in
``independent(., 0)``, so NumPyro (0.22) does not spot the dynamic bound, and
``MCMC.get_samples()`` maps beta1 through the interval of the initial alpha1
(the potential is right; the reported beta1 draws are wrong). The variance
recursion is a ``jax.lax.scan``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

POSTERIOR = "garch-garch11"

__all__ = ["POSTERIOR", "model"]


def model(T, y, sigma1):
    """NumPyro model; call as ``model(**data)`` with the posteriordb data dict."""
    T = int(T)
    ftype = jnp.result_type(float)
    y = jnp.asarray(y, dtype=ftype)
    sigma1 = jnp.asarray(sigma1, dtype=ftype)
    mu = numpyro.sample("mu", dist.ImproperUniform(constraints.real, (), ()))
    alpha0 = numpyro.sample("alpha0", dist.ImproperUniform(constraints.positive, (), ()))
    alpha1 = numpyro.sample("alpha1", dist.ImproperUniform(constraints.unit_interval, (), ()))
    # flat on 0 < beta1 < 1 - alpha1: Uniform's -log(1 - alpha1) cancelled by the factor (see docstring)
    beta1 = numpyro.sample("beta1", dist.Uniform(0.0, 1.0 - alpha1))
    numpyro.factor("beta1_flat", jnp.log1p(-alpha1))

    def step(var_prev, y_prev):
        var = alpha0 + alpha1 * jnp.square(y_prev - mu) + beta1 * var_prev
        return var, var

    # variances for t = 2..T (1-based), driven by y_1..y_{T-1}
    _, var_rest = jax.lax.scan(step, jnp.square(sigma1), y[: T - 1])
    sigma = jnp.concatenate([sigma1[None], jnp.sqrt(var_rest)])
    with numpyro.plate("t", T):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)
