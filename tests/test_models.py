"""The benchmark targets: each log-density agrees with its exact sampler and its stated ground truth.

Tolerances come from Monte Carlo error. A z-statistic is compared with 5 (two-sided
p ~ 6e-7 per check; with a few hundred checks in this file the chance of a false
alarm stays below 1e-3 by the union bound), a chi-square statistic with df bins
with ``df + 5 sqrt(2 df)`` (5 standard deviations of the chi-square law above its
mean), a KS statistic with its 1e-4 critical value ``sqrt(-log(1e-4 / 2) / (2 n))``.
All seeds are fixed.
"""

import jax
import numpy as np
import pytest
from scipy import integrate, stats

import stochflow as sf
from stochflow.models import wells
from stochflow.models.gmm40 import GMM40_MEANS, GMM40_SD

Z_TOL = 5.0
N = 10_000
# The smooth benchmark targets this file checks (the nonsmooth ones are checked in their own tests).
SMOOTH = ["banana", "double-well", "funnel", "gaussian-aniso-100", "gmm40", "grid-gmm9",
          "llp-gmm5", "many-well", "mixture-10d", "mixture-32d", "mixture-100d", "ring-gmm8"]
# One target per log-density implementation for the score test (the mixtures share one).
SCORE = ["banana", "double-well", "funnel", "gmm40", "many-well", "mixture-10d", "mixture-100d"]


def _draws(target, n=N, seed=0):
    return np.asarray(target.truth.sample(jax.random.key(seed), n), dtype=np.float64)


@pytest.mark.parametrize("name", SCORE)
def test_score_has_mean_zero_under_exact_samples(name):
    # Stein's identity E_p[grad log p] = 0: each coordinate's sample mean of the score
    # is within Z_TOL standard errors of 0 (a wrong log-density or sampler shifts it).
    target = sf.models.get(name)
    x = _draws(target)
    scores = np.asarray(jax.jit(jax.vmap(jax.grad(target.logdensity)))(x))
    standard_error = scores.std(0) / np.sqrt(len(x))
    assert np.all(np.abs(scores.mean(0)) < Z_TOL * standard_error), name


@pytest.mark.parametrize("name", SMOOTH)
def test_stated_moments_match_exact_samples(name):
    # Mean: z-test with the stated sd. Variance: z-test with the sample's own
    # standard error of the variance, sqrt((m4 - s^4) / n).
    target = sf.models.get(name)
    x = _draws(target, seed=1)
    if name == "funnel":  # x_i^2 is lognormal-heavy (E x^4 = 3 e^18): the conditional test below instead
        x = x[:, :1]
        target = sf.models.gaussian([0.0], [[9.0]])
    sd = np.sqrt(np.diag(target.truth.cov))
    assert np.all(np.abs(x.mean(0) - target.truth.mean) < Z_TOL * sd / np.sqrt(len(x))), name
    centred = x - target.truth.mean
    m4 = np.mean(centred**4, axis=0)
    var_se = np.sqrt((m4 - np.diag(target.truth.cov) ** 2) / len(x))
    assert np.all(np.abs(np.mean(centred**2, axis=0) - np.diag(target.truth.cov)) < Z_TOL * var_se), name
    if target.dim <= 32:  # off-diagonal covariances, each with its own standard error
        products = centred[:, :, None] * centred[:, None, :]
        se = products.std(0) / np.sqrt(len(x))
        assert np.all(np.abs(products.mean(0) - target.truth.cov) < Z_TOL * se + 1e-12), name


def test_funnel_conditional_variances():
    # Given x_0, x_i^2 e^{-x_0} ~ chi^2_1: mean 1 and variance 2, so the sample mean of
    # 10,000 x 9 such terms is within 5 sqrt(2 / 90,000) of 1 (exact variance e^{x_0}).
    x = _draws(sf.models.get("funnel"), seed=5)
    ratios = x[:, 1:] ** 2 * np.exp(-x[:, :1])
    assert abs(ratios.mean() - 1.0) < Z_TOL * np.sqrt(2.0 / ratios.size)
    assert sf.models.get("funnel").truth.cov[1, 1] == pytest.approx(np.exp(4.5))


