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
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..geometry.mirrors import MirrorMap
from ..target import Target
from ..kernels.checks import check_in_domain, check_positions, check_positive
from .base import Sampler, independent_chains

Array = jax.Array

__all__ = [
    "ProximalState",
    "ProximalInfo",
    "MYMALAInfo",
    "myula",
    "mymala",
    "mla",
    "bmumla",
    "bmmla",
]


class ProximalState(NamedTuple):
    """One chain: position, smooth log-density and gradient, and the envelope of ``g`` there.

    ``envelope`` is the smoothed nonsmooth term the chain uses (Moreau or
    Bregman-Moreau; zero for MLA) and ``envelope_grad`` its gradient, kept so
    each step evaluates the proximal operator once.
    """

    position: Array
    logdensity: Array
    logdensity_grad: Array
    envelope: Array
    envelope_grad: Array


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


def _require_nonsmooth(name: str, target: Target) -> Any:
    if target.nonsmooth is None:
        raise ValueError(
            f"{name} samples exp(logdensity - g) for a nonsmooth term g, but the target has none; "
            "pass sf.Target(..., nonsmooth=g) (e.g. sf.geometry.l1(1.0)), or use sf.ula / sf.mla "
            "for a smooth target."
        )
    return target.nonsmooth


def _require_euclidean_domain(name: str, target: Target) -> None:
    if target.mirror is not None and target.mirror.name != "euclidean":
        raise ValueError(
            f"{name} moves in all of R^d, but the target lives on the domain of the "
            f"{target.mirror.name!r} mirror map; use sf.bmumla / sf.mla, which stay inside it."
        )


def _check_mirror_argument(mirror: Any) -> Optional[MirrorMap]:
    if mirror is not None and not isinstance(mirror, MirrorMap):
        raise TypeError(
            f"mirror must be a mirror map from sf.geometry (e.g. sf.geometry.log_barrier(0.0, 1.0)), "
            f"got {type(mirror).__name__}."
        )
    return mirror


def _resolve_mirror(name: str, mirror: Optional[MirrorMap], target: Target) -> MirrorMap:
    chosen = mirror if mirror is not None else target.mirror
    if chosen is None:
        raise ValueError(
            f"{name} needs a mirror map: pass {name}(..., mirror=sf.geometry.log_barrier(...)) "
            "or build the target with sf.Target(..., mirror=...)."
        )
    if mirror is not None and target.mirror is not None and mirror.name != target.mirror.name:
        raise ValueError(
            f"{name} was given the {mirror.name!r} mirror map but the target lives on the domain of "
            f"{target.mirror.name!r}; use the target's map (leave mirror=None)."
        )
    return chosen


def _with_domain_check(name: str, sampler: Sampler, mirror_of: Callable[[Target], MirrorMap]) -> Sampler:
    """Check, before any tracing, that every start lies inside the mirror map's domain."""
    base_init = sampler.init

    def init(target: Target, positions: Array, key: Array):
        positions = check_positions(target, positions)
        check_in_domain(name, mirror_of(target), positions)
        return base_init(target, positions, key)

    return sampler._replace(init=init)


# ----------------------------------------------------------- shared pieces


EnvelopeFn = Callable[[Array], tuple[Array, Array]]
# Relative mismatch of grad(grad_conj(y)) and y above which y was clamped (not rounding).
_ROUND_TRIP_RTOL = 0.25


def _state(target: Target, position: Array, envelope_fn: EnvelopeFn) -> ProximalState:
    logdensity, grad = target.logdensity_and_grad(position)
    envelope, envelope_grad = envelope_fn(position)
    return ProximalState(position, logdensity, grad, envelope, envelope_grad)


def _no_envelope(x: Array) -> tuple[Array, Array]:
    return jnp.zeros((), x.dtype), jnp.zeros_like(x)


