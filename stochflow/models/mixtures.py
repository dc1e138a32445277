"""Gaussian-mixture targets with exact samplers, moments and mode weights."""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..diagnostics.modes import gaussian_component_modes
from ..target import GroundTruth, Target

__all__ = ["gaussian_mixture", "llp_gmm", "ring_gmm", "grid_gmm", "mixture_hd"]


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
    dim = means.shape[1]
    chols = np.linalg.cholesky(covs)
    inverse_chols = jnp.asarray(np.linalg.inv(chols))
    log_norms = jnp.asarray(
        np.log(weights) - np.sum(np.log(np.diagonal(chols, axis1=1, axis2=2)), axis=1) - 0.5 * dim * np.log(2 * np.pi)
    )
    means_j, chols_j, log_weights = jnp.asarray(means), jnp.asarray(chols), jnp.asarray(np.log(weights))

    def logdensity(x):
        # log sum_k w_k N(x; m_k, C_k) with C_k = L_k L_k^T: whitened residuals L_k^{-1} (x - m_k).
        white = jnp.einsum("kij,kj->ki", inverse_chols, x - means_j)
        return jax.scipy.special.logsumexp(log_norms - 0.5 * jnp.sum(white**2, axis=-1))

    def sample(key, n):
        pick_key, noise_key = jax.random.split(key)
        component = jax.random.categorical(pick_key, log_weights, shape=(n,))
        noise = jax.random.normal(noise_key, (n, dim))
        return means_j[component] + jnp.einsum("nij,nj->ni", chols_j[component], noise)

    mean = weights @ means
    second = np.einsum("k,kij->ij", weights, covs + np.einsum("ki,kj->kij", means, means))
    truth = GroundTruth(
        sample=sample,
        mean=mean,
        cov=second - np.outer(mean, mean),
        log_z=0.0,
        modes=gaussian_component_modes(weights, means, covs),
        components=(weights, means, covs),
    )
    return Target(logdensity, dim=dim, name=name or f"gmm-{len(weights)}x{means.shape[1]}d", truth=truth)


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


def ring_gmm(num_modes: int = 8, radius: float = 5.0, sd: float = 0.5) -> Target:
    """``num_modes`` equal-weight isotropic Gaussians (std ``sd``) evenly spaced on
    a circle of ``radius`` around 0 (defaults: 8 modes, radius 5, std 0.5: the
    modes are 7.7 std apart, so a local chain does not cross between them)."""
    if num_modes < 2 or radius <= 0 or sd <= 0:
        raise ValueError("ring_gmm needs num_modes >= 2, radius > 0 and sd > 0.")
    angles = 2 * np.pi * np.arange(num_modes) / num_modes
    means = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return gaussian_mixture(np.ones(num_modes), means, np.full((num_modes, 2), sd**2), name=f"ring-gmm{num_modes}")


def grid_gmm(side: int = 3, spacing: float = 5.0, sd: float = 0.5477222) -> Target:
    """``side x side`` equal-weight isotropic Gaussians on a grid centred at 0.

    Defaults: the 9-mode mixture of Zhang et al. 2024 (DGFS) as used in
    ``fab-jax`` ``GaussianMixture2D``: means {-5, 0, 5}^2, std 0.5477 (variance 0.3)."""
    if side < 1 or spacing <= 0 or sd <= 0:
        raise ValueError("grid_gmm needs side >= 1, spacing > 0 and sd > 0.")
    ticks = spacing * (np.arange(side) - (side - 1) / 2)
    means = np.array([(a, b) for a in ticks for b in ticks])
    return gaussian_mixture(np.ones(side**2), means, np.full((side**2, 2), sd**2), name=f"grid-gmm{side**2}")


# Unequal weights and unequal scales for the high-dimensional mixtures.
_HD_WEIGHTS = np.array([0.1, 0.2, 0.3, 0.4])
_HD_SDS = np.array([0.8, 1.0, 1.2, 1.0])
_HD_SEPARATION = 8.0


def mixture_hd(dim: int = 10) -> Target:
    """Four Gaussian components in ``dim`` dimensions with weights 0.1, 0.2, 0.3, 0.4.

    Component k has mean ``(8 / sqrt 2) e_k`` (the k-th coordinate axis; all
    pairs of means 8 apart, whatever ``dim``) and isotropic std 0.8, 1.0, 1.2,
    1.0: at least 8 / (2 * 1.2) = 3.3 std from each mean to the midpoint, so
    the components are distinct modes (Bayes misassignment < 1e-3) and a local
    sampler stays in the mode it starts in. Deterministic: no RNG involved.
    """
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < len(_HD_WEIGHTS):
        raise ValueError(f"mixture_hd needs an int dim >= {len(_HD_WEIGHTS)}, got {dim!r}.")
    means = np.zeros((len(_HD_WEIGHTS), dim))
    means[np.arange(len(_HD_WEIGHTS)), np.arange(len(_HD_WEIGHTS))] = _HD_SEPARATION / np.sqrt(2.0)
    variances = np.repeat((_HD_SDS**2)[:, None], dim, axis=1)
    return gaussian_mixture(_HD_WEIGHTS, means, variances, name=f"mixture-{dim}d")
