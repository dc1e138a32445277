r"""Warmup: step-size adaptation by dual averaging, and Stan's windowed mass adaptation.

**Dual averaging** (Hoffman & Gelman 2014, Sec. 3.2.1). With :math:`x_t = \log h_t`,
acceptance rate :math:`\alpha_t` and target :math:`\delta`, Nesterov's primal-dual
averaging iterates

.. math::

    \bar H_t = (1 - \tfrac{1}{t + t_0})\bar H_{t-1} + \tfrac{\delta - \alpha_t}{t + t_0},\qquad
    x_{t+1} = \mu - \tfrac{\sqrt t}{\gamma}\bar H_t,\qquad
    \bar x_{t+1} = t^{-\kappa} x_t + (1 - t^{-\kappa})\bar x_t,

with :math:`\mu = \log(10 h_0)`, :math:`t_0 = 10`, :math:`\gamma = 0.05`,
:math:`\kappa = 0.75`; warmup ends on :math:`h = e^{\bar x}`. The iteration is
BlackJAX's ``dual_averaging`` optimiser; the target rate is carried in the
state (a traced value, so a new target does not recompile) rather than closed
over.

**Windowed adaptation** (Stan reference manual, "HMC algorithm parameters"; the
schedule of Stan's ``windowed_adaptation``). Warmup of :math:`N` steps is cut into a
fast initial buffer (75 steps), slow windows of 25, 50, 100, ... steps (the last one
stretched to end :math:`50` steps before :math:`N`) and a fast terminal buffer (50 steps);
for :math:`N < 150` the buffers are 15% and 10% of :math:`N` and the one window the rest,
for :math:`N < 20` there is no window. The step size adapts by dual averaging throughout.
In each slow window the chain's draws update Welford's running mean and variance;
at the window's end the diagonal inverse mass becomes the regularised variance

.. math:: M^{-1} = \tfrac{n}{n + 5}\,\widehat{\operatorname{Var}} + 10^{-3}\,\tfrac{5}{n + 5}

(Stan's shrinkage toward :math:`10^{-3}`), the accumulator is reset and dual averaging
restarts from the current step size (:math:`\mu = \log 10 h`), since the step that suits
the old mass does not suit the new one. With ``pooled=True`` the window's variance is
that of all chains' draws together (Chan et al.'s pairwise combination of the chains'
accumulators), so that many short chains estimate the mass as well as a few long ones
(cross-chain adaptation, as in Hoffman & Sountsov's ChEES and MEADS); each chain still
adapts its own step size.

:func:`window_warmup` turns a one-chain kernel into a :class:`ChainWarmup`: the
particle-set functions a sampler runs at the start of warmup, at each warmup step and at
its end (``adapt_mass=False``: no windows, dual averaging of the step alone). With the
default :data:`FIELDS` tunables the kernel's state needs ``position``, ``step_size`` and
``adaptation`` fields (and ``inverse_mass`` when the mass adapts), its info an
``accept_prob``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.optimizers.dual_averaging import DualAveragingState, dual_averaging

from .particles import ALL_PARTICLES, ParticleAxis, all_particles, batch_kernel, map_particles

Array = jax.Array
State = Any
Kernel = Callable[[Array, State, Any], tuple[State, Any]]
StepFn = Callable[..., tuple[State, Any]]

__all__ = ["StepSizeAdaptation", "dual_averaging_init", "dual_averaging_step_size",
           "dual_averaging_error_update", "Welford", "welford_init", "welford_add", "welford_pool",
           "regularised_variance", "WindowSchedule", "window_schedule", "no_windows", "WindowAdaptation",
           "window_adaptation_init", "ChainWarmup", "window_warmup", "Tunables", "FIELDS",
           "MAX_WINDOWS"]

MAX_WINDOWS = 32  # slow windows double in length: 32 cover any warmup below 25 * 2**32 steps

_da_init, _, _ = dual_averaging(t0=10, gamma=0.05, kappa=0.75)


class StepSizeAdaptation(NamedTuple):
    """Dual-averaging state of one chain, with the acceptance rate (or, for a method without an
    accept step, the value of its criterion) it aims at."""

    averaging: DualAveragingState
    target_accept: Array


def dual_averaging_init(step_size: Array, target_accept: Array, explore: float = 10.0) -> StepSizeAdaptation:
    """Start averaging from ``step_size`` toward ``target_accept``, shrinking toward
    ``mu = log(explore * step_size)`` (Hoffman & Gelman's 10: larger steps are tried early)."""
    step_size = jnp.asarray(step_size)
    averaging = jax.tree_util.tree_map(jnp.asarray, _da_init(step_size))
    averaging = averaging._replace(mu=jnp.log(explore * step_size).astype(step_size.dtype),
                                   step=jnp.asarray(averaging.step, jnp.int32),
                                   avg_error=jnp.zeros((), step_size.dtype),
                                   log_x_avg=jnp.zeros((), step_size.dtype))
    return StepSizeAdaptation(averaging, jnp.asarray(target_accept, step_size.dtype))


def dual_averaging_error_update(adaptation: StepSizeAdaptation, error: Array,
                                gamma: float = 0.05) -> tuple[StepSizeAdaptation, Array]:
    """One averaging step on ``error`` (delta - alpha_t: positive when the step is too large);
    a larger ``gamma`` moves the step less per update."""
    averaging = _averaging_update(gamma)(adaptation.averaging, error)
    return adaptation._replace(averaging=averaging), jnp.exp(averaging.log_x)


@functools.lru_cache(maxsize=None)
def _averaging_update(gamma: float) -> Callable:
    return dual_averaging(t0=10, gamma=gamma, kappa=0.75)[1]


def dual_averaging_step_size(adaptation: StepSizeAdaptation) -> Array:
    """The averaged step size kept when warmup ends."""
    return jnp.exp(adaptation.averaging.log_x_avg)


class ChainWarmup(NamedTuple):
    """A chain method's warmup, over the particle set: ``start(state, num_warmup)`` once before
    the first warmup step, ``step(target, state, key, axis)`` instead of the sampler's step,
    ``end(state)`` once after the last (``None``: nothing to do)."""

    start: Optional[Callable[[State, int], State]]
    step: StepFn
    end: Optional[Callable[[State], State]]


# Welford's running moments ---------------------------------------------------------------------

class Welford(NamedTuple):
    """Running count, mean and sum of squared deviations (Welford 1962), per coordinate."""

    count: Array
    mean: Array
    m2: Array


def welford_init(position: Array, dense: bool = False) -> Welford:
    """No draws yet; ``dense``: the sum of squared deviations as a ``(d, d)`` matrix (for a
    covariance) rather than a ``(d,)`` vector (variances)."""
    zeros = jnp.zeros_like(position)
    m2 = jnp.zeros(position.shape * 2, position.dtype) if dense else zeros
    return Welford(jnp.zeros((), position.dtype), zeros, m2)


def _outer_or_product(a: Array, b: Array, m2: Array) -> Array:
    return jnp.outer(a, b) if m2.ndim == 2 else a * b


def welford_add(moments: Welford, x: Array) -> Welford:
    count = moments.count + 1
    delta = x - moments.mean
    mean = moments.mean + delta / count
    return Welford(count, mean, moments.m2 + _outer_or_product(delta, x - mean, moments.m2))


def welford_pool(moments: Welford) -> Welford:
    """The moments of all draws together from per-chain moments (leading axis: chains), by
    Chan, Golub & LeVeque's combination: ``M2 = sum M2_c + sum n_c (mean_c - mean)(mean_c - mean)^T``."""
    count = jnp.sum(moments.count)
    weights = moments.count[:, None] / jnp.maximum(count, 1)
    mean = jnp.sum(weights * moments.mean, axis=0)
    offsets = moments.mean - mean
    between = jax.vmap(_outer_or_product, in_axes=(0, 0, None))(offsets, offsets, moments.m2[0])
    counts = moments.count.reshape((-1,) + (1,) * (moments.m2.ndim - 1))
    return Welford(count, mean, jnp.sum(moments.m2, axis=0) + jnp.sum(counts * between, axis=0))


def regularised_variance(moments: Welford) -> Array:
    """Stan's estimate ``n/(n+5) Var + 1e-3 * 5/(n+5)`` (sample variance, ``n - 1`` denominator),
    or for dense moments the covariance shrunk alike toward ``1e-3 I`` (Stan's dense metric)."""
    n = moments.count
    variance = moments.m2 / jnp.maximum(n - 1, 1)
    shrink = 1e-3 * (5 / (n + 5))
    if moments.m2.ndim == 2:
        return (n / (n + 5)) * variance + shrink * jnp.eye(variance.shape[0], dtype=variance.dtype)
    return (n / (n + 5)) * variance + shrink


# The windowed schedule -------------------------------------------------------------------------

class WindowSchedule(NamedTuple):
    """Where the slow windows are: draws of warmup steps ``first <= t < ends[-1]`` are
    accumulated, and a window closes once ``t + 1`` steps are done for ``t + 1`` in ``ends``
    (padded with -1 to :data:`MAX_WINDOWS`)."""

    first: Array
    ends: Array


def window_schedule(num_warmup: int) -> WindowSchedule:
    """Stan's windows for ``num_warmup`` steps (see the module docstring)."""
    if num_warmup < 20:
        return no_windows()
    initial, terminal, window = 75, 50, 25
    if initial + window + terminal > num_warmup:
        initial, terminal = int(0.15 * num_warmup), int(0.1 * num_warmup)
        window = num_warmup - initial - terminal
    last, start, ends = num_warmup - terminal, initial, []
    while not ends or ends[-1] < last:
        end = start + window
        ends.append(last if end + 2 * window > last else end)
        start, window = end, 2 * window
    padded = np.full(MAX_WINDOWS, -1, np.int32)
    padded[:len(ends)] = ends
    return WindowSchedule(jnp.asarray(initial, jnp.int32), jnp.asarray(padded))


def no_windows() -> WindowSchedule:
    """No slow window: the mass stays as it is and only the step size adapts."""
    return WindowSchedule(jnp.asarray(0, jnp.int32), jnp.full(MAX_WINDOWS, -1, jnp.int32))


class WindowAdaptation(NamedTuple):
    """One chain's windowed warmup: dual averaging, steps done, the schedule, the window's moments."""

    step_size: StepSizeAdaptation
    steps_done: Array
    schedule: WindowSchedule
    moments: Welford


def window_adaptation_init(position: Array, step_size: Array, target_accept: Array,
                           explore: float = 10.0, dense: bool = False) -> WindowAdaptation:
    """A chain's adaptation state before warmup (no windows until ``ChainWarmup.start`` sets them);
    ``dense``: the windows estimate a covariance (a dense inverse mass)."""
    return WindowAdaptation(dual_averaging_init(step_size, target_accept, explore), jnp.zeros((), jnp.int32),
                            no_windows(), welford_init(position, dense))


class Tunables(NamedTuple):
    r"""How a windowed warmup reads and sets one chain's tunables, and what it adapts the step
    size on. ``error(state, info)`` is dual averaging's :math:`\delta - \alpha_t`: positive when
    the step is too large (for an acceptance rate, the target minus the rate)."""

    step_size: Callable[[State], Array]
    with_step_size: Callable[[State, Array], State]
    inverse_mass: Callable[[State], Array]
    with_inverse_mass: Callable[[State, Array], State]
    error: Callable[[State, Any], Array]
    explore: float = 10.0  # dual averaging's mu = log(explore * h) at each (re)start
    gamma: float = 0.05  # dual averaging's gamma: larger, smaller moves of the step


def _acceptance_error(state: State, info: Any) -> Array:
    return state.adaptation.step_size.target_accept - jnp.nan_to_num(info.accept_prob)


FIELDS = Tunables(
    step_size=lambda state: state.step_size,
    with_step_size=lambda state, h: state._replace(step_size=h.astype(state.step_size.dtype)),
    inverse_mass=lambda state: state.inverse_mass,
    with_inverse_mass=lambda state, m: state._replace(inverse_mass=m.astype(state.inverse_mass.dtype)),
    error=_acceptance_error,
)
"""The tunables as ``step_size`` and ``inverse_mass`` fields, adapted on ``info.accept_prob``."""


@functools.lru_cache(maxsize=None)
def _accumulating(kernel: Kernel, tunables: Tunables) -> Kernel:
    """``kernel``, then a dual-averaging update and, inside a slow window, the new draw added
    to the window's moments."""

    def warmup_kernel(key: Array, state: Any, target: Any) -> tuple[Any, Any]:
        new_state, info = kernel(key, state, target)
        adapting = new_state.adaptation
        step_adaptation, step_size = dual_averaging_error_update(adapting.step_size, tunables.error(new_state, info),
                                                                 tunables.gamma)
        t = adapting.steps_done
        in_window = (t >= adapting.schedule.first) & (t < jnp.max(adapting.schedule.ends))
        moments = jax.tree_util.tree_map(lambda added, kept: jnp.where(in_window, added, kept),
                                         welford_add(adapting.moments, new_state.position), adapting.moments)
        adapting = adapting._replace(step_size=step_adaptation, steps_done=t + 1, moments=moments)
        return tunables.with_step_size(new_state._replace(adaptation=adapting), step_size), info

    return warmup_kernel


def _close_window(state: Any, variance: Array, tunables: Tunables) -> Any:
    """At a window's end: the new inverse mass, fresh moments, dual averaging restarted."""
    adapting = state.adaptation
    closing = jnp.any(adapting.steps_done == adapting.schedule.ends)
    restarted = dual_averaging_init(tunables.step_size(state), adapting.step_size.target_accept, tunables.explore)
    keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(closing, a, b), new, old)  # noqa: E731
    adapting = adapting._replace(step_size=keep(restarted, adapting.step_size),
                                 moments=keep(jax.tree_util.tree_map(jnp.zeros_like, adapting.moments),
                                              adapting.moments))
    state = state._replace(adaptation=adapting)
    return keep(tunables.with_inverse_mass(state, variance), state)