def _accept_if_finite(proposal: ProximalState, state: ProximalState, extra_ok: Array = True):
    """Keep ``proposal`` if all its values are finite (and ``extra_ok``), else undo the step."""
    ok = _finite(*proposal) & extra_ok
    new = _keep_if(ok, proposal, state)
    return new, ProximalInfo(new.logdensity - new.envelope, jnp.int32(1), ~ok)


def _finite(*arrays: Array) -> Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in arrays]))


def _keep_if(ok: Array, new: ProximalState, old: ProximalState) -> ProximalState:
    return jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, old)


def _moreau(g: Any, x: Array, lam: float) -> tuple[Array, Array]:
    """Moreau envelope ``g^lam(x)`` and its gradient ``(x - prox)/lam``."""
    p = g.prox(x, lam)
    return g.value(p) + jnp.sum((x - p) ** 2) / (2.0 * lam), (x - p) / lam


def _bregman_moreau(g: Any, mirror: MirrorMap, x: Array, lam: float) -> tuple[Array, Array]:
    """Left Bregman-Moreau envelope ``g(p) + D_phi(p, x)/lam`` and its gradient ``H(x)(x - p)/lam``."""
    p = g.bregman_prox(x, lam, mirror)
    divergence = mirror.potential(p) - mirror.potential(x) - jnp.dot(mirror.grad(x), p - x)
    return g.value(p) + divergence / lam, mirror.hessian_matvec(x, x - p) / lam


# -------------------------------------------------------------------- MYULA


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
    gamma = check_positive("step_size", step_size)
    lam = check_positive("smoothing", smoothing)

    def envelope_fn(target: Target) -> EnvelopeFn:
        return lambda x: _moreau(target.nonsmooth, x, lam)

    def init_one(target: Target, position: Array, key: Array) -> ProximalState:
        _require_nonsmooth("myula", target)
        _require_euclidean_domain("myula", target)
        return _state(target, position, envelope_fn(target))

    def step_one(key: Array, state: ProximalState, target: Target):
        noise = jax.random.normal(key, state.position.shape, state.position.dtype)
        drift = state.logdensity_grad - state.envelope_grad
        position = state.position + gamma * drift + jnp.sqrt(2.0 * gamma) * noise
        return _accept_if_finite(_state(target, position, envelope_fn(target)), state)

    return independent_chains("myula", {"step_size": gamma, "smoothing": lam}, init_one, step_one)


def mymala(step_size: float, smoothing: float) -> Sampler:
    r"""MYULA proposal with a Metropolis-Hastings correction against the exact target.

    Proposal :math:`x' \sim N(x + \gamma d(x), 2\gamma I)` with the MYULA drift
    :math:`d(x) = \nabla\log p(x) - (x - \operatorname{prox}_{\lambda g}(x))/\lambda`;
    accepted with probability
    :math:`\min\{1, \pi(x')q(x\mid x')/(\pi(x)q(x'\mid x))\}`,
    :math:`\pi \propto \exp(\log p - g)`. Exact for any :math:`\gamma, \lambda > 0`
    (a proposal where :math:`g = +\infty` is rejected).
    """
    gamma = check_positive("step_size", step_size)
    lam = check_positive("smoothing", smoothing)

    def envelope_fn(target: Target) -> EnvelopeFn:
        return lambda x: _moreau(target.nonsmooth, x, lam)

    def drift(state: ProximalState) -> Array:
        return state.logdensity_grad - state.envelope_grad

    def init_one(target: Target, position: Array, key: Array) -> ProximalState:
        _require_nonsmooth("mymala", target)
        _require_euclidean_domain("mymala", target)
        return _state(target, position, envelope_fn(target))

    def step_one(key: Array, state: ProximalState, target: Target):
        g = target.nonsmooth
        noise_key, accept_key = jax.random.split(key)
        noise = jax.random.normal(noise_key, state.position.shape, state.position.dtype)
        position = state.position + gamma * drift(state) + jnp.sqrt(2.0 * gamma) * noise
        proposal = _state(target, position, envelope_fn(target))
        backward = state.position - proposal.position - gamma * drift(proposal)
        current_log_target = state.logdensity - g.value(state.position)
        proposal_log_target = proposal.logdensity - g.value(proposal.position)
        log_ratio = (
            proposal_log_target - current_log_target - jnp.sum(backward**2) / (4.0 * gamma) + 0.5 * jnp.sum(noise**2)
        )
        finite = _finite(proposal.position, proposal.logdensity, proposal.logdensity_grad, backward)
        # g = +inf (outside an indicator's set) gives log_ratio = -inf: a plain rejection.
        log_ratio = jnp.where(finite & ~jnp.isnan(log_ratio), log_ratio, -jnp.inf)
        accept_prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
        accepted = jnp.log(jax.random.uniform(accept_key, dtype=log_ratio.dtype)) < log_ratio
        new = _keep_if(accepted, proposal, state)
        logdensity = jnp.where(accepted, proposal_log_target, current_log_target)
        return new, MYMALAInfo(logdensity, accept_prob, accepted, jnp.int32(1), ~finite)

    return independent_chains("mymala", {"step_size": gamma, "smoothing": lam}, init_one, step_one)


