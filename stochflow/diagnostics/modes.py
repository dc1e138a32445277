"""Mode structure of a multimodal target: how to label a sample by its mode.

A :class:`Modes` is what mode-weight metrics need to know about a target:
``assign(samples (n, d)) -> (n,) int`` labels each sample with a mode in
``0 .. K-1`` and ``weights`` (K,) are the exact probabilities of the modes
under the target. Targets with modes carry one as ``target.modes``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = ["Modes", "gaussian_component_modes"]


class Modes(NamedTuple):
    """How samples map to the modes of a target, and the modes' exact weights."""

    assign: Callable[[Array], Array]  # (n, d) -> (n,) int in 0..K-1; jit-able
    weights: np.ndarray  # (K,), sums to one
    description: str = ""


def gaussian_component_modes(weights, means, covs) -> Modes:
    """Modes of ``sum_k w_k N(m_k, C_k)``: a sample belongs to the component
    with the largest responsibility ``w_k N(x; m_k, C_k)`` (the Bayes rule).

    Computed through Cholesky factors, so the cost is ``O(n K d^2)``.
    """
    weights = np.asarray(weights, float)
    weights = weights / weights.sum()
    means = jnp.asarray(means)
    chols = jnp.linalg.cholesky(jnp.asarray(covs))
    log_weights = jnp.log(jnp.asarray(weights))
    half_logdets = jnp.sum(jnp.log(jnp.diagonal(chols, axis1=-2, axis2=-1)), axis=-1)

    def component_scores(x: Array) -> Array:  # (d,) -> (K,) log w_k + log N_k(x) + const
        residual = jax.vmap(lambda l, m: jax.scipy.linalg.solve_triangular(l, x - m, lower=True))(chols, means)
        return log_weights - half_logdets - 0.5 * jnp.sum(residual**2, axis=-1)

    def assign(samples: Array) -> Array:
        return jnp.argmax(jax.vmap(component_scores)(jnp.asarray(samples)), axis=-1)

    return Modes(assign, weights, f"{len(weights)} Gaussian components (largest responsibility)")
