"""Mirror maps: inverses, Hessian operators against autodiff, domain guards.

These checks are deterministic (no Monte Carlo): each closed form is compared
with automatic differentiation of the potential in float64 at random interior
points, to a relative tolerance of 1e-8 (the closed forms and autodiff differ
only by rounding, ~1e-13 relative, so 1e-8 leaves ample room while catching
any algebra slip, which shows up at O(1)).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stochflow as sf
from stochflow.geometry import entropic_simplex, euclidean, hyperbolic_entropy, log_barrier

RTOL = 1e-8


def _interior_points(mirror, dim, rng, n=5):
    """Interior points: images of moderate dual points (|y| <= 3) under grad_conj."""
    ys = jnp.asarray(rng.uniform(-3.0, 3.0, size=(n, dim)))
    return np.asarray(jax.vmap(mirror.grad_conj)(ys))


MAPS = [
    ("euclidean", lambda: euclidean(), 3),
    ("simplex", lambda: entropic_simplex(), 4),
    ("box", lambda: log_barrier(np.array([-1.0, 0.0, 2.0]), np.array([1.0, 0.5, 7.0])), 3),
    ("orthant", lambda: log_barrier(0.0, np.inf), 3),
    ("mixed", lambda: log_barrier(np.array([0.0, -np.inf, -np.inf, -2.0]), np.array([np.inf, 1.0, np.inf, 3.0])), 4),
    ("hyperbolic", lambda: hyperbolic_entropy(np.array([0.7, 0.3])), 2),
]


def _closed_forms_and_autodiff(mirror, x):
    """Every closed form of the map at ``x`` beside its autodiff counterpart."""
    dim = x.shape[0]
    eye = jnp.eye(dim)
    hess = jax.hessian(mirror.potential)(x)
    inverse_hessian = lambda z: jnp.linalg.inv(jax.hessian(mirror.potential)(z))
    jac = jax.jacfwd(inverse_hessian)(x)  # [i, j, k] = d/dx_k [H^{-1}]_{ij}
    sqrt_cols = jax.vmap(lambda v: mirror.hessian_sqrt_matvec(x, v))(eye).T
    return {
        "in_domain": (mirror.in_domain(x), True),
        "grad": (mirror.grad(x), jax.grad(mirror.potential)(x)),
        "grad_conj(grad)": (mirror.grad_conj(mirror.grad(x)), x),
        "hessian": (jax.vmap(lambda v: mirror.hessian_matvec(x, v))(eye).T, hess),
        "inverse_hessian": (jax.vmap(lambda v: mirror.inverse_hessian_matvec(x, v))(eye).T, jnp.linalg.inv(hess)),
        "sqrt @ sqrt.T": (sqrt_cols @ sqrt_cols.T, hess),
        # row-wise divergence: d_i = sum_j d/dx_j [H^{-1}]_{ij}
        "divergence": (mirror.inverse_hessian_divergence(x), jnp.einsum("ijj->i", jac)),
        "logdet": (mirror.logdet_hessian(x), jnp.linalg.slogdet(hess)[1]),
    }


@pytest.mark.parametrize("label,make,dim", MAPS, ids=[m[0] for m in MAPS])
def test_mirror_map_against_autodiff(label, make, dim):
    with jax.enable_x64(True):
        mirror = make()
        xs = jnp.asarray(np.stack(_interior_points(mirror, dim, np.random.default_rng(0))))
        checks = jax.jit(jax.vmap(lambda x: _closed_forms_and_autodiff(mirror, x)))(xs)
        for name, (closed, autodiff) in checks.items():
            np.testing.assert_allclose(closed, autodiff, rtol=RTOL, atol=1e-10, err_msg=f"{label}: {name}")


@pytest.mark.parametrize("label,make,dim", MAPS, ids=[m[0] for m in MAPS])
@pytest.mark.parametrize("x64", [False, True])
def test_grad_conj_stays_inside_for_extreme_duals(label, make, dim, x64):
    with jax.enable_x64(x64):
        mirror = make()
        extremes = jnp.asarray([-1e30, -1e4, -50.0, -1e-30, 0.0, 1e-30, 50.0, 1e4, 1e30])
        grid = jnp.stack(jnp.meshgrid(*([extremes] * min(dim, 3)), indexing="ij"), -1).reshape(-1, min(dim, 3))
        ys = jnp.concatenate([grid, jnp.zeros((grid.shape[0], dim - grid.shape[1]))], axis=1)
        xs = jax.jit(jax.vmap(mirror.grad_conj))(ys)
        inside = np.asarray(jax.jit(jax.vmap(mirror.in_domain))(xs))
        assert inside.all(), f"{label}: {np.asarray(ys)[~inside][:3]} -> {np.asarray(xs)[~inside][:3]}"


def test_simplex_reduced_coordinates_convention():
    with jax.enable_x64(True):
        mirror = entropic_simplex()
        weights = jnp.array([0.2, 0.3, 0.1, 0.4])
        x = weights[:3]
        np.testing.assert_allclose(mirror.grad(x), jnp.log(weights[:3] / weights[3]), rtol=1e-12)
        np.testing.assert_allclose(mirror.inverse_hessian_matvec(x, jnp.ones(3)), x - x * jnp.sum(x), rtol=1e-12)
        assert not bool(mirror.in_domain(jnp.array([0.5, 0.6, 0.1])))
        assert not bool(mirror.in_domain(jnp.array([0.5, -0.1, 0.1])))


def test_mirror_maps_jit_and_vmap():
    mirror = log_barrier(-1.0, 1.0)
    ys = jax.random.normal(jax.random.key(0), (7, 3))
    xs = jax.jit(jax.vmap(mirror.grad_conj))(ys)
    assert xs.shape == (7, 3)
    assert bool(jnp.all(jax.vmap(mirror.in_domain)(xs)))
    assert sf.geometry.entropic_simplex().name == "entropic_simplex"


@pytest.mark.parametrize(
    "lower,upper,match",
    [
        (1.0, 0.0, "lower < upper"),
        (-np.inf, np.inf, "euclidean"),
        (np.nan, 1.0, "NaN"),
        ([0.0, 0.0], [1.0, 1.0, 1.0], "incompatible"),
        (np.inf, np.inf, "no domain"),
    ],
)
def test_log_barrier_bad_bounds(lower, upper, match):
    with pytest.raises(ValueError, match=match):
        log_barrier(lower, upper)


def test_hyperbolic_entropy_bad_beta():
    with pytest.raises(ValueError, match="positive"):
        hyperbolic_entropy(0.0)
    with pytest.raises(ValueError, match="positive"):
        hyperbolic_entropy([1.0, -2.0])


# ------------------------------------------------------------------ nonsmooth terms
# Each prox is compared with scipy's numerical minimisation of its definition,
# argmin_y g(y) + ||y - x||^2 / (2 lam) (or + D_phi(y, x) / lam for the Bregman
# prox), written as a smooth constrained problem solved by SLSQP (|.| split with
# slack variables, indicators as constraints). SLSQP is run to ftol 1e-13, so
# its minimiser is accurate to ~1e-6; the tolerance 1e-5 leaves room for that
# and fails any wrong closed form (errors are O(lam) or O(1)).

from scipy.optimize import minimize  # noqa: E402

from stochflow.geometry import (  # noqa: E402
    ball_indicator,
    box_indicator,
    l1,
    separable_sum,
    simplex_indicator,
    tv1d,
)

PROX_TOL = 1e-5


def _slsqp(objective, x0, constraints=(), bounds=None):
    result = minimize(
        objective, x0, method="SLSQP", constraints=list(constraints), bounds=bounds,
        options={"ftol": 1e-13, "maxiter": 2000},
    )
    # status 8 ("positive directional derivative in line search") means no further
    # progress at this precision, i.e. converged to rounding; anything else fails.
    assert result.status in (0, 8), result.message
    return result.x


def _brute_l1(x, lam, weight, bregman=None):
    """min sum w t + D(y, x)/lam s.t. -t <= y <= t; variables z = (y, t)."""
    d = x.shape[0]
    distance = bregman or (lambda y: 0.5 * np.sum((y - x) ** 2))
    objective = lambda z: np.sum(weight * z[d:]) + distance(z[:d]) / lam
    cons = [{"type": "ineq", "fun": lambda z: z[d:] - z[:d]}, {"type": "ineq", "fun": lambda z: z[d:] + z[:d]}]
    return objective, np.concatenate([x, np.abs(x) + 1.0]), cons


def test_l1_prox_against_numerical_minimisation():
    rng = np.random.default_rng(1)
    term = l1(np.array([0.5, 1.0, 2.0, 0.0]))
    with jax.enable_x64(True):
        for lam in (0.1, 0.7, 2.0):
            x = rng.normal(size=4) * 2
            objective, z0, cons = _brute_l1(x, lam, term.params["weight"])
            expected = _slsqp(objective, z0, cons)[:4]
            np.testing.assert_allclose(term.prox(jnp.asarray(x), lam), expected, atol=PROX_TOL)


def _bregman_distance(mirror, x):
    x = jnp.asarray(x)
    phi, grad = mirror.potential, mirror.grad(x)
    return lambda y: float(phi(jnp.asarray(y)) - phi(x) - jnp.dot(grad, jnp.asarray(y) - x))


BREGMAN_L1_CASES = [
    ("box", lambda: log_barrier(np.array([-1.0, -3.0, 0.5]), np.array([2.0, 1.0, 4.0])), [(-1, 2), (-3, 1), (0.5, 4)]),
    ("orthant", lambda: log_barrier(0.0, np.inf), [(0, None)] * 3),
    ("hyperbolic", lambda: hyperbolic_entropy(np.array([0.7, 0.3, 1.0])), [(None, None)] * 3),
]


@pytest.mark.parametrize("label,make,bounds", BREGMAN_L1_CASES, ids=[c[0] for c in BREGMAN_L1_CASES])
def test_l1_bregman_prox_against_numerical_minimisation(label, make, bounds):
    rng = np.random.default_rng(2)
    with jax.enable_x64(True):
        mirror = make()
        term = l1(np.array([0.8, 1.5, 0.3]))
        for lam in (0.05, 0.5, 2.0):
            x = np.asarray(mirror.grad_conj(jnp.asarray(rng.normal(size=3) * 1.5)))
            objective, z0, cons = _brute_l1(x, lam, term.params["weight"], _bregman_distance(mirror, x))
            eps = 1e-9  # keep SLSQP strictly inside the mirror's open domain
            box = [(None if lo is None else lo + eps, None if hi is None else hi - eps) for lo, hi in bounds]
            expected = _slsqp(objective, z0, cons, bounds=box + [(None, None)] * 3)[:3]
            got = term.bregman_prox(jnp.asarray(x), lam, mirror)
            np.testing.assert_allclose(got, expected, atol=PROX_TOL, err_msg=f"lam={lam}")


def test_l1_bregman_prox_on_simplex_against_numerical_minimisation():
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        mirror = entropic_simplex()
        term = l1(np.array([1.0, 0.2, 3.0]))
        for lam in (0.1, 1.0):
            x = np.asarray(mirror.grad_conj(jnp.asarray(rng.normal(size=3))))
            distance = _bregman_distance(mirror, x)
            objective = lambda y: float(np.sum(term.params["weight"] * np.abs(y))) + distance(y) / lam
            cons = [{"type": "ineq", "fun": lambda y: 1.0 - 1e-9 - np.sum(y)}]
            expected = _slsqp(objective, x, cons, bounds=[(1e-9, None)] * 3)
            np.testing.assert_allclose(term.bregman_prox(jnp.asarray(x), lam, mirror), expected, atol=PROX_TOL)


def test_indicator_projections_against_numerical_minimisation():
    rng = np.random.default_rng(4)
    lower, upper = np.array([-1.0, 0.0, 0.5]), np.array([1.0, 2.0, 0.7])
    cases = [
        (box_indicator(lower, upper), [{"type": "ineq", "fun": lambda y: y - lower}, {"type": "ineq", "fun": lambda y: upper - y}]),
        (simplex_indicator(), [{"type": "ineq", "fun": lambda y: y}, {"type": "ineq", "fun": lambda y: 1.0 - np.sum(y)}]),
        (ball_indicator(np.array([0.5, -0.5, 0.0]), 0.8), [{"type": "ineq", "fun": lambda y: 0.64 - np.sum((y - np.array([0.5, -0.5, 0.0])) ** 2)}]),
    ]
    with jax.enable_x64(True):
        for term, cons in cases:
            for scale in (0.3, 3.0):  # inside-ish and far outside
                x = rng.normal(size=3) * scale
                expected = _slsqp(lambda y: 0.5 * np.sum((y - x) ** 2), np.clip(x, -0.1, 0.1) + 0.2, cons)
                got = term.prox(jnp.asarray(x), 0.7)
                np.testing.assert_allclose(got, expected, atol=PROX_TOL, err_msg=term.name)
                assert float(term.value(got)) == 0.0
            assert float(term.value(jnp.full(3, 50.0))) == np.inf


def test_box_bregman_prox_is_the_clip():
    with jax.enable_x64(True):
        mirror = hyperbolic_entropy(0.5)
        term = box_indicator(-0.2, 0.3)
        x = jnp.array([-1.0, 0.1, 2.0])
        distance = _bregman_distance(mirror, np.asarray(x))
        expected = _slsqp(distance, np.zeros(3), bounds=[(-0.2, 0.3)] * 3)
        np.testing.assert_allclose(term.bregman_prox(x, 0.5, mirror), expected, atol=PROX_TOL)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 15])
def test_tv1d_prox_against_numerical_minimisation(n):
    rng = np.random.default_rng(n)
    with jax.enable_x64(True):
        prox = jax.jit(tv1d(1.3).prox)
        for lam in (0.05, 0.4, 2.0):
            x = rng.normal(size=n) * 2
            w = 1.3 * lam
            objective = lambda z: 0.5 * np.sum((z[:n] - x) ** 2) + w * np.sum(z[n:])
            cons = [
                {"type": "ineq", "fun": lambda z: z[n:] - np.diff(z[:n])},
                {"type": "ineq", "fun": lambda z: z[n:] + np.diff(z[:n])},
            ]
            z0 = np.concatenate([x, np.abs(np.diff(x)) + 1.0])
            expected = _slsqp(objective, z0, cons)[:n] if n > 1 else x
            np.testing.assert_allclose(prox(jnp.asarray(x), lam), expected, atol=PROX_TOL, err_msg=f"lam={lam}")


def test_tv1d_prox_vmaps_and_keeps_the_mean():
    xs = jax.random.normal(jax.random.key(0), (6, 20))
    out = jax.jit(jax.vmap(lambda x: tv1d(0.5).prox(x, 1.0)))(xs)
    np.testing.assert_allclose(out.mean(axis=1), xs.mean(axis=1), atol=1e-5)  # TV prox preserves the mean


def test_separable_sum_acts_block_by_block():
    with jax.enable_x64(True):
        term = separable_sum([(l1(0.5), 2), (tv1d(1.0), 4), (box_indicator(0.0, 1.0), 1)])
        x = jnp.array([1.0, -0.2, 3.0, -1.0, 2.0, 0.5, 4.0])
        expected = jnp.concatenate([l1(0.5).prox(x[:2], 0.3), tv1d(1.0).prox(x[2:6], 0.3), jnp.array([1.0])])
        np.testing.assert_allclose(term.prox(x, 0.3), expected)
        np.testing.assert_allclose(term.value(x.at[6].set(0.5)), 0.5 * (1.0 + 0.2) + 1.0 * (4.0 + 3.0 + 1.5) + 0.0)
        with pytest.raises(ValueError, match="cover 7 coordinates"):
            term.prox(jnp.zeros(5), 0.3)


def test_nonsmooth_bad_input():
    with pytest.raises(ValueError, match=">= 0"):
        l1(-1.0)
    with pytest.raises(ValueError, match="> 0"):
        tv1d(0.0)
    with pytest.raises(ValueError, match="lower <= upper"):
        box_indicator(1.0, 0.0)
    with pytest.raises(ValueError, match="no Bregman proximal operator"):
        box_indicator(0.0, 1.0).bregman_prox(jnp.ones(2) * 0.5, 0.1, entropic_simplex())
    assert not ball_indicator().supports(euclidean())
    assert l1().supports(entropic_simplex())


def test_mirror_maps_compare_and_hash_by_value():
    assert log_barrier(0.0, 1.0) == log_barrier(0, 1)
    assert hash(log_barrier(0.0, 1.0)) == hash(log_barrier(0, 1))
    assert log_barrier(0.0, 1.0) != log_barrier(0.0, 2.0)
    assert log_barrier(0.0, 1.0) != log_barrier(np.zeros(2), np.ones(2))  # shapes are part of the value
    assert hyperbolic_entropy(0.5) != hyperbolic_entropy(1.0)
    assert euclidean() == euclidean() and entropic_simplex() != euclidean()
    assert len({log_barrier(0, 1), log_barrier(0, 1), log_barrier(0, 2)}) == 2
    assert repr(log_barrier(0.0, 2.0)) == "log_barrier(lower=0.0, upper=2.0)"


def test_a_user_defined_map_with_the_fields_gets_the_bregman_proxes_and_fast_paths():
    from stochflow.samplers.stein import _kernel_params, mirrored_direction

    with jax.enable_x64(True):
        built_in = log_barrier(0.0, np.inf)
        # The same map under another family name: only the capability fields tell what it can do.
        mine = built_in._replace(name="my_orthant")
        x = jnp.array([0.3, 2.0, 0.01])
        np.testing.assert_allclose(l1(0.7).bregman_prox(x, 0.2, mine), l1(0.7).bregman_prox(x, 0.2, built_in))
        assert box_indicator(0.0, 1.0).supports(mine)
        assert not simplex_indicator().supports(mine)
        # Without the separable field it has no Bregman prox, and Stein takes the dense path.
        opaque = mine._replace(separable=False, inverse_hessian_factors=None)
        assert opaque != mine and l1().bregman_prox_for(opaque) is None
        theta = jax.vmap(built_in.grad_conj)(jax.random.normal(jax.random.key(0), (6, 3)))
        scores = jax.random.normal(jax.random.key(1), (6, 3))
        params = _kernel_params(jnp.asarray(0.5))
        np.testing.assert_allclose(mirrored_direction("imq", theta, scores, params, opaque),
                                   mirrored_direction("imq", theta, scores, params, mine), rtol=1e-10)
