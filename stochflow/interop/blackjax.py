"""BlackJAX kernels as stochflow samplers: ``sf.from_blackjax(blackjax.nuts, step_size=...)``.

The adapter runs one BlackJAX chain per particle (``independent_chains``), so
NUTS, HMC and MCLMC from BlackJAX are baselines in the same driver, trace and
benchmark harness as stochflow's own samplers. What each step reports:

* ``n_grad`` — honest gradient counts. NUTS and HMC: the number of leapfrog
  steps of the transition (``info.num_integration_steps``; velocity Verlet
  spends one new gradient per leapfrog step, the first is cached in the
  state). MCLMC: 2 per step (BlackJAX's default integrator is the isokinetic
  two-stage McLachlan splitting — three velocity updates, the first reusing
  the cached gradient).
* ``accept_prob`` — NUTS/HMC ``acceptance_rate``; ``diverging`` — NUTS/HMC
  ``is_divergent``, MCLMC ``not nonans``, plus any non-finite position or
  log-density.
* ``step_size`` — per chain.

Warmup (NUTS and HMC): Nesterov dual averaging of the step size toward an
acceptance rate of ``target_accept`` (Hoffman & Gelman 2014, BlackJAX's
``dual_averaging_adaptation``), each chain its own, during ``warmup`` only; the
averaged iterate is kept at the end. The mass matrix stays the one given
(identity by default) — Stan's windowed mass-matrix adaptation needs a
multi-phase schedule that does not fit a per-step warmup. MCLMC runs with the
``L`` and ``step_size`` it is given (no tuning; BlackJAX's own tuner
``mclmc_find_L_and_step_size`` spends gradients outside the chain).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
from blackjax.adaptation.step_size import DualAveragingAdaptationState, dual_averaging_adaptation

from ..target import Target
from ..kernels.checks import check_positive
from ..samplers.base import Sampler, independent_chains

Array = jax.Array

__all__ = ["from_blackjax", "BlackJAXState", "BlackJAXInfo"]

_ALGORITHMS = ("nuts", "hmc", "mclmc")
_MCLMC_GRADS_PER_STEP = 2


class BlackJAXState(NamedTuple):
    """One chain: BlackJAX's own state, the chain's step size and its adaptation."""

    inner: Any
    step_size: Array
    adaptation: DualAveragingAdaptationState

    @property
    def position(self) -> Array:
        return self.inner.position


class BlackJAXInfo(NamedTuple):
    logdensity: Array
    accept_prob: Array
    step_size: Array
    n_grad: Array
    diverging: Array


def _algorithm_name(algorithm: Any) -> str:
    import blackjax

    if isinstance(algorithm, str):
        name = algorithm.lower()
    else:
        name = next((n for n in _ALGORITHMS if algorithm is getattr(blackjax, n)), None)
    if name not in _ALGORITHMS:
        raise ValueError(
            f"from_blackjax supports blackjax.nuts, blackjax.hmc and blackjax.mclmc (or their names), got {algorithm!r}."
        )
    return name


def from_blackjax(
    algorithm: Any,
    *,
    step_size: float,
    inverse_mass_matrix: Optional[Any] = None,
    num_integration_steps: Optional[int] = None,
    L: Optional[float] = None,
    max_num_doublings: int = 10,
    target_accept: float = 0.8,
    adapt_step_size: bool = True,
) -> Sampler:
    """A BlackJAX kernel (``blackjax.nuts``, ``blackjax.hmc``, ``blackjax.mclmc``) as a stochflow Sampler.

    Parameters
    ----------
    algorithm
        ``blackjax.nuts``, ``blackjax.hmc`` or ``blackjax.mclmc`` (or ``"nuts"``, ...).
    step_size
        Integrator step (initial value when NUTS/HMC adapt it in warmup).
    inverse_mass_matrix
        Diagonal (d,) or dense (d, d) inverse mass matrix; default identity.
    num_integration_steps
        HMC only: leapfrog steps per transition (required for HMC).
    L
        MCLMC only: momentum decoherence length (required for MCLMC).
    max_num_doublings
        NUTS only: tree depth cap (a transition costs at most 2^depth - 1 gradients).
    target_accept, adapt_step_size
        NUTS/HMC warmup: dual averaging toward this acceptance rate, per chain.
    """
    import blackjax

    name = _algorithm_name(algorithm)
    step_size = check_positive("step_size", step_size)
    if name == "hmc" and (num_integration_steps is None or int(num_integration_steps) < 1):
        raise ValueError("from_blackjax(blackjax.hmc, ...) needs num_integration_steps >= 1.")
    if name == "mclmc":
        L = check_positive("L", L if L is not None else float("nan"))
    if not 0.0 < float(target_accept) < 1.0:
        raise ValueError(f"target_accept must lie in (0, 1), got {target_accept!r}.")
    adapts = adapt_step_size and name != "mclmc"
    da_init, da_update, da_final = dual_averaging_adaptation(float(target_accept))

    if name == "nuts":
        kernel = blackjax.nuts.build_kernel()
    elif name == "hmc":
        kernel = blackjax.hmc.build_kernel()
    else:
        kernel = blackjax.mclmc.build_kernel()

    def mass(dim: int, dtype) -> Array:
        return jnp.ones(dim, dtype) if inverse_mass_matrix is None else jnp.asarray(inverse_mass_matrix, dtype)

    def init_one(target: Target, position: Array, key: Array) -> BlackJAXState:
        if name == "mclmc":
            inner = blackjax.mclmc.init(position, target.logdensity, key)
        else:
            inner = getattr(blackjax, name).init(position, target.logdensity)
        h = jnp.asarray(step_size, position.dtype)
        return BlackJAXState(inner, h, da_init(h))

    def step_one(key: Array, state: BlackJAXState, target: Target):
        position = state.inner.position
        imm = mass(position.shape[0], position.dtype)
        h = state.step_size
        if name == "nuts":
            inner, info = kernel(key, state.inner, target.logdensity, h, imm, max_num_doublings=max_num_doublings)
        elif name == "hmc":
            inner, info = kernel(key, state.inner, target.logdensity, h, imm, int(num_integration_steps))
        else:
            inner, info = kernel(key, state.inner, target.logdensity, imm, jnp.asarray(L, h.dtype), h)
        finite = jnp.all(jnp.isfinite(inner.position)) & jnp.isfinite(inner.logdensity)
        if name == "mclmc":
            diverging = ~info.nonans | ~finite
            accept_prob = jnp.ones((), h.dtype)
            n_grad = jnp.int32(_MCLMC_GRADS_PER_STEP)
        else:
            diverging = info.is_divergent | ~finite
            accept_prob = info.acceptance_rate.astype(h.dtype)
            n_grad = jnp.asarray(info.num_integration_steps, jnp.int32)
        inner = jax.tree_util.tree_map(lambda new, old: jnp.where(finite, new, old), inner, state.inner)
        info = BlackJAXInfo(inner.logdensity, accept_prob, h, n_grad, diverging)
        return state._replace(inner=inner), info

    def warmup_step_one(key: Array, state: BlackJAXState, target: Target):
        new_state, info = step_one(key, state, target)
        adaptation = da_update(new_state.adaptation, jnp.nan_to_num(info.accept_prob))
        h = jnp.exp(adaptation.log_step_size).astype(state.step_size.dtype)
        return new_state._replace(step_size=h, adaptation=adaptation), info

    def end_warmup_one(state: BlackJAXState) -> BlackJAXState:
        return state._replace(step_size=da_final(state.adaptation).astype(state.step_size.dtype))

    params = {
        "algorithm": name,
        "step_size": step_size,
        **({"num_integration_steps": int(num_integration_steps)} if name == "hmc" else {}),
        **({"L": L} if name == "mclmc" else {}),
        **({"max_num_doublings": int(max_num_doublings)} if name == "nuts" else {}),
        **({"target_accept": float(target_accept)} if adapts else {}),
    }
    sampler = independent_chains(
        f"blackjax-{name}",
        params,
        init_one,
        step_one,
        warmup_step_one if adapts else None,
        end_warmup_one if adapts else None,
    )
    return sampler
