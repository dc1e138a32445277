"""The 40-mode 2-D Gaussian mixture of Midgley et al. (ICLR 2023, "Flow
annealed importance sampling bootstrap", FAB), the instance of ``fab-torch``:

    p(x) = (1/40) Σ_k N(x; μ_k, σ^2 I_2),   σ = softplus(1) = 1.3133,

with means μ_k drawn once as Uniform(-40, 40)^2 by torch's generator with
seed 0. The means are stored as data (``data/gmm40_means.txt``), so no RNG
version can change them. (Blessing et al. 2024 use a *different* 40-mode
instance — JAX-drawn means and σ = 1; do not compare numbers across them.)

Ground truth: exact ancestral sampling, exact moments, ``log Z = 0``; modes
label a sample by its most responsible component (equal weights 1/40).
"""

from __future__ import annotations

import pathlib

import numpy as np

from ..target import Target
from .mixtures import gaussian_mixture

__all__ = ["gmm40", "GMM40_MEANS", "GMM40_SD"]

GMM40_SD = float(np.log1p(np.e))  # softplus(1) = 1.31326...
GMM40_MEANS = np.loadtxt(pathlib.Path(__file__).with_name("data") / "gmm40_means.txt")


def gmm40() -> Target:
    """FAB's 40-mode 2-D Gaussian mixture (means in [-40, 40]^2, std 1.3133)."""
    return gaussian_mixture(np.ones(40), GMM40_MEANS, np.full((40, 2), GMM40_SD**2), name="gmm40")
