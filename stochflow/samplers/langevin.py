r"""Overdamped Langevin samplers: ULA and MALA.

Both discretise the Langevin diffusion
:math:`dX_t = \nabla \log \pi(X_t)\,dt + \sqrt{2}\,dW_t` with the Euler-Maruyama
step of size :math:`h`:

.. math::

    x' = x + h \nabla \log \pi(x) + \sqrt{2h}\,\xi, \qquad \xi \sim N(0, I).

* **ULA** (unadjusted Langevin algorithm; Roberts & Tweedie 1996, Durmus &
  Moulines 2017) keeps every proposal. It is biased: on :math:`N(0,\sigma^2 I)`
  its stationary variance is :math:`\sigma^2 / (1 - h / (2\sigma^2))`.
* **MALA** (Metropolis-adjusted Langevin; Roberts & Tweedie 1996) accepts
  :math:`x'` with probability
  :math:`\min\{1, \pi(x') q(x \mid x') / (\pi(x) q(x' \mid x))\}`,
  :math:`q(y \mid x) = N(y; x + h\nabla\log\pi(x), 2hI)`, so it is exact.
  It takes a diagonal preconditioner (inverse mass) :math:`M^{-1}`:
  :math:`x' = x + h M^{-1}\nabla\log\pi(x) + \sqrt{2h}\,M^{-1/2}\xi`,
  :math:`q(y \mid x) = N(y; x + hM^{-1}\nabla\log\pi(x), 2hM^{-1})` (Roberts &
  Stramer 2002's preconditioned MALA; identity by default).
  Warmup is Stan's windowed adaptation (:mod:`stochflow.kernels.adaptation`): each chain
  tunes its own step size by dual averaging (Hoffman & Gelman 2014, Sec. 3.2.1) toward a
  target acceptance rate (default 0.574, the optimal MALA rate of Roberts & Rosenthal
  1998), and its inverse mass from its draws in the slow windows (or all chains' draws,
  ``pooled=True``); the averaged step size is kept when warmup ends.

Each step spends one gradient evaluation per particle (``n_grad = 1``): the
log-density at the new point comes with its gradient.

Non-finite values: a ULA step that lands on a non-finite position, log-density
or gradient is undone (the chain stays where it was) and marked ``diverging``;
a MALA proposal with a non-finite log-density or gradient is rejected and
marked ``diverging``.

The one-chain kernels :func:`ula_kernel` and :func:`mala_kernel` take the step
size from the state, so every ``sf.ula(h)`` shares one compiled program.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from ..kernels.adaptation import WindowAdaptation, window_adaptation_init, window_warmup
from ..kernels.checks import check_bool, check_diagonal_mass, check_positive, check_probability
from ..kernels.finite import undo_if_nonfinite
from ..kernels.langevin import langevin_point, langevin_position
from ..kernels.metropolis import langevin_mh
from ..target import Target
from .base import Sampler, independent_chains

Array = jax.Array

__all__ = ["ULAState", "ULAInfo", "MALAState", "MALAInfo", "ula_kernel", "mala_kernel", "ula", "mala"]


class ULAState(NamedTuple):
    """One ULA chain: position, log-density and gradient there, and its step size."""

    position: Array
    logdensity: Array
    logdensity_grad: Array
    step_size: Array


class ULAInfo(NamedTuple):
    logdensity: Array
    n_grad: Array
    diverging: Array


class MALAState(NamedTuple):
    """One MALA chain; ``step_size`` and ``inverse_mass`` (diagonal ``(d,)``, or ``(d, d)`` with
    ``dense_mass``) are per chain so each adapts its own."""

    position: Array
    logdensity: Array
    logdensity_grad: Array
    step_size: Array
    inverse_mass: Array
    adaptation: WindowAdaptation


class MALAInfo(NamedTuple):
    logdensity: Array
    accept_prob: Array
    is_accepted: Array
    step_size: Array
    n_grad: Array
    diverging: Array


def ula_kernel(key: Array, state: ULAState, target: Target) -> tuple[ULAState, ULAInfo]:
    """One ULA step: ``x' = x + h grad log p(x) + sqrt(2h) xi``; undone and flagged if non-finite."""
    noise = jax.random.normal(key, state.position.shape, state.position.dtype)
    position = langevin_position(state.position, state.logdensity_grad, state.step_size, noise)
    proposal = state._replace(**langevin_point(target.logdensity, position)._asdict())
    new_state, diverging = undo_if_nonfinite(proposal, state)
    return new_state, ULAInfo(new_state.logdensity, jnp.int32(1), diverging)


