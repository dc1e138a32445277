r"""Proximal and Bregman-proximal Langevin samplers for nonsmooth and constrained targets.

The target is :math:`\pi(x) \propto \exp(-f(x) - g(x))` with a smooth part
:math:`-f` = ``target.logdensity`` and a nonsmooth term :math:`g` =
``target.nonsmooth`` (a :class:`~stochflow.geometry.NonsmoothTerm`), possibly on
the domain of a mirror map :math:`\phi` (``target.mirror``). Step size
:math:`\gamma`, smoothing :math:`\lambda`, :math:`\xi \sim N(0, I)`.

* **MYULA** (Moreau-Yosida ULA; Durmus, Moulines & Pereyra, SIAM J. Imaging
  Sci. 2018): ULA on :math:`\pi_\lambda \propto \exp(-f - g^\lambda)`, with the
  Moreau envelope's gradient :math:`(x - \operatorname{prox}_{\lambda g}(x))/\lambda`:

  .. math:: x' = x - \gamma\nabla f(x) - \tfrac{\gamma}{\lambda}(x - \operatorname{prox}_{\lambda g}(x)) + \sqrt{2\gamma}\,\xi.

* **MYMALA**: the MYULA move as a proposal, accepted by Metropolis-Hastings
  against the exact :math:`\pi` (as in Lau, Liu & Pock 2023's reference code);
  exact, a reference for the unadjusted methods.

* **MLA** (mirror-Langevin algorithm; Hsieh et al. 2018, Zhang et al. 2020),
  for a smooth target on the mirror map's domain, :math:`S S^\top = \nabla^2\phi`:

  .. math:: x' = \nabla\phi^*\big(\nabla\phi(x) - \gamma\nabla f(x) + \sqrt{2\gamma}\,S(x)\xi\big).

* **BMUMLA** (Bregman-Moreau unadjusted mirror-Langevin algorithm; Lau & Liu,
  ICML 2022): MLA on :math:`\exp(-f - g^\phi_\lambda)` with the left
  Bregman-Moreau envelope :math:`g^\phi_\lambda(x) = \min_y g(y) + D_\phi(y, x)/\lambda`,
  whose gradient is :math:`\nabla^2\phi(x)(x - \operatorname{prox}^\phi_{\lambda g}(x))/\lambda`
  (the left-envelope variant is the one Lau, Liu & Pock's code calls LBMUMLA):

  .. math:: x' = \nabla\phi^*\big(\nabla\phi(x) - \gamma\nabla f(x) - \gamma\nabla g^\phi_\lambda(x) + \sqrt{2\gamma}\,S(x)\xi\big).

* **BMMLA** (Bregman-Moreau mirror-Langevin algorithm; Lau & Liu 2022, on the
  mirror-Langevin discretisation of Ahn & Chewi 2021): the same gradient step
  in the dual space, :math:`y_0 = \nabla\phi(x) - \gamma\nabla f(x) - \gamma\nabla g^\phi_\lambda(x)`,
  followed by the dual diffusion :math:`dY_t = \sqrt2\,[\nabla^2\phi^*(Y_t)]^{-1/2}dB_t`
  over time :math:`\gamma`, here simulated by ``inner_steps`` Euler-Maruyama
  sub-steps :math:`Y \leftarrow Y + \sqrt{2\gamma/m}\,S(\nabla\phi^*(Y))\xi`
  (with one sub-step BMMLA is BMUMLA); :math:`x' = \nabla\phi^*(Y_\gamma)`.

With the Euclidean map :math:`\phi = \tfrac12\|x\|^2`, MLA is ULA and BMUMLA is
MYULA. The mirror-space methods take every step in the dual space and map back
with :math:`\nabla\phi^*`, so their draws never leave the domain.

Step sizes near a boundary: the dual drift of a density that vanishes at the
boundary can blow up there (a Dirichlet with :math:`\alpha_i > 1` under the
entropic map has drift :math:`(\alpha_i - 1)/x_i`), so the explicit dual step
needs a step small against the distance to the boundary the chain visits; a
step that overshoots past what the domain can represent is undone and flagged
(see below), and many flags mean the step is too large.

Every step reports ``logdensity`` -- the log-density (up to a constant) of the
law the chain targets: the smoothed :math:`-f - g^\lambda` (MYULA),
:math:`-f - g^\phi_\lambda` (BMUMLA, BMMLA), the exact :math:`-f - g` (MYMALA),
:math:`-f` (MLA) -- ``n_grad`` (one gradient of :math:`f` per step) and
``diverging``: a step meeting a non-finite value, or (mirror methods) a dual
point beyond what the domain can represent in floating point, is undone and
flagged.

The one-chain kernels (:func:`myula_kernel`, :func:`mymala_kernel`,
:func:`mla_kernel`, :func:`bmumla_kernel`, :func:`bmmla_kernel`) take the step
size and smoothing from the state, so samplers differing only in those values
share one compiled program; a mirror map given to the factory (compared by
value) and ``inner_steps`` select a kernel through a cache.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from ..geometry.mirrors import MirrorMap, euclidean, resolve_mirror
from ..kernels.adaptation import WindowAdaptation, window_adaptation_init, window_warmup
from ..kernels.checks import check_bool, check_in_domain, check_int, check_positions, check_positive, check_probability
from ..kernels.finite import undo_if_nonfinite
from ..kernels.langevin import langevin_position
from ..kernels.metropolis import langevin_mh
from ..target import Target, check_mirror
from .base import Requirements, Sampler, independent_chains

Array = jax.Array
Kernel = Callable[[Array, Any, Target], tuple[Any, Any]]

__all__ = [
    "ProximalState",
    "ProximalInfo",
    "MYMALAInfo",
    "myula_kernel",
    "mymala_kernel",
    "mla_kernel",
    "bmumla_kernel",
    "bmmla_kernel",
    "myula",
    "mymala",
    "mla",
    "bmumla",
    "bmmla",
]


class ProximalState(NamedTuple):
    r"""One chain: position, smooth log-density and gradient, the envelope of ``g`` there, tunables.

    ``envelope`` is the smoothed nonsmooth term the chain uses (Moreau or
    Bregman-Moreau; zero for MLA) and ``envelope_grad`` its gradient, kept so
    each step evaluates the proximal operator once. ``step_size`` is
    :math:`\gamma`, ``smoothing`` :math:`\lambda` (unused by MLA).
    """

    position: Array
    logdensity: Array
    logdensity_grad: Array
    envelope: Array
    envelope_grad: Array
    step_size: Array
    smoothing: Array
    adaptation: Optional[WindowAdaptation] = None  # MYMALA's warmup; None for the unadjusted methods


class ProximalInfo(NamedTuple):
    logdensity: Array
    n_grad: Array
    diverging: Array


class MYMALAInfo(NamedTuple):
    logdensity: Array
    accept_prob: Array
    is_accepted: Array
    n_grad: Array
    diverging: Array


# ------------------------------------------------------------------- checks


def _require_euclidean_domain(name: str, target: Target) -> None:
    if target.mirror is not None and target.mirror != euclidean():
        raise ValueError(
            f"{name} moves in all of R^d, but the target lives on the domain of the "
            f"{target.mirror!r} mirror map; use sf.bmumla / sf.mla, which stay inside it."
        )


def _bregman_prox(name: str, target: Target, mirror: MirrorMap) -> Callable[[Array, Any], Array]:
    """The nonsmooth term's left Bregman prox for ``mirror``, or a ValueError saying it has none."""
    g = target.nonsmooth
    finder = getattr(g, "bregman_prox_for", None)
    prox = finder(mirror) if callable(finder) else None
    if prox is None:
        raise ValueError(
            f"{name} needs the left Bregman proximal operator of the nonsmooth term for the "
            f"{mirror!r} mirror map, which {getattr(g, 'name', type(g).__name__)!r} does not provide "
            f"(it has one for: {', '.join(getattr(g, 'bregman_mirrors', ())) or 'none'}). Use sf.myula "
            "for a Euclidean proximal method."
        )
    return prox


