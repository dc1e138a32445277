"""Stochastic normalizing flows: equinox layers and the flow they compose.

Layer specs (hyperparameters; ``sf.fit_snf`` builds them): :class:`RealNVP`
couplings and the stochastic blocks :class:`Metropolis`, :class:`MALA`,
:class:`Langevin` toward interpolated energies. :func:`realnvp_snf_layers` is
the architecture of Wu, Köhler & Noé (2020)'s double-well experiment.
"""

from .flow import StochasticFlow, build_flow, realnvp_snf_layers
from .layers import (
    MALA,
    AffineCoupling,
    Langevin,
    LangevinBlock,
    MALABlock,
    Metropolis,
    MetropolisBlock,
    RealNVP,
    prior_energy,
)

__all__ = [
    "StochasticFlow",
    "build_flow",
    "realnvp_snf_layers",
    "RealNVP",
    "Metropolis",
    "MALA",
    "Langevin",
    "AffineCoupling",
    "MetropolisBlock",
    "MALABlock",
    "LangevinBlock",
    "prior_energy",
]
