"""SVGD, MSVGD and SVMD: update directions against brute-force references, moments against exact laws."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import stochflow as sf
from stochflow.kernels.stein import radial_profile
from stochflow.geometry import entropic_simplex, euclidean, log_barrier
from stochflow.samplers.stein import (
    _kernel_params,
    adagrad_momentum,
    mirrored_direction,
    msvgd,
    svgd,
    svgd_direction,
    svmd,
    svmd_direction,
)


def kernel(name, h):
    params = _kernel_params(jnp.asarray(h))
    return lambda x, y: radial_profile(name, jnp.sum((x - y) ** 2), params)[0]


def dense(matvec, x):
    """A d x d matrix from its matrix-vector product at x (column c = matvec(x, e_c))."""
    return jax.vmap(lambda e: matvec(x, e))(jnp.eye(x.shape[0])).T


def brute_msvgd(name, h, theta, dual_scores, inverse_hessian=None):
    """g_k = 1/n sum_l [k(theta_l, theta_k) t_l + H_l^{-1} grad_{theta_l} k(theta_l, theta_k)], pair by pair."""
    k = kernel(name, h)

    def pair(theta_l, t_l, theta_k):
        repulsion = jax.grad(k, 0)(theta_l, theta_k)
        if inverse_hessian is not None:
            repulsion = inverse_hessian(theta_l, repulsion)
        return k(theta_l, theta_k) * t_l + repulsion

    pairs = jax.vmap(jax.vmap(pair, (0, 0, None)), (None, None, 0))(theta, dual_scores, theta)
    return pairs.mean(axis=1)


@pytest.mark.parametrize("name", ["rbf", "imq"])
def test_svgd_direction_matches_pairwise_autodiff(name):
    x = jax.random.normal(jax.random.key(0), (11, 3)) * 2.0
    scores = jax.random.normal(jax.random.key(1), (11, 3))
    expected = brute_msvgd(name, 0.8, x, scores)
    for block in (3, 11):  # a block size that does not divide n, and one block
        got = svgd_direction(name, x, scores, _kernel_params(jnp.asarray(0.8)), block_size=block)
        np.testing.assert_allclose(got, expected, atol=2e-6)


@pytest.mark.parametrize("mirror", [entropic_simplex(), log_barrier(-1.0, 2.0)], ids=lambda m: m.name)
def test_msvgd_direction_matches_pairwise_autodiff_and_dense_fallback(mirror):
    theta = jax.vmap(mirror.grad_conj)(jax.random.normal(jax.random.key(2), (9, 4)))
    dual_scores = jax.random.normal(jax.random.key(3), (9, 4))
    expected = brute_msvgd("imq", 0.3, theta, dual_scores, mirror.inverse_hessian_matvec)
    params = _kernel_params(jnp.asarray(0.3))
    fast = mirrored_direction("imq", theta, dual_scores, params, mirror, block_size=4)
    # An unknown map name takes the dense d x d inverse-Hessian path.
    slow = mirrored_direction("imq", theta, dual_scores, params, mirror._replace(inverse_hessian_factors=None), block_size=4)
    np.testing.assert_allclose(fast, expected, atol=2e-6)
    np.testing.assert_allclose(slow, expected, atol=2e-6)


def brute_svmd(name, h, theta, scores, mirror, threshold, jitter=1e-5):
    """SVMD direction from its definition: matrix kernel K_t and the divergence by autodiff."""
    n = theta.shape[0]
    k = kernel(name, h)
    gram = jax.vmap(jax.vmap(k, (None, 0)), (0, None))(theta, theta)
    eigval, eigvec = np.linalg.eigh(np.asarray(gram, np.float64) + jitter * np.eye(n))
    share = eigval[::-1] / eigval.sum()
    kept = np.zeros(n, bool)
    kept[n - (np.sum(np.cumsum(share) < threshold) + 1):] = True
    eigval, eigvec = jnp.asarray(eigval[kept], theta.dtype), jnp.asarray(eigvec[:, kept], theta.dtype)
    root_mu = jnp.sqrt(eigval / n)
    v = eigvec * np.sqrt(n)  # eigenfunctions at the particles

    def nystrom(point):  # u_i(point), whose gradient SVMD uses
        return np.sqrt(n) * (jax.vmap(k, (None, 0))(point, theta) @ eigvec) / eigval

    half = (v * root_mu) @ v.T
    hessians = jax.vmap(lambda p: dense(mirror.hessian_matvec, p))(theta)

    def kernel_times_inverse(point, l, kk):
        # K_t(theta_k, point) H(point)^{-1}, with u(point) valued as v_l but differentiated as Nystrom.
        u = v[l] + nystrom(point) - jax.lax.stop_gradient(nystrom(point))
        half_to_point = (v * root_mu) @ u  # k^{1/2}(theta_m, point), (n,)
        matrix = jnp.einsum("m,mab,m->ab", half[kk], hessians, half_to_point) / n
        return matrix @ dense(mirror.inverse_hessian_matvec, point)

    def term(kk, l):
        value = kernel_times_inverse(theta[l], l, kk)
        jac = jax.jacfwd(kernel_times_inverse)(theta[l], l, kk)  # [a, b, c] = d/d point_c
        return value @ scores[l] + jnp.einsum("abb->a", jac)

    idx = jnp.arange(n)
    directions = jax.jit(jax.vmap(lambda kk: jax.vmap(lambda l: term(kk, l))(idx).mean(0)))(idx)
    return directions, int(kept.sum())


def test_svmd_direction_matches_its_definition():
    mirror = entropic_simplex()
    theta = jax.vmap(mirror.grad_conj)(jax.random.normal(jax.random.key(4), (6, 3)))
    scores = jax.random.normal(jax.random.key(5), (6, 3))
    threshold = 0.9  # drops some eigenpairs (checked), so the truncation is exercised
    expected, kept = brute_svmd("imq", 0.4, theta, scores, mirror, threshold)
    assert 1 < kept < 6
    got = svmd_direction("imq", theta, scores, _kernel_params(jnp.asarray(0.4)), mirror, threshold)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


def test_adagrad_momentum_is_the_reference_code_rule():
    # python/svgd.py: hist_0 = g_0^2, hist_t = 0.9 hist + 0.1 g^2, step = g / (1e-6 + sqrt(hist)).
    grads = [np.array([0.5, -2.0]), np.array([1.5, 0.1]), np.array([-0.3, 0.7])]
    opt = adagrad_momentum()
    state = opt.init(jnp.zeros(2))
    hist = None
    for g in grads:
        update, state = opt.update(jnp.asarray(g), state)
        hist = g**2 if hist is None else 0.9 * hist + 0.1 * g**2
        np.testing.assert_allclose(update, g / (1e-6 + np.sqrt(hist)), rtol=1e-6)


def test_dirichlet_dual_score_is_the_closed_form():
    # For Dirichlet(alpha) the dual score H^{-1} grad log p + div H^{-1} is alpha_{1:D-1} - sum(alpha) theta
    # (Shi, Liu & Mackey's code, DirichletTarget.dual_grad_logp).
    alpha = np.array([0.3, 2.0, 5.0, 0.7])
    target = dirichlet_target(alpha)
    mirror = entropic_simplex()
    theta = jax.vmap(mirror.grad_conj)(jax.random.normal(jax.random.key(6), (5, 3)))
    scores = jax.vmap(jax.grad(target.logdensity))(theta)
    dual = jax.vmap(mirror.inverse_hessian_matvec)(theta, scores) + jax.vmap(mirror.inverse_hessian_divergence)(theta)
    np.testing.assert_allclose(dual, alpha[:-1] - alpha.sum() * theta, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- sampling


def correlated_gaussian():
    mean = np.array([1.0, -2.0])
    cov = np.array([[2.0, 1.2], [1.2, 1.0]])
    precision = jnp.asarray(np.linalg.inv(cov))
    target = sf.Target(lambda x: -0.5 * (x - mean) @ precision @ (x - mean), dim=2, truth=sf.GroundTruth(mean=mean, cov=cov))
    return target, mean, cov


def test_svgd_recovers_a_correlated_gaussian():
    # Tolerance: 3 standard errors of the same statistic computed from n iid exact draws
    # (mean_a: sqrt(S_aa / n); covariance_ab: sqrt((S_aa S_bb + S_ab^2) / n)). A converged SVGD
    # particle set estimates these moments at least as well as iid draws (Liu & Wang 2016, Fig. 2);
    # a kernel without repulsion collapses (covariance -> 0) and a wrong repulsion scale over- or
    # under-spreads by far more than 3 SEs at n = 300.
    target, mean, cov = correlated_gaussian()
    n = 300
    init = jax.random.normal(jax.random.key(0), (n, 2))
    trace = sf.sample(svgd(0.05), target, jax.random.key(1), init=init, num_steps=2000, thin=500, progress=False)
    x = trace.positions[:, -1]
    se_mean = np.sqrt(np.diag(cov) / n)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert np.all(np.abs(x.mean(0) - mean) < 3 * se_mean), x.mean(0)
    assert np.all(np.abs(np.cov(x.T) - cov) < 3 * se_cov), np.cov(x.T)
    assert np.all(trace.stats["n_grad"] == 500)  # one gradient per particle per step, summed over thin
    assert trace.num_divergent == 0


@pytest.mark.slow
def test_svgd_imq_with_fixed_bandwidth_and_optax_adam():
    target, mean, cov = correlated_gaussian()
    n = 200
    init = jax.random.normal(jax.random.key(2), (n, 2))
    sampler = svgd(kernel="imq", bandwidth=1.0, optimizer=optax.adam(0.02))
    trace = sf.sample(sampler, target, jax.random.key(3), init=init, num_steps=1500, thin=1500, progress=False)
    x = trace.positions[:, -1]
    assert np.all(np.abs(x.mean(0) - mean) < 3 * np.sqrt(np.diag(cov) / n))
    assert np.all(trace.stats["bandwidth"] == 1.0)


def test_svgd_finds_both_modes_with_their_weights():
    # Liu & Wang's 1-D mixture 1/3 N(-2, 1) + 2/3 N(2, 1), particles started at N(-10, 1), left of
    # both modes. The particle share right of 0 must match the exact P(X > 0) = 1/3 Phi(-2) +
    # 2/3 Phi(2) = 0.659 (the right mode's weight 2/3, up to the modes' overlap) within 0.05.
    def logdensity(x):
        return jnp.logaddexp(jnp.log(1 / 3) - 0.5 * (x[0] + 2) ** 2, jnp.log(2 / 3) - 0.5 * (x[0] - 2) ** 2)

    target = sf.Target(logdensity, dim=1)
    init = jax.random.normal(jax.random.key(4), (100, 1)) - 10.0
    trace = sf.sample(svgd(0.05), target, jax.random.key(5), init=init, num_steps=2000, thin=2000, progress=False)
    x = trace.positions[:, -1, 0]
    from scipy.stats import norm

    right = norm.cdf(-2) / 3 + 2 * norm.cdf(2) / 3
    assert abs(np.mean(x > 0) - right) < 0.05
    assert abs(np.mean(x < 0) - (1 - right)) < 0.05


def dirichlet_target(alpha):
    alpha = jnp.asarray(alpha, jnp.float32)

    def logdensity(x):  # reduced coordinates: x in R^(D-1), last weight 1 - sum(x)
        return jnp.sum((alpha[:-1] - 1) * jnp.log(x)) + (alpha[-1] - 1) * jnp.log1p(-jnp.sum(x))

    return sf.Target(logdensity, dim=len(alpha) - 1, mirror=entropic_simplex(), name="dirichlet")


def dirichlet_moments(alpha):
    mean = alpha / alpha.sum()
    return mean, (np.diag(mean) - np.outer(mean, mean)) / (alpha.sum() + 1)


DIRICHLETS = {
    # Shi, Liu & Mackey's sparse Dirichlet (D = 20, most alpha = 0.1) and a dense one (alpha > 1).
    "sparse": np.r_[90.1, 5.1, 5.1, np.full(17, 0.1)],
    "dense": np.array([3.0, 4.0, 5.0, 6.0, 7.0]),
}


@pytest.mark.parametrize(
    "method,which",
    [("msvgd", "sparse"), pytest.param("msvgd", "dense", marks=pytest.mark.slow),
     pytest.param("svmd", "sparse", marks=pytest.mark.slow), ("svmd", "dense")],
)
def test_mirrored_samplers_on_dirichlet_targets(method, which):
    # Bound: the L2 error of the particle mean (all D weights) below 3 x the RMS error of the mean
    # of n iid exact draws, sqrt(tr Cov / n). For iid draws P(error > 3 RMS) < 1/9 by Markov's
    # inequality on the squared error (and far less for near-Gaussian errors); the converged
    # particle sets of MSVGD/SVMD are at least that accurate.
    alpha = DIRICHLETS[which]
    target = dirichlet_target(alpha)
    mean, cov = dirichlet_moments(alpha)
    n = 50  # as in the paper
    init = jax.random.dirichlet(jax.random.key(6), jnp.full(len(alpha), 5.0), (n,))[:, :-1]
    sampler = msvgd(0.01) if method == "msvgd" else svmd(0.1, eigen_threshold=0.998)
    trace = sf.sample(sampler, target, jax.random.key(7), init=init, num_steps=1000, thin=100, progress=False)
    x = trace.positions
    assert np.all(x > 0) and np.all(x.sum(-1) < 1), "a particle left the open simplex"
    last = x[:, -1]
    weights = np.c_[last, 1 - last.sum(1)]
    error = np.linalg.norm(weights.mean(0) - mean)
    assert error < 3 * np.sqrt(np.trace(cov) / n), error
    assert trace.num_divergent == 0


def test_msvgd_with_the_euclidean_map_is_svgd():
    target, _, _ = correlated_gaussian()
    init = jax.random.normal(jax.random.key(8), (40, 2))
    opt = optax.sgd(0.05)
    run = lambda s: sf.sample(s, target, jax.random.key(9), init=init, num_steps=30, progress=False).positions
    np.testing.assert_allclose(
        run(msvgd(mirror=euclidean(), kernel="rbf", optimizer=opt)), run(svgd(kernel="rbf", optimizer=opt)), atol=1e-5
    )


def test_diverging_particles_are_put_back_and_counted():
    # The log-density is NaN right of 0.5; particles pushed there are put back and flagged.
    def logdensity(x):
        return -0.5 * jnp.sum(x**2) + jnp.where(x[0] > 0.5, jnp.nan, 0.0)

    target = sf.Target(logdensity, dim=1)
    init = jnp.linspace(-0.4, 0.4, 20)[:, None]
    with pytest.warns(RuntimeWarning, match="diverged"):
        trace = sf.sample(svgd(optimizer=optax.sgd(0.5), bandwidth=0.05), target, jax.random.key(0),
                          init=init, num_steps=20, progress=False)
    assert trace.num_divergent > 0
    assert np.all(trace.positions <= 0.5)
    assert np.all(np.isfinite(trace.stats["logdensity"]))
    assert trace.stats["diverging"].any(axis=1).sum() < 20  # flagged per particle, not for the set


def test_trace_exports_particles_as_chains():
    target, _, _ = correlated_gaussian()
    trace = sf.sample(svgd(0.05), target, jax.random.key(1), num_particles=16, num_steps=10, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = trace.to_arviz()
    assert idata.posterior["x"].shape == (16, 10, 2)
    assert "bandwidth" in idata.sample_stats


def test_bad_input_is_refused_before_compiling():
    target, _, _ = correlated_gaussian()
    with pytest.raises(ValueError, match="bandwidth"):
        svgd(0.1, bandwidth=0.0)
    with pytest.raises(ValueError, match="bandwidth"):
        msvgd(0.1, bandwidth=-1.0)
    with pytest.raises(ValueError, match="kernel"):
        svgd(0.1, kernel="laplace")
    with pytest.raises(ValueError, match="step_size"):
        svgd()
    with pytest.raises(ValueError, match="learning rate"):
        svgd(0.1, optimizer=optax.adam(0.1))
    with pytest.raises(ValueError, match="eigen_threshold"):
        svmd(0.1, eigen_threshold=1.5)
    with pytest.raises(ValueError, match=r"shape \(n_particles, dim\)"):
        svgd(0.1).init(target, jnp.zeros((5, 3)), jax.random.key(0))
    with pytest.raises(ValueError, match=r"shape \(n_particles, dim\)"):
        sf.sample(svgd(0.1), target, jax.random.key(0), init=jnp.zeros((5,)), num_steps=2, progress=False)
    # A mirror map that excludes the start: from the sampler (checked in init) ...
    outside = jnp.array([[0.5, 0.7], [0.1, 0.2]])  # first row: weights sum to 1.2
    with pytest.raises(ValueError, match="outside the domain"):
        sf.sample(msvgd(0.1, mirror=entropic_simplex()), target, jax.random.key(0), init=outside,
                  num_steps=2, progress=False)
    # ... or from the target (checked by the driver).
    on_simplex = sf.Target(target.logdensity, dim=2, mirror=entropic_simplex())
    with pytest.raises(ValueError, match="outside"):
        sf.sample(svmd(0.1), on_simplex, jax.random.key(0), init=outside, num_steps=2, progress=False)
    with pytest.raises(ValueError, match="needs a mirror map"):
        sf.sample(msvgd(0.1), target, jax.random.key(0), num_particles=4, num_steps=2, progress=False)


@pytest.mark.slow
def test_svgd_runs_20000_particles_in_50d():
    # Blocked pairwise terms: one (block, n) matrix at a time, never n x n x d (BlackJAX's layout
    # would need 80 GB here). Two steps must run and move every particle to a finite point.
    target = sf.Target(lambda x: -0.5 * jnp.sum(x**2), dim=50)
    init = jax.random.normal(jax.random.key(0), (20_000, 50)) * 2.0
    trace = sf.sample(svgd(1e-2), target, jax.random.key(1), init=init, num_steps=2, progress=False)
    assert trace.positions.shape == (20_000, 2, 50)
    assert np.all(np.isfinite(trace.positions)) and trace.num_divergent == 0
    assert np.all(trace.positions[:, -1] != init)