def _with_domain_check(name: str, sampler: Sampler, mirror: Optional[MirrorMap]) -> Sampler:
    """Check, before any tracing, that every start lies inside the mirror map's domain."""
    base_init = sampler.init

    def init(target: Target, positions: Array, key: Array):
        positions = check_positions(target, positions)
        sampler.check_target(target)
        check_in_domain(name, resolve_mirror(name, mirror, target), positions)
        return base_init(target, positions, key)

    return sampler._replace(init=init)


# ----------------------------------------------------------- shared pieces


EnvelopeFn = Callable[[Array], tuple[Array, Array]]
# Relative mismatch of grad(grad_conj(y)) and y above which y was clamped (not rounding).
_ROUND_TRIP_RTOL = 0.25


def _evaluate(target: Target, state: ProximalState, position: Array, envelope_fn: EnvelopeFn) -> ProximalState:
    """The state at ``position`` (same tunables): one gradient and one envelope evaluation."""
    logdensity, grad = target.logdensity_and_grad(position)
    envelope, envelope_grad = envelope_fn(position)
    return state._replace(position=position, logdensity=logdensity, logdensity_grad=grad, envelope=envelope,
                          envelope_grad=envelope_grad)


def _init_state(target: Target, position: Array, envelope_fn: EnvelopeFn, step_size: float,
                smoothing: float) -> ProximalState:
    tunable = functools.partial(jnp.asarray, dtype=position.dtype)
    zero = jnp.zeros((), position.dtype)
    blank = ProximalState(position, zero, position, zero, position, tunable(step_size), tunable(smoothing))
    return _evaluate(target, blank, position, envelope_fn)


