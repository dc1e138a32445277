"""Sample-quality metrics against a target's ground truth.

All take samples as an ``(n, d)`` array (flatten chains first). The JAX ones
are jit-able and work on row blocks of ``block`` samples, so memory stays
``O(block * n)`` however large ``n`` is.

* :func:`moment_errors` — ``mean_err = max_i |mean_i - m_i| / s_i`` (in
  standard deviations of the target) and ``cov_err = ||C - Σ||_F / ||Σ||_F``.
* :func:`mode_weights`, :func:`mode_weight_tv`, :func:`mode_coverage`,
  :func:`modes_visited` — for targets with ``target.truth.modes``
  (:class:`~stochflow.diagnostics.modes.Modes`): the share of samples per mode
  ``p̂``; its total-variation distance to the exact weights
  ``TV = ½ Σ_k |p̂_k - w_k|``; the entropic mode coverage
  ``EMC = -Σ_k p̂_k log p̂_k / log K`` (Blessing et al. 2024; 1 means equal
  shares, so it is the right target only for equal weights — compare with the
  exact samples' value, ``H(w) / log K`` in the limit); and how many modes got
  at least one sample.
* :func:`energy_distance` — Székely's ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` with
  the within-sample terms as U-statistics (unbiased; zero in expectation when
  the two laws agree, so it can be slightly negative).
* :func:`w2` — the exact 2-Wasserstein distance between two equal-size
  empirical measures: the optimal assignment for the squared Euclidean cost
  (``scipy.optimize.linear_sum_assignment``, O(n^3); a host function, not
  jit-able; n up to a few thousand). Exact OT rather than an entropic
  (Sinkhorn) surrogate, so there is no regularisation to choose.
* :func:`ess_per_grad` — the smallest bulk ESS over coordinates (ArviZ) per
  gradient evaluation of the whole run, warmup included.
* :func:`log_z_error` — ``|log Ẑ - log Z|`` for methods that return
  importance weights (the estimate ``log Ẑ`` and its standard error come from
  :func:`stochflow.diagnostics.importance_log_z`).

MMD and KSD live in :mod:`stochflow.diagnostics.kernels`.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .modes import Modes

Array = jax.Array

__all__ = [
    "moment_errors",
    "mode_weights",
    "mode_weight_tv",
    "mode_coverage",
    "modes_visited",
    "energy_distance",
    "w2",
    "ess_per_grad",
    "log_z_error",
]


def _samples(samples: Any, name: str = "samples") -> Array:
    samples = jnp.asarray(samples)
    if samples.ndim != 2 or samples.shape[0] < 2:
        raise ValueError(f"{name} must have shape (n, d) with n >= 2, got {samples.shape}; flatten chains first.")
    return samples


def _modes(modes_or_target: Any) -> Modes:
    truth = getattr(modes_or_target, "truth", modes_or_target)
    modes = getattr(truth, "modes", modes_or_target)
    if not isinstance(modes, Modes):
        raise TypeError(
            "mode metrics need a diagnostics.modes.Modes or a target whose truth has modes "
            f"(mixtures, many-well), got {type(modes_or_target).__name__}."
        )
    return modes


def moment_errors(samples: Any, mean: Any, cov: Any) -> dict[str, Array]:
    """Standardised mean error and relative Frobenius covariance error of ``samples``."""
    samples = _samples(samples)
    mean, cov = jnp.asarray(mean), jnp.asarray(cov)
    sd = jnp.sqrt(jnp.diag(cov))
    estimate_cov = jnp.atleast_2d(jnp.cov(samples, rowvar=False))
    return {
        "mean_err": jnp.max(jnp.abs(samples.mean(0) - mean) / sd),
        "cov_err": jnp.linalg.norm(estimate_cov - cov) / jnp.linalg.norm(cov),
    }


def mode_weights(samples: Any, modes: Any) -> Array:
    """Share of the samples in each mode, shape ``(K,)`` (``modes``: a Modes or a target)."""
    modes = _modes(modes)
    labels = modes.assign(_samples(samples))
    counts = jnp.bincount(labels, length=len(modes.weights))
    return counts / labels.shape[0]


def mode_weight_tv(samples: Any, modes: Any) -> Array:
    """Total-variation distance ``½ Σ_k |p̂_k - w_k|`` between sample and exact mode weights."""
    modes = _modes(modes)
    return 0.5 * jnp.sum(jnp.abs(mode_weights(samples, modes) - jnp.asarray(modes.weights)))


def mode_coverage(samples: Any, modes: Any) -> Array:
    """Entropic mode coverage ``-Σ p̂_k log p̂_k / log K`` in [0, 1]."""
    modes = _modes(modes)
    shares = mode_weights(samples, modes)
    entropy = -jnp.sum(jnp.where(shares > 0, shares * jnp.log(jnp.where(shares > 0, shares, 1.0)), 0.0))
    return entropy / math.log(len(modes.weights))


def modes_visited(samples: Any, modes: Any) -> Array:
    """Number of modes holding at least one sample."""
    return jnp.sum(mode_weights(samples, modes) > 0)


def _distance_sum(x: Array, y: Array, block: int) -> Array:
    """``Σ_i Σ_j |x_i - y_j|`` over row blocks of x (memory O(block * len(y)))."""
    n = x.shape[0]
    pad = (-n) % block
    blocks = jnp.concatenate([x, jnp.zeros((pad, x.shape[1]), x.dtype)]).reshape(-1, block, x.shape[1])
    valid = (jnp.arange(n + pad) < n).reshape(-1, block)

    def block_sum(args):
        rows, keep = args
        sq = jnp.sum(rows**2, 1)[:, None] + jnp.sum(y**2, 1)[None, :] - 2.0 * rows @ y.T
        return jnp.sum(jnp.where(keep[:, None], jnp.sqrt(jnp.maximum(sq, 0.0)), 0.0))

    return jnp.sum(jax.lax.map(block_sum, (blocks, valid)))


def energy_distance(x: Any, y: Any, block: int = 512) -> Array:
    """Energy distance ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` (within-sample terms unbiased)."""
    x, y = _samples(x, "x"), _samples(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}.")
    n, m = x.shape[0], y.shape[0]
    cross = _distance_sum(x, y, block) / (n * m)
    within_x = _distance_sum(x, x, block) / (n * (n - 1))  # the diagonal terms are 0
    within_y = _distance_sum(y, y, block) / (m * (m - 1))
    return 2.0 * cross - within_x - within_y


def w2(x: Any, y: Any) -> float:
    """Exact 2-Wasserstein distance between two equal-size samples (optimal assignment)."""
    from scipy.optimize import linear_sum_assignment

    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"w2 needs two samples of the same shape (n, d), got {x.shape} and {y.shape}; subsample to equal n.")
    cost = np.sum(x**2, 1)[:, None] + np.sum(y**2, 1)[None, :] - 2.0 * x @ y.T
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(max(cost[rows, cols].mean(), 0.0)))


def ess_per_grad(positions: Any, n_grad_total: float) -> float:
    """Smallest bulk ESS over coordinates of ``positions`` (chains, draws, d) per gradient evaluation."""
    from .arviz_bridge import ess

    return float(np.min(ess(np.asarray(positions))) / n_grad_total)


def log_z_error(log_z_estimate: Any, log_z: float) -> Array:
    """``|log Ẑ - log Z|``."""
    return jnp.abs(jnp.asarray(log_z_estimate) - log_z)
