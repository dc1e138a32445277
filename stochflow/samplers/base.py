"""The sampler contract shared by every method.

A sampler factory (``sf.ula(step_size=...)``) takes hyperparameters and returns a
:class:`Sampler`: a pair of pure functions over a NamedTuple state, as optax
returns a pair for an optimiser and BlackJAX a pair for a kernel::

    state = sampler.init(target, positions, key)        # positions: (n_particles, dim)
    state, info = sampler.step(target, state, key)      # info fields: (n_particles,)

``init`` and ``step`` work on the whole particle set, so interacting methods
(SVGD) fit the same frame as independent chains. For independent chains the
factory writes a kernel for one chain and :func:`independent_chains` vmaps it,
giving each particle its own key (``jax.random.split(key, n)``).

Every ``info`` reports ``logdensity``, ``n_grad`` (gradient or density
evaluations spent per particle in that step) and ``diverging`` (a non-finite
value was met). A method with step-size adaptation supplies ``warmup_step``
(a step that also adapts) and ``end_warmup`` (fixes the adapted values); the
driver uses them during warmup only.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..sharding import map_particles, particle_keys
from ..target import Target

Array = jax.Array
State = Any
Info = Any
InitFn = Callable[[Target, Array, Array], State]
StepFn = Callable[[Target, State, Array], tuple[State, Info]]

__all__ = ["Sampler", "independent_chains", "check_positive", "check_int", "check_positions", "check_in_domain"]


class Sampler(NamedTuple):
    """A sampling method: pure ``init``/``step`` over a NamedTuple state.

    Attributes
    ----------
    init
        ``(target, positions (n, dim), key) -> state``.
    step
        ``(target, state, key) -> (state, info)``.
    name
        The method's name (``"mala"``), recorded in traces.
    params
        The hyperparameters the factory was given, recorded in traces.
    warmup_step
        Optional ``(target, state, key) -> (state, info)`` used instead of
        ``step`` during warmup (it adapts, e.g. the step size).
    end_warmup
        Optional ``state -> state`` called once when warmup ends.
    num_steps
        For transport samplers with a fixed schedule, the number of steps the
        schedule has; ``None`` for samplers that run for as long as asked.
    shard_local
        ``True`` if ``step``/``warmup_step`` are written to run on one
        device's share of the particles under :func:`jax.shard_map`: per-particle
        keys from :func:`stochflow.sharding.particle_keys` and cross-particle
        terms only through :func:`stochflow.sharding.all_particles`. Sharded
        runs (``sample(..., devices=...)``) of such a sampler run each device's
        particles with the one-device program (bit for bit the one-device draws
        with ``reproducible=True``); others are partitioned by XLA. Both are
        correct; without ``reproducible`` the rounding may differ.
    """

    init: InitFn
    step: StepFn
    name: str
    params: dict
    warmup_step: Optional[StepFn] = None
    end_warmup: Optional[Callable[[State], State]] = None
    num_steps: Optional[int] = None
    shard_local: bool = False


def check_positive(name: str, value: Any) -> float:
    """A finite, strictly positive float, or a ValueError saying which was wrong."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number, got {value!r}.") from None
    if not math.isfinite(number) or number <= 0.0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}.")
    return number


def check_int(name: str, value: Any, minimum: int) -> int:
    """An int (not a bool) at least ``minimum``, or a TypeError/ValueError saying which was wrong."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def check_positions(target: Target, positions: Any) -> Array:
    """Positions as an array of shape ``(n_particles, target.dim)``, or a ValueError."""
    if not isinstance(target, Target):
        raise TypeError(
            f"expected a stochflow Target, got {type(target).__name__}; "
            "wrap your log-density with sf.Target(logdensity, dim)."
        )
    shape = getattr(positions, "shape", None)
    if shape is None or len(shape) != 2 or shape[1] != target.dim or shape[0] < 1:
        raise ValueError(
            f"positions must have shape (n_particles, dim) = (n, {target.dim}), got "
            f"{shape}. A single start x of shape ({target.dim},) is passed as x[None, :]."
        )
    return jnp.asarray(positions)


def independent_chains(
    name: str,
    params: dict,
    init_one: Callable[[Target, Array, Array], State],
    step_one: Callable[[Target, State, Array], tuple[State, Info]],
    warmup_step_one: Optional[Callable[[Target, State, Array], tuple[State, Info]]] = None,
    end_warmup_one: Optional[Callable[[State], State]] = None,
) -> Sampler:
    """Build a particle-batch :class:`Sampler` from a kernel for one chain.

    ``init_one(target, position, key)`` and ``step_one(target, state, key)`` act
    on a single chain; the returned sampler vmaps them over the particle axis and
    splits each key into one key per particle, so chains never share noise. The
    chains never interact, so the sampler is ``shard_local``.
    """

    def init(target: Target, positions: Array, key: Array) -> State:
        positions = check_positions(target, positions)
        keys = jax.random.split(key, positions.shape[0])
        return jax.vmap(init_one, in_axes=(None, 0, 0))(target, positions, keys)

    def batched(step_fn: Callable) -> StepFn:
        def step(target: Target, state: State, key: Array) -> tuple[State, Info]:
            n_particles = jax.tree_util.tree_leaves(state)[0].shape[0]
            keys = particle_keys(key, n_particles)
            return map_particles(lambda one_state, one_key: step_fn(target, one_state, one_key), state, keys)

        return step

    return Sampler(
        init=init,
        step=batched(step_one),
        name=name,
        params=dict(params),
        warmup_step=None if warmup_step_one is None else batched(warmup_step_one),
        end_warmup=None if end_warmup_one is None else jax.vmap(end_warmup_one),
        shard_local=True,
    )


def check_in_domain(name: str, mirror: Any, positions: Array) -> None:
    """Refuse starts outside ``mirror``'s domain with a ValueError naming them.

    Skipped when ``positions`` are traced (inside a jitted ``init``), where their
    values are unknown; the driver checks concrete starts before it compiles.
    """
    if isinstance(positions, jax.core.Tracer):
        return
    outside = np.flatnonzero(~np.asarray(jax.vmap(mirror.in_domain)(positions)))
    if outside.size:
        raise ValueError(
            f"{name}: {outside.size} starting position(s) lie outside the domain of the "
            f"{mirror.name!r} mirror map (particles {outside[:10].tolist()}); start strictly inside "
            "it, e.g. with sf.default_init (which maps dual draws through grad_conj)."
        )