def _no_envelope(x: Array) -> tuple[Array, Array]:
    return jnp.zeros((), x.dtype), jnp.zeros_like(x)


def _undo_if_nonfinite(proposal: ProximalState, state: ProximalState,
                       extra_ok: Array = True) -> tuple[ProximalState, ProximalInfo]:
    new, diverging = undo_if_nonfinite(proposal, state, extra_ok)
    return new, ProximalInfo(new.logdensity - new.envelope, jnp.int32(1), diverging)


def _moreau(g: Any, x: Array, lam: Array) -> tuple[Array, Array]:
    """Moreau envelope ``g^lam(x)`` and its gradient ``(x - prox)/lam``."""
    p = g.prox(x, lam)
    return g.value(p) + jnp.sum((x - p) ** 2) / (2.0 * lam), (x - p) / lam


def _bregman_moreau(g: Any, prox: Callable[[Array, Any], Array], mirror: MirrorMap, x: Array,
                    lam: Array) -> tuple[Array, Array]:
    """Left Bregman-Moreau envelope ``g(p) + D_phi(p, x)/lam`` and its gradient ``H(x)(x - p)/lam``."""
    p = prox(x, lam)
    divergence = mirror.potential(p) - mirror.potential(x) - jnp.dot(mirror.grad(x), p - x)
    return g.value(p) + divergence / lam, mirror.hessian_matvec(x, x - p) / lam


def _smoothed_drift(state: ProximalState) -> Array:
    return state.logdensity_grad - state.envelope_grad


@functools.lru_cache(maxsize=None)
def _bound(kernel: Callable, **options: Any) -> Kernel:
    """``kernel`` with static ``options`` (a mirror map, compared by value; ``inner_steps``)
    fixed: the same function for equal options, so the driver's compiled programs are shared."""

    def bound_kernel(key: Array, state: ProximalState, target: Target):
        return kernel(key, state, target, **options)

    return bound_kernel


# -------------------------------------------------------------------- MYULA


def _moreau_fn(target: Target, lam: Array) -> EnvelopeFn:
    return lambda x: _moreau(target.nonsmooth, x, lam)


def myula_kernel(key: Array, state: ProximalState, target: Target) -> tuple[ProximalState, ProximalInfo]:
    r"""One MYULA step, :math:`x' = x + \gamma(\nabla\log p(x) - (x - \operatorname{prox}_{\lambda g}(x))/\lambda)
    + \sqrt{2\gamma}\xi`; undone and flagged if non-finite."""
    noise = jax.random.normal(key, state.position.shape, state.position.dtype)
    position = langevin_position(state.position, _smoothed_drift(state), state.step_size, noise)
    return _undo_if_nonfinite(_evaluate(target, state, position, _moreau_fn(target, state.smoothing)), state)


