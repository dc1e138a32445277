"""Proximal and Bregman-proximal samplers against exact answers.

Ground truths: the Moreau-Yosida smoothed Laplace law exp(-Huber_lam) (MYULA's
limit as the step goes to 0), the Bregman-Moreau smoothed laws of a truncated
Laplace on a box and of a tilted Dirichlet on the simplex (BMUMLA's and BMMLA's
limits), each by one-dimensional quadrature of an independently computed
envelope; exact closed forms for the unsmoothed targets.

Tolerances: |estimate - truth| < 4 SE + bias allowance. SE is the Monte Carlo
standard error (sd / sqrt(ESS), ESS from ArviZ, or sd / sqrt(n) for independent
last draws of independent chains). The bias allowance covers the O(step)
discretisation bias of an unadjusted method at the step used; its slope was
measured once with the same target at 4x the step (the bias is first order in
the step), and is stated beside each test.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, optimize

import stochflow as sf
from stochflow.geometry import ball_indicator, entropic_simplex, euclidean, l1, log_barrier

# ---------------------------------------------------------------------- laws


def huber_law_moments(lam: float) -> tuple[float, float]:
    """E|x| and E x^2 under exp(-Huber_lam(x)), Huber_lam = Moreau envelope of |x|."""
    def huber(x):
        return np.where(np.abs(x) <= lam, x * x / (2 * lam), np.abs(x) - lam / 2)

    def integral(k):
        return sum(
            integrate.quad(lambda x: x**k * np.exp(-huber(x)), a, b, epsabs=0, epsrel=1e-12, limit=200)[0]
            for a, b in [(0.0, lam), (lam, np.inf)]
        )

    z = integral(0)
    return integral(1) / z, integral(2) / z


def huber_law_sample(key, n: int, lam: float) -> jax.Array:
    """Exact draws of exp(-Huber_lam) by rejection from Laplace(1): Huber >= |x| - lam/2."""
    out, total = [], 0
    while total < n:
        key, k1, k2 = jax.random.split(key, 3)
        x = np.asarray(jax.random.laplace(k1, (2 * n,)))
        huber = np.where(np.abs(x) <= lam, x * x / (2 * lam), np.abs(x) - lam / 2)
        keep = np.log(np.asarray(jax.random.uniform(k2, (2 * n,)))) < -huber + np.abs(x) - lam / 2
        out.append(x[keep])
        total += keep.sum()
    return jnp.asarray(np.concatenate(out)[:n])[:, None]


def box_bregman_moreau_moments(lower: float, upper: float, lam: float) -> tuple[float, float]:
    """Mean and variance of exp(-env(x)) on (lower, upper), env = min_y |y| + D_phi(y, x)/lam,
    phi the 1-D log-barrier, each envelope value by scipy's bounded scalar minimisation."""
    phi = lambda y: -np.log(y - lower) - np.log(upper - y)  # noqa: E731
    dphi = lambda y: -1.0 / (y - lower) + 1.0 / (upper - y)  # noqa: E731

    def envelope(x):
        objective = lambda y: abs(y) + (phi(y) - phi(x) - dphi(x) * (y - x)) / lam  # noqa: E731
        result = optimize.minimize_scalar(
            objective, bounds=(lower + 1e-12, upper - 1e-12), method="bounded", options={"xatol": 1e-12}
        )
        return result.fun

    xs = np.linspace(lower, upper, 3001)[1:-1]
    values = np.array([envelope(x) for x in xs])
    w = np.exp(-(values - values.min()))
    z = np.trapezoid(w, xs)
    mean = np.trapezoid(w * xs, xs) / z
    return mean, np.trapezoid(w * xs**2, xs) / z - mean**2


