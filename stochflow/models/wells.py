"""The 2-D double well and the many-well target built from copies of it.

Double well (Noé et al. 2019, Boltzmann generators; the instance of Midgley
et al. 2023, FAB, ``fab-torch`` ``double_well.py`` with a = -0.5, b = -6, c = 1):

    u(x1, x2) = x1^4 - 6 x1^2 - 0.5 x1 + 0.5 x2^2,        p(x) ∝ exp(-u(x)).

x1 and x2 are independent: x2 ~ N(0, 1), and x1 has the 1-D density
``exp(-(x1^4 - 6 x1^2 - 0.5 x1)) / Z1`` with two wells, at x1 ≈ +1.75 (deep,
mass ≈ 0.844) and x1 ≈ -1.71 (shallow, mass ≈ 0.156).

Many-well (FAB): ``d = 2m`` coordinates, pairs ``(x_{2i}, x_{2i+1})`` are
independent double wells; 2^m modes. ``d = 32`` gives 65,536 modes.

Ground truth, all exact:

* ``Z1`` and the moments of x1 by quadrature: the trapezoid rule on
  [-10, 10] with 400,001 nodes; the integrand is smooth and below e^-9000 at
  the ends, where the trapezoid rule converges geometrically, so Z1 is exact to
  double precision (Z1 = 11784.509..., log Z = m (log Z1 + 0.5 log 2π)).
* Samples: x2 exactly Gaussian; x1 by rejection (batched rounds) from the proposal
  ``q = 0.156 N(-1.71, 0.4^2) + 0.844 N(1.75, 0.4^2)`` (the wells, their masses)
  with bound ``M = 1.01 max p/q``, the max taken on the quadrature grid and a
  1% margin for the grid spacing (log p/q changes by < 1e-3 between nodes); outside
  the grid p/q < e^-9000. Acceptance ≈ 1/M ≈ 0.5.
* Modes: a pair is in its deep well when x_{2i} > 0. The mode label used by
  mode-weight metrics is the NUMBER of pairs in their deep well, whose exact
  law is Binomial(m, P(x1 > 0)) — m + 1 classes whose weights are checkable
  from a few thousand samples, where the 2^m individual modes are not.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from math import comb

from ..diagnostics.modes import Modes
from ..target import GroundTruth, Target

Array = jax.Array

__all__ = ["double_well", "many_well", "double_well_energy", "DOUBLE_WELL_LOG_Z1"]

_A, _B, _C = -0.5, -6.0, 1.0
_PROPOSAL_MEANS = (-1.71, 1.75)
_PROPOSAL_SD = 0.4


def _neg_u1(x1):
    """-(c x^4 + b x^2 + a x): the log-density of x1, unnormalised."""
    return -(_C * x1**4 + _B * x1**2 + _A * x1)


def double_well_energy(x: Array) -> Array:
    """u(x) for one position of even length: the sum over pairs of the 2-D double-well energy."""
    pairs = x.reshape(-1, 2)
    return jnp.sum(-_neg_u1(pairs[:, 0]) + 0.5 * pairs[:, 1] ** 2)


def _quadrature() -> dict:
    grid = np.linspace(-10.0, 10.0, 400_001)
    log_f = _neg_u1(grid)
    shift = log_f.max()
    f = np.exp(log_f - shift)
    dx = grid[1] - grid[0]
    z_scaled = f.sum() * dx  # trapezoid: end values are 0 to double precision
    density = f / z_scaled
    mean = float((grid * density).sum() * dx)
    var = float(((grid - mean) ** 2 * density).sum() * dx)
    p_deep = float((density * (grid > 0)).sum() * dx)
    log_z1 = float(np.log(z_scaled) + shift)
    # Proposal mixture weights are the exact well masses.
    weights = np.array([1.0 - p_deep, p_deep])
    log_q = np.logaddexp.reduce(
        [np.log(w) - 0.5 * ((grid - m) / _PROPOSAL_SD) ** 2 - np.log(_PROPOSAL_SD * np.sqrt(2 * np.pi))
         for w, m in zip(weights, _PROPOSAL_MEANS)],
        axis=0,
    )
    log_bound = float(np.max(log_f - log_z1 - log_q) + np.log(1.01))
    return dict(log_z1=log_z1, mean=mean, var=var, p_deep=p_deep, weights=weights, log_bound=log_bound)


_Q = _quadrature()
DOUBLE_WELL_LOG_Z1 = _Q["log_z1"]  # log of the x1 normaliser, 9.37454...


def _sample_x1(key: Array, size: int) -> Array:
    """``size`` exact draws of x1 by rejection: every round proposes for all
    draws not yet accepted, until none is left (about log(size) / log 2 rounds)."""
    weights = jnp.asarray(_Q["weights"])
    means = jnp.asarray(_PROPOSAL_MEANS)

    def log_q(x):
        return jax.scipy.special.logsumexp(
            jnp.log(weights) + jax.scipy.stats.norm.logpdf(x[:, None], means, _PROPOSAL_SD), axis=-1
        )

    def propose(carry):
        key, x, accepted = carry
        key, pick_key, noise_key, accept_key = jax.random.split(key, 4)
        deep = jax.random.bernoulli(pick_key, weights[1], (size,)).astype(jnp.int32)
        candidate = means[deep] + _PROPOSAL_SD * jax.random.normal(noise_key, (size,), means.dtype)
        log_ratio = _neg_u1(candidate) - _Q["log_z1"] - log_q(candidate) - _Q["log_bound"]
        accept = jnp.log(jax.random.uniform(accept_key, (size,), means.dtype)) < log_ratio
        take = accept & ~accepted
        return key, jnp.where(take, candidate, x), accepted | accept

    start = (key, jnp.zeros((size,), means.dtype), jnp.zeros((size,), bool))
    _, x, _ = jax.lax.while_loop(lambda c: ~jnp.all(c[2]), propose, start)
    return x


@functools.partial(jax.jit, static_argnums=(1, 2))
def _sample_pairs(key: Array, n: int, num_pairs: int) -> Array:
    well_key, gauss_key = jax.random.split(key)
    x1 = _sample_x1(well_key, n * num_pairs).reshape(n, num_pairs)
    x2 = jax.random.normal(gauss_key, (n, num_pairs), dtype=x1.dtype)
    return jnp.stack([x1, x2], axis=-1).reshape(n, 2 * num_pairs)


def many_well(dim: int = 32) -> Target:
    """The many-well target: ``dim / 2`` independent 2-D double wells (FAB's d = 32).

    Carries ``log_z`` (exact), ``sample`` (exact), ``mean``/``cov`` (exact,
    diagonal) and ``modes`` (number of pairs in their deep well, exact
    Binomial weights). Log-density: ``-u(x)`` (unnormalised)."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 2 or dim % 2:
        raise ValueError(f"many_well needs an even dim >= 2 (pairs of coordinates), got {dim!r}.")
    num_pairs = dim // 2
    mean = np.tile([_Q["mean"], 0.0], num_pairs)
    cov = np.diag(np.tile([_Q["var"], 1.0], num_pairs))
    p = _Q["p_deep"]
    binomial = np.array([comb(num_pairs, k) * p**k * (1 - p) ** (num_pairs - k) for k in range(num_pairs + 1)])

    def count_deep(samples: Array) -> Array:
        return jnp.sum(jnp.asarray(samples).reshape(samples.shape[0], num_pairs, 2)[..., 0] > 0, axis=-1)

    truth = GroundTruth(
        sample=lambda key, n: _sample_pairs(key, n, num_pairs),
        mean=mean,
        cov=cov,
        log_z=num_pairs * (_Q["log_z1"] + 0.5 * np.log(2 * np.pi)),
        modes=Modes(count_deep, binomial, f"number of the {num_pairs} pairs in their deep well (x > 0)"),
    )
    return Target(
        lambda x: -double_well_energy(x),
        dim=dim,
        name="double-well" if dim == 2 else f"many-well-{dim}",
        truth=truth,
    )


def double_well() -> Target:
    """The 2-D double well ``u = x1^4 - 6 x1^2 - 0.5 x1 + 0.5 x2^2`` (many_well with dim 2).

    Exact: ``log_z``, ``sample``, ``mean``, ``cov``; ``modes`` labels x1 > 0
    (deep well, weight 0.8443) as mode 1 and x1 <= 0 as mode 0."""
    return many_well(2)
