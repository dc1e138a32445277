"""Geometry for constrained and nonsmooth sampling: mirror maps (``sf.geometry``)."""

from .mirrors import MirrorMap, entropic_simplex, euclidean, hyperbolic_entropy, log_barrier

__all__ = [
    "MirrorMap",
    "euclidean",
    "entropic_simplex",
    "log_barrier",
    "hyperbolic_entropy",
]
