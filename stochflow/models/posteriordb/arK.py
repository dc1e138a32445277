"""posteriordb ``arK-arK``.

Stan model: https://github.com/stan-dev/posteriordb/blob/master/posterior_database/models/stan/arK.stan

An AR(K) time-series model (K = 5, T = 200 simulated points, from Stan's
stat_comp_benchmarks), conditioned on the first K observations.

    parameters:  alpha in R,  beta in R^K,  sigma > 0
    model:       alpha ~ N(0, 10),  beta_k ~ N(0, 10),  sigma ~ Cauchy+(0, 2.5)
                 y_t ~ N(alpha + sum_{k=1..K} beta_k y_{t-k}, sigma)    t = K+1..T

The recursion has no latent state, so the likelihood is vectorised: a (T-K, K)
matrix of lags ``Y[i, k-1] = y[K + i - k]`` (0-based) times ``beta``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

POSTERIOR = "arK-arK"

__all__ = ["POSTERIOR", "model"]


def model(K, T, y):
    """NumPyro model; call as ``model(**data)`` with the posteriordb data dict."""
    K, T = int(K), int(T)
    y = jnp.asarray(y, dtype=jnp.result_type(float))
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 10.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 10.0).expand([K]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
    # Stan's t in K+1..T is 0-based t in K..T-1; lag k in 1..K reads y[t - k].
    lags = jnp.arange(K, T)[:, None] - jnp.arange(1, K + 1)[None, :]
    mu = alpha + y[lags] @ beta
    with numpyro.plate("t", T - K):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y[K:])
