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

Warmup (NUTS and HMC): Stan's windowed adaptation, the same as MALA's
(:mod:`stochflow.kernels.adaptation`): each chain's step size by dual averaging toward
``target_accept`` (Hoffman & Gelman 2014) and, unless an inverse mass is given, the
diagonal inverse mass from the slow windows' draws (each chain's own, or all chains'
with ``pooled=True``). It is the algorithm of BlackJAX's ``window_adaptation`` and
Stan's, written once for every chain method and run one warmup step at a time by
stochflow's driver, so that warmup is chunked, committed and resumable like sampling
(BlackJAX's runs its own loop of the whole warmup). Step size, inverse mass and ``L``
live in the state, so a new value reuses the compiled program; the kernel is built once
per (algorithm, integration steps, tree depth). MCLMC runs with the ``L`` and
``step_size`` it is given (no tuning; BlackJAX's own tuner
``mclmc_find_L_and_step_size`` spends gradients outside the chain).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from ..kernels.adaptation import WindowAdaptation, window_adaptation_init, window_warmup
from ..kernels.checks import check_bool, check_positive, check_probability
from ..kernels.finite import all_finite, keep_if
from ..samplers.base import Sampler, independent_chains
from ..target import Target

Array = jax.Array

__all__ = ["from_blackjax", "blackjax_kernel", "BlackJAXState", "BlackJAXInfo"]

_ALGORITHMS = ("nuts", "hmc", "mclmc")
_MCLMC_GRADS_PER_STEP = 2


class BlackJAXState(NamedTuple):
    """One chain: BlackJAX's own state, and the chain's tunables and step-size adaptation."""

    inner: Any
    step_size: Array
    inverse_mass: Array  # diagonal (d,) or dense (d, d)
    L: Array  # MCLMC's momentum decoherence length (unused by NUTS/HMC)
    adaptation: WindowAdaptation

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


@functools.lru_cache(maxsize=None)
def blackjax_kernel(name: str, num_integration_steps: int = 0, max_num_doublings: int = 10) -> Callable:
    """The one-chain kernel ``kernel(key, state, target)`` of a BlackJAX algorithm.

    Built once per static setting (cached), so samplers that differ in step size,
    inverse mass or ``L`` share it. A transition that ends on a non-finite position
    or log-density is undone and flagged ``diverging``.
    """
    import blackjax

    transition = getattr(blackjax, name).build_kernel()

    def kernel(key: Array, state: BlackJAXState, target: Target) -> tuple[BlackJAXState, BlackJAXInfo]:
        h, imm = state.step_size, state.inverse_mass
        if name == "nuts":
            inner, info = transition(key, state.inner, target.logdensity, h, imm, max_num_doublings=max_num_doublings)
        elif name == "hmc":
            inner, info = transition(key, state.inner, target.logdensity, h, imm, num_integration_steps)
        else:
            inner, info = transition(key, state.inner, target.logdensity, imm, state.L, h)
        finite = all_finite(inner.position, inner.logdensity)
        if name == "mclmc":
            diverging = ~info.nonans | ~finite
            accept_prob = jnp.ones((), h.dtype)
            n_grad = jnp.int32(_MCLMC_GRADS_PER_STEP)
        else:
            diverging = info.is_divergent | ~finite
            accept_prob = info.acceptance_rate.astype(h.dtype)
            n_grad = jnp.asarray(info.num_integration_steps, jnp.int32)
        inner = keep_if(finite, inner, state.inner)
        return state._replace(inner=inner), BlackJAXInfo(inner.logdensity, accept_prob, h, n_grad, diverging)

    return kernel


def from_blackjax(
    algorithm: Any,
    *,
    step_size: Optional[float] = None,
    inverse_mass_matrix: Optional[Any] = None,
    num_integration_steps: Optional[int] = None,
    L: Optional[float] = None,
    max_num_doublings: int = 10,
    target_accept: float = 0.8,
    adapt_step_size: bool = True,
    pooled: bool = False,
) -> Sampler:
    """A BlackJAX kernel (``blackjax.nuts``, ``blackjax.hmc``, ``blackjax.mclmc``) as a stochflow Sampler.

    Parameters
    ----------
    algorithm
        ``blackjax.nuts``, ``blackjax.hmc`` or ``blackjax.mclmc`` (or ``"nuts"``, ...).
    step_size
        Integrator step (initial value when NUTS/HMC adapt it in warmup; default 1,
        Stan's). Required for MCLMC.
    inverse_mass_matrix
        Diagonal (d,) or dense (d, d) inverse mass matrix, kept as given; default: the
        identity, adapted in warmup (diagonal, Stan's windows).
    num_integration_steps
        HMC only: leapfrog steps per transition (required for HMC).
    L
        MCLMC only: momentum decoherence length (required for MCLMC).
    max_num_doublings
        NUTS only: tree depth cap (a transition costs at most 2^depth - 1 gradients).
    target_accept, adapt_step_size
        NUTS/HMC warmup: dual averaging toward this acceptance rate, per chain
        (``adapt_step_size=False``: no warmup adaptation at all).
    pooled
        Estimate the inverse mass from all chains' window draws together.
    """
    import blackjax

    name = _algorithm_name(algorithm)
    if step_size is None and name == "mclmc":
        raise ValueError("from_blackjax(blackjax.mclmc, ...) needs step_size (MCLMC is not tuned here).")
    step_size = check_positive("step_size", 1.0 if step_size is None else step_size)
    if name == "hmc" and (num_integration_steps is None or int(num_integration_steps) < 1):
        raise ValueError("from_blackjax(blackjax.hmc, ...) needs num_integration_steps >= 1.")
    if name == "mclmc":
        L = check_positive("L", L if L is not None else float("nan"))
    target_accept = check_probability("target_accept", target_accept)
    adapts = check_bool("adapt_step_size", adapt_step_size) and name != "mclmc"
    pooled = check_bool("pooled", pooled)
    kernel = blackjax_kernel(name, int(num_integration_steps or 0) if name == "hmc" else 0,
                             int(max_num_doublings) if name == "nuts" else 10)

    def init_one(target: Target, position: Array, key: Array) -> BlackJAXState:
        if name == "mclmc":
            inner = blackjax.mclmc.init(position, target.logdensity, key)
        else:
            inner = getattr(blackjax, name).init(position, target.logdensity)
        dtype = position.dtype
        h = jnp.asarray(step_size, dtype)
        imm = (jnp.ones(position.shape[0], dtype) if inverse_mass_matrix is None
               else jnp.asarray(inverse_mass_matrix, dtype))
        return BlackJAXState(inner, h, imm, jnp.asarray(1.0 if L is None else L, dtype),
                             window_adaptation_init(position, h, target_accept))

    params = {
        "algorithm": name,
        "step_size": step_size,
        **({"num_integration_steps": int(num_integration_steps)} if name == "hmc" else {}),
        **({"L": L} if name == "mclmc" else {}),
        **({"max_num_doublings": int(max_num_doublings)} if name == "nuts" else {}),
        **({"target_accept": target_accept, "adapt_mass": inverse_mass_matrix is None, "pooled": pooled}
           if adapts else {}),
    }
    warmup = window_warmup(kernel, adapt_mass=inverse_mass_matrix is None, pooled=pooled) if adapts else None
    return independent_chains(
        f"blackjax-{name}",
        params,
        init_one,
        kernel,
        warmup,
        divergence=("a non-finite value (the step was undone) or, for NUTS and HMC, an energy error "
                    "above BlackJAX's divergence threshold (the transition is BlackJAX's own)"),
    )
