"""Reverse diffusion Monte Carlo against exact answers.

On a Gaussian target N(mu, diag(var)) everything is in closed form: the OU
marginal p_t = N(e^{-t} mu, e^{-2t} var + 1 - e^{-2t}) has the linear score
-(x - e^{-t} mu) / v_t, and the rdMC outer recursion with that score is a
linear Gaussian recursion whose law after the K steps of the schedule we
compute exactly (``discretised_law``). The score estimate is unbiased on a
Gaussian once the inner chains have forgotten their start (ULA keeps the mean
of a Gaussian), so its errors are Monte Carlo errors and its noise adds a
computable variance to the recursion.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stochflow as sf
from stochflow.samplers import rdmc_score

MU = np.array([1.0, -2.0])
VAR = np.array([0.5, 2.0])


@functools.lru_cache(maxsize=None)
def gaussian_target():
    return sf.Target(lambda x: -0.5 * jnp.sum((x - MU) ** 2 / VAR), dim=2, name="gauss")


def exact_score(x, t):
    v_t = np.exp(-2 * t) * VAR + 1 - np.exp(-2 * t)
    return -(x - np.exp(-t) * MU) / v_t


@functools.lru_cache(maxsize=None)
def estimator(target, settings):
    """A jitted ``(x, t, keys) -> (len(keys), dim)`` of independent score estimates."""
    one = lambda x, t, key: rdmc_score(target, x, t, key, **dict(settings)).score
    return jax.jit(jax.vmap(one, in_axes=(None, None, 0)))


def estimates(target, x, t, num, seed, **settings):
    """``num`` independent score estimates at (x, t): (num, dim)."""
    keys = jax.random.split(jax.random.key(seed), num)
    run = estimator(target, tuple(sorted(settings.items())))
    return np.asarray(run(jnp.asarray(x, jnp.float32), jnp.float32(t), keys), dtype=float)


def discretised_law(times, score_noise_var=None, score_factor=2.0):
    """Mean and variance (per coordinate) after the rdMC recursion with the exact score.

    x' = e^d x + 2 (e^d - 1) (s(x) + eps) + sqrt(e^{2d} - 1) xi, s linear, from
    N(0, 1 - e^{-2T}); eps is the score estimate's error, of variance
    ``score_noise_var[k]`` at step k (zero if None). ``score_factor`` is the 2
    in front of the score (1 gives the integrator of the port that drops it).
    """
    mean, var = np.zeros(2), np.full(2, -np.expm1(-2 * times[0]))
    for k, (t, t_next) in enumerate(zip(times[:-1], times[1:])):
        d = t - t_next
        v_t = np.exp(-2 * t) * VAR + 1 - np.exp(-2 * t)
        gain = score_factor * np.expm1(d)
        slope = np.exp(d) - gain / v_t
        mean = slope * mean + gain * np.exp(-t) * MU / v_t
        var = slope**2 * var + np.expm1(2 * d)
        if score_noise_var is not None:
            var = var + gain**2 * score_noise_var[k]
    return mean, var


@pytest.mark.parametrize("t", [0.1, 0.5, 1.0, 2.0])
def test_score_estimate_matches_closed_form(t):
    target, x = gaussian_target(), np.array([0.3, 0.7])
    draws = estimates(target, x, t, num=200, seed=int(10 * t), inner_particles=16, inner_steps=20)
    # 200 iid estimates: their mean is within 5 standard errors of the exact score.
    se = draws.std(0, ddof=1) / np.sqrt(len(draws))
    z = (draws.mean(0) - exact_score(x, t)) / se
    assert np.all(np.abs(z) < 5), f"t={t}: z-scores {z}"
    # The check has power: 5 SEs are a few percent of the score's size.
    assert np.all(5 * se < 0.1 * np.linalg.norm(exact_score(x, t)))


def test_score_error_shrinks_with_inner_sample_size():
    # Gaussian starts (independent chains), so an estimate from n chains is an average of n
    # iid chain means: its variance is C / n exactly and its bias (start transient, e^{-40 c})
    # is negligible. Variance ratio n=4 vs n=64 is 16. For R iid estimates the sample variance
    # has relative SD sqrt(2/(R-1)); log of the ratio of two has SD sqrt(4/(R-1)) = 0.1 at R=400.
    target, x, t, num = gaussian_target(), np.array([-0.4, 1.1]), 0.5, 400
    settings = dict(inner_init="gaussian", inner_steps=40)
    small = estimates(target, x, t, num, seed=1, inner_particles=4, **settings)
    large = estimates(target, x, t, num, seed=2, inner_particles=64, **settings)
    ratio = small.var(0, ddof=1) / large.var(0, ddof=1)
    sd_log = np.sqrt(4 / (num - 1))
    assert np.all(np.abs(np.log(ratio / 16)) < 5 * sd_log), f"variance ratios {ratio}, expected 16"
    mse_small = np.mean(np.sum((small - exact_score(x, t)) ** 2, 1))
    mse_large = np.mean(np.sum((large - exact_score(x, t)) ** 2, 1))
    assert mse_large < mse_small / 8  # 16x in expectation; 8x is 5 * sd_log below it


STIFF_SD = 0.2  # a Gaussian 5x narrower than unit scale: curvature 1 / 0.2^2 = 25


@functools.lru_cache(maxsize=None)
def stiff_target():
    return sf.Target(lambda x: -0.5 * jnp.sum(x**2) / STIFF_SD**2, dim=2, name="stiff-gauss")


@pytest.mark.parametrize("t", [0.5, 2.0])
def test_inner_step_scaled_by_the_target_curvature_on_a_stiff_gaussian(t):
    # N(0, 0.2^2 I): p_t = N(0, e^{-2t} 0.04 + 1 - e^{-2t}), score -x / v_t. The curvature of
    # q_t in x0 is 25 + e^{-2t} / (1 - e^{-2t}). With the default L = 1 the inner ULA step is
    # 0.5 (1 - e^{-2t}), times that curvature 7.9 (t = 0.5) to 12.3 (t = 2) > 2: each step
    # multiplies the distance to the posterior mean by 7-11 and the chain overflows (the
    # many-well's failure); it must be flagged. With lipschitz=25 the step times the curvature
    # is exactly 1/2, the chain contracts by 1/2 a step, and the estimate is unbiased (ULA
    # keeps a Gaussian's mean): 200 iid estimates within 5 SEs of the exact score.
    target, x = stiff_target(), np.array([0.3, -0.5])
    v_t = np.exp(-2 * t) * STIFF_SD**2 - np.expm1(-2 * t)
    exact = -x / v_t
    settings = dict(inner_particles=16, inner_steps=20)
    keys = jax.random.split(jax.random.key(7), 200)
    default = jax.jit(jax.vmap(lambda key: rdmc_score(target, jnp.asarray(x, jnp.float32), t, key, **settings)))
    assert np.all(np.asarray(default(keys).diverging)), "the default step must overflow here and say so"
    draws = estimates(target, x, t, num=200, seed=7, lipschitz=1 / STIFF_SD**2, **settings)
    assert np.all(np.isfinite(draws))
    se = draws.std(0, ddof=1) / np.sqrt(len(draws))
    z = (draws.mean(0) - exact) / se
    assert np.all(np.abs(z) < 5), f"t={t}: z-scores {z}"
    assert np.all(5 * se < 0.1 * np.linalg.norm(exact))  # the check has power


TWO_MODES = (np.array([0.25, 0.75]), np.array([[-3.0, 0.0], [3.0, 0.0]]), 0.5)  # weights, means, variance


@functools.lru_cache(maxsize=None)
def two_mode_target():
    weights, means, var = (jnp.asarray(a) for a in TWO_MODES)
    return sf.Target(
        lambda x: jax.scipy.special.logsumexp(jnp.log(weights) - 0.5 * jnp.sum((x - means) ** 2, 1) / var),
        dim=2, name="two-modes",
    )


def two_mode_score(x, t):
    """Exact score of p_t for the mixture: p_t = sum_k w_k N(e^{-t} m_k, v_t I), v_t = e^{-2t} 0.5 + 1 - e^{-2t}."""
    weights, means, var = TWO_MODES
    v_t = np.exp(-2 * t) * var - np.expm1(-2 * t)
    log_terms = np.log(weights) - 0.5 * np.sum((x - np.exp(-t) * means) ** 2, 1) / v_t
    responsibilities = np.exp(log_terms - log_terms.max())
    responsibilities /= responsibilities.sum()
    return responsibilities @ (-(x - np.exp(-t) * means) / v_t)


@pytest.mark.parametrize("t", [0.5, 1.0, 2.0])
def test_tempered_starts_share_the_chains_among_modes_as_the_posterior_does(t):
    # q_t(. | x) at x = (0, 0.3) is bimodal (modes 6 apart, sd 0.7; the inner ULA chains do not
    # cross in 10 steps), with posterior mode weights near 1/4, 3/4. The score then depends on
    # how the chains are shared between the modes. Unweighted Gaussian-factor starts share them
    # by basin of attraction: 50-56 SEs off (measured). The tempered SMC start shares them by
    # the posterior weights. 200 iid estimates, each within 5 SEs of the exact score. The SMC's
    # O(1 / n) bias, measured with 64 chains, is at most 1.6 SE at these t (about 3 SE with 16
    # chains).
    target, x = two_mode_target(), np.array([0.0, 0.3])
    exact = two_mode_score(x, t)
    settings = dict(inner_particles=64, inner_steps=10)
    tempered = estimates(target, x, t, num=200, seed=3, inner_init="tempered", **settings)
    se = tempered.std(0, ddof=1) / np.sqrt(len(tempered))
    z = (tempered.mean(0) - exact) / se
    assert np.all(np.abs(z) < 5), f"t={t}: z-scores {z}"
    unweighted = estimates(target, x, t, num=200, seed=3, inner_init="gaussian", **settings)
    unweighted_se = unweighted.std(0, ddof=1) / np.sqrt(len(unweighted))
    assert abs(unweighted.mean(0)[0] - exact[0]) > 20 * unweighted_se[0]  # the test can see the sharing


def test_tempered_start_on_a_gaussian_and_its_cost():
    # On the Gaussian the estimate is unbiased as with the other starts (5 SEs of 200 estimates),
    # and n_grad = J n densities + (J - 1) n (1 + moves) gradients + n starts + n S steps.
    target, x, t = gaussian_target(), np.array([0.3, 0.7]), 1.0
    settings = dict(inner_init="tempered", inner_particles=8, inner_steps=10, tempering_stages=3, tempering_steps=2)
    draws = estimates(target, x, t, num=200, seed=5, **settings)
    se = draws.std(0, ddof=1) / np.sqrt(len(draws))
    assert np.all(np.abs((draws.mean(0) - exact_score(x, t)) / se) < 5)
    estimate = rdmc_score(target, jnp.asarray(x, jnp.float32), t, jax.random.key(0), **settings)
    assert int(estimate.n_grad) == 3 * 8 + 2 * 8 * (1 + 2) + 8 + 8 * 10
    assert not bool(estimate.diverging)


@pytest.mark.slow
def test_final_particles_on_a_gaussian_follow_the_discretised_law():
    target, num_particles, times = gaussian_target(), 1000, np.linspace(2.0, 0.0, 21)
    settings = dict(inner_particles=8, inner_steps=6, importance_proposals=16)
    sampler = sf.rdmc(times=times, **settings)
    trace = sf.sample(sampler, target, jax.random.key(3), num_particles=num_particles, progress=False)
    final = trace.positions[:, -1, :]
    # Noise of the score estimates adds (2 (e^d - 1))^2 Var(score) per step; Var(score) at
    # each t_k is measured from 200 estimates at the law's mean (it does not depend on x for a
    # Gaussian target up to the importance start); its own ~10% error moves the predicted
    # variance by < 1% here.
    noise_var = []
    for k, t in enumerate(times[:-1]):
        mean_k = discretised_law(times[: k + 1])[0]
        noise_var.append(estimates(target, mean_k, float(t), 200, seed=100 + k, **settings).var(0, ddof=1))
    mean, var = discretised_law(times, noise_var)
    # Exact discretised mean/variance vs 1000 iid particles: SE sqrt(var/N), sqrt(2/N) var.
    z_mean = (final.mean(0) - mean) / np.sqrt(var / num_particles)
    z_var = (final.var(0) - var) / (var * np.sqrt(2 / num_particles))
    assert np.all(np.abs(z_mean) < 5), z_mean
    assert np.all(np.abs(z_var) < 5), z_var
    # With the exact score the law is close to the target (K = 20 outer steps), and the test
    # can see a wrong integrator: dropping the factor 2 on the score leaves the law far from it.
    exact_mean, exact_var = discretised_law(times)  # with the exact score, no estimation noise
    assert np.all(np.abs(exact_mean - MU) < 0.1) and np.all(np.abs(exact_var / VAR - 1) < 0.25)
    wrong_mean, wrong_var = discretised_law(times, noise_var, score_factor=1.0)
    assert np.any(np.abs(final.mean(0) - wrong_mean) > 10 * np.sqrt(var / num_particles)) or np.any(
        np.abs(final.var(0) - wrong_var) > 10 * var * np.sqrt(2 / num_particles)
    )


@pytest.mark.slow
def test_two_component_mixture_mode_weights():
    # 0.25 N((-3, 0), 0.5 I) + 0.75 N((3, 0), 0.5 I): modes 6 apart, 8.5 sds.
    # Weight of the right mode among 1000 iid final particles: binomial SE sqrt(.75 .25 / 1000)
    # = 0.014; 5 SE = 0.07. The score estimator's self-normalised importance start has a
    # bias of order 1 / importance_proposals toward the proposal's centre, which pulls the
    # weights toward 1/2; 512 proposals keep it below ~0.03 (measured 0.72-0.73 over seeds).
    weights = jnp.log(jnp.array([0.25, 0.75]))
    means = jnp.array([[-3.0, 0.0], [3.0, 0.0]])

    def logdensity(x):
        return jax.scipy.special.logsumexp(weights - jnp.sum((x - means) ** 2, 1))

    target = sf.Target(logdensity, dim=2, name="two-modes")
    sampler = sf.rdmc(num_steps=20, inner_particles=16, inner_steps=10, importance_proposals=512)
    trace = sf.sample(sampler, target, jax.random.key(2), num_particles=1000, warmup=10, progress=False)
    final = trace.positions[:, -1, :]
    right = final[:, 0] > 0
    assert abs(right.mean() - 0.75) < 5 * np.sqrt(0.75 * 0.25 / 1000)
    # Within each mode, the moments of N(m, 0.5 I) up to the K = 20 discretisation
    # (on a Gaussian the same schedule inflates a variance of 0.5 to ~0.62, see above).
    for mode, mask in ((-3.0, ~right), (3.0, right)):
        assert np.all(np.abs(final[mask].mean(0) - np.array([mode, 0.0])) < 0.15)
        assert np.all(np.abs(final[mask].var(0) - 0.5) < 0.2)
    assert trace.num_divergent == 0


def test_runs_through_the_driver_with_its_schedule_and_counts_every_gradient():
    target = gaussian_target()
    sampler = sf.rdmc(end_time=1.0, num_steps=5, inner_particles=3, inner_steps=4, importance_proposals=7)
    assert sampler.num_steps == 5
    trace = sf.sample(sampler, target, jax.random.key(0), num_particles=6, warmup=2, progress=False)
    assert trace.positions.shape == (6, 5, 2)
    np.testing.assert_allclose(trace.stats["time"][0], [0.8, 0.6, 0.4, 0.2, 0.0], atol=1e-6)
    # per particle and outer step: 7 importance densities + 3 chain starts + 3 * 4 inner
    # gradients + 1 log-density of the new position.
    assert np.all(trace.stats["n_grad"] == 7 + 3 + 3 * 4 + 1)
    assert trace.metadata["n_grad_warmup"] == 6 * 2 * (7 + 3 + 3 * 4 + 1)
    assert not trace.stats["diverging"].any()
    idata = trace.to_arviz()
    assert idata.posterior["x"].shape == (6, 5, 2)
    with pytest.raises(ValueError, match="schedule"):
        sf.sample(sampler, target, jax.random.key(0), num_particles=2, num_steps=7, progress=False)


def test_nonfinite_values_are_flagged_not_passed_with_a_mala_inner_kernel():
    # log-density NaN beyond x_0 > 2.5: the inner MALA chains meet it (rejected and flagged
    # there); rdMC flags those outer steps and never moves a particle to a non-finite value.
    def logdensity(x):
        return jnp.where(x[0] > 2.5, jnp.nan, -0.5 * jnp.sum(x**2))

    target = sf.Target(logdensity, dim=2)
    sampler = sf.rdmc(sf.mala(0.5), end_time=1.0, num_steps=4, inner_particles=8, inner_steps=5,
                      inner_init="gaussian")
    with pytest.warns(RuntimeWarning, match="diverged"):
        trace = sf.sample(sampler, target, jax.random.key(1), num_particles=20, progress=False)
    assert trace.num_divergent > 0
    assert trace.stats["diverging"].any()
    assert np.all(np.isfinite(trace.positions))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(end_time=0.0), ValueError, "end_time"),
        (dict(end_time=-1.0), ValueError, "end_time"),
        (dict(times=[1.0, 0.5, 0.5, 0.0]), ValueError, "strictly decreasing"),
        (dict(times=[0.0, 0.5, 1.0]), ValueError, "> 0"),
        (dict(times=[1.0, 0.5, -0.1]), ValueError, ">= 0"),
        (dict(num_steps=0), ValueError, "num_steps"),
        (dict(inner_init="nope"), ValueError, "inner_init"),
        (dict(inner_burnin=1.0), ValueError, "inner_burnin"),
        (dict(lipschitz=0.0), ValueError, "lipschitz"),
        (dict(tempering_stages=1), ValueError, "tempering_stages"),
        (dict(tempering_steps=0), ValueError, "tempering_steps"),
    ],
)
def test_bad_input_is_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        sf.rdmc(**kwargs)


def test_inner_sampler_must_be_a_stochflow_kernel():
    import blackjax

    with pytest.raises(TypeError, match="stochflow Sampler"):
        sf.rdmc(blackjax.mala)
    with pytest.raises(TypeError, match="stochflow Sampler"):
        sf.rdmc(lambda x: x)
    with pytest.raises(ValueError, match="own schedule"):
        sf.rdmc(sf.rdmc())


def test_nonsmooth_or_constrained_targets_are_refused_before_compiling():
    target = sf.Target(lambda x: -0.5 * jnp.sum(x**2), dim=2, mirror=sf.geometry.euclidean())
    with pytest.raises(ValueError, match="unconstrained"):
        sf.rdmc().init(target, jnp.zeros((3, 2)), jax.random.key(0))