TWO_D = ["gmm40", "ring-gmm8", "grid-gmm9", "llp-gmm5", "banana", "double-well"]


@pytest.mark.parametrize("name", TWO_D)
def test_2d_histogram_of_exact_samples_matches_normalised_density(name):
    # Bin masses of exp(logdensity - log_z) by a 10 x 10 midpoint rule inside each of
    # 24 x 24 bins (error O(h^2) ~ 1e-3 relative, far below the Poisson noise of a
    # bin); chi-square against the counts of 30,000 exact samples. Since the density
    # is normalised by the stated log_z, this checks log_z too.
    target = sf.models.get(name)
    n = 30_000
    x = _draws(target, n, seed=2)
    lo, hi = np.quantile(x, 0.001, axis=0) - 1.0, np.quantile(x, 0.999, axis=0) + 1.0
    bins, sub = 24, 10
    edges = [np.linspace(lo[i], hi[i], bins + 1) for i in range(2)]
    fine = [np.linspace(lo[i], hi[i], bins * sub + 1) for i in range(2)]
    mids = [0.5 * (f[1:] + f[:-1]) for f in fine]
    grid = np.stack(np.meshgrid(*mids, indexing="ij"), axis=-1).reshape(-1, 2)
    log_p = np.asarray(jax.jit(jax.vmap(target.logdensity))(grid)) - target.truth.log_z
    cell = np.prod([f[1] - f[0] for f in fine])
    mass = (np.exp(log_p) * cell).reshape(bins, sub, bins, sub).sum(axis=(1, 3))
    counts, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=edges)
    expected = n * mass
    keep = expected >= 5
    outside_expected = n * (1.0 - mass[keep].sum())
    chi2 = np.sum((counts[keep] - expected[keep]) ** 2 / expected[keep])
    chi2 += (n - counts[keep].sum() - outside_expected) ** 2 / max(outside_expected, 5.0)
    df = keep.sum()
    assert chi2 < df + Z_TOL * np.sqrt(2 * df), (name, chi2, df)


def _ks_critical(n):
    return np.sqrt(-np.log(1e-4 / 2) / (2 * n))


def _double_well_x1_cdf():
    grid = np.linspace(-10, 10, 400_001)
    density = np.exp(wells._neg_u1(grid) - wells.DOUBLE_WELL_LOG_Z1)
    cdf = np.cumsum(density) * (grid[1] - grid[0])
    return lambda t: np.interp(t, grid, cdf)


@pytest.mark.parametrize(
    "name, coordinate, cdf",
    [
        ("funnel", 0, stats.norm(0, 3).cdf),
        ("banana", 0, stats.norm(0, 10).cdf),
        ("many-well", 0, _double_well_x1_cdf()),
        ("many-well", 31, stats.norm().cdf),
        ("mixture-10d", 1, lambda t: 0.2 * stats.norm(8 / np.sqrt(2), 1.0).cdf(t) + 0.1 * stats.norm(0, 0.8).cdf(t)
         + 0.3 * stats.norm(0, 1.2).cdf(t) + 0.4 * stats.norm(0, 1.0).cdf(t)),
    ],
)
def test_1d_marginals_of_exact_samples(name, coordinate, cdf):
    x = _draws(sf.models.get(name), seed=3)[:, coordinate]
    assert stats.kstest(x, cdf).statistic < _ks_critical(len(x))


def test_double_well_log_z_by_independent_2d_quadrature():
    # The target's own 2-D log-density on a 1201 x 1201 grid over [-6, 6] x [-9, 9]
    # (outside, the integrand is below e^-40 of its peak); the trapezoid rule on a
    # smooth, rapidly decaying integrand is accurate far beyond 1e-4.
    target = sf.models.get("double-well")
    x1, x2 = np.linspace(-6, 6, 1201), np.linspace(-9, 9, 1201)
    grid = np.stack(np.meshgrid(x1, x2, indexing="ij"), axis=-1).reshape(-1, 2)
    log_p = np.asarray(jax.jit(jax.vmap(target.logdensity))(grid), np.float64).reshape(1201, 1201)
    shift = log_p.max()
    z = integrate.trapezoid(integrate.trapezoid(np.exp(log_p - shift), x2, axis=1), x1)
    assert np.log(z) + shift == pytest.approx(target.truth.log_z, abs=1e-4)
    # FAB's constant for the 1-D well, and the d = 32 many-well value 16 (log Z1 + log sqrt(2 pi)).
    assert np.exp(wells.DOUBLE_WELL_LOG_Z1) == pytest.approx(11784.50927, rel=1e-8)
    assert sf.models.get("many-well").truth.log_z == pytest.approx(164.6957, abs=1e-4)