# ----------------------------------------------------------- mirror methods


def _mirror_step(
    target: Target, mirror: MirrorMap, state: ProximalState, dual_point: Array, envelope_fn: EnvelopeFn
) -> tuple[ProximalState, ProximalInfo]:
    """Map ``dual_point`` back to the domain; undo the step if it cannot be represented.

    A step is undone (and flagged ``diverging``) if any value is non-finite, if
    the new point is not inside the domain, or if the dual point lies beyond
    what the floating-point domain can represent: ``grad_conj`` then clamps it
    next to the boundary, where ``grad`` of the clamped point misses the dual
    point by far more than rounding (a relative error above 25 %). Chains that
    accepted such clamped points would sit on the boundary, where the drift of a
    density vanishing there is huge (e.g. ``(alpha_i - 1)/x_i`` for a Dirichlet).
    """
    proposal = _state(target, mirror.grad_conj(dual_point), envelope_fn)
    mismatch = jnp.abs(mirror.grad(proposal.position) - dual_point)
    representable = jnp.all(mismatch <= _ROUND_TRIP_RTOL * (1.0 + jnp.abs(dual_point)))
    ok = jnp.all(jnp.isfinite(dual_point)) & mirror.in_domain(proposal.position) & representable
    return _accept_if_finite(proposal, state, ok)


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

    def init_one(target: Target, position: Array, key: Array) -> ProximalState:
        if target.nonsmooth is not None:
            raise ValueError(
                "mla samples a smooth target, but this one has a nonsmooth term; use sf.bmumla or "
                "sf.bmmla (Bregman-Moreau smoothing) instead."
            )
        _resolve_mirror("mla", mirror, target)
        return _state(target, position, _no_envelope)

    def step_one(key: Array, state: ProximalState, target: Target):
        phi = _resolve_mirror("mla", mirror, target)
        noise = jax.random.normal(key, state.position.shape, state.position.dtype)
        x = state.position
        dual = phi.grad(x) + gamma * state.logdensity_grad + jnp.sqrt(2.0 * gamma) * phi.hessian_sqrt_matvec(x, noise)
        return _mirror_step(target, phi, state, dual, _no_envelope)

    sampler = independent_chains("mla", {"step_size": gamma, "mirror": _mirror_name(mirror)}, init_one, step_one)
    return _with_domain_check("mla", sampler, lambda target: _resolve_mirror("mla", mirror, target))


def _mirror_name(mirror: Optional[MirrorMap]) -> str:
    return "target's" if mirror is None else mirror.name


