"""Benchmark targets with ground truth: ``get(name, **params)`` and ``names()``."""

from __future__ import annotations

from typing import Callable

from ..target import Target
from .gaussians import anisotropic_gaussian, gaussian
from .mixtures import gaussian_mixture, llp_gmm
from .wells import double_well, many_well

__all__ = ["get", "names", "gaussian", "anisotropic_gaussian", "gaussian_mixture", "llp_gmm", "double_well", "many_well"]

_REGISTRY: dict[str, Callable[..., Target]] = {
    "gaussian-aniso": anisotropic_gaussian,
    "llp-gmm5": llp_gmm,
    "double-well": double_well,
    "many-well": many_well,
}


def names() -> list[str]:
    """The names ``get`` accepts."""
    return sorted(_REGISTRY)


def get(name: str, **params) -> Target:
    """The benchmark target called ``name``, built with ``params``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown target {name!r}; available: {', '.join(names())}.")
    return _REGISTRY[name](**params)