@functools.lru_cache(maxsize=None)
def window_warmup(kernel: Kernel, adapt_mass: bool = True, pooled: bool = False,
                  tunables: Tunables = FIELDS) -> ChainWarmup:
    """Stan's windowed warmup of ``kernel``: each chain's step size by dual averaging, the
    diagonal inverse mass from each chain's draws in the slow windows (``pooled``: from all
    chains' draws together; ``adapt_mass=False``: no windows, the step size alone adapts).
    Cached, so the same kernel gives the same functions."""
    accumulate = batch_kernel(_accumulating(kernel, tunables))

    def start(state: Any, num_warmup: int) -> Any:
        schedule = window_schedule(num_warmup) if adapt_mass else no_windows()
        chains = state.adaptation.steps_done.shape[0]
        per_chain = jax.tree_util.tree_map(lambda leaf: jnp.broadcast_to(leaf, (chains,) + leaf.shape), schedule)
        return state._replace(adaptation=state.adaptation._replace(schedule=per_chain))

    def step(target: Any, state: Any, key: Array, axis: ParticleAxis = ALL_PARTICLES) -> tuple[Any, Any]:
        state, info = accumulate(target, state, key, axis)
        if not adapt_mass:  # no window ever closes (and a given mass may be dense)
            return state, info
        if pooled:
            gathered = jax.tree_util.tree_map(lambda leaf: all_particles(leaf, axis), state.adaptation.moments)
            variance = regularised_variance(welford_pool(gathered))
            state = map_particles(lambda one: _close_window(one, variance, tunables), state, axis=axis)
        else:
            state = map_particles(
                lambda one: _close_window(one, regularised_variance(one.adaptation.moments), tunables), state,
                axis=axis)
        return state, info

    def end(state: Any) -> Any:
        return jax.vmap(lambda one: tunables.with_step_size(one, dual_averaging_step_size(one.adaptation.step_size)))(
            state)

    return ChainWarmup(start, step, end)
