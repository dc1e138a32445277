"""NumPyro models used by the integration tests and their reference script."""

import numpy as np
import numpyro
import numpyro.distributions as dist

EIGHT_SCHOOLS_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
EIGHT_SCHOOLS_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools(sigma, y=None):
    """Eight schools, non-centred (posteriordb's eight_schools_noncentered priors)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("J", len(sigma)):
        eta = numpyro.sample("eta", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * eta)
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def logistic_data(seed=0, n=100, d=3):
    """A small synthetic logistic-regression data set (fixed NumPy stream)."""
    rng = np.random.RandomState(seed)
    features = rng.randn(n, d)
    weights = np.array([1.0, -2.0, 0.5])[:d]
    labels = (rng.rand(n) < 1.0 / (1.0 + np.exp(-(features @ weights + 0.3)))).astype(float)
    return features, labels


def logistic_regression(features, labels=None):
    d = features.shape[1]
    weights = numpyro.sample("weights", dist.Normal(0.0, 1.0).expand([d]).to_event(1))
    bias = numpyro.sample("bias", dist.Normal(0.0, 1.0))
    numpyro.sample("labels", dist.Bernoulli(logits=features @ weights + bias), obs=labels)
