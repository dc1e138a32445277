r"""Step-size adaptation by dual averaging (Hoffman & Gelman 2014, Sec. 3.2.1).

With :math:`x_t = \log h_t`, acceptance rate :math:`\alpha_t` and target
:math:`\delta`, Nesterov's primal-dual averaging iterates

.. math::

    \bar H_t = (1 - \tfrac{1}{t + t_0})\bar H_{t-1} + \tfrac{\delta - \alpha_t}{t + t_0},\qquad
    x_{t+1} = \mu - \tfrac{\sqrt t}{\gamma}\bar H_t,\qquad
    \bar x_{t+1} = t^{-\kappa} x_t + (1 - t^{-\kappa})\bar x_t,

with :math:`\mu = \log(10 h_0)`, :math:`t_0 = 10`, :math:`\gamma = 0.05`,
:math:`\kappa = 0.75`; warmup ends on :math:`h = e^{\bar x}`. The iteration is
BlackJAX's ``dual_averaging`` optimiser; the target rate is carried in the
state (a traced value, so a new target does not recompile) rather than closed
over.

:func:`adapt_step_size` turns any kernel whose state has ``step_size`` and
``adaptation`` fields and whose info has ``accept_prob`` into its warmup
kernel, one chain at a time (each chain adapts its own step size).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.optimizers.dual_averaging import DualAveragingState, dual_averaging

Array = jax.Array
Kernel = Callable[[Array, Any, Any], tuple[Any, Any]]

__all__ = ["StepSizeAdaptation", "dual_averaging_init", "dual_averaging_update", "dual_averaging_step_size",
           "adapt_step_size", "end_step_size_adaptation"]

_da_init, _da_update, _ = dual_averaging(t0=10, gamma=0.05, kappa=0.75)


class StepSizeAdaptation(NamedTuple):
    """Dual-averaging state of one chain, with the acceptance rate it aims at."""

    averaging: DualAveragingState
    target_accept: Array


def dual_averaging_init(step_size: Array, target_accept: Array) -> StepSizeAdaptation:
    """Start averaging from ``step_size`` toward ``target_accept``."""
    step_size = jnp.asarray(step_size)
    averaging = jax.tree_util.tree_map(jnp.asarray, _da_init(step_size))
    averaging = averaging._replace(step=jnp.asarray(averaging.step, jnp.int32),
                                   avg_error=jnp.zeros((), step_size.dtype),
                                   log_x_avg=jnp.zeros((), step_size.dtype))
    return StepSizeAdaptation(averaging, jnp.asarray(target_accept, step_size.dtype))


def dual_averaging_update(adaptation: StepSizeAdaptation, accept_prob: Array) -> tuple[StepSizeAdaptation, Array]:
    """One averaging step after a transition accepted with probability ``accept_prob``
    (a NaN counts as 0); returns the new state and the step size to use next."""
    error = adaptation.target_accept - jnp.nan_to_num(accept_prob)
    averaging = _da_update(adaptation.averaging, error)
    return adaptation._replace(averaging=averaging), jnp.exp(averaging.log_x)


def dual_averaging_step_size(adaptation: StepSizeAdaptation) -> Array:
    """The averaged step size kept when warmup ends."""
    return jnp.exp(adaptation.averaging.log_x_avg)


@functools.lru_cache(maxsize=None)
def adapt_step_size(kernel: Kernel) -> Kernel:
    """The warmup kernel of ``kernel``: a transition, then one dual-averaging update
    of the chain's own step size. Cached, so the same kernel gives the same function."""

    def warmup_kernel(key: Array, state: Any, target: Any) -> tuple[Any, Any]:
        new_state, info = kernel(key, state, target)
        adaptation, step_size = dual_averaging_update(new_state.adaptation, info.accept_prob)
        return new_state._replace(step_size=step_size.astype(state.step_size.dtype), adaptation=adaptation), info

    return warmup_kernel


def end_step_size_adaptation(state: Any) -> Any:
    """Fix the averaged step size at the end of warmup."""
    return state._replace(step_size=dual_averaging_step_size(state.adaptation).astype(state.step_size.dtype))