def mymala_kernel(key: Array, state: ProximalState, target: Target) -> tuple[ProximalState, MYMALAInfo]:
    """One MYMALA transition: the MYULA proposal, accepted by Metropolis-Hastings against
    ``exp(logdensity - g)`` (a proposal where ``g = +inf`` is an ordinary rejection)."""
    g = target.nonsmooth
    envelope_fn = _moreau_fn(target, state.smoothing)
    new_state, logdensity, decision = langevin_mh(
        key, state, state.step_size, lambda position: _evaluate(target, state, position, envelope_fn),
        _smoothed_drift, lambda s: s.logdensity - g.value(s.position),
    )
    return new_state, MYMALAInfo(logdensity, decision.accept_prob, decision.is_accepted, jnp.int32(1),
                                 decision.diverging)


def _euclidean_proximal(name: str, kernel: Kernel, step_size: float, smoothing: float,
                        target_accept: Optional[float] = None) -> Sampler:
    """A Euclidean proximal sampler; with ``target_accept``, its warmup adapts the step size."""
    gamma = check_positive("step_size", step_size)
    lam = check_positive("smoothing", smoothing)

    def init_one(target: Target, position: Array, key: Array) -> ProximalState:
        _require_euclidean_domain(name, target)
        state = _init_state(target, position, _moreau_fn(target, lam), gamma, lam)
        if target_accept is None:
            return state
        return state._replace(adaptation=window_adaptation_init(position, state.step_size, target_accept))

    params = {"step_size": gamma, "smoothing": lam, **({} if target_accept is None else
                                                      {"target_accept": target_accept})}
    return independent_chains(name, params, init_one, kernel,
                              None if target_accept is None else window_warmup(kernel, adapt_mass=False),
                              requires=Requirements(nonsmooth=True))


def myula(step_size: float, smoothing: float) -> Sampler:
    r"""Moreau-Yosida unadjusted Langevin algorithm (Durmus, Moulines & Pereyra 2018).

    :math:`x' = x + \gamma\nabla\log p(x) - \tfrac{\gamma}{\lambda}(x - \operatorname{prox}_{\lambda g}(x)) + \sqrt{2\gamma}\xi`.
    Its draws follow (as :math:`\gamma \to 0`) the smoothed law
    :math:`\propto \exp(\log p - g^\lambda)`, which tends to the target as
    :math:`\lambda \to 0`. The drift is Lipschitz with constant
    :math:`L_f + 1/\lambda`, so the step must stay below :math:`2/(L_f + 1/\lambda)`
    (roughly :math:`\gamma < 2\lambda`) for the scheme to be stable.

    Parameters
    ----------
    step_size
        :math:`\gamma > 0`.
    smoothing
        The Moreau-Yosida parameter :math:`\lambda > 0`.
    """
    return _euclidean_proximal("myula", myula_kernel, step_size, smoothing)


def mymala(step_size: float, smoothing: float, target_accept: float = 0.574, adapt_step_size: bool = True) -> Sampler:
    r"""MYULA proposal with a Metropolis-Hastings correction against the exact target.

    Proposal :math:`x' \sim N(x + \gamma d(x), 2\gamma I)` with the MYULA drift
    :math:`d(x) = \nabla\log p(x) - (x - \operatorname{prox}_{\lambda g}(x))/\lambda`;
    accepted with probability
    :math:`\min\{1, \pi(x')q(x\mid x')/(\pi(x)q(x'\mid x))\}`,
    :math:`\pi \propto \exp(\log p - g)`. Exact for any :math:`\gamma, \lambda > 0`
    (a proposal where :math:`g = +\infty` is rejected). During warmup each chain adapts
    :math:`\gamma` by dual averaging toward ``target_accept`` (Hoffman & Gelman 2014, as
    MALA's step; no mass: the proximal map is Euclidean).
    """
    adapts = check_bool("adapt_step_size", adapt_step_size)
    target_accept = check_probability("target_accept", target_accept)
    return _euclidean_proximal("mymala", mymala_kernel, step_size, smoothing, target_accept if adapts else None)


# ----------------------------------------------------------- mirror methods


