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
  During warmup each chain tunes its own step size by dual averaging
  (Hoffman & Gelman 2014, Sec. 3.2.1) toward a target acceptance rate
  (default 0.574, the optimal MALA rate of Roberts & Rosenthal 1998); the
  averaged iterate is kept when warmup ends.

Each step spends one gradient evaluation per particle (``n_grad = 1``): the
log-density at the new point comes with its gradient.

Non-finite values: a ULA step that lands on a non-finite position, log-density
or gradient is undone (the chain stays where it was) and marked ``diverging``;
a MALA proposal with a non-finite log-density or gradient is rejected and
marked ``diverging``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.adaptation.step_size import (
    DualAveragingAdaptationState,
    dual_averaging_adaptation,
)

from ..target import Target
from .base import Sampler, check_positive, independent_chains

Array = jax.Array

__all__ = ["LangevinState", "ULAInfo", "MALAState", "MALAInfo", "ula", "mala"]


class LangevinState(NamedTuple):
    """State of one overdamped Langevin chain (ULA)."""

    position: Array
    logdensity: Array
    logdensity_grad: Array


class ULAInfo(NamedTuple):
    logdensity: Array
    n_grad: Array
    diverging: Array


class MALAState(NamedTuple):
    """State of one MALA chain; ``step_size`` is per chain so each adapts its own."""

    position: Array
    logdensity: Array
    logdensity_grad: Array
    step_size: Array
    adaptation: DualAveragingAdaptationState


class MALAInfo(NamedTuple):
    logdensity: Array
    accept_prob: Array
    is_accepted: Array
    step_size: Array
    n_grad: Array
    diverging: Array


def all_finite(*arrays: Array) -> Array:
    """True when every entry of every array is finite."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in arrays]))


def langevin_state(target: Target, position: Array, key: Array | None = None) -> LangevinState:
    """The chain state at ``position`` (the key is unused: the start is deterministic)."""
    logdensity, grad = target.logdensity_and_grad(position)
    return LangevinState(position, logdensity, grad)


def langevin_proposal(
    target: Target, state: LangevinState, step_size: Array, noise: Array
) -> LangevinState:
    """Euler-Maruyama step ``x + h grad + sqrt(2h) noise`` with its log-density and gradient."""
    position = state.position + step_size * state.logdensity_grad + jnp.sqrt(2.0 * step_size) * noise
    return langevin_state(target, position)


def ula(step_size: float) -> Sampler:
    """Unadjusted Langevin algorithm: ``x' = x + h grad log p(x) + sqrt(2h) xi``.

    Parameters
    ----------
    step_size
        The step ``h > 0``. ULA's bias grows with ``h`` (on a Gaussian the
        stationary variance is inflated by ``1 / (1 - h / (2 sigma^2))``).
    """
    step_size = check_positive("step_size", step_size)

    def step_one(target: Target, state: LangevinState, key: Array):
        noise = jax.random.normal(key, state.position.shape, state.position.dtype)
        proposal = langevin_proposal(target, state, step_size, noise)
        ok = all_finite(proposal.position, proposal.logdensity, proposal.logdensity_grad)
        new_state = jax.tree_util.tree_map(lambda new, old: jnp.where(ok, new, old), proposal, state)
        return new_state, ULAInfo(new_state.logdensity, jnp.int32(1), ~ok)

    return independent_chains("ula", {"step_size": step_size}, langevin_state, step_one)


def mala(step_size: float, target_accept: float = 0.574, adapt_step_size: bool = True) -> Sampler:
    """Metropolis-adjusted Langevin algorithm with per-chain dual-averaging warmup.

    Parameters
    ----------
    step_size
        Initial step ``h > 0`` (the step used throughout if there is no warmup
        or ``adapt_step_size=False``).
    target_accept
        Acceptance rate the warmup adapts toward, in (0, 1). Default 0.574.
    adapt_step_size
        Whether warmup tunes the step size (each chain its own).
    """
    step_size = check_positive("step_size", step_size)
    if not 0.0 < float(target_accept) < 1.0:
        raise ValueError(f"target_accept must lie in (0, 1), got {target_accept!r}.")
    da_init, da_update, da_final = dual_averaging_adaptation(float(target_accept))

    def init_one(target: Target, position: Array, key: Array) -> MALAState:
        base = langevin_state(target, position)
        h = jnp.asarray(step_size, position.dtype)
        return MALAState(*base, step_size=h, adaptation=da_init(h))

    def step_one(target: Target, state: MALAState, key: Array):
        noise_key, accept_key = jax.random.split(key)
        h = state.step_size
        current = LangevinState(state.position, state.logdensity, state.logdensity_grad)
        noise = jax.random.normal(noise_key, state.position.shape, state.position.dtype)
        proposal = langevin_proposal(target, current, h, noise)
        # log q(x | x') - log q(x' | x); the forward residual is sqrt(2h) * noise.
        backward = state.position - proposal.position - h * proposal.logdensity_grad
        log_ratio = (
            proposal.logdensity
            - state.logdensity
            - jnp.sum(backward**2) / (4.0 * h)
            + 0.5 * jnp.sum(noise**2)
        )
        finite = all_finite(proposal.position, proposal.logdensity, proposal.logdensity_grad)
        log_ratio = jnp.where(finite & ~jnp.isnan(log_ratio), log_ratio, -jnp.inf)
        accept_prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
        accepted = jnp.log(jax.random.uniform(accept_key, dtype=log_ratio.dtype)) < log_ratio
        moved = jax.tree_util.tree_map(
            lambda new, old: jnp.where(accepted, new, old), proposal, current
        )
        new_state = state._replace(
            position=moved.position, logdensity=moved.logdensity, logdensity_grad=moved.logdensity_grad
        )
        info = MALAInfo(new_state.logdensity, accept_prob, accepted, h, jnp.int32(1), ~finite)
        return new_state, info

    def warmup_step_one(target: Target, state: MALAState, key: Array):
        new_state, info = step_one(target, state, key)
        adaptation = da_update(new_state.adaptation, info.accept_prob)
        new_step = jnp.exp(adaptation.log_step_size).astype(state.step_size.dtype)
        return new_state._replace(step_size=new_step, adaptation=adaptation), info

    def end_warmup_one(state: MALAState) -> MALAState:
        return state._replace(step_size=da_final(state.adaptation).astype(state.step_size.dtype))

    params = {"step_size": step_size, "target_accept": float(target_accept), "adapt_step_size": adapt_step_size}
    return independent_chains(
        "mala",
        params,
        init_one,
        step_one,
        warmup_step_one if adapt_step_size else None,
        end_warmup_one if adapt_step_size else None,
    )
