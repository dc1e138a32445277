"""Sample-quality metrics: brute-force references on small inputs, and a correct sampler ranked above a biased one."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import cdist

import stochflow as sf
from stochflow.diagnostics import metrics
from stochflow.diagnostics.modes import Modes, gaussian_component_modes


def test_moment_errors_against_hand_computation():
    draws = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    cov = np.diag([4.0, 1.0])
    errors = metrics.moment_errors(draws, mean=np.array([1.0, 3.0]), cov=cov)
    # sample mean (2, 3): standardised errors |2-1|/2 = 0.5 and 0; sample cov [[4,4],[4,4]].
    assert float(errors["mean_err"]) == pytest.approx(0.5)
    assert float(errors["cov_err"]) == pytest.approx(np.linalg.norm([[0, 4], [4, 3]]) / np.linalg.norm(cov), rel=1e-6)


def test_gaussian_component_modes_match_bayes_rule_by_brute_force():
    rng = np.random.default_rng(0)
    weights = np.array([0.5, 0.3, 0.2])
    means = np.array([[0.0, 0.0], [2.0, 1.0], [-1.0, 2.0]])
    covs = np.array([[[1.0, 0.3], [0.3, 0.5]], [[0.4, 0.0], [0.0, 2.0]], [[1.5, -0.5], [-0.5, 1.0]]])
    x = rng.normal(size=(300, 2)) * 2
    brute = np.argmax([w * stats.multivariate_normal(m, c).pdf(x) for w, m, c in zip(weights, means, covs)], axis=0)
    modes = gaussian_component_modes(weights, means, covs)
    np.testing.assert_array_equal(np.asarray(modes.assign(jnp.asarray(x))), brute)
    shares = np.asarray(metrics.mode_weights(x, modes))
    np.testing.assert_allclose(shares, np.bincount(brute, minlength=3) / 300, atol=1e-6)
    assert float(metrics.mode_weight_tv(x, modes)) == pytest.approx(0.5 * np.abs(shares - weights).sum(), abs=1e-6)
    entropy = -sum(p * np.log(p) for p in shares if p > 0)
    assert float(metrics.mode_coverage(x, modes)) == pytest.approx(entropy / np.log(3), abs=1e-6)
    assert int(metrics.modes_visited(x, modes)) == int((shares > 0).sum())


def test_energy_distance_matches_brute_force_and_jits():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(37, 3)), rng.normal(size=(23, 3)) + 0.5
    n, m = len(x), len(y)
    brute = (2 * cdist(x, y).mean() - cdist(x, x).sum() / (n * (n - 1)) - cdist(y, y).sum() / (m * (m - 1)))
    # block = 8 does not divide 37 or 23: the padding must not count. float32 distances from
    # |x|^2 + |y|^2 - 2 x.y carry ~1e-6 absolute error each; the result (0.17) is a difference of
    # terms ~2, so agreement to 2e-4 relative is what float32 allows.
    assert float(metrics.energy_distance(x, y, block=8)) == pytest.approx(brute, rel=2e-4)
    jitted = jax.jit(metrics.energy_distance, static_argnames="block")
    assert float(jitted(jnp.asarray(x), jnp.asarray(y), block=8)) == pytest.approx(brute, rel=2e-4)


def test_w2_matches_brute_force_over_all_assignments():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(6, 2)), rng.normal(size=(6, 2)) * 2
    best = min(np.mean(np.sum((x - y[list(p)]) ** 2, axis=1)) for p in itertools.permutations(range(6)))
    assert metrics.w2(x, y) == pytest.approx(np.sqrt(best), rel=1e-10)
    # A 1-D check: the optimal plan pairs order statistics.
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert metrics.w2(a[:, None], b[:, None]) == pytest.approx(np.sqrt(np.mean((np.sort(a) - np.sort(b)) ** 2)))
    with pytest.raises(ValueError, match="same shape"):
        metrics.w2(x, y[:5])


def test_log_z_estimate_matches_direct_average():
    rng = np.random.default_rng(3)
    log_w = rng.normal(size=1000) * 3 + 10
    estimate = sf.diagnostics.importance_log_z(log_w).value
    assert float(estimate) == pytest.approx(np.log(np.mean(np.exp(log_w))), rel=1e-5)
    assert float(metrics.log_z_error(2.5, 2.0)) == pytest.approx(0.5)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        metrics.energy_distance(np.zeros(5), np.zeros((5, 1)))
    with pytest.raises(TypeError, match="Modes"):
        metrics.mode_weights(np.zeros((5, 2)), sf.models.get("banana"))


def _mixture_samples(target, weights, key, n):
    """Exact component draws, but with the given mixture weights (a biased sampler)."""
    w, means, covs = target.truth.components
    component = jax.random.categorical(key, jnp.log(jnp.asarray(weights)), shape=(n,))
    noise = jax.random.normal(jax.random.fold_in(key, 1), (n, means.shape[1]))
    chols = jnp.linalg.cholesky(jnp.asarray(covs))
    return np.asarray(jnp.asarray(means)[component] + jnp.einsum("nij,nj->ni", chols[component], noise))


@pytest.mark.parametrize("name", ["mixture-10d"])
def test_metrics_rank_exact_samples_above_biased_ones(name):
    # Reference, correct (fresh exact) and biased samples of the same size n = 600.
    # Biases: (a) mode weights shifted (half the mass moved to one component), (b) every
    # component's spread inflated by 1.5 (ULA-like). Each metric must score the correct
    # sample better. With n = 600 the metrics' sampling sd (their floor) is far below
    # the gaps these biases make (checked margins: TV 0.4 vs ~0.03; W2 and energy by > 3x).
    target = sf.models.get(name)
    n = 600
    reference = np.asarray(target.truth.sample(jax.random.key(10), n))
    correct = np.asarray(target.truth.sample(jax.random.key(11), n))
    weights = target.truth.components[0]
    shifted = 0.5 * weights + 0.5 * np.eye(len(weights))[0]
    wrong_weights = _mixture_samples(target, shifted, jax.random.key(12), n)
    centres = target.truth.components[1][np.asarray(target.truth.modes.assign(correct))]
    inflated = centres + 1.5 * (correct - centres)

    tv = lambda s: float(metrics.mode_weight_tv(s, target))
    assert tv(correct) < 0.1 < 0.3 < tv(wrong_weights)
    for biased in (wrong_weights, inflated):
        assert metrics.w2(correct, reference) < metrics.w2(biased, reference)
        assert float(metrics.energy_distance(correct, reference)) < float(metrics.energy_distance(biased, reference))
        errors_ok = metrics.moment_errors(correct, target.truth.mean, target.truth.cov)
        errors_bad = metrics.moment_errors(biased, target.truth.mean, target.truth.cov)
        assert float(errors_ok["cov_err"]) < float(errors_bad["cov_err"])


def test_mode_coverage_is_one_for_equal_shares_and_zero_for_one_mode():
    modes = Modes(lambda x: jnp.asarray(x[:, 0] > 0, jnp.int32), np.array([0.5, 0.5]))
    balanced = np.array([[-1.0], [1.0], [-2.0], [2.0]])
    assert float(metrics.mode_coverage(balanced, modes)) == pytest.approx(1.0)
    assert float(metrics.mode_coverage(np.abs(balanced), modes)) == pytest.approx(0.0)
    assert float(metrics.mode_weight_tv(np.abs(balanced), modes)) == pytest.approx(0.5)