def _mirror_step(target: Target, mirror: MirrorMap, state: ProximalState, dual_point: Array,
                 envelope_fn: EnvelopeFn) -> tuple[ProximalState, ProximalInfo]:
    """Map ``dual_point`` back to the domain; undo the step if it cannot be represented.

    A step is undone (and flagged ``diverging``) if any value is non-finite, if
    the new point is not inside the domain, or if the dual point lies beyond
    what the floating-point domain can represent: ``grad_conj`` then clamps it
    next to the boundary, where ``grad`` of the clamped point misses the dual
    point by far more than rounding (a relative error above 25 %). Chains that
    accepted such clamped points would sit on the boundary, where the drift of a
    density vanishing there is huge (e.g. ``(alpha_i - 1)/x_i`` for a Dirichlet).
    """
    proposal = _evaluate(target, state, mirror.grad_conj(dual_point), envelope_fn)
    mismatch = jnp.abs(mirror.grad(proposal.position) - dual_point)
    representable = jnp.all(mismatch <= _ROUND_TRIP_RTOL * (1.0 + jnp.abs(dual_point)))
    ok = jnp.all(jnp.isfinite(dual_point)) & mirror.in_domain(proposal.position) & representable
    return _undo_if_nonfinite(proposal, state, ok)


def mla_kernel(key: Array, state: ProximalState, target: Target,
               mirror: Optional[MirrorMap] = None) -> tuple[ProximalState, ProximalInfo]:
    r"""One MLA step, :math:`x' = \nabla\phi^*(\nabla\phi(x) + \gamma\nabla\log p(x) + \sqrt{2\gamma}S(x)\xi)`,
    under ``mirror`` (default: the target's); undone and flagged if not representable."""
    phi = resolve_mirror("mla", mirror, target)
    gamma = state.step_size
    noise = jax.random.normal(key, state.position.shape, state.position.dtype)
    x = state.position
    dual = phi.grad(x) + gamma * state.logdensity_grad + jnp.sqrt(2.0 * gamma) * phi.hessian_sqrt_matvec(x, noise)
    return _mirror_step(target, phi, state, dual, _no_envelope)


def _bregman_fn(name: str, target: Target, mirror: MirrorMap, lam: Array) -> EnvelopeFn:
    prox = _bregman_prox(name, target, mirror)
    return lambda x: _bregman_moreau(target.nonsmooth, prox, mirror, x, lam)


def bmmla_kernel(key: Array, state: ProximalState, target: Target, mirror: Optional[MirrorMap] = None,
                 inner_steps: int = 10) -> tuple[ProximalState, ProximalInfo]:
    r"""One BMMLA step: the dual gradient step on :math:`\log p - g^\phi_\lambda`, then the dual
    diffusion :math:`dY = \sqrt2 S(\nabla\phi^*(Y))dB` over time :math:`\gamma` in ``inner_steps``
    Euler-Maruyama sub-steps (one sub-step: the BMUMLA step); under ``mirror`` (default: the target's)."""
    name = "bmumla" if inner_steps == 1 else "bmmla"
    phi = resolve_mirror(name, mirror, target)
    gamma = state.step_size
    x = state.position
    dual = phi.grad(x) + gamma * _smoothed_drift(state)
    if inner_steps == 1:
        noise = jax.random.normal(key, x.shape, x.dtype)
        dual = dual + jnp.sqrt(2.0 * gamma) * phi.hessian_sqrt_matvec(x, noise)
    else:
        keys = jax.random.split(key, inner_steps)

        def substep(y: Array, sub_key: Array) -> tuple[Array, None]:
            noise = jax.random.normal(sub_key, x.shape, x.dtype)
            return y + jnp.sqrt(2.0 * gamma / inner_steps) * phi.hessian_sqrt_matvec(phi.grad_conj(y), noise), None

        dual, _ = jax.lax.scan(substep, dual, keys)
    return _mirror_step(target, phi, state, dual, _bregman_fn(name, target, phi, state.smoothing))


def bmumla_kernel(key: Array, state: ProximalState, target: Target,
                  mirror: Optional[MirrorMap] = None) -> tuple[ProximalState, ProximalInfo]:
    r"""One BMUMLA step, :math:`x' = \nabla\phi^*\big(\nabla\phi(x) + \gamma\nabla\log p(x)
    - \gamma\nabla g^\phi_\lambda(x) + \sqrt{2\gamma}S(x)\xi\big)` (BMMLA with one sub-step)."""
    return bmmla_kernel(key, state, target, mirror, inner_steps=1)


