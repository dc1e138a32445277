"""posteriordb posterior ``kilpisjarvi_mod-kilpisjarvi``.

Stan model: https://github.com/stan-dev/posteriordb/blob/master/posterior_database/models/stan/kilpisjarvi.stan

Gaussian linear regression of Kilpisjärvi summer temperature on year with
weakly informative priors; x is not centred (x ~ 3952..4013), so alpha and
beta are almost perfectly correlated and on very different scales.

Parameters and model (Stan):

    alpha in R, beta in R, sigma > 0 (flat)
    alpha ~ Normal(pmualpha, psalpha)
    beta  ~ Normal(pmubeta, psbeta)
    y[n]  ~ Normal(alpha + beta * x[n], sigma),  n = 1..N

The data entry ``xpred`` is only used by the original prediction code (unused here).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

POSTERIOR = "kilpisjarvi_mod-kilpisjarvi"


def model(N, x, y, pmualpha, psalpha, pmubeta, psbeta, xpred=None):
    ftype = jnp.result_type(float)
    x = jnp.asarray(x, dtype=ftype)
    y = jnp.asarray(y, dtype=ftype)
    alpha = numpyro.sample("alpha", dist.Normal(jnp.asarray(pmualpha, ftype), jnp.asarray(psalpha, ftype)))
    beta = numpyro.sample("beta", dist.Normal(jnp.asarray(pmubeta, ftype), jnp.asarray(psbeta, ftype)))
    sigma = numpyro.sample("sigma", dist.ImproperUniform(constraints.positive, (), ()))
    with numpyro.plate("N", N):
        numpyro.sample("y", dist.Normal(alpha + beta * x, sigma), obs=y)
