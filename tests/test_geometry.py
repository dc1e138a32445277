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
