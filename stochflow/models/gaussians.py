"""Gaussian targets with exact moments and an exact sampler."""

from __future__ import annotations

from typing import Optional

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from ..target import GroundTruth, Target

__all__ = ["gaussian", "anisotropic_gaussian"]


def gaussian(mean, cov, name: Optional[str] = None) -> Target:
    """``N(mean, cov)`` as a Target with its exact sampler and moments."""
    mean = np.asarray(mean, dtype=float)
    cov = np.asarray(cov, dtype=float)
    law = dist.MultivariateNormal(jnp.asarray(mean), covariance_matrix=jnp.asarray(cov))
    return Target(
        law.log_prob,
        dim=mean.shape[0],
        truth=GroundTruth(sample=lambda key, n: law.sample(key, (n,)), mean=mean, cov=cov),
        name=name or f"gaussian-{mean.shape[0]}d",
    )


def anisotropic_gaussian(dim: int = 20, condition_number: float = 100.0, rotate: bool = True, seed: int = 0) -> Target:
    """Zero-mean Gaussian whose covariance eigenvalues are log-spaced on
    ``[1/sqrt(k), sqrt(k)]`` (``k = condition_number``, geometric mean 1),
    optionally rotated by a fixed orthogonal matrix (QR of a
    ``numpy.random.RandomState(seed)`` Gaussian matrix, a stream NumPy keeps
    stable across versions)."""
    if dim < 1 or condition_number < 1:
        raise ValueError("anisotropic_gaussian needs dim >= 1 and condition_number >= 1.")
    half = 0.5 * np.log(condition_number)
    variances = np.exp(np.linspace(-half, half, dim))
    if rotate and dim > 1:
        q, r = np.linalg.qr(np.random.RandomState(seed).randn(dim, dim))
        q = q * np.sign(np.diag(r))
        cov = (q * variances) @ q.T
        cov = 0.5 * (cov + cov.T)
    else:
        cov = np.diag(variances)
    kind = "rotated" if rotate else "diagonal"
    return gaussian(np.zeros(dim), cov, name=f"gaussian-{dim}d-cond{condition_number:g}-{kind}")