def _mirror_sampler(name: str, kernel: Kernel, params: dict, mirror: Optional[MirrorMap],
                    envelope_fn: Callable[[Target, MirrorMap], EnvelopeFn], requires: Requirements,
                    **options: Any) -> Sampler:
    gamma, lam = params["step_size"], params.get("smoothing", 0.0)

    def init_one(target: Target, position: Array, key: Array) -> ProximalState:
        phi = resolve_mirror(name, mirror, target)
        return _init_state(target, position, envelope_fn(target, phi), gamma, lam)

    recorded = {**params, "mirror": "target's" if mirror is None else repr(mirror), **options}
    bound = _bound(kernel, mirror=mirror, **options)
    sampler = independent_chains(name, recorded, init_one, bound, requires=requires)
    return _with_domain_check(name, sampler, mirror)


def _check_mirror_argument(mirror: Any) -> Optional[MirrorMap]:
    return None if mirror is None else check_mirror(mirror)


def mla(step_size: float, mirror: Optional[MirrorMap] = None) -> Sampler:
    r"""Mirror-Langevin algorithm (Hsieh et al. 2018; Zhang et al. 2020) for a smooth target.

    :math:`x' = \nabla\phi^*(\nabla\phi(x) + \gamma\nabla\log p(x) + \sqrt{2\gamma}S(x)\xi)`,
    :math:`S S^\top = \nabla^2\phi(x)`. Draws stay in the mirror map's domain.

    Parameters
    ----------
    step_size
        :math:`\gamma > 0`.
    mirror
        A :class:`~stochflow.geometry.MirrorMap`; default: the target's.
    """
    gamma = check_positive("step_size", step_size)
    mirror = _check_mirror_argument(mirror)
    return _mirror_sampler("mla", mla_kernel, {"step_size": gamma}, mirror, lambda target, phi: _no_envelope,
                           Requirements(smooth=True, mirror=mirror is None))


def _bregman_sampler(name: str, step_size: float, smoothing: float, mirror: Any, **options: Any) -> Sampler:
    gamma = check_positive("step_size", step_size)
    lam = check_positive("smoothing", smoothing)
    mirror = _check_mirror_argument(mirror)
    kernel = bmmla_kernel if options else bmumla_kernel
    return _mirror_sampler(name, kernel, {"step_size": gamma, "smoothing": lam}, mirror,
                           lambda target, phi: _bregman_fn(name, target, phi, lam),
                           Requirements(nonsmooth=True, mirror=mirror is None), **options)


def bmumla(step_size: float, smoothing: float, mirror: Optional[MirrorMap] = None) -> Sampler:
    r"""Bregman-Moreau unadjusted mirror-Langevin algorithm (Lau & Liu, ICML 2022), left envelope.

    :math:`x' = \nabla\phi^*\big(\nabla\phi(x) + \gamma\nabla\log p(x)
    - \tfrac{\gamma}{\lambda}\nabla^2\phi(x)(x - \operatorname{prox}^\phi_{\lambda g}(x))
    + \sqrt{2\gamma}S(x)\xi\big)`. Targets, as :math:`\gamma \to 0`, the smoothed law
    :math:`\propto \exp(\log p - g^\phi_\lambda)`, which tends to the target as
    :math:`\lambda \to 0`. Needs the nonsmooth term's Bregman prox for the mirror map.

    Parameters
    ----------
    step_size
        :math:`\gamma > 0`.
    smoothing
        The Bregman-Moreau parameter :math:`\lambda > 0`.
    mirror
        A :class:`~stochflow.geometry.MirrorMap`; default: the target's.
    """
    return _bregman_sampler("bmumla", step_size, smoothing, mirror)


def bmmla(step_size: float, smoothing: float, mirror: Optional[MirrorMap] = None, inner_steps: int = 10) -> Sampler:
    r"""Bregman-Moreau mirror-Langevin algorithm (Lau & Liu 2022 on Ahn & Chewi 2021's MLA).

    Gradient step on :math:`\log p - g^\phi_\lambda` in the dual space, then the
    dual diffusion :math:`dY = \sqrt2[\nabla^2\phi^*(Y)]^{-1/2}dB` for time
    :math:`\gamma`, simulated by ``inner_steps`` Euler-Maruyama sub-steps (no
    gradient evaluations). ``inner_steps=1`` gives BMUMLA.

    Parameters
    ----------
    step_size, smoothing, mirror
        As :func:`bmumla`.
    inner_steps
        Sub-steps of the dual diffusion per step (>= 1).
    """
    return _bregman_sampler("bmmla", step_size, smoothing, mirror,
                            inner_steps=check_int("inner_steps", inner_steps, 1))
