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

A step that meets a non-finite value, or (BAOAB, OBABO) whose energy error is
beyond ``DIVERGENCE_ENERGY`` = 1000 (NumPyro's and BlackJAX's NUTS threshold), is undone
(the chain stays where it was), marked ``diverging``, and its momentum reversed,
:math:`p \leftarrow -p`, as generalised HMC does on a rejection (:math:`N(0, M)` is
symmetric, so the momentum keeps its distribution). The next step then heads back the
way the chain came: the step that brought it here had an energy error within the bound,
and its time reverse (the B and A flows are reversible) has the opposite error, so a way
out is at hand, blurred only by the O parts' noise (a momentum drawn afresh has none
where the integrator is unstable for every typical momentum). The energy
error is that of the Hamiltonian sub-flows: the change of
:math:`H(x, p) = -\log\pi(x) + \tfrac12 p^\top M^{-1} p` over the step minus the change
its O parts (the exact Ornstein-Uhlenbeck refreshes) made to the kinetic energy; it is
zero for exact Hamiltonian flow and grows like the integrator's error, so a step of
1000 is an integrator out of its stability region (e.g. a funnel's neck).

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

from ..kernels.adaptation import Tunables, WindowAdaptation, window_adaptation_init, window_warmup
from ..kernels.checks import check_bool, check_diagonal_mass, check_positive
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
from .base import NONFINITE_STEP, Sampler, independent_chains

Array = jax.Array
DIVERGENCE_ENERGY = 1000.0

__all__ = ["DIVERGENCE_ENERGY", "UnderdampedParams", "UnderdampedState", "UnderdampedInfo", "baoab_kernel", "obabo_kernel",
           "ubu_kernel", "underdamped", "SCHEMES"]


class UnderdampedParams(NamedTuple):
    """One chain's tunables: step ``h``, diagonal mass, friction, and the O/U coefficients of
    its scheme (functions of ``h`` and the friction)."""

    step_size: Array
    mass: Array
    friction: Array
    refresh: OURefresh  # O(h) for BAOAB, O(h/2) for OBABO
    stream: OUStream  # U(h) for UBU


class UnderdampedState(NamedTuple):
    position: Array
    momentum: Array
    logdensity: Array
    logdensity_grad: Array
    params: UnderdampedParams
    adaptation: WindowAdaptation

    @property
    def step_size(self) -> Array:
        return self.params.step_size

    @property
    def inverse_mass(self) -> Array:
        return 1.0 / self.params.mass


class UnderdampedInfo(NamedTuple):
    logdensity: Array
    energy_error: Array  # of the Hamiltonian sub-flows (0 for UBU, which has none apart)
    n_grad: Array
    diverging: Array


def _finish(target: Target, state: UnderdampedState, position: Array, momentum_before_kick: Array,
            final_kick: Array) -> UnderdampedState:
    logdensity, grad = target.logdensity_and_grad(position)
    momentum = kick(momentum_before_kick, grad, final_kick)
    return state._replace(position=position, momentum=momentum, logdensity=logdensity, logdensity_grad=grad)


def kinetic_energy(momentum: Array, mass: Array) -> Array:
    return 0.5 * jnp.sum(momentum**2 / mass)


def _undo_and_flag(proposal: UnderdampedState, state: UnderdampedState, energy_error: Array):
    """Keep ``proposal`` unless it is non-finite or its energy error is beyond
    :data:`DIVERGENCE_ENERGY`; a step not kept is flagged ``diverging``, and the chain stays
    where it was with its momentum reversed, ``p -> -p`` (see the module docstring: the next
    step heads back the way the chain came, and retrying the same momentum could repeat the
    same blow-up for ever)."""
    bounded = jnp.abs(energy_error) <= DIVERGENCE_ENERGY  # False for NaN
    new_state, diverging = undo_if_nonfinite(proposal, state, extra_ok=bounded)
    new_state = new_state._replace(momentum=jnp.where(diverging, -state.momentum, new_state.momentum))
    return new_state, UnderdampedInfo(new_state.logdensity, energy_error, jnp.int32(1), diverging)


def _hamiltonian_error(moved: UnderdampedState, state: UnderdampedState, kinetic_change_by_noise: Array) -> Array:
    """The energy error of the step's Hamiltonian sub-flows (B and A), i.e. the change of
    ``H = -log p(x) + p^T M^-1 p / 2`` over the step minus the change the O parts made."""
    mass = state.params.mass
    change = (state.logdensity - moved.logdensity) + kinetic_energy(moved.momentum, mass) \
        - kinetic_energy(state.momentum, mass)
    return change - kinetic_change_by_noise


def baoab_kernel(key: Array, state: UnderdampedState, target: Target):
    """B(h/2) A(h/2) O(h) A(h/2) B(h/2)."""
    h, mass = state.params.step_size, state.params.mass
    p = kick(state.momentum, state.logdensity_grad, 0.5 * h)
    x = drift(state.position, p, 0.5 * h, mass)
    noise = jax.random.normal(key, p.shape, p.dtype)
    refreshed = ou_refresh(p, state.params.refresh, mass, noise)
    by_noise = kinetic_energy(refreshed, mass) - kinetic_energy(p, mass)
    x = drift(x, refreshed, 0.5 * h, mass)
    moved = _finish(target, state, x, refreshed, 0.5 * h)
    return _undo_and_flag(moved, state, _hamiltonian_error(moved, state, by_noise))


def obabo_kernel(key: Array, state: UnderdampedState, target: Target):
    """O(h/2) B(h/2) A(h) B(h/2) O(h/2)."""
    h, mass = state.params.step_size, state.params.mass
    shape, dtype = state.momentum.shape, state.momentum.dtype
    noise_first, noise_last = (jax.random.normal(half, shape, dtype) for half in jax.random.split(key))
    p = ou_refresh(state.momentum, state.params.refresh, mass, noise_first)
    first_noise = kinetic_energy(p, mass) - kinetic_energy(state.momentum, mass)
    p = kick(p, state.logdensity_grad, 0.5 * h)
    x = drift(state.position, p, h, mass)
    moved = _finish(target, state, x, p, 0.5 * h)
    before_last = moved.momentum
    moved = moved._replace(momentum=ou_refresh(before_last, state.params.refresh, mass, noise_last))
    by_noise = first_noise + kinetic_energy(moved.momentum, mass) - kinetic_energy(before_last, mass)
    return _undo_and_flag(moved, state, _hamiltonian_error(moved, state, by_noise))


def ubu_kernel(key: Array, state: UnderdampedState, target: Target):
    """B(h) U(h): UBU recorded at its force-evaluation points (see the module docstring).
    U mixes the drift with the noise, so only non-finite steps are divergences here."""
    h, mass = state.params.step_size, state.params.mass
    velocity = kick(state.momentum, state.logdensity_grad, h) / mass
    noise_v, noise_x = jax.random.normal(key, (2,) + velocity.shape, velocity.dtype)
    x, velocity = ou_stream(state.position, velocity, state.params.stream, mass, noise_v, noise_x)
    logdensity, grad = target.logdensity_and_grad(x)
    moved = state._replace(position=x, momentum=mass * velocity, logdensity=logdensity, logdensity_grad=grad)
    return _undo_and_flag(moved, state, jnp.zeros((), x.dtype))


SCHEMES: dict[str, Callable] = {"baoab": baoab_kernel, "obabo": obabo_kernel, "ubu": ubu_kernel}
REFRESH_FRACTION = {"baoab": 1.0, "obabo": 0.5}  # O(h) once, or O(h/2) twice
ENERGY_ERROR_CLIP = 2.0
ENERGY_ERROR_VARIANCE = 5e-4
# No Metropolis step rejects the draws of a trial step too large, so dual averaging starts at h
# (not 10 h) and moves it by at most a factor e^0.18 per update at first (gamma 0.5, not 0.05).
EXPLORE, GAMMA = 1.0, 0.5


def _energy_criterion_error(state: UnderdampedState, info: UnderdampedInfo) -> Array:
    """Dual averaging's error for the energy criterion: ``min(dE^2 / (d xi), 2) - 1``, in
    [-1, 1] like an acceptance rate's (a diverging step counts as the clip)."""
    dim = state.position.shape[-1]
    ratio = jnp.nan_to_num(info.energy_error**2 / (dim * state.adaptation.step_size.target_accept),
                           nan=ENERGY_ERROR_CLIP, posinf=ENERGY_ERROR_CLIP)
    return jnp.minimum(ratio, ENERGY_ERROR_CLIP) - 1.0


def _with_inverse_mass(state: UnderdampedState, inverse_mass: Array) -> UnderdampedState:
    """A new mass ``1 / inverse_mass``, the momentum rescaled to it (``p ~ N(0, M)`` stays so)."""
    mass = (1.0 / inverse_mass).astype(state.params.mass.dtype)
    momentum = state.momentum * jnp.sqrt(mass / state.params.mass)
    return state._replace(momentum=momentum, params=state.params._replace(mass=mass))


def _tunables(scheme: str) -> Tunables:
    if scheme == "ubu":  # no energy error apart from the noise: the step stays as given
        with_step_size = lambda state, h: state  # noqa: E731
    else:
        fraction = REFRESH_FRACTION[scheme]

        def with_step_size(state: UnderdampedState, h: Array) -> UnderdampedState:
            h = h.astype(state.params.step_size.dtype)
            rate = state.params.friction * fraction * h
            refresh = OURefresh(jnp.exp(-rate), jnp.sqrt(-jnp.expm1(-2.0 * rate)))
            return state._replace(params=state.params._replace(step_size=h, refresh=refresh))

    return Tunables(lambda state: state.params.step_size, with_step_size, lambda state: state.inverse_mass,
                    _with_inverse_mass, _energy_criterion_error, explore=EXPLORE, gamma=GAMMA)


TUNABLES = {scheme: _tunables(scheme) for scheme in SCHEMES}


def underdamped(
    step_size: float,
    friction: float = 1.0,
    scheme: str = "baoab",
    mass: Optional[object] = None,
    adapt_step_size: bool = True,
    adapt_mass: bool = False,
    pooled: bool = False,
    energy_error_variance: float = ENERGY_ERROR_VARIANCE,
) -> Sampler:
    r"""Underdamped Langevin dynamics with a splitting integrator.

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
        inverses preconditions the dynamics. It is where warmup starts from.
    adapt_step_size
        Whether warmup adapts each chain's step size (BAOAB, OBABO) to the energy
        criterion below; ``False`` (and UBU, which has no energy error of its own) keeps
        ``step_size``.
    adapt_mass
        Whether warmup estimates the diagonal mass (Stan's windows, the inverse of the
        draws' variances; needs ``warmup >= 20``). Off by default: nothing rejects an
        unadjusted chain's excursions, so a window that holds one inflates the variance,
        the larger velocity makes the next excursion longer, and the estimate feeds on
        itself (measured on eight schools: log-tau's inverse mass 1 -> 96 -> 760 over three
        windows, chains frozen). On targets without such tails (e.g. a badly scaled
        Gaussian) it recovers the mass; ``pooled=True`` does not cure it.
    pooled
        Estimate the mass from all chains' window draws together.
    energy_error_variance
        The criterion :math:`\xi`: warmup's dual averaging drives the mean of
        :math:`\min(\Delta E^2 / (d\xi), 2)` to 1 (clipped so that one bad step weighs no
        more than an acceptance rate does); for a Gaussian energy error that is
        :math:`\operatorname{Var}\Delta E / d = 1.85\,\xi`. The default 5e-4 (BlackJAX's
        MCLMC tuning aims at the same value of its own energy) gives on N(0, I) a step of
        about 0.35 for BAOAB (its positions exact there) and 0.45 for OBABO (variance 5%
        high). Smaller is a smaller step: less bias, slower mixing.
    """
    step_size = check_positive("step_size", step_size)
    friction = check_positive("friction", friction)
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose one of {', '.join(SCHEMES)}.")
    mass_array = check_diagonal_mass("mass", mass)
    adapts_step = check_bool("adapt_step_size", adapt_step_size) and scheme != "ubu"
    adapts_mass = check_bool("adapt_mass", adapt_mass)
    pooled = check_bool("pooled", pooled)
    xi = check_positive("energy_error_variance", energy_error_variance)
    refresh_time = step_size if scheme == "baoab" else 0.5 * step_size
    refresh = ou_refresh_coefficients(friction, refresh_time)
    stream = ou_stream_coefficients(friction, step_size)

    def init_one(target: Target, position: Array, key: Array) -> UnderdampedState:
        dtype = position.dtype
        mass_here = jnp.broadcast_to(jnp.asarray(mass_array, dtype), position.shape)
        logdensity, grad = target.logdensity_and_grad(position)
        momentum = jnp.sqrt(mass_here) * jax.random.normal(key, position.shape, dtype)
        h = jnp.asarray(step_size, dtype)
        params = UnderdampedParams(
            h,
            mass_here,
            jnp.asarray(friction, dtype),
            OURefresh(*(jnp.asarray(c, dtype) for c in refresh)),
            OUStream(*(jnp.asarray(c, dtype) for c in stream)),
        )
        return UnderdampedState(position, momentum.astype(dtype), logdensity, grad, params,
                                window_adaptation_init(position, h, xi, EXPLORE))

    def init_checked(target: Target, position: Array, key: Array) -> UnderdampedState:
        if mass_array.ndim == 1 and mass_array.shape[0] != target.dim:
            raise ValueError(f"mass has shape {mass_array.shape}, expected ({target.dim},).")
        return init_one(target, position, key)

    params = {
        "step_size": step_size,
        "friction": friction,
        "scheme": scheme,
        "mass": None if mass is None else np.asarray(mass, dtype=float).tolist(),
        "adapt_step_size": adapts_step,
        "adapt_mass": adapts_mass,
        **({"pooled": pooled} if adapts_mass else {}),
        **({"energy_error_variance": xi} if adapts_step else {}),
    }
    kind = NONFINITE_STEP if scheme == "ubu" else (
        f"a non-finite value or an energy error beyond {DIVERGENCE_ENERGY:g}; the step was undone and the "
        "momentum reversed")
    warmup = None
    if adapts_step or adapts_mass:
        tunables = TUNABLES[scheme] if adapts_step else TUNABLES["ubu"]  # "ubu": the step stays
        warmup = window_warmup(SCHEMES[scheme], adapt_mass=adapts_mass, pooled=pooled, tunables=tunables)
    return independent_chains("underdamped", params, init_checked, SCHEMES[scheme], warmup, divergence=kind)
