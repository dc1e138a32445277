"""Gaussian-mixture targets with exact samplers, moments and mode weights."""

from __future__ import annotations

from typing import Optional

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from ..diagnostics.modes import gaussian_component_modes
from ..target import Target

__all__ = ["gaussian_mixture", "llp_gmm"]


def gaussian_mixture(weights, means, covs, name: Optional[str] = None) -> Target:
    """``sum_k w_k N(mean_k, cov_k)`` with its exact (ancestral) sampler.

    The mixture's mean and covariance are exact:
    ``mean = sum_k w_k m_k``, ``cov = sum_k w_k (C_k + m_k m_k^T) - mean mean^T``.
    The components are kept on the target (``target.components``) and its
    modes (``target.modes``: a sample belongs to the component of largest
    responsibility) feed the mode-weight metrics; ``log_z = 0``.
    """
    weights = np.asarray(weights, dtype=float)
    weights = weights / weights.sum()
    means = np.asarray(means, dtype=float)
    covs = np.asarray(covs, dtype=float)
    if covs.ndim == 2:  # one isotropic-or-diagonal spec per component: (K, d) variances
        covs = np.stack([np.diag(c) for c in covs])
    law = dist.MixtureSameFamily(
        dist.Categorical(probs=jnp.asarray(weights)),
        dist.MultivariateNormal(jnp.asarray(means), covariance_matrix=jnp.asarray(covs)),
    )
    mean = weights @ means
    second = np.einsum("k,kij->ij", weights, covs + np.einsum("ki,kj->kij", means, means))
    target = Target(
        law.log_prob,
        dim=means.shape[1],
        sample=lambda key, n: law.sample(key, (n,)),
        mean=mean,
        cov=second - np.outer(mean, mean),
        name=name or f"gmm-{len(weights)}x{means.shape[1]}d",
    )
    target.components = (weights, means, covs)
    target.modes = gaussian_component_modes(weights, means, covs)
    target.log_z = 0.0
    return target


# The 2-D mixture of Lau, Liu & Pock (2023), "Non-log-concave and nonsmooth
# sampling via Langevin Monte Carlo algorithms", experiment on Gaussian mixtures
# (their reference scripts, repository 192459/lmc-atomi): five equal-weight
# components.
_LLP_MEANS = [(0.0, 0.0), (-2.0, 3.0), (2.0, -3.0), (3.0, 3.0), (-2.0, -2.0)]
_LLP_COVS = [
    [[1.0, -0.5], [-0.5, 1.0]],
    [[0.5, 0.2], [0.2, 0.7]],
    [[0.5, 0.1], [0.1, 0.9]],
    [[0.8, 0.02], [0.02, 0.3]],
    [[1.2, 0.05], [0.05, 0.8]],
]


def llp_gmm() -> Target:
    """The five-component 2-D Gaussian mixture of Lau, Liu & Pock (2023)."""
    return gaussian_mixture(np.full(5, 0.2), _LLP_MEANS, _LLP_COVS, name="llp-gmm5")
