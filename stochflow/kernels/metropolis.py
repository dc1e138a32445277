r"""Metropolis-Hastings acceptance, and the Metropolis-adjusted Langevin transition.

A proposal :math:`x'` drawn from :math:`q(\cdot \mid x)` is accepted with
probability :math:`\min\{1, e^{\log r}\}`,
:math:`\log r = \log\pi(x') - \log\pi(x) + \log q(x \mid x') - \log q(x' \mid x)`
(Metropolis et al. 1953, Hastings 1970). A ratio that is NaN, or a proposal
with a non-finite value, is a rejection flagged ``diverging``.

For the Langevin proposal :math:`x' = x + h\,d(x) + \sqrt{2h}\,\xi`,
:math:`q(y \mid x) = N(y; x + h\,d(x), 2hI)` and

.. math::

    \log q(x \mid x') - \log q(x' \mid x)
    = -\frac{\lVert x - x' - h\,d(x')\rVert^2}{4h} + \frac{\lVert\xi\rVert^2}{2},

since the forward residual is :math:`\sqrt{2h}\,\xi`. With :math:`d = \nabla\log\pi`
this is MALA (Roberts & Tweedie 1996); with a smoothed drift (MYMALA) or an
interpolated density (the SNF MALA block) the same transition is exact for
whichever :math:`\pi` enters the ratio. Preconditioned by an inverse mass
:math:`M^{-1} = LL^\top` (diagonal, or dense with Cholesky factor :math:`L`), the proposal is
:math:`x' = x + h\,M^{-1}d(x) + \sqrt{2h}\,L\xi` and the backward residual is whitened by
:math:`L^{-1}` before it is squared (the determinants cancel).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, TypeVar

import jax
import jax.numpy as jnp

from .finite import all_finite, keep_if
from .langevin import langevin_position

Array = jax.Array
State = TypeVar("State")

__all__ = ["MHDecision", "mh_accept", "preconditioner", "langevin_mh"]


class MHDecision(NamedTuple):
    accept_prob: Array
    is_accepted: Array
    diverging: Array


def mh_accept(key: Array, log_ratio: Array, proposal: State, current: State,
              valid: Array = True) -> tuple[State, MHDecision]:
    """Accept ``proposal`` with probability ``min(1, exp(log_ratio))``.

    ``valid = False`` (a non-finite proposal) or a NaN ratio rejects and is
    flagged ``diverging``; ``log_ratio = -inf`` is an ordinary rejection.
    """
    log_ratio = jnp.where(valid & ~jnp.isnan(log_ratio), log_ratio, -jnp.inf)
    accept_prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
    accepted = jnp.log(jax.random.uniform(key, dtype=log_ratio.dtype)) < log_ratio
    return keep_if(accepted, proposal, current), MHDecision(accept_prob, accepted, ~jnp.asarray(valid))


def preconditioner(inverse_mass: Array | float) -> tuple[Callable, Callable, Callable]:
    """``(v -> M^-1 v, xi -> M^-1/2 xi, r -> M^1/2 r)`` for a scalar or diagonal ``(d,)`` inverse
    mass, or a dense ``(d, d)`` one (``M^-1/2`` its Cholesky factor ``L``, ``M^1/2 r = L^-1 r``)."""
    if jnp.ndim(inverse_mass) == 2:
        factor = jnp.linalg.cholesky(inverse_mass)
        return (lambda v: inverse_mass @ v, lambda xi: factor @ xi,
                lambda r: jax.scipy.linalg.solve_triangular(factor, r, lower=True))
    scale = jnp.sqrt(inverse_mass)
    return (lambda v: inverse_mass * v), (lambda xi: scale * xi), (lambda r: r / scale)


def langevin_mh(
    key: Array,
    state: State,
    step_size: Array,
    evaluate: Callable[[Array], State],
    drift: Callable[[State], Array],
    log_target: Callable[[State], Array],
    inverse_mass: Array | float = 1.0,
) -> tuple[State, Array, MHDecision]:
    """One Metropolis-adjusted Langevin transition from ``state``.

    ``evaluate(position)`` builds the state at a point, ``drift(state)`` is the
    proposal's drift there and ``log_target(state)`` the log-density the ratio
    uses; ``inverse_mass`` (scalar, per coordinate, or a dense matrix) preconditions the proposal.
    ``state`` must have ``position`` and ``logdensity`` fields; a proposal
    whose position, drift or ``logdensity`` is not finite is rejected and
    flagged. Returns the next state, ``log_target`` of it and the decision.
    """
    noise_key, accept_key = jax.random.split(key)
    noise = jax.random.normal(noise_key, state.position.shape, state.position.dtype)
    precondition, colour, whiten = preconditioner(inverse_mass)
    proposal = evaluate(langevin_position(state.position, precondition(drift(state)), step_size, colour(noise)))
    current_log_target, proposal_log_target = log_target(state), log_target(proposal)
    backward = whiten(state.position - proposal.position - step_size * precondition(drift(proposal)))
    log_ratio = (
        proposal_log_target
        - current_log_target
        - jnp.sum(backward**2) / (4.0 * step_size)
        + 0.5 * jnp.sum(noise**2)
    )
    valid = all_finite(proposal.position, proposal.logdensity, drift(proposal))
    new_state, decision = mh_accept(accept_key, log_ratio, proposal, state, valid)
    new_log_target = jnp.where(decision.is_accepted, proposal_log_target, current_log_target)
    return new_state, new_log_target, decision
