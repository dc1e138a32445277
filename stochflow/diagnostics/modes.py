"""Mode structure of a multimodal target: how to label a sample by its mode.

A :class:`Modes` is what mode-weight metrics need to know about a target:
``assign(samples (n, d)) -> (n,) int`` labels each sample with a mode in
``0 .. K-1`` and ``weights`` (K,) are the exact probabilities of the modes
under the target. Targets with modes carry one as ``target.truth.modes``.
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

    Computed with precomputed inverse Cholesky factors: ``O(n K d^2)``.
    """
    weights = np.asarray(weights, float)
    weights = weights / weights.sum()
    chols = np.linalg.cholesky(np.asarray(covs, float))
    inverse_chols = jnp.asarray(np.linalg.inv(chols))
    means = jnp.asarray(means)
    offsets = jnp.asarray(np.log(weights) - np.sum(np.log(np.diagonal(chols, axis1=1, axis2=2)), axis=1))

    def assign(samples: Array) -> Array:
        # log w_k + log N(x; m_k, C_k) up to a constant, for every sample and component.
        white = jnp.einsum("kij,nkj->nki", inverse_chols, jnp.asarray(samples)[:, None, :] - means)
        return jnp.argmax(offsets - 0.5 * jnp.sum(white**2, axis=-1), axis=-1)

    return Modes(assign, weights, f"{len(weights)} Gaussian components (largest responsibility)")
