"""Geometry for constrained and nonsmooth sampling (``sf.geometry``).

Mirror maps (:mod:`.mirrors`) and nonsmooth terms with proximal and Bregman
proximal operators (:mod:`.nonsmooth`).
"""

from .mirrors import MirrorMap, entropic_simplex, euclidean, hyperbolic_entropy, log_barrier
from .nonsmooth import (
    NonsmoothTerm,
    ball_indicator,
    box_indicator,
    l1,
    separable_sum,
    simplex_indicator,
    tv1d,
)

__all__ = [
    "MirrorMap",
    "euclidean",
    "entropic_simplex",
    "log_barrier",
    "hyperbolic_entropy",
    "NonsmoothTerm",
    "l1",
    "box_indicator",
    "simplex_indicator",
    "ball_indicator",
    "tv1d",
    "separable_sum",
]
