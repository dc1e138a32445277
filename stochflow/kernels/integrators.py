r"""Splitting pieces of underdamped Langevin dynamics, for one chain.

For :math:`dx = M^{-1}p\,dt,\ dp = \nabla\log\pi(x)\,dt - \gamma p\,dt + \sqrt{2\gamma}M^{1/2}dW`
with a diagonal mass :math:`M`:

* **B** (kick, :func:`kick`) :math:`p \leftarrow p + t\,\nabla\log\pi(x)`;
* **A** (drift, :func:`drift`) :math:`x \leftarrow x + t\,M^{-1}p`;
* **O** (:func:`ou_refresh`) the exact Ornstein-Uhlenbeck flow of the momentum,
  :math:`p \leftarrow e^{-\gamma t}p + \sqrt{1 - e^{-2\gamma t}}\,M^{1/2}\xi`;
* **U** (:func:`ou_stream`) the exact, jointly Gaussian flow of
  :math:`dx = v\,dt,\ dv = -\gamma v\,dt + \sqrt{2\gamma/M}\,dW` with
  :math:`v = M^{-1}p` (Sanz-Serna & Zygalakis 2021).

The coefficients of O and U depend on :math:`\gamma t` only; they are computed
once, in float64 (:func:`ou_refresh_coefficients`, :func:`ou_stream_coefficients`:
no cancellation at small :math:`\gamma t`), and carried as arrays so a new step
size or friction is a new value, not a new program.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["OURefresh", "OUStream", "ou_refresh_coefficients", "ou_stream_coefficients", "kick", "drift",
           "ou_refresh", "ou_stream"]


class OURefresh(NamedTuple):
    """O(t): ``p <- decay * p + noise_scale * sqrt(M) * xi``."""

    decay: Array
    noise_scale: Array


class OUStream(NamedTuple):
    """U(t) per unit mass: ``x += drift_x * v + noise``, ``v <- decay * v + noise``."""

    decay: Array
    drift_x: Array
    std_v: Array
    x_noise_from_v: Array  # the x noise's regression on the v noise, times std_v
    std_x_given_v: Array


def ou_refresh_coefficients(friction: float, time: float) -> OURefresh:
    """Coefficients of O(time), in float64."""
    return OURefresh(math.exp(-friction * time), math.sqrt(-math.expm1(-2.0 * friction * time)))


def ou_stream_coefficients(friction: float, time: float) -> OUStream:
    """Mean map and noise covariance of U(time), in float64."""
    s = friction * time
    decay = math.exp(-s)
    one_minus = -math.expm1(-s)
    var_v = -math.expm1(-2.0 * s)
    cov_xv = one_minus**2 / friction
    if s < 1e-2:  # series of s - 2(1 - e^{-s}) + (1 - e^{-2s}) / 2, to O(s^6)
        bracket = s**3 / 3.0 - s**4 / 4.0 + 7.0 * s**5 / 60.0
    else:
        bracket = s - 2.0 * one_minus + var_v / 2.0
    var_x = 2.0 * bracket / friction**2
    regression = cov_xv / var_v
    return OUStream(
        decay=decay,
        drift_x=one_minus / friction,
        std_v=math.sqrt(var_v),
        x_noise_from_v=regression * math.sqrt(var_v),
        std_x_given_v=math.sqrt(max(var_x - regression * cov_xv, 0.0)),
    )


def kick(momentum: Array, logdensity_grad: Array, time: Array) -> Array:
    """B(time)."""
    return momentum + time * logdensity_grad


def drift(position: Array, momentum: Array, time: Array, mass: Array) -> Array:
    """A(time)."""
    return position + time * momentum / mass


def ou_refresh(momentum: Array, coefficients: OURefresh, mass: Array, noise: Array) -> Array:
    """O: exact OU flow of the momentum, given its standard normal ``noise``."""
    return coefficients.decay * momentum + coefficients.noise_scale * jnp.sqrt(mass) * noise


def ou_stream(position: Array, velocity: Array, coefficients: OUStream, mass: Array, noise_v: Array,
              noise_x: Array) -> tuple[Array, Array]:
    """U: exact flow of position and velocity ``v = p / M``, given two standard normal draws
    (``noise_v`` moves the velocity, ``noise_x`` the position's part independent of it);
    returns ``(x, v)``."""
    scale = 1.0 / jnp.sqrt(mass)
    c = coefficients
    x = position + c.drift_x * velocity + scale * (c.x_noise_from_v * noise_v + c.std_x_given_v * noise_x)
    return x, c.decay * velocity + scale * c.std_v * noise_v
