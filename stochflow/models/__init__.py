"""Benchmark targets with ground truth: ``get(name, **params)`` and ``names()``."""

from __future__ import annotations

from functools import partial
from typing import Callable

from ..target import Target
from .banana import banana
from .funnel import funnel
from .gaussians import anisotropic_gaussian, gaussian
from .gmm40 import gmm40
from .mixtures import gaussian_mixture, grid_gmm, llp_gmm, mixture_hd, ring_gmm
from .nonsmooth import bayesian_lasso, dirichlet, laplace, laplace_gmm, laplace_mixture, truncated_laplace
from .wells import double_well, many_well

__all__ = [
    "get", "names", "gaussian", "anisotropic_gaussian", "gaussian_mixture", "llp_gmm", "double_well", "many_well",
    "gmm40", "ring_gmm", "grid_gmm", "mixture_hd", "funnel", "banana",
    "laplace", "laplace_gmm", "laplace_mixture", "bayesian_lasso", "truncated_laplace", "dirichlet",
]

_REGISTRY: dict[str, Callable[..., Target]] = {
    "gaussian-aniso": anisotropic_gaussian,
    "llp-gmm5": llp_gmm,
    "gaussian-aniso-100": partial(anisotropic_gaussian, dim=100, condition_number=1e4),
    "double-well": double_well,
    "many-well": partial(many_well, dim=32),
    "gmm40": gmm40,
    "ring-gmm8": ring_gmm,
    "grid-gmm9": grid_gmm,
    "mixture-10d": partial(mixture_hd, dim=10),
    "mixture-32d": partial(mixture_hd, dim=32),
    "mixture-100d": partial(mixture_hd, dim=100),
    "funnel": partial(funnel, dim=10),
    "banana": banana,
    "laplace": laplace,
    "laplace-10d": partial(laplace, dim=10),
    "laplace-gmm2": laplace_gmm,
    "laplace-mixture5": laplace_mixture,
    "bayesian-lasso": bayesian_lasso,
    "truncated-laplace": partial(truncated_laplace, lower=-1.0, upper=2.0, dim=2),
    "dirichlet": dirichlet,
    "dirichlet-tilted": partial(dirichlet, tilt=2.0),
}


def names() -> list[str]:
    """The names ``get`` accepts."""
    return sorted(_REGISTRY)


def get(name: str, **params) -> Target:
    """The benchmark target called ``name``, built with ``params``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown target {name!r}; available: {', '.join(names())}.")
    return _REGISTRY[name](**params)
