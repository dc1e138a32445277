r"""Underdamped (kinetic) Langevin dynamics and its splitting integrators.

The diffusion on position :math:`x` and momentum :math:`p`, with diagonal mass
:math:`M` and friction :math:`\gamma`,

.. math::

    dx = M^{-1} p\,dt, \qquad
    dp = \nabla\log\pi(x)\,dt - \gamma p\,dt + \sqrt{2\gamma}\,M^{1/2} dW_t,

leaves :math:`\pi(x)\,N(p; 0, M)` invariant. It is split into

* **B** (kick) :math:`p \leftarrow p + t\,\nabla\log\pi(x)`,
* **A** (drift) :math:`x \leftarrow x + t\,M^{-1} p`,
* **O** (exact Ornstein-Uhlenbeck) :math:`p \leftarrow e^{-\gamma t} p +
  \sqrt{1 - e^{-2\gamma t}}\,M^{1/2}\xi`,
* **U** (exact solution of the free-streaming OU part
  :math:`dx = v\,dt,\ dv = -\gamma v\,dt + \sqrt{2\gamma/M}\,dW`, jointly
  Gaussian in :math:`(x, v)`, :math:`v = M^{-1}p`).

Schemes, each one gradient evaluation per step (``n_grad = 1``):

* ``"baoab"`` B(h/2) A(h/2) O(h) A(h/2) B(h/2) (Leimkuhler & Matthews 2013);
  exact in position for Gaussian targets.
* ``"obabo"`` O(h/2) B(h/2) A(h) B(h/2) O(h/2) (Bussi & Parrinello 2007).
* ``"ubu"`` U(h/2) B(h) U(h/2) (Sanz-Serna & Zygalakis 2021), second order
  and exact for the Gaussian part. stochflow records the UBU chain at its
  force-evaluation points, i.e. iterates B(h) then U(h) (the same chain shifted
  by half a step), so the log-density of every recorded position comes free
  with the one gradient the step needs.

A step that meets a non-finite value is undone (the chain stays where it was)
and marked ``diverging``.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..target import Target
from .base import Sampler, check_positive, independent_chains
from .langevin import all_finite

Array = jax.Array

__all__ = ["UnderdampedState", "UnderdampedInfo", "underdamped", "SCHEMES"]

SCHEMES = ("baoab", "obabo", "ubu")


class UnderdampedState(NamedTuple):
    position: Array
    momentum: Array
    logdensity: Array
    logdensity_grad: Array


class UnderdampedInfo(NamedTuple):
    logdensity: Array
    n_grad: Array
    diverging: Array


class _OUStreamCoefficients(NamedTuple):
    """Exact law of U(t) per unit mass: x += drift_x * v + noise, v = decay * v + noise."""

    decay: float
    drift_x: float
    std_v: float
    noise_x_from_v: float  # regression of the x noise on the v noise
    std_x_given_v: float


def ou_stream_coefficients(friction: float, time: float) -> _OUStreamCoefficients:
    """Mean map and noise covariance of U(time), in float64 (no cancellation in float32)."""
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
    return _OUStreamCoefficients(
        decay=decay,
        drift_x=one_minus / friction,
        std_v=math.sqrt(var_v),
        noise_x_from_v=regression,
        std_x_given_v=math.sqrt(max(var_x - regression * cov_xv, 0.0)),
    )


def underdamped(
    step_size: float,
    friction: float = 1.0,
    scheme: str = "baoab",
    mass: Optional[object] = None,
) -> Sampler:
    """Underdamped Langevin dynamics with a splitting integrator.

    Parameters
    ----------
    step_size
        Integrator step ``h > 0``.
    friction
        Friction ``gamma > 0``; ``gamma * h`` small is nearly Hamiltonian,
        large is nearly overdamped.
    scheme
        ``"baoab"`` (default), ``"obabo"`` or ``"ubu"``.
    mass
        Optional diagonal mass: a positive scalar or a vector of shape
        ``(dim,)``; default 1. A mass close to the target's variances'
        inverses preconditions the dynamics.
    """
    step_size = check_positive("step_size", step_size)
    friction = check_positive("friction", friction)
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose one of {', '.join(SCHEMES)}.")
    mass_array = _check_mass(mass)
    h = step_size

    def init_one(target: Target, position: Array, key: Array) -> UnderdampedState:
        if mass_array.ndim == 1 and mass_array.shape[0] != target.dim:
            raise ValueError(f"mass has shape {mass_array.shape}, expected ({target.dim},).")
        logdensity, grad = target.logdensity_and_grad(position)
        momentum = jnp.sqrt(mass_array) * jax.random.normal(key, position.shape, position.dtype)
        return UnderdampedState(position, momentum.astype(position.dtype), logdensity, grad)

    def refresh(momentum: Array, time: float, key: Array) -> Array:
        """O(time): exact OU on the momentum."""
        decay = math.exp(-friction * time)
        noise = jax.random.normal(key, momentum.shape, momentum.dtype)
        return decay * momentum + math.sqrt(-math.expm1(-2.0 * friction * time)) * jnp.sqrt(mass_array) * noise

    def baoab(target: Target, state: UnderdampedState, key: Array):
        p = state.momentum + 0.5 * h * state.logdensity_grad
        x = state.position + 0.5 * h * p / mass_array
        p = refresh(p, h, key)
        x = x + 0.5 * h * p / mass_array
        logdensity, grad = target.logdensity_and_grad(x)
        p = p + 0.5 * h * grad
        return UnderdampedState(x, p, logdensity, grad)

    def obabo(target: Target, state: UnderdampedState, key: Array):
        key_first, key_last = jax.random.split(key)
        p = refresh(state.momentum, 0.5 * h, key_first)
        p = p + 0.5 * h * state.logdensity_grad
        x = state.position + h * p / mass_array
        logdensity, grad = target.logdensity_and_grad(x)
        p = p + 0.5 * h * grad
        p = refresh(p, 0.5 * h, key_last)
        return UnderdampedState(x, p, logdensity, grad)

    stream = ou_stream_coefficients(friction, h)

    def ubu(target: Target, state: UnderdampedState, key: Array):
        # B(h) at the recorded position, then the exact U(h) (two half U's in a row).
        velocity = (state.momentum + h * state.logdensity_grad) / mass_array
        noise_v, noise_x = jax.random.normal(key, (2,) + velocity.shape, velocity.dtype)
        scale = 1.0 / jnp.sqrt(mass_array)
        x = (
            state.position
            + stream.drift_x * velocity
            + scale * (stream.noise_x_from_v * stream.std_v * noise_v + stream.std_x_given_v * noise_x)
        )
        velocity = stream.decay * velocity + scale * stream.std_v * noise_v
        logdensity, grad = target.logdensity_and_grad(x)
        return UnderdampedState(x, mass_array * velocity, logdensity, grad)

    move: Callable = {"baoab": baoab, "obabo": obabo, "ubu": ubu}[scheme]

    def step_one(target: Target, state: UnderdampedState, key: Array):
        proposal = move(target, state, key)
        ok = all_finite(*proposal)
        new_state = jax.tree_util.tree_map(lambda new, old: jnp.where(ok, new, old), proposal, state)
        return new_state, UnderdampedInfo(new_state.logdensity, jnp.int32(1), ~ok)

    params = {
        "step_size": step_size,
        "friction": friction,
        "scheme": scheme,
        "mass": None if mass is None else np.asarray(mass, dtype=float).tolist(),
    }
    return independent_chains("underdamped", params, init_one, step_one)


def _check_mass(mass: Optional[object]) -> Array:
    if mass is None:
        return jnp.ones(())
    array = np.asarray(mass, dtype=float)
    if array.ndim > 1 or not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(
            "mass must be a positive scalar or a vector of positive entries (a diagonal mass), "
            f"got {mass!r}."
        )
    return jnp.asarray(array)
