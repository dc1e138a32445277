"""Stochastic normalizing flows: path weights, training, sampler contract, bad input.

Statistical checks compare self-normalised importance estimates with exact
Gaussian answers. An estimate from weighted draws with Kish effective sample
size ESS has standard error about sd / sqrt(ESS) (exact for perfect weights,
the delta-method approximation otherwise); every check allows 5 such SEs, so a
correct implementation fails with probability < 1e-5 per check, and the sample
sizes are chosen so that a wrong path term would miss by many SEs (asserted).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import stochflow as sf
from stochflow.flows import MALA, Langevin, Metropolis, RealNVP, build_flow

MEAN = np.array([1.0, -0.5])
COV = np.array([[1.0, 0.8], [0.8, 1.5]])
LOG_NORMALISER = 2.0  # the test target's log-density is offset by this


def correlated_gaussian():
    precision = jnp.asarray(np.linalg.inv(COV))
    mean = jnp.asarray(MEAN)

    def logdensity(x):
        return -0.5 * (x - mean) @ precision @ (x - mean) + LOG_NORMALISER

    chol = jnp.asarray(np.linalg.cholesky(COV))
    sample = lambda key, n: mean + jax.random.normal(key, (n, 2)) @ chol.T
    return sf.Target(logdensity, dim=2, name="corr-gauss", truth=sf.GroundTruth(sample=sample, mean=MEAN, cov=COV))


def true_log_z():
    return LOG_NORMALISER + 0.5 * np.log(np.linalg.det(2 * np.pi * COV))


def z_scores(estimate, truth):
    return np.abs((np.asarray(estimate.value) - truth) / np.asarray(estimate.standard_error))


STOCHASTIC_ONLY = {
    # Few steps, so the unweighted draws are still far from the target.
    "metropolis": [Metropolis(3, 0.5, 0.5), Metropolis(3, 0.5, 1.0)],
    "mala": [MALA(2, 0.1, 0.5), MALA(2, 0.1, 1.0)],
    "langevin": [Langevin(3, 0.05, 0.5), Langevin(3, 0.05, 1.0)],
}


@pytest.mark.parametrize("kind", sorted(STOCHASTIC_ONLY))
def test_path_weights_of_stochastic_blocks_are_unbiased(kind):
    # N(0, I) -> N(MEAN, COV) by stochastic blocks only (nothing trained): the draws are
    # not from the target, but the weights w = u_Z(z) - u_X(x) + sum dS make the
    # self-normalised estimates unbiased and E[w] = Z (Jarzynski). SEs: delta method.
    target = correlated_gaussian()
    flow = build_flow(STOCHASTIC_ONLY[kind], 2, jax.random.key(0))
    x, log_w = jax.jit(flow.sample, static_argnums=1)(jax.random.key(1), 20_000, target)
    x, log_w = np.asarray(x, np.float64), np.asarray(log_w, np.float64)
    mean = sf.diagnostics.importance_expectation(x, log_w)
    centred = x - MEAN
    cov = sf.diagnostics.importance_expectation(centred[:, :, None] * centred[:, None, :], log_w)
    log_z = sf.diagnostics.importance_log_z(log_w)
    assert float(mean.ess) > 1000  # enough effective draws for the SEs to be meaningful
    assert np.all(z_scores(mean, MEAN) < 5), z_scores(mean, MEAN)
    assert np.all(z_scores(cov, COV) < 5), z_scores(cov, COV)
    assert z_scores(log_z, true_log_z()) < 5
    # The weights matter: the unweighted mean misses by far more than the tolerance.
    unweighted_z = np.abs(x.mean(0) - MEAN) / (np.sqrt(np.diag(COV)) / np.sqrt(len(x)))
    assert unweighted_z.max() > 20


def test_backward_path_weights_are_unbiased():
    # Backward path from exact target draws x: exp(path_log_likelihood(x)) has mean q_X(x),
    # the flow's marginal density, so E_{x ~ p}[exp(path_ll(x) - log p(x))] = 1 with the
    # normalised p. Checked with all three stochastic block types in one flow.
    target = correlated_gaussian()
    flow = build_flow([Metropolis(3, 0.5, 0.3), MALA(2, 0.1, 0.6), Langevin(3, 0.05, 1.0)], 2, jax.random.key(0))
    x = target.truth.sample(jax.random.key(2), 20_000)
    keys = jax.random.split(jax.random.key(3), x.shape[0])
    path_ll = jax.jit(jax.vmap(flow.path_log_likelihood, in_axes=(0, 0, None)))(x, keys, target)
    log_p = jax.vmap(target.logdensity)(x) - true_log_z()
    estimate = sf.diagnostics.importance_log_z(np.asarray(path_ll - log_p, np.float64))
    assert abs(float(estimate.value)) < 5 * float(estimate.standard_error)
    assert float(estimate.ess) > 1000


def test_coupling_inverse_and_log_det_agree():
    # For deterministic layers the backward path is exact: path_ll(x) = log q(x), and
    # log w = log p(x) - log q(x) must equal the forward weight, to rounding.
    target = correlated_gaussian()
    flow = build_flow([RealNVP(16, 2), RealNVP(16, 2, flip=True), RealNVP(16, 1)], 2, jax.random.key(4))

    @eqx.filter_jit
    def round_trip(flow, keys):
        x, log_w, log_p = jax.vmap(flow.sample_one, in_axes=(0, None))(keys, target)
        path_ll = jax.vmap(flow.path_log_likelihood, in_axes=(0, 0, None))(x, keys, target)
        z, _ = jax.vmap(flow.inverse, in_axes=(0, 0, None))(x, keys, target)
        x_again, _ = jax.vmap(flow.forward, in_axes=(0, 0, None))(z, keys, target)
        return x, x_again, log_w, log_p - path_ll

    x, x_again, log_w, log_w_backward = round_trip(flow, jax.random.split(jax.random.key(5), 256))
    np.testing.assert_allclose(log_w, log_w_backward, atol=1e-4)
    np.testing.assert_allclose(x_again, x, atol=1e-5)


@pytest.fixture(scope="module")
def trained():
    """An SNF (RealNVP + Metropolis) trained on the correlated Gaussian with the paper's
    schedule: maximum likelihood on exact draws, then half ML, half energy-based; and a
    trace of 2000 particles x 5 steps drawn from it with sf.snf."""
    target = correlated_gaussian()
    data = target.truth.sample(jax.random.key(10), 2000)
    layers = [RealNVP(32, 2), RealNVP(32, 2, flip=True), Metropolis(5, 0.3, 1.0)]
    flow, history = sf.fit_snf(target, jax.random.key(11), layers, num_iterations=200, learning_rate=5e-3,
                               samples=data, ml_weight=lambda i: jnp.where(i < 100, 1.0, 0.5),
                               batch_size=128, progress=False, return_history=True)
    sampler = sf.snf(flow)
    run = lambda key: sf.sample(sampler, target, key, num_particles=2000, num_steps=5, progress=False)
    return target, flow, history, run, run(jax.random.key(12))


def test_trained_snf_importance_estimates(trained):
    target, flow, history, _, trace = trained
    assert history["loss"][-20:].mean() < history["loss"][:5].mean()
    x = np.asarray(trace.positions, np.float64)
    log_w = np.asarray(trace.stats["log_weight"], np.float64)
    n = log_w.size
    ess = float(sf.diagnostics.importance_ess(log_w))
    assert ess > 0.3 * n  # training made the weights useful
    # Tolerances from the weights' ESS: SE(mean_i) = sqrt(C_ii / ESS); for Gaussian
    # f = (x_i - m_i)(x_j - m_j), SE(C_ij) = sqrt((C_ii C_jj + C_ij^2) / ESS);
    # SE(log Z) = sqrt(1/ESS - 1/n) (delta method, module docstring of importance.py).
    mean = sf.diagnostics.importance_expectation(x, log_w).value
    centred = x - MEAN
    cov = sf.diagnostics.importance_expectation(centred[..., :, None] * centred[..., None, :], log_w).value
    log_z = sf.diagnostics.importance_log_z(log_w).value
    var = np.diag(COV)
    assert np.all(np.abs(mean - MEAN) < 5 * np.sqrt(var / ess))
    assert np.all(np.abs(cov - COV) < 5 * np.sqrt((np.outer(var, var) + COV**2) / ess))
    assert abs(log_z - true_log_z()) < 5 * np.sqrt(1 / ess - 1 / n)


def test_sampler_contract_fresh_batches(trained):
    target, flow, _, run, trace = trained
    assert set(trace.stats) >= {"log_weight", "logdensity", "n_grad", "diverging"}
    # One Metropolis block with lam > 0 of 5 steps: 5 + 1 evaluations, plus the weight's.
    assert flow.target_evaluations == 7
    assert np.all(trace.stats["n_grad"] == 7)
    assert trace.num_divergent == 0
    # Each step is a new independent batch: no position repeats across steps.
    flat = trace.positions.reshape(-1, 2)
    assert len(np.unique(flat, axis=0)) == flat.shape[0]
    logdensity = jax.vmap(target.logdensity)(flat).reshape(trace.stats["logdensity"].shape)
    np.testing.assert_allclose(trace.stats["logdensity"], logdensity, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(run(jax.random.key(12)).positions, trace.positions)  # same key, same draws
    assert "log_weight" in trace.to_arviz().sample_stats


def test_save_and_load_round_trip(trained, tmp_path):
    _, flow, _, _, _ = trained
    path = str(tmp_path / "flow.snf")
    sf.save_snf(path, flow)
    loaded = sf.load_snf(path)
    assert loaded.hyperparameters() == flow.hyperparameters()
    assert loaded.hyperparameters()["training"]["iterations"] == 200
    assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(flow)
    for saved, read in zip(jax.tree_util.tree_leaves(flow), jax.tree_util.tree_leaves(loaded)):
        np.testing.assert_array_equal(saved, read)


def test_nonfinite_paths_are_flagged_and_weightless():
    # Unadjusted Langevin with a huge step on a quartic blows up for some draws.
    target = sf.Target(lambda x: -jnp.sum(x**4), dim=2)
    flow = build_flow([Langevin(10, 0.5, 1.0)], 2, jax.random.key(0))
    with pytest.warns(RuntimeWarning, match="diverged"):
        trace = sf.sample(sf.snf(flow), target, jax.random.key(1), num_particles=200, num_steps=1, progress=False)
    diverging = trace.stats["diverging"]
    assert 0 < diverging.sum() < diverging.size
    assert trace.num_divergent == diverging.sum()
    assert np.all(trace.stats["log_weight"][diverging] == -np.inf)
    assert np.all(np.isfinite(trace.stats["log_weight"][~diverging]))


def test_importance_diagnostics_on_known_weights():
    values = np.arange(6.0)
    assert float(sf.diagnostics.importance_ess(np.zeros(6))) == pytest.approx(6.0)
    assert float(sf.diagnostics.importance_ess(np.array([0.0, -np.inf, -np.inf]))) == pytest.approx(1.0)
    # Weights 1, 2, 1: ESS = 16 / 6; mean = (0 + 2 + 2) / 4.
    log_w = np.log([1.0, 2.0, 1.0])
    estimate = sf.diagnostics.importance_expectation(values[:3], log_w)
    assert float(estimate.value) == pytest.approx(1.0)
    assert float(estimate.ess) == pytest.approx(16 / 6)
    assert float(sf.diagnostics.importance_log_z(log_w + 100.0).value) == pytest.approx(100 + np.log(4 / 3))
    # Equal weights: the plain mean and sd / sqrt(n) (population sd).
    plain = sf.diagnostics.importance_expectation(values, np.full(6, 3.0))
    assert float(plain.standard_error) == pytest.approx(values.std() / np.sqrt(6))


class TestBadInput:
    target = correlated_gaussian()

    def fit(self, layers=(RealNVP(8, 1),), **kwargs):
        return sf.fit_snf(self.target, jax.random.key(0), list(layers), num_iterations=2, progress=False, **kwargs)

    def test_empty_layers(self):
        with pytest.raises(ValueError, match="layers is empty"):
            self.fit(layers=[])

    def test_nothing_to_train(self):
        with pytest.raises(ValueError, match="no trainable layer"):
            self.fit(layers=[Metropolis(5, 0.3, 1.0)])

    def test_not_a_spec(self):
        with pytest.raises(TypeError, match="layer specs"):
            self.fit(layers=["realnvp"])

    def test_dimension_mismatch(self):
        flow3 = build_flow([RealNVP(8, 1)], 3, jax.random.key(0))
        with pytest.raises(ValueError, match="dim=3.*dim=2"):
            sf.fit_snf(self.target, jax.random.key(0), flow3, num_iterations=2, progress=False)
        with pytest.raises(ValueError, match="dim=3.*dim=2"):
            sf.sample(sf.snf(flow3), self.target, jax.random.key(0), num_particles=2, num_steps=1, progress=False)
        with pytest.raises(ValueError, match="mask has length 3"):
            self.fit(layers=[RealNVP(8, 1, mask=(1, 0, 0))])
        with pytest.raises(ValueError, match="dim >= 2"):
            sf.fit_snf(sf.Target(lambda x: -jnp.sum(x**2), dim=1), jax.random.key(0), [RealNVP()], 2, progress=False)

    @pytest.mark.parametrize("rate", [0.0, -1e-3, float("nan")])
    def test_non_positive_learning_rate(self, rate):
        with pytest.raises(ValueError, match="learning_rate"):
            self.fit(learning_rate=rate)

    def test_optimizer_and_learning_rate_together(self):
        with pytest.raises(ValueError, match="not both"):
            self.fit(learning_rate=1e-3, optimizer=optax.adam(1e-3))
        with pytest.raises(TypeError, match="optax"):
            self.fit(optimizer="adam")

    def test_ml_without_samples_and_bad_samples(self):
        with pytest.raises(ValueError, match="samples=None"):
            self.fit(ml_weight=0.5)
        with pytest.raises(ValueError, match=r"ml_weight must lie in \[0, 1\]"):
            self.fit(ml_weight=1.5, samples=np.zeros((4, 2)))
        with pytest.raises(ValueError, match=r"shape \(n, dim\)"):
            self.fit(ml_weight=0.5, samples=np.zeros((4, 3)))

    def test_bad_layer_hyperparameters(self):
        with pytest.raises(ValueError, match="step_size"):
            Metropolis(5, -0.1, 0.5)
        with pytest.raises(ValueError, match="lam must lie in"):
            Langevin(5, 0.1, 1.5)
        with pytest.raises(ValueError, match="num_steps"):
            MALA(0, 0.1, 0.5)

    def test_bad_counts(self):
        with pytest.raises(ValueError, match="num_iterations"):
            sf.fit_snf(self.target, jax.random.key(0), [RealNVP()], 0, progress=False)
        with pytest.raises(TypeError, match="batch_size"):
            self.fit(batch_size=12.5)


@pytest.mark.slow
@pytest.mark.parametrize("block", [Langevin(3, 0.05, 1.0), MALA(3, 0.1, 1.0)], ids=["langevin", "mala"])
def test_training_through_langevin_and_mala_blocks(block):
    # Gradients flow through the Langevin proposals (second derivatives of log p); both losses.
    # After training, the KL loss approaches -log Z (KL >= 0) and the reweighted log Z and
    # mean match the truth within 5 ESS-based SEs (as in test_trained_snf_importance_estimates).
    target = correlated_gaussian()
    data = target.truth.sample(jax.random.key(5), 2000)
    flow, history = sf.fit_snf(target, jax.random.key(0), [RealNVP(16, 1), RealNVP(16, 1, flip=True), block], 100,
                               samples=data, ml_weight=0.5, progress=False, return_history=True)
    assert history["kl"][-10:].mean() < history["kl"][:10].mean()
    assert history["kl"][-10:].mean() > -true_log_z() - 0.05  # KL >= 0 up to batch noise
    x, log_w = eqx.filter_jit(lambda f, k: f.sample(k, 20_000, target))(flow, jax.random.key(1))
    ess = float(sf.diagnostics.importance_ess(log_w))
    assert ess > 0.5 * 20_000
    mean = np.asarray(sf.diagnostics.importance_expectation(x, log_w).value)
    assert np.all(np.abs(mean - MEAN) < 5 * np.sqrt(np.diag(COV) / ess))
    log_z = float(sf.diagnostics.importance_log_z(log_w).value)
    assert abs(log_z - true_log_z()) < 5 * np.sqrt(1 / ess - 1 / 20_000)
