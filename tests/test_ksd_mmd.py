"""KSD and MMD: blocked estimates against brute-force O(n^2) references and exact laws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stochflow as sf
from stochflow.diagnostics import ksd, mmd
from stochflow.kernels.stein import median_distance


def kernel_fn(kernel, h, c=1.0, beta=-0.5):
    """The kernel written directly from its definition (no radial-profile algebra)."""
    if kernel == "rbf":
        return lambda x, y: jnp.exp(-jnp.sum((x - y) ** 2) / (2 * h**2))
    return lambda x, y: (c**2 + jnp.sum((x - y) ** 2) / h**2) ** beta


def brute_stein_kernel(k, score):
    """k_p(x, y) from its definition, every derivative by autodiff."""

    def k_p(x, y):
        grad_x = jax.grad(k, 0)(x, y)
        grad_y = jax.grad(k, 1)(x, y)
        trace = jnp.trace(jax.jacfwd(jax.grad(k, 1), 0)(x, y))
        sx, sy = score(x), score(y)
        return sx @ sy * k(x, y) + sx @ grad_y + sy @ grad_x + trace

    return k_p


def brute_pairs(f, x, y):
    """The full (n, m) matrix f(x_i, y_j), one pair at a time (vmapped, no blocking)."""
    return np.asarray(jax.jit(jax.vmap(jax.vmap(f, (None, 0)), (0, None)))(x, y))


def gaussian_score(mean):
    return lambda x: -(x - mean)


@pytest.mark.parametrize("kernel,h,statistic", [("imq", 1.0, "u"), ("imq", 0.7, "v"), ("rbf", 1.3, "u"), ("rbf", 0.9, "v")])
def test_ksd_matches_brute_force(kernel, h, statistic):
    x = jax.random.normal(jax.random.key(0), (23, 3)) * 1.5 + 0.3
    score = lambda z: -z / 2.0 + jnp.sin(z)  # a non-Gaussian score: every term matters
    pairs = brute_pairs(brute_stein_kernel(kernel_fn(kernel, h), score), x, x)
    n = len(x)
    if statistic == "u":
        expected = (pairs.sum() - np.trace(pairs)) / (n * (n - 1))
    else:
        expected = pairs.mean()
    # Block sizes that do and do not divide n, and one block.
    for block in (7, 23):
        got = ksd(x, score, kernel, statistic=statistic, bandwidth=h, block_size=block)
        assert float(got) == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_ksd_imq_parameters_and_median_bandwidth():
    x = jax.random.normal(jax.random.key(1), (17, 2))
    score = gaussian_score(0.0)
    k = kernel_fn("imq", 1.0, c=2.0, beta=-0.3)
    expected = brute_pairs(brute_stein_kernel(k, score), x, x).mean()
    assert float(ksd(x, score, c=2.0, beta=-0.3)) == pytest.approx(expected, rel=1e-4)
    # bandwidth=None: the median distance between distinct points.
    dists = np.sqrt(((np.asarray(x)[:, None] - np.asarray(x)[None]) ** 2).sum(-1))
    med = np.median(dists[np.triu_indices(len(x), 1)])
    assert float(median_distance(x)) == pytest.approx(med, rel=1e-5)
    expected = brute_pairs(brute_stein_kernel(kernel_fn("imq", med), score), x, x).mean()
    assert float(ksd(x, score, bandwidth=None)) == pytest.approx(expected, rel=1e-4)


def test_ksd_accepts_target_and_precomputed_scores_and_jits():
    target = sf.Target(lambda z: -0.5 * jnp.sum(z**2), dim=2)
    x = jax.random.normal(jax.random.key(2), (50, 2))
    by_fn = ksd(x, gaussian_score(0.0))
    assert float(ksd(x, target)) == pytest.approx(float(by_fn), rel=1e-6)
    assert float(ksd(x, -x)) == pytest.approx(float(by_fn), rel=1e-6)
    jitted = jax.jit(lambda z: ksd(z, gaussian_score(0.0), statistic="u", bandwidth=None))
    assert float(jitted(x)) == pytest.approx(float(ksd(x, gaussian_score(0.0), statistic="u", bandwidth=None)), rel=1e-5)


def test_ksd_u_statistic_is_unbiased_on_exact_draws_and_detects_a_shift():
    # R independent U-statistics of n exact N(0, I_3) draws: their mean is 0 exactly, so it must
    # lie within 4 standard errors (sd / sqrt(R)) of 0. Draws shifted by 0.5 give a positive mean
    # (KSD^2 > 0) far beyond that band.
    n, d, reps = 200, 3, 60
    score = gaussian_score(0.0)
    keys = jax.random.split(jax.random.key(3), reps)
    draws = jax.vmap(lambda k: jax.random.normal(k, (n, d)))(keys)
    u_stat = jax.jit(jax.vmap(lambda z: ksd(z, score, statistic="u")))  # ksd vmaps and jits
    exact, shifted = np.asarray(u_stat(draws)), np.asarray(u_stat(draws + 0.5))
    se = exact.std(ddof=1) / np.sqrt(reps)
    assert abs(exact.mean()) < 4 * se
    assert shifted.mean() > 20 * se and np.all(shifted > 0)
    # The V-statistic is non-negative and the shift raises it.
    v_exact, v_shift = float(ksd(draws[0], score)), float(ksd(draws[0] + 0.5, score))
    assert 0 <= v_exact < v_shift


@pytest.mark.parametrize("kernel,statistic", [("rbf", "u"), ("imq", "v")])
def test_mmd_matches_brute_force(kernel, statistic):
    x = jax.random.normal(jax.random.key(4), (19, 3))
    y = jax.random.normal(jax.random.key(5), (13, 3)) + 0.4
    h = 1.1
    k = kernel_fn(kernel, h)
    kxx, kyy, kxy = brute_pairs(k, x, x), brute_pairs(k, y, y), brute_pairs(k, x, y)
    n, m = len(x), len(y)
    if statistic == "u":
        expected = ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                    - 2 * kxy.mean())
    else:
        expected = kxx.mean() + kyy.mean() - 2 * kxy.mean()
    for block in (5, 19):
        got = mmd(x, y, kernel, statistic=statistic, bandwidth=h, block_size=block)
        assert float(got) == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_mmd_median_heuristic_and_large_n_subsample():
    x = jax.random.normal(jax.random.key(6), (30, 2))
    y = jax.random.normal(jax.random.key(7), (20, 2)) * 2
    pooled = np.concatenate([x, y])
    dists = np.sqrt(((pooled[:, None] - pooled[None]) ** 2).sum(-1))
    med = np.median(dists[np.triu_indices(len(pooled), 1)])
    assert float(mmd(x, y)) == pytest.approx(float(mmd(x, y, bandwidth=med)), rel=1e-5)
    # Above 1000 points the median comes from 1000 evenly spaced points; for iid N(0, I_2) draws
    # the median distance is sqrt(2 * 2 ln 2) = 1.665 (distance^2 / 2 is chi^2_2), and the subsample
    # median's relative SE is about 1% here, so 5% is a wide band.
    big = jax.random.normal(jax.random.key(8), (5000, 2))
    assert float(median_distance(big)) == pytest.approx(np.sqrt(4 * np.log(2)), rel=0.05)


def test_mmd_u_statistic_unbiased_under_the_null_and_positive_under_a_shift():
    n, reps = 150, 60
    keys = jax.random.split(jax.random.key(9), 2 * reps)
    draws = jax.vmap(lambda k: jax.random.normal(k, (n, 2)))(keys)
    u_stat = jax.jit(jax.vmap(lambda a, b: mmd(a, b, statistic="u", bandwidth=1.0)))
    same = np.asarray(u_stat(draws[:reps], draws[reps:]))
    moved = np.asarray(u_stat(draws[:reps], draws[reps:] + 0.5))
    se = same.std(ddof=1) / np.sqrt(reps)
    assert abs(same.mean()) < 4 * se
    assert moved.mean() > 20 * se


def test_bad_input_is_refused():
    x = jnp.zeros((5, 2))
    score = gaussian_score(0.0)
    with pytest.raises(ValueError, match="shape"):
        ksd(jnp.zeros(5), score)
    with pytest.raises(ValueError, match="bandwidth"):
        ksd(x, score, bandwidth=0.0)
    with pytest.raises(ValueError, match="bandwidth"):
        mmd(x, x, bandwidth=-1.0)
    with pytest.raises(ValueError, match="kernel"):
        mmd(x, x, kernel="laplace")
    with pytest.raises(ValueError, match="statistic"):
        ksd(x, score, statistic="w")
    with pytest.raises(ValueError, match="dimension"):
        mmd(x, jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="beta"):
        ksd(x, score, beta=0.5)
    with pytest.raises(ValueError, match="score"):
        ksd(x, lambda z: jnp.sum(z))
