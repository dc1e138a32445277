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
    # A rotated Gaussian: no diagonal mass helps, so this is dual averaging's test (the
    # step size alone adapts, for the whole warmup).
    target = sf.models.anisotropic_gaussian(dim=20, condition_number=100.0)
    trace = sf.sample(sf.mala(step_size=0.05, adapt_mass=False), target, jax.random.key(3), num_particles=8,
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


@pytest.mark.parametrize("pooled", [False, True])
def test_windowed_warmup_recovers_a_diagonal_mass(pooled):
    # Axis-aligned Gaussian, variances 1e-2 .. 1 (condition 100): Stan's windows should end
    # warmup with inverse mass = the variances. 3,000 warmup steps: the last slow window holds
    # 1,300 draws a chain (steps 1,650..2,950). Measured bulk ESS of adapted MALA here is about
    # 0.17 per draw, so that window is worth n_eff ~ 220 draws a chain (1,760 pooled over the 8
    # chains), and a variance estimate's relative SE is sqrt(2 / n_eff): 0.095 a chain, 0.034
    # pooled. Tolerance: 5 SE. (Stan's shrinkage n/(n+5) moves it by < 0.4%.)
    target = sf.models.anisotropic_gaussian(dim=20, condition_number=100.0, rotate=False)
    variances = np.diag(target.truth.cov)
    trace = sf.sample(sf.mala(0.05, pooled=pooled), target, jax.random.key(4), 8, 2_000, warmup=3_000,
                      progress=False)
    inverse_mass = trace.adapted["inverse_mass"]
    assert inverse_mass.shape == (8, 20)
    relative_error = inverse_mass / variances - 1.0
    if pooled:
        assert np.all(inverse_mass == inverse_mass[:1])  # one mass for every chain
    assert np.abs(relative_error).max() < 5 * (0.034 if pooled else 0.095), relative_error.round(3)
    # The adapted run is the right law and much better mixed than the identity mass allows
    # (there ESS is limited by the 100x smaller step the narrowest coordinate forces).
    ess = mcse_check(trace.positions, target.truth.mean, "mean")
    mcse_check((trace.positions - target.truth.mean) ** 2, variances, "variance")
    assert ess.min() > 1_000
    # The step size is each chain's own, fixed at the end of warmup, and the acceptance lands
    # near the target: Stan's schedule ends on a 50-step dual-averaging run, which lands above
    # the target (as Stan's does; measured 0.60-0.66 over seeds for 0.574), inside the end-of-run
    # check's tolerance, and the run is not flagged.
    steps = trace.stats["step_size"]
    assert np.all(steps == steps[:, :1]) and np.all(trace.adapted["step_size"] == steps[:, 0])
    assert abs(trace.stats["accept_prob"].mean() - 0.574) < sf.diagnostics.checks.ACCEPT_TOLERANCE
    assert trace.checks.problems() == []


def test_dense_windowed_warmup_recovers_a_rotated_covariance():
    # A rotated Gaussian (condition 100), where no diagonal mass helps: with dense_mass the
    # windows estimate the covariance. Pooled over 8 chains, the last window (1,300 draws a
    # chain) is worth n_eff ~ 2,000 (ESS per draw measured ~0.2 after warmup), and an entry of a
    # sample covariance has SE sqrt((S_ii S_jj + S_ij^2) / n_eff). Tolerance: 5 SE per entry.
    target = sf.models.anisotropic_gaussian(dim=10, condition_number=100.0)
    cov = np.asarray(target.truth.cov)
    trace = sf.sample(sf.mala(0.05, dense_mass=True, pooled=True), target, jax.random.key(0), 8, 2_000,
                      warmup=3_000, progress=False)
    estimate = trace.adapted["inverse_mass"]
    assert estimate.shape == (8, 10, 10) and np.all(estimate == estimate[:1])
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / 2_000)
    assert np.all(np.abs(estimate[0] - cov) < 5 * se), np.max(np.abs(estimate[0] - cov) / se)
    # It mixes where the diagonal mass cannot (measured min bulk ESS 3,966 against 68 over the
    # same 16,000 draws), and it is exact.
    ess = mcse_check(trace.positions, target.truth.mean, "mean")
    assert ess.min() > 1_000
    assert trace.checks.problems() == []