def _bregman_sampler(name: str, gamma: float, lam: float, mirror: Optional[MirrorMap], inner_steps: int) -> Sampler:
    def resolve(target: Target) -> tuple[Any, MirrorMap]:
        g = _require_nonsmooth(name, target)
        phi = _resolve_mirror(name, mirror, target)
        if not (callable(getattr(g, "supports", None)) and g.supports(phi)):
            raise ValueError(
                f"{name} needs the left Bregman proximal operator of the nonsmooth term for the "
                f"{phi.name!r} mirror map, which {getattr(g, 'name', type(g).__name__)!r} does not provide "
                f"(it supports: {', '.join(getattr(g, 'bregman_mirrors', ())) or 'none'}). Use sf.myula "
                "for a Euclidean proximal method."
            )
        return g, phi

    def envelope_fn(target: Target) -> EnvelopeFn:
        g, phi = resolve(target)
        return lambda x: _bregman_moreau(g, phi, x, lam)

    def init_one(target: Target, position: Array, key: Array) -> ProximalState:
        return _state(target, position, envelope_fn(target))

    def step_one(key: Array, state: ProximalState, target: Target):
        _, phi = resolve(target)
        x = state.position
        dual = phi.grad(x) + gamma * (state.logdensity_grad - state.envelope_grad)
        if inner_steps == 1:
            noise = jax.random.normal(key, x.shape, x.dtype)
            dual = dual + jnp.sqrt(2.0 * gamma) * phi.hessian_sqrt_matvec(x, noise)
        else:
            keys = jax.random.split(key, inner_steps)
            # Dual diffusion dY = sqrt(2) S(grad phi*(Y)) dB over time gamma, Euler-Maruyama.
            def substep(y: Array, sub_key: Array) -> tuple[Array, None]:
                noise = jax.random.normal(sub_key, x.shape, x.dtype)
                return y + jnp.sqrt(2.0 * gamma / inner_steps) * phi.hessian_sqrt_matvec(phi.grad_conj(y), noise), None

            dual, _ = jax.lax.scan(substep, dual, keys)
        return _mirror_step(target, phi, state, dual, envelope_fn(target))

    params = {"step_size": gamma, "smoothing": lam, "mirror": _mirror_name(mirror)}
    if name == "bmmla":
        params["inner_steps"] = inner_steps
    sampler = independent_chains(name, params, init_one, step_one)
    return _with_domain_check(name, sampler, lambda target: _resolve_mirror(name, mirror, target))


def bmumla(step_size: float, smoothing: float, mirror: Optional[MirrorMap] = None) -> Sampler:
    r"""Bregman-Moreau unadjusted mirror-Langevin algorithm (Lau & Liu, ICML 2022), left envelope.

    :math:`x' = \nabla\phi^*\big(\nabla\phi(x) + \gamma\nabla\log p(x)
    - \tfrac{\gamma}{\lambda}\nabla^2\phi(x)(x - \operatorname{prox}^\phi_{\lambda g}(x))
    + \sqrt{2\gamma}S(x)\xi\big)`. Targets, as :math:`\gamma \to 0`, the smoothed law
    :math:`\propto \exp(\log p - g^\phi_\lambda)`, which tends to the target as
    :math:`\lambda \to 0`. Needs ``target.nonsmooth.bregman_prox`` for the mirror map.

    Parameters
    ----------
    step_size
        :math:`\gamma > 0`.
    smoothing
        The Bregman-Moreau parameter :math:`\lambda > 0`.
    mirror
        A :class:`~stochflow.geometry.MirrorMap`; default: the target's.
    """
    gamma = check_positive("step_size", step_size)
    lam = check_positive("smoothing", smoothing)
    return _bregman_sampler("bmumla", gamma, lam, _check_mirror_argument(mirror), inner_steps=1)


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
    gamma = check_positive("step_size", step_size)
    lam = check_positive("smoothing", smoothing)
    if isinstance(inner_steps, bool) or not isinstance(inner_steps, (int, np.integer)) or inner_steps < 1:
        raise ValueError(f"inner_steps must be an int >= 1, got {inner_steps!r}.")
    return _bregman_sampler("bmmla", gamma, lam, _check_mirror_argument(mirror), inner_steps=int(inner_steps))
