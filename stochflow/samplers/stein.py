r"""Stein variational samplers: SVGD, mirrored SVGD (MSVGD) and Stein variational mirror descent (SVMD).

All three move a set of ``n`` interacting particles deterministically; the whole set is the
state, so ``init``/``step`` act on it at once (they are not independent chains).

SVGD (Liu & Wang, NeurIPS 2016)
-------------------------------
.. math::

    x_i \leftarrow x_i + \epsilon\,\phi(x_i),\qquad
    \phi(x) = \frac1n\sum_{j=1}^n \big[k(x_j, x)\,\nabla\log p(x_j) + \nabla_{x_j} k(x_j, x)\big],

the steepest descent direction of KL(q || p) in the unit ball of the kernel's RKHS. As in the
paper's code, ``phi`` is handed to an optimiser (here an optax ``GradientTransformation``, fed
``-phi`` as the gradient of a loss): by default "AdaGrad with momentum",
``hist_0 = g_0^2``, ``hist_t = 0.9 hist_{t-1} + 0.1 g_t^2``, ``x += step_size * phi / (1e-6 + sqrt(hist))``
(:func:`adagrad_momentum`).

Mirrored Stein operators (Shi, Liu & Mackey, ICLR 2022)
-------------------------------------------------------
A mirror map :math:`\psi` (``sf.geometry``) takes a particle :math:`\theta` in a constrained domain
to :math:`\eta = \nabla\psi(\theta) \in \mathbb{R}^d`; the particles move in the dual space and
come back by :math:`\theta = \nabla\psi^*(\eta)`, so they never leave the domain:

.. math::

    \eta_i \leftarrow \eta_i + \epsilon\, g(\theta_i),\qquad \theta_i = \nabla\psi^*(\eta_i).

With :math:`H(\theta) = \nabla^2\psi(\theta)` and the dual score
:math:`\nabla_\eta \log p_H(\eta) = H^{-1}\nabla\log p(\theta) + \nabla\cdot H^{-1}(\theta)`
(row-wise divergence; :math:`p_H` is the density of :math:`\eta`):

* **MSVGD**: :math:`g(\theta) = \frac1n\sum_l \big[k(\theta_l, \theta)\,\nabla_\eta\log p_H(\eta_l)
  + H(\theta_l)^{-1}\nabla_{\theta_l} k(\theta_l, \theta)\big]` with a scalar kernel on
  :math:`\theta`.
* **SVMD**: the same operator with the adaptive matrix kernel
  :math:`K_t(\theta, \theta') = \frac1n\sum_m k^{1/2}(\theta, \theta_m)\,H(\theta_m)\,k^{1/2}(\theta_m, \theta')`,
  where :math:`k^{1/2}(\theta, \theta') = \sum_i \sqrt{\mu_i}\,u_i(\theta)u_i(\theta')` comes from the
  eigenpairs of the Gram matrix :math:`G + 10^{-5} I` (:math:`\mu_i = \lambda_i / n`,
  :math:`u_i = \sqrt n\,` eigenvector at the particles, the Nyström extension for its gradient),
  keeping the leading eigenvalues that cover ``eigen_threshold`` of the spectrum:
  :math:`g(\theta) = \frac1n\sum_l \big[K_t(\theta, \theta_l) H(\theta_l)^{-1}\nabla\log p(\theta_l)
  + \nabla_{\theta_l}\cdot(K_t(\theta, \theta_l) H(\theta_l)^{-1})\big]`.

The default optimiser of both is RMSProp (decay 0.9, epsilon 1e-7 outside the square root), the
``tf.keras`` optimiser of the paper's code (github.com/thjashin/mirror-stein-samplers).

Kernels and bandwidth
---------------------
``kernel="rbf"``: :math:`k = \exp(-\|x-y\|^2 / (2h^2))`; ``kernel="imq"``:
:math:`k = (1 + \|x-y\|^2/h^2)^{-1/2}` (the radial kernels of :mod:`stochflow.kernels.stein`).
``bandwidth=None`` (default) recomputes :math:`h` from the particles at every step (median
heuristic, ``med`` = median distance between distinct particles, exact up to 1,000 particles and
taken on 1,000 evenly spaced particles above that):

* RBF: :math:`h^2 = \mathrm{med}^2 / (2\log(n+1))`, i.e. :math:`k = \exp(-\|x-y\|^2 \log(n+1)/\mathrm{med}^2)`,
  so a particle's kernel weights sum to about one (Liu & Wang's code);
* IMQ: :math:`h = \mathrm{med}` (Shi, Liu & Mackey's code).

A positive float fixes :math:`h`. The mirrored samplers put the kernel on :math:`\theta`.

Cost and memory
---------------
SVGD and MSVGD form the pairwise terms in row blocks (``block_size`` rows against all particles,
a ``lax.map`` over blocks), so memory is :math:`O(\text{block}\cdot n + n d)`: 20,000 particles in
50-d fit easily. Time is :math:`O(n^2 d)` per step, all in matrix products. MSVGD uses the
structure of the inverse Hessian (diagonal for ``euclidean``/``log_barrier``/``hyperbolic_entropy``,
diagonal minus rank one for ``entropic_simplex``); another map falls back to dense
:math:`d\times d` inverse Hessians, :math:`O(n^2 d^2)`. SVMD needs an eigendecomposition of the
:math:`n\times n` Gram matrix: :math:`O(n^3 + n^2 d)` time and :math:`O(n^2 + n^2 d)` memory, meant
for hundreds to a few thousand particles (as in the paper, n = 50).

Bookkeeping
-----------
Each step evaluates the log-density and its gradient once per particle (``n_grad = 1``) at the
new positions (the state caches them). A particle whose new position, log-density or gradient is
not finite is put back where it was (the optimiser state keeps its update) and marked
``diverging``. ``info.bandwidth`` records :math:`h` (the same for every particle).

Traces: ``trace.positions[i]`` is the path of particle ``i``; ArviZ sees particles as chains and
recorded steps as draws. The particles are neither independent nor Markov chains in their own
right, so R-hat and ESS do not apply: judge convergence by the particle set at the last draw
(e.g. ``sf.diagnostics.ksd`` or ``mmd``) and by the change between draws.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..kernels.stein import (
    KERNELS,
    KernelParams,
    default_block_size,
    map_row_blocks,
    median_distance,
    radial_profile,
    squared_distances,
)
from ..geometry.mirrors import resolve_mirror
from ..kernels.checks import check_in_domain, check_positions, check_positive
from ..kernels.finite import finite_rows, keep_rows
from ..kernels.particles import ALL_PARTICLES, ParticleAxis, all_particles, map_particles, map_rows
from ..target import Target, check_mirror
from .base import Requirements, Sampler

Array = jax.Array

__all__ = [
    "SteinState",
    "MirrorSteinState",
    "SteinInfo",
    "svgd",
    "msvgd",
    "svmd",
    "adagrad_momentum",
    "svgd_direction",
    "mirrored_direction",
    "svmd_direction",
]

# Gram-matrix jitter of the SVMD eigendecomposition (as in the paper's code).
_SVMD_JITTER = 1e-5


class SteinState(NamedTuple):
    """State of SVGD: the particle set, its cached log-densities and scores, the optimiser state."""

    position: Array  # (n, d)
    logdensity: Array  # (n,)
    logdensity_grad: Array  # (n, d)
    opt_state: Any


class MirrorSteinState(NamedTuple):
    """State of MSVGD/SVMD: primal particles, their dual points, caches and the optimiser state."""

    position: Array  # (n, d), inside the mirror map's domain
    dual: Array  # (n, d), grad psi(position)
    logdensity: Array  # (n,)
    logdensity_grad: Array  # (n, d)
    opt_state: Any


class SteinInfo(NamedTuple):
    logdensity: Array  # (n,)
    n_grad: Array  # (n,) int32, always 1
    diverging: Array  # (n,) bool
    bandwidth: Array  # (n,) the kernel bandwidth h of this step (the same for every particle)


# --------------------------------------------------------------------------- optimiser


class AdagradMomentumState(NamedTuple):
    count: Array
    hist: Any


def adagrad_momentum(alpha: float = 0.9, fudge: float = 1e-6) -> optax.GradientTransformation:
    r"""Liu & Wang's "AdaGrad with momentum" scaling, as an optax transformation.

    ``hist_0 = g_0^2``, ``hist_t = alpha hist_{t-1} + (1 - alpha) g_t^2``, update
    ``g / (fudge + sqrt(hist))``. (``optax.scale_by_rms`` starts from 0 or a constant, not from
    ``g_0^2``, so it is not the same on early steps.) Chain it with ``optax.scale(-step_size)``.
    """

    def init(params):
        return AdagradMomentumState(jnp.zeros((), jnp.int32), jax.tree_util.tree_map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        first = state.count == 0
        hist = jax.tree_util.tree_map(
            lambda h, g: jnp.where(first, g**2, alpha * h + (1.0 - alpha) * g**2), state.hist, updates
        )
        scaled = jax.tree_util.tree_map(lambda g, h: g / (fudge + jnp.sqrt(h)), updates, hist)
        return scaled, AdagradMomentumState(state.count + 1, hist)

    return optax.GradientTransformation(init, update)


# optax factories whose update acts on each particle's coordinates alone (no norm or mean over
# the particle set), so a device may update its own particles: SVGD is then shard-local.
_PER_PARTICLE_FACTORIES = (optax.adam, optax.adamw, optax.adagrad, optax.rmsprop, optax.sgd)


class _Optimizer(NamedTuple):
    transform: optax.GradientTransformation
    recorded: dict
    per_particle: bool  # the update of one particle depends on that particle alone


def _resolve_optimizer(step_size: Any, optimizer: Any, default: Callable[[float], Any]) -> _Optimizer:
    """The optax optimiser, what to record of it, and whether its update is per particle."""
    if optimizer is None:
        if step_size is None:
            raise ValueError("step_size is required when no optimizer is given.")
        step = check_positive("step_size", step_size)
        return _Optimizer(default(step), {"step_size": step}, True)
    if isinstance(optimizer, optax.GradientTransformation):
        if step_size is not None:
            raise ValueError(
                "an optax optimizer carries its own learning rate: pass step_size=None with "
                "optimizer=optax.adam(1e-2), or pass the factory (optimizer=optax.adam) with step_size."
            )
        return _Optimizer(optimizer, {"optimizer": repr(optimizer)[:80]}, False)
    if callable(optimizer):
        if step_size is None:
            raise ValueError(f"optimizer={optimizer!r} is a factory; give step_size for its learning rate.")
        step = check_positive("step_size", step_size)
        built = optimizer(step)
        if not isinstance(built, optax.GradientTransformation):
            raise TypeError(f"optimizer(step_size) must return an optax GradientTransformation, got {type(built).__name__}.")
        recorded = {"step_size": step, "optimizer": getattr(optimizer, "__name__", repr(optimizer))}
        return _Optimizer(built, recorded, optimizer in _PER_PARTICLE_FACTORIES)
    raise TypeError(
        f"optimizer must be None, an optax GradientTransformation or a factory step_size -> "
        f"GradientTransformation (e.g. optax.adam), got {type(optimizer).__name__}."
    )


def _optimizer_step(optimizer: _Optimizer, phi: Array, opt_state: Any, positions: Array,
                    axis: ParticleAxis = ALL_PARTICLES) -> tuple[Array, Any]:
    """The optimiser's update for the ascent direction ``phi`` (it minimises, so gets ``-phi``).

    When per-particle work runs one particle at a time and the update is per particle, it is
    applied row by row too: leaves of the optimiser state with a particle axis are split by
    row, the others (a step counter) are shared and come out the same from every row."""
    if not (optimizer.per_particle and axis.loop):
        return optimizer.transform.update(-phi, opt_state, positions)
    n = positions.shape[0]
    leaves, treedef = jax.tree_util.tree_flatten(opt_state)
    by_row = [np.ndim(leaf) > 0 and np.shape(leaf)[0] == n for leaf in leaves]
    shared = [leaf for leaf, row in zip(leaves, by_row) if not row]

    def one(direction, position, row_leaves):
        rows, common = iter(row_leaves), iter(shared)
        state = treedef.unflatten([next(rows) if row else next(common) for row in by_row])
        update, new_state = optimizer.transform.update(-direction, state, position)
        new_leaves = jax.tree_util.tree_leaves(new_state)
        return update, [leaf for leaf, row in zip(new_leaves, by_row) if row], \
            [leaf for leaf, row in zip(new_leaves, by_row) if not row]

    row_leaves = [leaf for leaf, row in zip(leaves, by_row) if row]
    updates, new_rows, new_shared = map_particles(one, phi, positions, row_leaves, axis=axis)
    rows, common = iter(new_rows), iter(leaf[0] for leaf in new_shared)
    return updates, treedef.unflatten([next(rows) if row else next(common) for row in by_row])


def _svgd_default_optimizer(step: float) -> optax.GradientTransformation:
    return optax.chain(adagrad_momentum(0.9, 1e-6), optax.scale(-step))


def _rmsprop(step: float) -> optax.GradientTransformation:
    return optax.rmsprop(step, decay=0.9, eps=1e-7, eps_in_sqrt=False)


# --------------------------------------------------------------------------- kernels


def _check_kernel_choice(kernel: Any, bandwidth: Any) -> Optional[float]:
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}.")
    if bandwidth is None:
        return None
    return check_positive("bandwidth", bandwidth)


def _check_block(block_size: Any) -> Optional[int]:
    if block_size is None:
        return None
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be a positive int or None, got {block_size!r}.")
    return int(block_size)


def stein_bandwidth(kernel: str, positions: Array, bandwidth: Optional[float]) -> Array:
    """The bandwidth ``h`` of this step: the fixed one, or the median heuristic of the module docstring."""
    if bandwidth is not None:
        return jnp.asarray(bandwidth, positions.dtype)
    n = positions.shape[0]
    if n < 2:
        return jnp.ones((), positions.dtype)
    med = median_distance(positions)
    med = jnp.where(med > 0, med, 1.0)  # all particles at one point: any h works
    if kernel == "rbf":
        return med / jnp.sqrt(2.0 * math.log(n + 1.0))
    return med


def _kernel_params(h: Array) -> KernelParams:
    return KernelParams(h, jnp.ones((), h.dtype), jnp.asarray(-0.5, h.dtype))


# --------------------------------------------------------------------------- directions


def _diag_rank_one_factors(mirror: Any) -> Optional[Callable[[Array], tuple[Array, Array]]]:
    """``x -> (a, b)`` with ``H(x)^{-1} v = a * v - b (b . v)``, for the maps that have that form."""
    if mirror is None:
        return lambda x: (jnp.ones_like(x), jnp.zeros_like(x))
    return mirror.inverse_hessian_factors


def mirrored_direction(
    kernel: str,
    positions: Array,
    dual_scores: Array,
    params: KernelParams,
    mirror: Any = None,
    block_size: Optional[int] = None,
    rows: Optional[Array] = None,
) -> Array:
    r"""The MSVGD direction :math:`g(\theta_k)` for every particle ``k`` of ``rows``
    (default: every particle of ``positions``), in row blocks.

    :math:`g_k = \frac1n\sum_l [k_{lk} t_l + 2\phi'_{lk} H_l^{-1}(\theta_l - \theta_k)]`, ``t`` the dual
    scores, ``l`` over all ``n`` particles. With ``mirror=None`` (``H = I``, ``t = grad log p``) it is
    the SVGD direction. ``rows`` may be a subset, e.g. one device's particles in a sharded run.
    """
    n, d = positions.shape
    centre = jnp.mean(positions, axis=0)
    x = positions - centre  # distances are unchanged; H^{-1} acts on the uncentred points
    factors = _diag_rank_one_factors(mirror)
    if factors is not None:
        a, b = jax.vmap(factors)(positions)
        own = a * positions - b * jnp.sum(b * positions, -1, keepdims=True)  # H_l^{-1} theta_l

        def pair_term(first, rows):  # sum_l phi'_kl H_l^{-1} theta_k
            return rows * (first @ a) - (first * (rows @ b.T)) @ b

    else:
        eye = jnp.eye(d, dtype=positions.dtype)
        dense = jax.vmap(lambda p: jax.vmap(lambda e: mirror.inverse_hessian_matvec(p, e))(eye))(positions)
        own = jnp.einsum("lab,lb->la", dense, positions)
        flat = dense.reshape(n, d * d)

        def pair_term(first, rows):
            return jnp.einsum("kab,kb->ka", (first @ flat).reshape(-1, d, d), rows)

    def block(index, x_rows, theta_rows):
        sq = squared_distances(x_rows, x)
        value, first, _ = radial_profile(kernel, sq, params)
        return value @ dual_scores + 2.0 * (first @ own - pair_term(first, theta_rows))

    rows = positions if rows is None else rows
    size = default_block_size(n, n) if block_size is None else min(block_size, n)
    return map_row_blocks(block, (rows - centre, rows), size) / n


def svgd_direction(
    kernel: str,
    positions: Array,
    scores: Array,
    params: KernelParams,
    block_size: Optional[int] = None,
    rows: Optional[Array] = None,
) -> Array:
    r"""The SVGD direction :math:`\phi(x_i)` for every particle of ``rows`` (default: all), in row
    blocks of ``block_size``."""
    return mirrored_direction(kernel, positions, scores, params, None, block_size, rows)


def svmd_direction(
    kernel: str,
    positions: Array,
    scores: Array,
    params: KernelParams,
    mirror: Any,
    eigen_threshold: float,
) -> Array:
    r"""The SVMD direction :math:`g(\theta_k)` (module docstring) for every particle.

    With ``U`` the ``(n, r)`` eigenfunctions at the particles, ``s = sqrt(mu)``,
    :math:`k^{1/2} = U\,\mathrm{diag}(s)\,U^\top`, and per particle :math:`t_l = H_l^{-1}\nabla\log p_l
    + \nabla\cdot H_l^{-1}`, :math:`A_i = \sum_l H_l^{-1}\nabla u_i(\theta_l)`:
    :math:`w = k^{1/2}T + U\mathrm{diag}(s)A` and :math:`g = n^{-2} k^{1/2}(H w)`.
    Eigenvalues beyond ``eigen_threshold`` of the spectrum are masked out (shapes stay static).
    """
    n, d = positions.shape
    x = positions - jnp.mean(positions, axis=0)
    sq = squared_distances(x, x)
    gram, first, _ = radial_profile(kernel, sq, params)
    eigval, eigvec = jnp.linalg.eigh(gram + _SVMD_JITTER * jnp.eye(n, dtype=gram.dtype))
    # Keep the leading eigenvalues whose cumulative share stays below the threshold, plus one.
    descending = eigval[::-1] / jnp.sum(eigval)
    keep_desc = jnp.cumsum(descending) - descending < eigen_threshold
    keep = keep_desc[::-1] & (eigval > 0)
    safe_eigval = jnp.where(keep, eigval, 1.0)
    root_mu = jnp.where(keep, jnp.sqrt(safe_eigval / n), 0.0)
    u = eigvec * math.sqrt(n)  # (n, r)
    # Nystrom gradient: grad u_i(theta_l) = sqrt(n)/lambda_i sum_j grad_1 k(theta_l, theta_j) E_ji,
    # grad_1 k(theta_l, theta_j) = 2 phi'_lj (theta_l - theta_j).
    fe = first @ eigvec  # (n, r)
    weighted = (eigvec[:, :, None] * x[:, None, :]).reshape(n, -1)  # E_ji x_j as (n, r d)
    grad_u = 2.0 * (x[:, None, :] * fe[:, :, None] - (first @ weighted).reshape(n, n, d))
    grad_u = grad_u * (math.sqrt(n) / safe_eigval)[None, :, None]
    inv_h = jax.vmap(jax.vmap(mirror.inverse_hessian_matvec, in_axes=(None, 0)), in_axes=(0, 0))
    amat = jnp.sum(inv_h(positions, grad_u), axis=0)  # (r, d)
    dual = jax.vmap(mirror.inverse_hessian_matvec)(positions, scores) + jax.vmap(mirror.inverse_hessian_divergence)(positions)
    half = (u * root_mu) @ u.T  # k^{1/2} at the particles
    w = half @ dual + (u * root_mu) @ amat
    hw = jax.vmap(mirror.hessian_matvec)(positions, w)
    return half @ hw / n**2


# --------------------------------------------------------------------------- shared plumbing


def _logdensity_and_grad(target: Target, positions: Array, axis: ParticleAxis = ALL_PARTICLES) -> tuple[Array, Array]:
    return map_particles(target.logdensity_and_grad, positions, axis=axis)


def _info(logdensity: Array, ok: Array, h: Array) -> SteinInfo:
    n = logdensity.shape[0]
    return SteinInfo(
        logdensity=logdensity,
        n_grad=jnp.ones((n,), jnp.int32),
        diverging=~ok,
        bandwidth=jnp.broadcast_to(h, (n,)),
    )


# --------------------------------------------------------------------------- SVGD


def svgd(
    step_size: Optional[float] = None,
    kernel: str = "rbf",
    bandwidth: Optional[float] = None,
    optimizer: Union[None, optax.GradientTransformation, Callable[[float], optax.GradientTransformation]] = None,
    *,
    block_size: Optional[int] = None,
) -> Sampler:
    """Stein variational gradient descent (Liu & Wang 2016); see the module docstring.

    Parameters
    ----------
    step_size
        Learning rate of the optimiser (default optimiser: :func:`adagrad_momentum`; the paper
        code's default rate is 1e-3).
    kernel
        ``"rbf"`` (default) or ``"imq"``.
    bandwidth
        ``None``: median heuristic recomputed at every step; a positive float fixes ``h``.
    optimizer
        ``None`` (AdaGrad with momentum, alpha 0.9, fudge 1e-6), an optax
        ``GradientTransformation`` (then ``step_size=None``: it carries its own rate), or a
        factory ``step_size -> GradientTransformation`` such as ``optax.adam``. It receives
        ``-phi`` as the gradient.
    block_size
        Particles per row block of the pairwise terms (default: a block matrix holds at most 2^22
        entries).
    """
    opt = _resolve_optimizer(step_size, optimizer, _svgd_default_optimizer)
    fixed_h = _check_kernel_choice(kernel, bandwidth)
    block_size = _check_block(block_size)

    def init(target: Target, positions: Array, key: Array) -> SteinState:
        del key
        positions = check_positions(target, positions)
        logdensity, grad = _logdensity_and_grad(target, positions)
        return SteinState(positions, logdensity, grad, opt.transform.init(positions))

    def step(target: Target, state: SteinState, key: Array,
             axis: ParticleAxis = ALL_PARTICLES) -> tuple[SteinState, SteinInfo]:
        del key  # SVGD is deterministic
        # Every particle (gathered from all devices in a sharded run); the direction of this
        # device's particles only.
        positions, scores = all_particles(state.position, axis), all_particles(state.logdensity_grad, axis)
        h = stein_bandwidth(kernel, positions, fixed_h)
        params = _kernel_params(h)
        phi = map_rows(lambda rows: svgd_direction(kernel, positions, scores, params, block_size, rows),
                       state.position, axis)
        updates, opt_state = _optimizer_step(opt, phi, state.opt_state, state.position, axis)
        proposal = optax.apply_updates(state.position, updates)
        logdensity, grad = _logdensity_and_grad(target, proposal, axis)
        ok = finite_rows(proposal, grad, logdensity)
        position, logdensity, grad = keep_rows(
            ok, (proposal, logdensity, grad), (state.position, state.logdensity, state.logdensity_grad)
        )
        new = SteinState(position=position, logdensity=logdensity, logdensity_grad=grad, opt_state=opt_state)
        return new, _info(new.logdensity, ok, h)

    params = {"kernel": kernel, "bandwidth": fixed_h, "block_size": block_size, **opt.recorded}
    # Shard-local only with a per-particle optimiser: a norm over the particle set (e.g.
    # optax.clip_by_global_norm) must see every particle, which XLA's partitioner keeps.
    return Sampler(init=init, step=step, name="svgd", params=params, shard_local=opt.per_particle)


# --------------------------------------------------------------------------- mirrored samplers


def _mirrored_sampler(
    name: str,
    direction: Callable[[Array, Array, Array, KernelParams, Any], Array],
    step_size: Optional[float],
    mirror: Any,
    kernel: str,
    bandwidth: Optional[float],
    optimizer: Any,
    extra: dict,
) -> Sampler:
    opt = _resolve_optimizer(step_size, optimizer, _rmsprop)
    fixed_h = _check_kernel_choice(kernel, bandwidth)
    if mirror is not None:
        check_mirror(mirror)

    def init(target: Target, positions: Array, key: Array) -> MirrorSteinState:
        del key
        positions = check_positions(target, positions)
        mirror_map = resolve_mirror(name, mirror, target)
        check_in_domain(name, mirror_map, positions)
        dual = jax.vmap(mirror_map.grad)(positions)
        logdensity, grad = _logdensity_and_grad(target, positions)
        return MirrorSteinState(positions, dual, logdensity, grad, opt.transform.init(dual))

    def step(target: Target, state: MirrorSteinState, key: Array,
             axis: ParticleAxis = ALL_PARTICLES) -> tuple[MirrorSteinState, SteinInfo]:
        del key  # deterministic
        # Not shard-local (the driver passes axis.name only to shard-local samplers): the
        # pairwise terms see every particle; axis.loop maps the target per particle.
        mirror_map = resolve_mirror(name, mirror, target)
        h = stein_bandwidth(kernel, state.position, fixed_h)
        g = direction(state.position, state.logdensity_grad, h, mirror_map)
        updates, opt_state = opt.transform.update(-g, state.opt_state, state.dual)
        dual = optax.apply_updates(state.dual, updates)
        proposal = jax.vmap(mirror_map.grad_conj)(dual)
        logdensity, grad = _logdensity_and_grad(target, proposal, axis)
        ok = finite_rows(dual, proposal, grad, logdensity)
        position, dual, logdensity, grad = keep_rows(
            ok, (proposal, dual, logdensity, grad),
            (state.position, state.dual, state.logdensity, state.logdensity_grad),
        )
        new = MirrorSteinState(
            position=position, dual=dual, logdensity=logdensity, logdensity_grad=grad, opt_state=opt_state
        )
        return new, _info(new.logdensity, ok, h)

    params = {"kernel": kernel, "bandwidth": fixed_h, "mirror": None if mirror is None else mirror.name, **extra,
              **opt.recorded}
    return Sampler(init=init, step=step, name=name, params=params,
                   requires=Requirements(smooth=True, mirror=mirror is None))


def msvgd(
    step_size: Optional[float] = None,
    mirror: Any = None,
    kernel: str = "imq",
    bandwidth: Optional[float] = None,
    optimizer: Any = None,
    *,
    block_size: Optional[int] = None,
) -> Sampler:
    """Mirrored SVGD (Shi, Liu & Mackey 2022); see the module docstring.

    Parameters
    ----------
    step_size
        Learning rate (default optimiser RMSProp; the paper uses 0.1 on the simplex).
    mirror
        A mirror map from ``sf.geometry``; ``None`` uses ``target.mirror``.
    kernel, bandwidth
        As :func:`svgd`, on the primal particles; default ``"imq"`` as in the paper.
    optimizer
        As :func:`svgd`; default RMSProp (decay 0.9, eps 1e-7), the paper code's optimiser.
    block_size
        Particles per row block of the pairwise terms.
    """
    block_size = _check_block(block_size)

    def direction(positions, scores, h, mirror_map):
        dual_scores = jax.vmap(mirror_map.inverse_hessian_matvec)(positions, scores) + jax.vmap(
            mirror_map.inverse_hessian_divergence
        )(positions)
        return mirrored_direction(kernel, positions, dual_scores, _kernel_params(h), mirror_map, block_size)

    return _mirrored_sampler("msvgd", direction, step_size, mirror, kernel, bandwidth, optimizer, {"block_size": block_size})


def svmd(
    step_size: Optional[float] = None,
    mirror: Any = None,
    kernel: str = "imq",
    bandwidth: Optional[float] = None,
    optimizer: Any = None,
    *,
    eigen_threshold: float = 0.98,
) -> Sampler:
    """Stein variational mirror descent (Shi, Liu & Mackey 2022); see the module docstring.

    Parameters are those of :func:`msvgd`, plus ``eigen_threshold`` in (0, 1]: the share of the
    Gram spectrum kept in :math:`k^{1/2}` (0.98 is the paper code's default; its Dirichlet
    experiment uses 0.998). Cost :math:`O(n^3 + n^2 d)` per step (not blocked).
    """
    threshold = check_positive("eigen_threshold", eigen_threshold)
    if threshold > 1.0:
        raise ValueError(f"eigen_threshold must lie in (0, 1], got {eigen_threshold!r}.")

    def direction(positions, scores, h, mirror_map):
        return svmd_direction(kernel, positions, scores, _kernel_params(h), mirror_map, threshold)

    return _mirrored_sampler("svmd", direction, step_size, mirror, kernel, bandwidth, optimizer, {"eigen_threshold": threshold})
