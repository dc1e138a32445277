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

The pieces are :mod:`stochflow.kernels.integrators`; the one-chain kernels are
:func:`baoab_kernel`, :func:`obabo_kernel` and :func:`ubu_kernel`. Step size,
friction and mass live in the state (with the O and U coefficients they
determine), so a new value runs the same compiled program.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..kernels.checks import check_positive
from ..kernels.finite import undo_if_nonfinite
from ..kernels.integrators import (
    OURefresh,
    OUStream,
    drift,
    kick,
    ou_refresh,
    ou_refresh_coefficients,
    ou_stream,
    ou_stream_coefficients,
)
from ..target import Target
from .base import Sampler, independent_chains

Array = jax.Array

__all__ = ["UnderdampedParams", "UnderdampedState", "UnderdampedInfo", "baoab_kernel", "obabo_kernel",
           "ubu_kernel", "underdamped", "SCHEMES"]


class UnderdampedParams(NamedTuple):
    """One chain's tunables: step ``h``, diagonal mass, and the O/U coefficients of its scheme."""

    step_size: Array
    mass: Array
    refresh: OURefresh  # O(h) for BAOAB, O(h/2) for OBABO
    stream: OUStream  # U(h) for UBU


class UnderdampedState(NamedTuple):
    position: Array
    momentum: Array
    logdensity: Array
    logdensity_grad: Array
    params: UnderdampedParams


class UnderdampedInfo(NamedTuple):
    logdensity: Array
    n_grad: Array
    diverging: Array


def _finish(target: Target, state: UnderdampedState, position: Array, momentum_before_kick: Array,
            final_kick: Array) -> UnderdampedState:
    logdensity, grad = target.logdensity_and_grad(position)
    momentum = kick(momentum_before_kick, grad, final_kick)
    return state._replace(position=position, momentum=momentum, logdensity=logdensity, logdensity_grad=grad)


def _undo_and_flag(proposal: UnderdampedState, state: UnderdampedState):
    new_state, diverging = undo_if_nonfinite(proposal, state)
    return new_state, UnderdampedInfo(new_state.logdensity, jnp.int32(1), diverging)


def baoab_kernel(key: Array, state: UnderdampedState, target: Target):
    """B(h/2) A(h/2) O(h) A(h/2) B(h/2)."""
    h, mass = state.params.step_size, state.params.mass
    p = kick(state.momentum, state.logdensity_grad, 0.5 * h)
    x = drift(state.position, p, 0.5 * h, mass)
    p = ou_refresh(p, state.params.refresh, mass, key)
    x = drift(x, p, 0.5 * h, mass)
    return _undo_and_flag(_finish(target, state, x, p, 0.5 * h), state)


def obabo_kernel(key: Array, state: UnderdampedState, target: Target):
    """O(h/2) B(h/2) A(h) B(h/2) O(h/2)."""
    h, mass = state.params.step_size, state.params.mass
    key_first, key_last = jax.random.split(key)
    p = ou_refresh(state.momentum, state.params.refresh, mass, key_first)
    p = kick(p, state.logdensity_grad, 0.5 * h)
    x = drift(state.position, p, h, mass)
    moved = _finish(target, state, x, p, 0.5 * h)
    moved = moved._replace(momentum=ou_refresh(moved.momentum, state.params.refresh, mass, key_last))
    return _undo_and_flag(moved, state)


def ubu_kernel(key: Array, state: UnderdampedState, target: Target):
    """B(h) U(h): UBU recorded at its force-evaluation points (see the module docstring)."""
    h, mass = state.params.step_size, state.params.mass
    velocity = kick(state.momentum, state.logdensity_grad, h) / mass
    x, velocity = ou_stream(state.position, velocity, state.params.stream, mass, key)
    logdensity, grad = target.logdensity_and_grad(x)
    moved = state._replace(position=x, momentum=mass * velocity, logdensity=logdensity, logdensity_grad=grad)
    return _undo_and_flag(moved, state)


SCHEMES: dict[str, Callable] = {"baoab": baoab_kernel, "obabo": obabo_kernel, "ubu": ubu_kernel}


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
    refresh_time = step_size if scheme == "baoab" else 0.5 * step_size
    refresh = ou_refresh_coefficients(friction, refresh_time)
    stream = ou_stream_coefficients(friction, step_size)

    def init_one(target: Target, position: Array, key: Array) -> UnderdampedState:
        dtype = position.dtype
        mass_here = jnp.broadcast_to(jnp.asarray(mass_array, dtype), position.shape)
        logdensity, grad = target.logdensity_and_grad(position)
        momentum = jnp.sqrt(mass_here) * jax.random.normal(key, position.shape, dtype)
        params = UnderdampedParams(
            jnp.asarray(step_size, dtype),
            mass_here,
            OURefresh(*(jnp.asarray(c, dtype) for c in refresh)),
            OUStream(*(jnp.asarray(c, dtype) for c in stream)),
        )
        return UnderdampedState(position, momentum.astype(dtype), logdensity, grad, params)

    def init_checked(target: Target, position: Array, key: Array) -> UnderdampedState:
        if mass_array.ndim == 1 and mass_array.shape[0] != target.dim:
            raise ValueError(f"mass has shape {mass_array.shape}, expected ({target.dim},).")
        return init_one(target, position, key)

    params = {
        "step_size": step_size,
        "friction": friction,
        "scheme": scheme,
        "mass": None if mass is None else np.asarray(mass, dtype=float).tolist(),
    }
    return independent_chains("underdamped", params, init_checked, SCHEMES[scheme])


def _check_mass(mass: Optional[object]) -> np.ndarray:
    if mass is None:
        return np.ones(())
    array = np.asarray(mass, dtype=float)
    if array.ndim > 1 or not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(
            "mass must be a positive scalar or a vector of positive entries (a diagonal mass), "
            f"got {mass!r}."
        )
    return array