def tilted_dirichlet_smoothed_moments(alpha: np.ndarray, tilt: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of BMUMLA's limit law on the tilted Dirichlet (reduced coordinates).

    g(x) = t sum_{i<D} x_i = t s (s = 1 - x_D) is linear on the simplex; its left
    Bregman prox under the entropy is p proportional to (x_1 e^{-lam t}, ..., x_{D-1} e^{-lam t}, x_D)
    and its left Bregman-Moreau envelope is g(p) + KL(p || x)/lam = -log(1 - s + e^{-lam t} s)/lam,
    a function of s only. So x_{1..D-1}/s stays Dirichlet(alpha_{1..D-1}) and s has density
    proportional to s^{A'-1} (1 - s)^{alpha_D - 1} exp(-envelope(s)).
    """
    a_rest, a_last = alpha[:-1], alpha[-1]
    big_a = a_rest.sum()

    def moment(k):
        envelope = lambda s: -np.log1p(-s + np.exp(-lam * tilt) * s) / lam  # noqa: E731
        f = lambda s: s ** (big_a - 1 + k) * (1 - s) ** (a_last - 1) * np.exp(-envelope(s))  # noqa: E731
        return integrate.quad(f, 0.0, 1.0, epsabs=0, epsrel=1e-12, limit=200)[0]

    s1, s2 = moment(1) / moment(0), moment(2) / moment(0)
    mean = s1 * a_rest / big_a
    second = s2 * (np.outer(a_rest, a_rest) + np.diag(a_rest)) / (big_a * (big_a + 1))
    return mean, second - np.outer(mean, mean)


def check(estimate, truth, se, bias_allowance, what):
    estimate, truth, se = map(np.asarray, (estimate, truth, se))
    err = np.abs(estimate - truth)
    assert np.all(err < 4 * se + bias_allowance), (
        f"{what}: estimate {np.round(estimate, 5)}, truth {np.round(truth, 5)}, "
        f"|err| {np.round(err, 5)}, allowed {np.round(4 * se + bias_allowance, 5)}"
    )


def mean_and_se(draws):
    """Mean over (chain, draw) and its SE from ArviZ's bulk ESS; draws (chain, draw, k)."""
    ess = sf.diagnostics.ess(draws)
    return draws.mean((0, 1)), draws.reshape(-1, draws.shape[-1]).std(0) / np.sqrt(ess)


# ----------------------------------------------------------------- bad input


def zero(x):
    return jnp.zeros((), x.dtype)


def test_bad_hyperparameters_raise_before_compiling():
    for factory in (lambda s: sf.myula(0.1, s), lambda s: sf.mymala(0.1, s), lambda s: sf.bmumla(0.1, s),
                    lambda s: sf.bmmla(0.1, s)):
        for bad in (0.0, -1.0, np.nan):
            with pytest.raises(ValueError, match="smoothing must be a finite positive number"):
                factory(bad)
    with pytest.raises(ValueError, match="step_size"):
        sf.mla(-0.1)
    with pytest.raises(TypeError, match="mirror map"):
        sf.mla(0.1, mirror="simplex")
    with pytest.raises(ValueError, match="inner_steps"):
        sf.bmmla(0.1, 0.1, inner_steps=0)


def test_nonsmooth_term_without_prox_is_refused():
    class NoProx:
        def value(self, x):
            return jnp.sum(jnp.abs(x))

    with pytest.raises(TypeError, match="prox"):
        sf.Target(zero, 2, nonsmooth=NoProx())
    with pytest.raises(ValueError, match="shape"):
        sf.Target(zero, 3, mirror=log_barrier(np.zeros(2), np.ones(2)))
    with pytest.raises(TypeError, match="mirror map"):
        sf.Target(zero, 2, mirror=object())


def test_start_outside_the_mirror_domain_is_refused():
    target = sf.models.get("truncated-laplace")  # box [-1, 2]^2
    outside = jnp.array([[0.0, 0.0], [3.0, 0.0]])
    with pytest.raises(ValueError, match="outside"):
        sf.sample(sf.bmumla(0.01, 0.1), target, jax.random.key(0), num_steps=10, init=outside, progress=False)
    with pytest.raises(ValueError, match="outside the domain"):
        sf.bmumla(0.01, 0.1).init(target, outside, jax.random.key(0))
    simplex_target = sf.models.get("dirichlet")
    with pytest.raises(ValueError, match="outside"):
        sf.mla(0.01).init(simplex_target, jnp.array([[0.7, 0.6]]), jax.random.key(0))


def test_methods_refuse_targets_they_cannot_sample():
    laplace = sf.models.get("laplace")
    with pytest.raises(ValueError, match="nonsmooth term"):
        sf.myula(0.1, 0.1).init(sf.Target(zero, 1), jnp.zeros((1, 1)), jax.random.key(0))
    with pytest.raises(ValueError, match="needs a mirror map"):
        sf.bmumla(0.1, 0.1).init(laplace, jnp.zeros((1, 1)), jax.random.key(0))
    with pytest.raises(ValueError, match="smooth target"):
        sf.mla(0.1, euclidean()).init(laplace, jnp.zeros((1, 1)), jax.random.key(0))
    ball = sf.Target(zero, 2, nonsmooth=ball_indicator(), mirror=log_barrier(-2.0, 2.0))
    with pytest.raises(ValueError, match="Bregman proximal operator"):
        sf.bmumla(0.1, 0.1).init(ball, jnp.zeros((1, 2)), jax.random.key(0))
    with pytest.raises(ValueError, match="domain"):
        sf.myula(0.1, 0.1).init(sf.models.get("truncated-laplace"), jnp.zeros((1, 2)), jax.random.key(0))
    with pytest.raises(ValueError, match="was given"):
        sf.bmumla(0.1, 0.1, mirror=entropic_simplex()).init(
            sf.models.get("truncated-laplace"), jnp.zeros((1, 2)), jax.random.key(0)
        )


def test_non_finite_step_is_undone_and_flagged():
    # grad of -x^8 at x = 10 is -8e7: one MYULA step of size 1 overshoots to ~1e8, where
    # the log-density -x^8 overflows float32 to -inf. The step must be undone and flagged.
    target = sf.Target(lambda x: -jnp.sum(x**8), 1, nonsmooth=l1(1.0))
    with pytest.warns(RuntimeWarning, match="diverged"):
        trace = sf.sample(sf.myula(1.0, 0.5), target, jax.random.key(0), num_steps=3,
                          init=jnp.array([[10.0]]), progress=False)
    assert trace.num_divergent >= 1
    assert np.all(np.isfinite(trace.positions))
    assert trace.stats["diverging"][0, 0]
    assert trace.positions[0, 0, 0] == 10.0  # undone: still at the start


def test_overshooting_a_simplex_boundary_is_undone_and_flagged():
    # MLA with the entropic map on Dirichlet(2, 3, 4) at a step far too large (0.05): from a point near
    # the boundary the drift (alpha_i - 1)/x_i throws the dual point beyond what float32 can represent;
    # those steps must be undone and flagged, and no draw may leave the simplex.
    target = sf.models.dirichlet()
    init = jnp.array([[0.01, 0.01], [0.3, 0.3], [0.001, 0.5], [0.2, 0.79]])
    with pytest.warns(RuntimeWarning, match="diverged"):
        trace = sf.sample(sf.mla(0.05), target, jax.random.key(0), num_steps=300, init=init, progress=False)
    x = trace.positions
    assert np.all(x > 0) and np.all(x.sum(-1) < 1)
    assert trace.num_divergent > 0
    flagged = trace.stats["diverging"]
    assert np.all(x[:, 1:][flagged[:, 1:]] == x[:, :-1][flagged[:, 1:]])  # an undone step stays put


# ------------------------------------------------- exact reductions (cheap)


def run_steps(sampler, target, init, num_steps=20):
    """Positions after ``num_steps`` steps of the jitted kernel (no driver: one small compile)."""
    key = jax.random.key(2)
    state = sampler.init(target, init, key)
    step = jax.jit(lambda state, key: sampler.step(target, state, key))
    for i in range(num_steps):
        state, _ = step(state, jax.random.fold_in(key, i))
    return np.asarray(state.position)


def test_euclidean_mirror_reduces_bmumla_to_myula_and_mla_to_ula():
    init = jax.random.normal(jax.random.key(1), (5, 3))
    laplace = sf.models.laplace(dim=3)
    with_mirror = sf.Target(zero, 3, nonsmooth=l1(1.0), mirror=euclidean())
    np.testing.assert_allclose(run_steps(sf.bmumla(0.05, 0.2), with_mirror, init),
                               run_steps(sf.myula(0.05, 0.2), laplace, init), rtol=1e-5, atol=1e-5)
    gaussian = sf.Target(lambda x: -0.5 * jnp.sum(x**2), 3)
    gaussian_mirror = sf.Target(lambda x: -0.5 * jnp.sum(x**2), 3, mirror=euclidean())
    np.testing.assert_allclose(run_steps(sf.mla(0.05), gaussian_mirror, init), run_steps(sf.ula(0.05), gaussian, init),
                               rtol=1e-5, atol=1e-5)
    # BMMLA with one dual sub-step is BMUMLA.
    box = sf.models.get("truncated-laplace")
    init_box = jnp.full((5, 2), 0.3)
    np.testing.assert_allclose(run_steps(sf.bmmla(0.05, 0.2, inner_steps=1), box, init_box),
                               run_steps(sf.bmumla(0.05, 0.2), box, init_box), rtol=1e-5, atol=1e-6)


def test_myula_stationary_law_is_the_huber_law_fast():
    # lam = 1, step 0.01: 4000 chains started from exact exp(-Huber) draws, 1500 steps;
    # the last draws of independent chains are independent: SE = sd / sqrt(4000).
    # Bias allowance 0.5 * step for E|x| (measured slope of MYULA's bias in E|x|: 0.4).
    lam, step, n = 1.0, 0.01, 4000
    init = huber_law_sample(jax.random.key(5), n, lam)
    trace = sf.sample(sf.myula(step, lam), sf.models.laplace(), jax.random.key(6), num_steps=1500,
                      thin=1500, init=init, progress=False)
    x = np.abs(trace.positions[:, -1, 0])
    check(x.mean(), huber_law_moments(lam)[0], x.std() / np.sqrt(n), 0.5 * step, "E|x| under MYULA")
    assert trace.stats["n_grad"].sum() == n * 1500


@pytest.mark.slow
def test_mymala_is_exact_on_the_bayesian_lasso():
    target = sf.models.bayesian_lasso(dim=1)
    trace = sf.sample(sf.mymala(0.05, 0.05), target, jax.random.key(0), num_particles=16, num_steps=4000,
                      init=jnp.full((16, 1), float(target.mean[0])), progress=False)
    mean, se = mean_and_se(trace.positions)
    check(mean, target.mean, se, 0.0, "MYMALA lasso mean")  # exact method: no bias allowance
    centred = (trace.positions - target.mean) ** 2
    var, se_var = mean_and_se(centred)
    check(var, np.diag(target.cov), se_var, 0.0, "MYMALA lasso variance")
    assert 0.2 < trace.stats["accept_prob"].mean() < 1.0


# ------------------------------------------------------ acceptance (slow)


@pytest.mark.slow
def test_myula_follows_the_moreau_yosida_law_and_its_bias_shrinks_with_lambda():
    # 50,000 independent chains, 2000 steps of size 0.005 from exact Laplace draws (time 10;
    # the Laplace diffusion's spectral gap is 1/4, and the start is already close), last draws
    # independent: SE(E|x|) = sd/sqrt(n) ~ 0.0045, SE(E x^2) ~ 0.02. Bias allowances from the
    # measured first-order slopes (E|x|: 0.4, E x^2: 1.9 per unit step): 0.5 and 2.5 x step.
    step, n = 0.005, 50_000
    laplace = sf.models.laplace()
    init = laplace.sample(jax.random.key(1), n)
    bias_to_laplace = {}
    for lam in (1.0, 0.1):
        trace = sf.sample(sf.myula(step, lam), laplace, jax.random.key(2), num_steps=2000, thin=2000,
                          init=init, progress=False)
        x = trace.positions[:, -1, 0]
        m1, m2 = huber_law_moments(lam)
        check(np.abs(x).mean(), m1, np.abs(x).std() / np.sqrt(n), 0.5 * step, f"E|x|, lam={lam}")
        check((x**2).mean(), m2, (x**2).std() / np.sqrt(n), 2.5 * step, f"E x^2, lam={lam}")
        bias_to_laplace[lam] = (x**2).mean() - 2.0  # Laplace(1): E x^2 = 2
    # exp(-Huber_1) has E x^2 = 2.244, exp(-Huber_0.1) 2.003: the bias to the true Laplace
    # shrinks with lambda by far more than the MC error (SE 0.02 each).
    assert bias_to_laplace[1.0] > 0.15
    assert abs(bias_to_laplace[0.1]) < bias_to_laplace[1.0] / 3


BREGMAN = [
    ("bmumla", lambda step, lam: sf.bmumla(step, lam)),
    ("bmmla", lambda step, lam: sf.bmmla(step, lam, inner_steps=4)),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,make", BREGMAN, ids=[b[0] for b in BREGMAN])
def test_bregman_methods_on_a_box_constrained_target(name, make):
    # Truncated Laplace exp(-|x|_1) on [-1, 2]^2 with the box log-barrier map; lam = 0.05, step 0.01.
    # 200 chains x 5000 draws = 10^6 draws. Bias allowance 0.7 x step on the mean and 0.8 x step on the
    # variance (BMUMLA's bias measured at 4x the step, 0.04: mean +0.019/+0.026, variance +0.026,
    # i.e. slopes <= 0.65 per unit step; the bias is first order in the step).
    lam, step = 0.05, 0.01
    target = sf.models.get("truncated-laplace")
    trace = sf.sample(make(step, lam), target, jax.random.key(0), num_particles=200, num_steps=5000,
                      init=target.sample(jax.random.key(1), 200), progress=False, chunk_size=5000)
    x = trace.positions
    assert x.shape[0] * x.shape[1] >= 10**5
    assert np.all((x > -1.0) & (x < 2.0)), "draws left the box"
    assert trace.num_divergent == 0
    smoothed_mean, smoothed_var = box_bregman_moreau_moments(-1.0, 2.0, lam)
    mean, se = mean_and_se(x)
    check(mean, [smoothed_mean] * 2, se, 0.7 * step, f"{name} mean")
    var, se_var = mean_and_se((x - smoothed_mean) ** 2)
    check(var, [smoothed_var] * 2, se_var, 0.8 * step, f"{name} variance")
    # The smoothed law is close to the truncated Laplace itself (closed form).
    assert abs(smoothed_mean - target.mean[0]) < 0.01 and abs(smoothed_var - target.cov[0, 0]) < 0.01


@pytest.mark.slow
@pytest.mark.parametrize("name,make", BREGMAN, ids=[b[0] for b in BREGMAN])
def test_bregman_methods_on_a_simplex_constrained_target(name, make):
    # Dirichlet(2, 3, 4) tilted by exp(-2 (x_1 + x_2)) on the 3-simplex, entropic map; lam = 0.05,
    # step 5e-4. 200 chains x 5000 draws. The entropic map makes the dual drift (alpha_i - 1)/x_i
    # stiff near the boundary: at step 1e-3 about 0.3 % of the steps (2e-3: 1.6 %) reach dual points
    # the float32 simplex cannot represent and are undone (flagged divergent); at 5e-4 none do.
    # Bias allowance 3 x step on the means and 4 x step on the variances: BMUMLA's bias measured at
    # 4x the step (2e-3) was -0.0025/+0.0040 (SE 0.003/0.0015) on the means and +0.0008/+0.0057
    # (SE 0.0003/0.0011) on the variances, slopes <= 2.0 and 2.9 per unit step.
    lam, step = 0.05, 5e-4
    alpha, tilt = np.array([2.0, 3.0, 4.0]), 2.0
    target = sf.models.dirichlet(alpha, tilt=tilt)
    trace = sf.sample(make(step, lam), target, jax.random.key(0), num_particles=200, num_steps=5000,
                      init=target.sample(jax.random.key(1), 200), progress=False, chunk_size=5000)
    x = trace.positions
    assert x.shape[0] * x.shape[1] >= 10**5
    assert np.all(x > 0) and np.all(x.sum(-1) < 1), "draws left the simplex"
    assert trace.num_divergent == 0
    mean_true, cov_true = tilted_dirichlet_smoothed_moments(alpha, tilt, lam)
    mean, se = mean_and_se(x)
    check(mean, mean_true, se, 3 * step, f"{name} mean")
    second, se2 = mean_and_se((x - mean_true) ** 2)
    check(second, np.diag(cov_true), se2, 4 * step, f"{name} variance")


@pytest.mark.slow
def test_mla_on_the_dirichlet_matches_its_closed_form():
    # Smooth Dirichlet(2, 3, 4): MLA's limit law is the target itself. Step 5e-4 (see the tilted
    # case for why), bias allowance 4 x step on the means (MLA's bias measured at 16x the step,
    # 0.008: -0.030/+0.025, slope <= 3.7).
    target = sf.models.dirichlet()
    trace = sf.sample(sf.mla(5e-4), target, jax.random.key(0), num_particles=200, num_steps=5000,
                      init=target.sample(jax.random.key(1), 200), progress=False, chunk_size=5000)
    x = trace.positions
    assert np.all(x > 0) and np.all(x.sum(-1) < 1)
    assert trace.num_divergent == 0
    mean, se = mean_and_se(x)
    check(mean, target.mean, se, 4 * 5e-4, "MLA Dirichlet mean")


# ------------------------------------------------------------------ models


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    ["laplace", "laplace-10d", "laplace-gmm2", "laplace-mixture5", "bayesian-lasso", "truncated-laplace",
     "dirichlet", "dirichlet-tilted"],
)
def test_model_ground_truths_agree_with_their_exact_samplers(name):
    # Two independent ground truths (closed form / quadrature vs an exact sampler): the sample
    # mean of n = 20,000 iid draws is within 5 SE (sd/sqrt(n)) of the stated mean, and the
    # sample variances within 5 SE (SE of a variance: sqrt((m4 - var^2) / n), m4 estimated).
    target = sf.models.get(name)
    x = np.asarray(target.sample(jax.random.key(0), 20_000), dtype=float)
    assert x.shape == (20_000, target.dim)
    n = x.shape[0]
    check(x.mean(0), target.mean, x.std(0) / np.sqrt(n) * 5 / 4, 0.0, f"{name} mean")
    centred = (x - target.mean) ** 2
    check(centred.mean(0), np.diag(target.cov), centred.std(0) / np.sqrt(n) * 5 / 4, 0.0, f"{name} variance")
    if target.mirror is not None:
        assert bool(jnp.all(jax.vmap(target.mirror.in_domain)(jnp.asarray(x[:1000], jnp.float32))))


def test_smoothed_laplace_mixture_is_the_componentwise_huber_mixture():
    # LLP's smoothing: each alpha |t| of each component replaced by its Moreau envelope (Huber).
    alpha, lam = 0.5, 0.4
    target = sf.models.laplace_mixture(n_components=2, alpha=alpha, smoothing=lam)
    means = sf.models.nonsmooth.LLP_MEANS[:2]
    x = np.array([0.1, 2.7])

    def huber(t):
        t = np.abs(t)
        return np.where(t <= lam * alpha, t**2 / (2 * lam), alpha * t - lam * alpha**2 / 2)

    expected = np.log(np.sum(0.5 * (alpha / 2) ** 2 * np.exp(-huber(x - means).sum(-1))))
    np.testing.assert_allclose(float(target.logdensity(jnp.asarray(x))), expected, rtol=1e-5)