def test_rejection_bound_covers_the_double_well():
    # The envelope M q must dominate the normalised x1 density everywhere on a grid
    # 2.5 times finer than the one the bound was computed on.
    grid = np.linspace(-10, 10, 1_000_001)
    q = wells._Q
    log_q = np.logaddexp(
        np.log(q["weights"][0]) + stats.norm.logpdf(grid, wells._PROPOSAL_MEANS[0], wells._PROPOSAL_SD),
        np.log(q["weights"][1]) + stats.norm.logpdf(grid, wells._PROPOSAL_MEANS[1], wells._PROPOSAL_SD),
    )
    assert np.max(wells._neg_u1(grid) - q["log_z1"] - log_q) < q["log_bound"]


def test_many_well_mode_labels_follow_the_binomial_law():
    target = sf.models.get("many-well")
    x = _draws(target, seed=4)
    p_deep = wells._Q["p_deep"]
    assert p_deep == pytest.approx(0.84431, abs=1e-5)
    shares = np.asarray(sf.diagnostics.mode_weights(x, target))
    se = np.sqrt(target.truth.modes.weights * (1 - target.truth.modes.weights) / len(x))
    assert np.all(np.abs(shares - target.truth.modes.weights) < Z_TOL * se + 1e-12)


def test_gmm40_is_the_fab_instance():
    # Spot values of FAB's (fab-torch, seed 0) means to 4 decimals, and std softplus(1).
    assert GMM40_MEANS.shape == (40, 2) and np.all(np.abs(GMM40_MEANS) < 40)
    np.testing.assert_allclose(GMM40_MEANS[[0, 1, 39]], [[-0.2995, 21.4577], [-32.9218, -29.4376], [3.6797, -25.0242]],
                               atol=1e-4)
    assert GMM40_SD == pytest.approx(1.31326169, rel=1e-7)
    target = sf.models.get("gmm40")
    np.testing.assert_allclose(target.truth.modes.weights, np.full(40, 1 / 40))


def test_bad_parameters_and_names_are_refused():
    with pytest.raises(ValueError, match="even dim"):
        sf.models.get("many-well", dim=3)
    with pytest.raises(ValueError, match="dim >= 2"):
        sf.models.funnel(dim=1)
    with pytest.raises(ValueError, match="unknown target 'no-such'; available: .*gmm40"):
        sf.models.get("no-such")


def test_ground_truth_is_kept_apart_from_the_density_and_validated():
    target = sf.models.get("ring-gmm8")
    assert isinstance(target.truth, sf.GroundTruth) and target.truth.modes is not None
    assert sf.Target(lambda x: -x @ x, dim=2).truth == sf.GroundTruth()
    with pytest.raises(ValueError, match="mean must have shape"):
        sf.Target(lambda x: -x @ x, dim=2, truth=sf.GroundTruth(mean=np.zeros(3)))
    with pytest.raises(ValueError, match="cov must have shape"):
        sf.Target(lambda x: -x @ x, dim=2, truth=sf.GroundTruth(cov=np.eye(3)))
    with pytest.raises(ValueError, match="components"):
        sf.Target(lambda x: -x @ x, dim=2, truth=sf.GroundTruth(components=(np.ones(2), np.zeros((2, 3)), np.ones((2, 3, 3)))))
    with pytest.raises(TypeError, match="GroundTruth"):
        sf.Target(lambda x: -x @ x, dim=2, truth={"mean": np.zeros(2)})
