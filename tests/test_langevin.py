"""ULA and MALA against exact answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stochflow as sf
from gaussian_laws import ula_variance


def isotropic(dim, sigma2):
    return sf.Target(lambda x: -0.5 * jnp.sum(x**2) / sigma2, dim=dim, name="iso")


def test_ula_has_its_discretisation_bias():
    # ULA on N(0, sigma^2 I) is the AR(1) x' = (1 - h/sigma^2) x + sqrt(2h) xi, whose
    # stationary variance is sigma^2 / (1 - h / (2 sigma^2)) = 4/3 here, not sigma^2 = 1.
    sigma2, h, dim, n = 1.0, 0.5, 10, 4000
    law = ula_variance(h, sigma2)
    assert law == pytest.approx(sigma2 / (1 - h / (2 * sigma2)))
    init = jax.random.normal(jax.random.key(1), (n, dim))
    # 40 steps from N(0, 1): the AR coefficient 0.5 leaves 0.5^80 of the start's offset.
    trace = sf.sample(sf.ula(h), isotropic(dim, sigma2), jax.random.key(0), num_steps=40,
                      init=init, progress=False)
    last = trace.positions[:, -1, :].ravel()  # n * dim independent draws of the law
    # Sample variance of N iid Gaussians (known mean 0) has SE law * sqrt(2 / N).
    se = law * np.sqrt(2.0 / last.size)
    assert abs(np.mean(last**2) - law) < 5 * se
    assert abs(sigma2 - law) > 10 * se  # the test tells the biased law from sigma^2


def mcse_check(draws, truth, what):
    """|mean(draws) - truth| within 5 Monte Carlo SEs, SE = sd / sqrt(ESS) with ArviZ's bulk ESS.

    draws: (chain, draw, k) of a statistic whose expectation is ``truth`` (k,).
    """
    ess = sf.diagnostics.ess(draws)
    se = draws.reshape(-1, draws.shape[-1]).std(0) / np.sqrt(ess)
    z = (draws.mean((0, 1)) - truth) / se
    assert np.all(np.abs(z) < 5), f"{what}: z-scores {np.round(z, 2)}"
    return ess


def test_mala_recovers_ill_conditioned_gaussian():
    target = sf.models.anisotropic_gaussian(dim=20, condition_number=100.0)
    trace = sf.sample(sf.mala(step_size=0.05), target, jax.random.key(3), num_particles=8,
                      num_steps=20_000, warmup=2_000, progress=False)
    x = trace.positions
    variances = np.diag(target.truth.cov)
    ess = mcse_check(x, target.truth.mean, "mean")
    mcse_check((x - target.truth.mean) ** 2, variances, "variance")
    assert ess.min() > 400  # enough effective draws for the SEs to be meaningful
    accept = trace.stats["accept_prob"].mean()
    assert abs(accept - 0.574) < 0.05
    # The step size is adapted per chain, then frozen after warmup.
    steps = trace.stats["step_size"]
    assert np.all(steps == steps[:, :1])
    assert trace.num_divergent == 0


def test_mala_adapts_each_chain_on_its_own():
    # Chain 1 starts far out in a steep tail. If adaptation were shared across chains
    # (e.g. driven by the mean acceptance), chain 0's adapted step size would depend on
    # where chain 1 is. Per-chain adaptation with per-particle keys makes chain 0's
    # result identical whether chain 1 starts at 30 or next to the mode.
    target = sf.models.anisotropic_gaussian(dim=4, condition_number=10.0, rotate=False)
    init = jnp.array([[0.1, 0.1, 0.1, 0.1], [30.0, 30.0, 30.0, 30.0]])
    run = lambda start: sf.sample(sf.mala(0.1), target, jax.random.key(5), init=start,
                                  num_steps=10, warmup=300, progress=False)
    far, near = run(init), run(init.at[1].set(0.2))
    assert far.stats["step_size"][0, 0] == near.stats["step_size"][0, 0]
    assert far.stats["step_size"][1, 0] != near.stats["step_size"][1, 0]


def test_mala_rejects_nonfinite_proposals_and_flags_them():
    # log-density NaN for x_0 > 1.5: proposals there must be rejected, flagged, counted.
    def logdensity(x):
        return jnp.where(x[0] > 1.5, jnp.nan, -0.5 * jnp.sum(x**2))

    target = sf.Target(logdensity, dim=2)
    with pytest.warns(RuntimeWarning, match="diverged"):
        trace = sf.sample(sf.mala(1.0), target, jax.random.key(0), init=jnp.zeros((16, 2)),
                          num_steps=500, progress=False)
    assert trace.num_divergent > 0
    assert trace.num_divergent == int(trace.stats["diverging"].sum())  # thin=1: one step per draw
    assert np.all(np.isfinite(trace.positions))
    assert np.all(trace.positions[..., 0] <= 1.5)


def test_ula_undoes_and_counts_divergent_steps():
    def logdensity(x):
        return jnp.where(x[0] > 1.5, jnp.nan, -0.5 * jnp.sum(x**2))

    target = sf.Target(logdensity, dim=2)
    with pytest.warns(RuntimeWarning, match="diverged"):
        trace = sf.sample(sf.ula(0.5), target, jax.random.key(0), init=jnp.zeros((16, 2)),
                          num_steps=300, thin=3, progress=False)
    assert trace.num_divergent >= int(trace.stats["diverging"].sum()) > 0
    assert np.all(np.isfinite(trace.positions))
    assert np.all(trace.positions[..., 0] <= 1.5)