def mala_kernel(key: Array, state: MALAState, target: Target) -> tuple[MALAState, MALAInfo]:
    """One MALA transition: the preconditioned Langevin proposal, accepted by Metropolis-Hastings."""

    def evaluate(position: Array) -> MALAState:
        return state._replace(**langevin_point(target.logdensity, position)._asdict())

    new_state, logdensity, decision = langevin_mh(
        key, state, state.step_size, evaluate, lambda s: s.logdensity_grad, lambda s: s.logdensity,
        inverse_mass=state.inverse_mass,
    )
    info = MALAInfo(logdensity, decision.accept_prob, decision.is_accepted, state.step_size, jnp.int32(1),
                    decision.diverging)
    return new_state, info


def ula(step_size: float) -> Sampler:
    """Unadjusted Langevin algorithm: ``x' = x + h grad log p(x) + sqrt(2h) xi``.

    Parameters
    ----------
    step_size
        The step ``h > 0``. ULA's bias grows with ``h`` (on a Gaussian the
        stationary variance is inflated by ``1 / (1 - h / (2 sigma^2))``).
    """
    step_size = check_positive("step_size", step_size)

    def init_one(target: Target, position: Array, key: Array) -> ULAState:
        point = langevin_point(target.logdensity, position)
        return ULAState(*point, step_size=jnp.asarray(step_size, position.dtype))

    return independent_chains("ula", {"step_size": step_size}, init_one, ula_kernel)


def mala(step_size: float, target_accept: float = 0.574, adapt_step_size: bool = True, adapt_mass: bool = True,
         pooled: bool = False, inverse_mass: Optional[object] = None, dense_mass: bool = False) -> Sampler:
    """Metropolis-adjusted Langevin algorithm with Stan's windowed warmup, per chain.

    Parameters
    ----------
    step_size
        Initial step ``h > 0`` (the step used throughout if there is no warmup
        or ``adapt_step_size=False``).
    target_accept
        Acceptance rate the warmup adapts toward, in (0, 1). Default 0.574.
    adapt_step_size
        Whether warmup adapts at all: each chain's step size by dual averaging and, with
        ``adapt_mass``, its diagonal inverse mass. ``False``: ``warmup`` steps only move
        the chains.
    adapt_mass
        Whether the warmup's slow windows estimate the diagonal inverse mass (needs
        ``warmup >= 20``; Stan's schedule for 1,000 steps or more is the one to trust).
    pooled
        Estimate the inverse mass from all chains' window draws together (one mass for
        every chain): better with many chains and a short warmup.
    inverse_mass
        The diagonal inverse mass to start from (or keep, with ``adapt_mass=False``): a
        positive scalar or ``(dim,)`` vector; default 1.
    dense_mass
        Estimate a dense inverse mass (the windows' covariance, Stan's ``dense_e``) instead
        of a diagonal one, starting from the identity: for strongly correlated posteriors
        (a regression's intercept and slope). Each step then factors the ``(d, d)`` matrix
        (O(d^3)); the diagonal is the default.
    """
    step_size = check_positive("step_size", step_size)
    target_accept = check_probability("target_accept", target_accept)
    adapts = check_bool("adapt_step_size", adapt_step_size)
    adapts_mass = check_bool("adapt_mass", adapt_mass) and adapts
    pooled = check_bool("pooled", pooled)
    start_mass = check_diagonal_mass("inverse_mass", inverse_mass)
    dense = check_bool("dense_mass", dense_mass)
    if dense and inverse_mass is not None:
        raise ValueError("dense_mass=True starts from the identity; leave inverse_mass out.")

    def init_one(target: Target, position: Array, key: Array) -> MALAState:
        if start_mass.ndim == 1 and start_mass.shape[0] != target.dim:
            raise ValueError(f"inverse_mass has shape {start_mass.shape}, expected ({target.dim},).")
        point = langevin_point(target.logdensity, position)
        h = jnp.asarray(step_size, position.dtype)
        if dense:
            mass = jnp.eye(position.shape[0], dtype=position.dtype)
        else:
            mass = jnp.broadcast_to(jnp.asarray(start_mass, position.dtype), position.shape)
        return MALAState(*point, step_size=h, inverse_mass=mass,
                         adaptation=window_adaptation_init(position, h, target_accept, dense=dense))

    params = {"step_size": step_size, "target_accept": target_accept, "adapt_step_size": adapts,
              "adapt_mass": adapts_mass, "pooled": pooled, "dense_mass": dense,
              "inverse_mass": None if inverse_mass is None else start_mass.tolist()}
    warmup = window_warmup(mala_kernel, adapt_mass=adapts_mass, pooled=pooled) if adapts else None
    return independent_chains("mala", params, init_one, mala_kernel, warmup)
