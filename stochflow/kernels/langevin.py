r"""The overdamped Langevin proposal, for one chain.

The Euler-Maruyama step of size :math:`h` of
:math:`dX_t = d(X_t)\,dt + \sqrt2\,dW_t` is

.. math:: x' = x + h\,d(x) + \sqrt{2h}\,\xi, \qquad \xi \sim N(0, I),

with :math:`d = \nabla\log\pi` for ULA/MALA, a smoothed drift for the
proximal methods, or the gradient of an interpolated density in SNF's blocks.
Its transition density and the Metropolis correction are in
:mod:`stochflow.kernels.metropolis`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["LangevinPoint", "langevin_point", "langevin_position"]


class LangevinPoint(NamedTuple):
    """A position with its log-density and gradient (one gradient evaluation)."""

    position: Array
    logdensity: Array
    logdensity_grad: Array


def langevin_point(logdensity: Callable[[Array], Array], position: Array) -> LangevinPoint:
    """``position`` with ``logdensity`` and its gradient there, in one pass.

    As in :meth:`stochflow.Target.logdensity_and_grad`, the position passes an
    optimisation barrier first, so the density is evaluated at the position as
    stored (XLA may otherwise recompute the move inside the density with other
    FMA contractions, program by program)."""
    value, grad = jax.value_and_grad(logdensity)(jax.lax.optimization_barrier(position))
    return LangevinPoint(position, value, grad)


def langevin_position(position: Array, drift: Array, step_size: Array, noise: Array) -> Array:
    """The Euler-Maruyama move ``x + h d + sqrt(2h) xi``."""
    return position + step_size * drift + jnp.sqrt(2.0 * step_size) * noise
