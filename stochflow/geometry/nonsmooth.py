r"""Nonsmooth terms with proximal and Bregman-proximal operators.

A nonsmooth term :math:`g` enters a target as ``sf.Target(logdensity, dim,
nonsmooth=g)``: the density is :math:`\exp(\text{logdensity}(x) - g(x))`.
Each term is a :class:`NonsmoothTerm` of pure functions acting on ONE point
``x`` of shape ``(d,)``:

* ``value(x)`` -- :math:`g(x)` (``+inf`` outside the set for an indicator);
* ``prox(x, lam)`` -- :math:`\operatorname{prox}_{\lambda g}(x) =
  \arg\min_y\, g(y) + \|y - x\|^2 / (2\lambda)`;
* ``bregman_prox_for(mirror)`` -- ``(x, lam) ->`` the LEFT Bregman proximity
  operator :math:`\arg\min_y\, g(y) + D_\phi(y, x)/\lambda`, with
  :math:`D_\phi(y, x) = \phi(y) - \phi(x) - \langle\nabla\phi(x), y - x\rangle`
  (Bauschke, Dao & Lindstrom 2018; Lau & Liu 2022), or ``None`` when the term
  has none for that map. The term's ``bregman_proxes`` table is keyed by the
  mirror map's family (its ``name``), and by ``"separable"`` for a prox that
  works for any separable map (read from the map's ``separable`` and
  ``bounds`` fields).

The Moreau envelope :math:`g^\lambda(x) = \min_y g(y) + \|y-x\|^2/(2\lambda)`
has gradient :math:`(x - \operatorname{prox}_{\lambda g}(x))/\lambda`; the left
Bregman-Moreau envelope has gradient
:math:`\nabla^2\phi(x)\,(x - \operatorname{prox}^\phi_{\lambda g}(x))/\lambda`.
The samplers in :mod:`stochflow.samplers.proximal` use these.

Terms: :func:`l1` (weighted), :func:`box_indicator`, :func:`simplex_indicator`
(reduced coordinates, as the entropic mirror map), :func:`ball_indicator`,
:func:`tv1d` (exact prox by Condat's direct algorithm, jittable) and
:func:`separable_sum` (blocks of coordinates).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .mirrors import MirrorMap

Array = jax.Array

__all__ = [
    "NonsmoothTerm",
    "l1",
    "box_indicator",
    "simplex_indicator",
    "ball_indicator",
    "tv1d",
    "separable_sum",
    "SEPARABLE",
]

# The table key of a Bregman prox valid for every separable mirror map.
SEPARABLE = "separable"
BregmanProx = Callable[[Array, Any, MirrorMap], Array]


class NonsmoothTerm(NamedTuple):
    """A nonsmooth term ``g``; all functions act on one point ``x`` of shape ``(d,)``.

    Attributes
    ----------
    name
        A short name (``"l1"``, ``"box_indicator"``, ...).
    value
        ``x -> g(x)``; ``+inf`` outside the set for an indicator.
    prox
        ``(x, lam) -> argmin_y g(y) + ||y - x||^2 / (2 lam)``.
    bregman_proxes
        ``{family: (x, lam, mirror) -> argmin_y g(y) + D_phi(y, x) / lam}``: the
        left Bregman proxes, keyed by a mirror map's ``name`` or by
        :data:`SEPARABLE` (any map with ``separable=True``).
    params
        The parameters the term was built with.
    """

    name: str
    value: Callable[[Array], Array]
    prox: Callable[[Array, Any], Array]
    bregman_proxes: dict
    params: dict

    def bregman_prox_for(self, mirror: MirrorMap) -> Optional[Callable[[Array, Any], Array]]:
        """``(x, lam) ->`` the left Bregman prox for ``mirror``, or ``None`` when the term has none:
        the entry of the map's family, else (for a separable map) the separable one."""
        prox = self.bregman_proxes.get(mirror.name)
        if prox is None and mirror.separable:
            prox = self.bregman_proxes.get(SEPARABLE)
        return None if prox is None else (lambda x, lam: prox(x, lam, mirror))

    def bregman_prox(self, x: Array, lam: Any, mirror: MirrorMap) -> Array:
        """The left Bregman prox for ``mirror`` at ``x``; a ValueError if the term has none."""
        prox = self.bregman_prox_for(mirror)
        if prox is None:
            raise ValueError(
                f"{self.name} has no Bregman proximal operator for the {mirror!r} mirror map "
                f"(it has one for: {', '.join(self.bregman_mirrors) or 'none'})."
            )
        return prox(x, lam)

    @property
    def bregman_mirrors(self) -> tuple:
        """The mirror families (and :data:`SEPARABLE`) the term has a Bregman prox for."""
        return tuple(self.bregman_proxes)

    def supports(self, mirror: MirrorMap) -> bool:
        """Whether the term has a Bregman prox for ``mirror``."""
        return self.bregman_prox_for(mirror) is not None


def _as_vector_or_scalar(name: str, value: Any, positive: bool = False, nonnegative: bool = False) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or a 1-D array of numbers, got {value!r}.") from None
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar or a 1-D array, got shape {arr.shape}.")
    if np.any(np.isnan(arr)):
        raise ValueError(f"{name} must not contain NaN.")
    if positive and (np.any(arr <= 0) or not np.all(np.isfinite(arr))):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}.")
    if nonnegative and (np.any(arr < 0) or not np.all(np.isfinite(arr))):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}.")
    return arr


# ---------------------------------------------------------------------------- L1


def l1(weight: Any = 1.0) -> NonsmoothTerm:
    r"""Weighted L1 norm :math:`g(x) = \sum_i w_i |x_i|`, :math:`w_i \ge 0`.

    Prox: soft thresholding :math:`\operatorname{sign}(x)\max(|x| - \lambda w, 0)`.

    Left Bregman prox (coordinatewise for a separable mirror map; optimality
    :math:`\nabla\phi(y) \in \nabla\phi(x) - \lambda w\,\partial|y|`): with
    :math:`z = \nabla\phi(x)` and :math:`z_0 = \nabla\phi(0)`,
    :math:`y = \nabla\phi^*(z - \lambda w)` if :math:`z - \lambda w > z_0`,
    :math:`y = \nabla\phi^*(z + \lambda w)` if :math:`z + \lambda w < z_0`, else
    :math:`0`; where the domain lies in :math:`y > 0` (:math:`y < 0`) only the
    first (second) branch exists. On the simplex (reduced coordinates,
    :math:`x > 0`) the term is linear, :math:`\sum_i w_i x_i`, and the prox is
    :math:`\nabla\phi^*(\nabla\phi(x) - \lambda w)` exactly.
    """
    w = _as_vector_or_scalar("l1 weight", weight, nonnegative=True)

    def value(x: Array) -> Array:
        return jnp.sum(w * jnp.abs(x))

    def prox(x: Array, lam: Any) -> Array:
        return jnp.sign(x) * jnp.maximum(jnp.abs(x) - lam * w, 0.0)

    def simplex_prox(x: Array, lam: Any, mirror: MirrorMap) -> Array:
        return mirror.grad_conj(mirror.grad(x) - lam * w)

    def separable_prox(x: Array, lam: Any, mirror: MirrorMap) -> Array:
        lower, upper = mirror.bounds
        positive_domain = jnp.broadcast_to(lower >= 0, x.shape)
        negative_domain = jnp.broadcast_to(upper <= 0, x.shape)
        zero_inside = ~positive_domain & ~negative_domain
        z = mirror.grad(x)
        # grad phi(0) where 0 is interior; elsewhere any interior point (masked out).
        z0 = mirror.grad(jnp.where(zero_inside, 0.0, x))
        shifted_down = z - lam * w
        shifted_up = z + lam * w
        y_plus = mirror.grad_conj(shifted_down)
        y_minus = mirror.grad_conj(shifted_up)
        thresholded = jnp.where(shifted_down > z0, y_plus, jnp.where(shifted_up < z0, y_minus, 0.0))
        return jnp.where(positive_domain, y_plus, jnp.where(negative_domain, y_minus, thresholded))

    return NonsmoothTerm(
        name="l1",
        value=value,
        prox=prox,
        bregman_proxes={SEPARABLE: separable_prox, "entropic_simplex": simplex_prox},
        params={"weight": w},
    )


# ------------------------------------------------------------------- indicators


def _indicator_value(inside: Callable[[Array], Array]) -> Callable[[Array], Array]:
    def value(x: Array) -> Array:
        return jnp.where(inside(x), 0.0, jnp.inf).astype(jnp.result_type(x, jnp.float32))

    return value


def box_indicator(lower: Any, upper: Any) -> NonsmoothTerm:
    r"""Indicator of the closed box :math:`\{x: \ell \le x \le u\}` (0 inside, ``+inf`` outside).

    Prox: projection, :math:`\operatorname{clip}(x, \ell, u)`. Left Bregman
    prox for a separable mirror map: the same clip (each coordinate's
    :math:`D_\phi(\cdot, x_i)` is convex with its minimum at :math:`x_i`).
    """
    low = _as_vector_or_scalar("box lower", lower)
    high = _as_vector_or_scalar("box upper", upper)
    if np.any(np.broadcast_arrays(low, high)[0] > np.broadcast_arrays(low, high)[1]):
        raise ValueError(f"box_indicator needs lower <= upper, got {lower!r} and {upper!r}.")

    def inside(x: Array) -> Array:
        return jnp.all((x >= low) & (x <= high))

    def prox(x: Array, lam: Any) -> Array:
        return jnp.clip(x, low, high)

    return NonsmoothTerm(
        name="box_indicator",
        value=_indicator_value(inside),
        prox=prox,
        bregman_proxes={SEPARABLE: lambda x, lam, mirror: prox(x, lam)},
        params={"lower": low, "upper": high},
    )


def _project_sum_to_one(v: Array) -> Array:
    """Euclidean projection onto {y >= 0, sum y = 1} (sort-based, Held et al. 1974)."""
    d = v.shape[-1]
    u = jnp.sort(v)[::-1]
    cumulative = jnp.cumsum(u) - 1.0
    ranks = jnp.arange(1, d + 1, dtype=v.dtype)
    active = u - cumulative / ranks > 0
    rho = jnp.max(jnp.where(active, jnp.arange(d), 0))
    theta = cumulative[rho] / (rho + 1.0)
    return jnp.maximum(v - theta, 0.0)


def simplex_indicator() -> NonsmoothTerm:
    r"""Indicator of the simplex in reduced coordinates: :math:`\{x \ge 0,\ \sum_i x_i \le 1\}`.

    This is the closure of :func:`~stochflow.geometry.entropic_simplex`'s
    domain (a point of the D-simplex is its first ``D - 1`` weights). Prox:
    the Euclidean projection -- :math:`\max(x, 0)` if that sums to at most 1,
    else the projection onto :math:`\{y \ge 0, \sum y = 1\}` (sort-based).
    Left Bregman prox under the entropic map: the identity (the map's
    domain already lies in the set).
    """

    def inside(x: Array) -> Array:
        return jnp.all(x >= 0) & (jnp.sum(x) <= 1.0)

    def prox(x: Array, lam: Any) -> Array:
        clipped = jnp.maximum(x, 0.0)
        return jnp.where(jnp.sum(clipped) <= 1.0, clipped, _project_sum_to_one(x))

    return NonsmoothTerm(
        name="simplex_indicator",
        value=_indicator_value(inside),
        prox=prox,
        bregman_proxes={"entropic_simplex": lambda x, lam, mirror: x},
        params={},
    )


def ball_indicator(center: Any = 0.0, radius: Any = 1.0) -> NonsmoothTerm:
    r"""Indicator of the closed Euclidean ball :math:`\{x: \|x - c\| \le r\}`.

    Prox: radial projection :math:`c + (x - c)\min(1, r/\|x - c\|)`. No Bregman
    prox is provided (``bregman_prox`` is ``None``).
    """
    c = _as_vector_or_scalar("ball center", center)
    r = float(_as_vector_or_scalar("ball radius", radius, positive=True))

    def inside(x: Array) -> Array:
        return jnp.sum((x - c) ** 2) <= r**2

    def prox(x: Array, lam: Any) -> Array:
        offset = x - c
        norm = jnp.sqrt(jnp.sum(offset**2))
        scale = jnp.where(norm > r, r / jnp.where(norm > 0, norm, 1.0), 1.0)
        return c + offset * scale

    return NonsmoothTerm(
        name="ball_indicator",
        value=_indicator_value(inside),
        prox=prox,
        bregman_proxes={},
        params={"center": c, "radius": r},
    )


# ------------------------------------------------------------------------ TV-1D


class _CondatState(NamedTuple):
    k: Array
    k0: Array
    kminus: Array
    kplus: Array
    umin: Array
    umax: Array
    vmin: Array
    vmax: Array
    output: Array
    done: Array


def _tv1d_denoise(y: Array, lam: Array) -> Array:
    r"""Exact :math:`\arg\min_x \tfrac12\|x - y\|^2 + \lambda\sum_i |x_{i+1} - x_i|`.

    Condat's direct algorithm (L. Condat, "A direct algorithm for 1D total
    variation denoising", IEEE SPL 2013) as a ``lax.while_loop`` state machine:
    it runs along the signal keeping the range [vmin, vmax] of feasible values
    of the current segment and the dual variable bounds [umin, umax]; when the
    range becomes empty a segment is written out (a jump down at ``kminus`` or
    up at ``kplus``) and the scan restarts after it. Each loop iteration is one
    event (advance one sample, or close one segment), at most ~2n of them;
    writing a segment is a masked update, so the whole is O(n^2) in the worst
    case and O(n) memory. Jittable and vmappable.
    """
    n = y.shape[0]
    index = jnp.arange(n)
    lam = jnp.asarray(lam, y.dtype)

    def fill(output: Array, start: Array, stop: Array, value: Array) -> Array:
        return jnp.where((index >= start) & (index <= stop), value, output)

    def at(i: Array) -> Array:
        return y[jnp.clip(i, 0, n - 1)]

    def restart(state: _CondatState, output: Array, k0: Array, down: bool) -> _CondatState:
        # A segment was closed by a jump; the next one starts at k0. The dual
        # variable before k0 sits at +lam after a jump down (values in
        # [y, y + 2 lam]) and at -lam after a jump up (values in [y - 2 lam, y]).
        v = at(k0)
        return state._replace(
            k=k0, k0=k0, kminus=k0, kplus=k0, umin=lam, umax=-lam,
            vmin=v if down else v - 2.0 * lam, vmax=v + 2.0 * lam if down else v, output=output,
        )

    def at_end(s: _CondatState) -> _CondatState:
        def jump_down(s):
            output = fill(s.output, s.k0, s.kminus, s.vmin)
            k0 = s.kminus + 1
            vmin = at(k0)
            return s._replace(
                k=k0, k0=k0, kminus=k0, vmin=vmin, umin=lam, umax=vmin + lam - s.vmax, output=output
            )

        def jump_up(s):
            output = fill(s.output, s.k0, s.kplus, s.vmax)
            k0 = s.kplus + 1
            vmax = at(k0)
            return s._replace(
                k=k0, k0=k0, kplus=k0, vmax=vmax, umax=-lam, umin=vmax - lam - s.vmin, output=output
            )

        def finish(s):
            vmin = s.vmin + s.umin / (s.k - s.k0 + 1)
            return s._replace(output=fill(s.output, s.k0, s.k, vmin), done=jnp.array(True))

        branch = jnp.where(s.umin < 0, 0, jnp.where(s.umax > 0, 1, 2))
        return jax.lax.switch(branch, [jump_down, jump_up, finish], s)

    def inside(s: _CondatState) -> _CondatState:
        umin = s.umin + at(s.k + 1) - s.vmin
        umax = s.umax + at(s.k + 1) - s.vmax

        def jump_down(s):
            return restart(s, fill(s.output, s.k0, s.kminus, s.vmin), s.kminus + 1, down=True)

        def jump_up(s):
            return restart(s, fill(s.output, s.k0, s.kplus, s.vmax), s.kplus + 1, down=False)

        def advance(s):
            k = s.k + 1
            length = (k - s.k0 + 1).astype(y.dtype)
            raise_min = umin >= lam
            lower_max = umax <= -lam
            return s._replace(
                k=k,
                kminus=jnp.where(raise_min, k, s.kminus),
                vmin=jnp.where(raise_min, s.vmin + (umin - lam) / length, s.vmin),
                umin=jnp.where(raise_min, lam, umin),
                kplus=jnp.where(lower_max, k, s.kplus),
                vmax=jnp.where(lower_max, s.vmax + (umax + lam) / length, s.vmax),
                umax=jnp.where(lower_max, -lam, umax),
            )

        branch = jnp.where(umin < -lam, 0, jnp.where(umax > lam, 1, 2))
        return jax.lax.switch(branch, [jump_down, jump_up, advance], s)

    def body(s: _CondatState) -> _CondatState:
        return jax.lax.cond(s.k == n - 1, at_end, inside, s)

    zero = jnp.array(0, jnp.int32)
    init = _CondatState(
        k=zero, k0=zero, kminus=zero, kplus=zero, umin=lam, umax=-lam,
        vmin=y[0] - lam, vmax=y[0] + lam, output=jnp.zeros_like(y), done=jnp.array(False),
    )
    return jax.lax.while_loop(lambda s: ~s.done, body, init).output


def tv1d(weight: Any = 1.0) -> NonsmoothTerm:
    r"""1-D total variation :math:`g(x) = w\sum_{i=1}^{d-1} |x_{i+1} - x_i|`, :math:`w > 0`.

    Prox: exact, by Condat's direct algorithm (jittable ``while_loop``; see
    :func:`_tv1d_denoise`). No Bregman prox is provided.
    """
    w = float(_as_vector_or_scalar("tv1d weight", weight, positive=True))

    def value(x: Array) -> Array:
        return w * jnp.sum(jnp.abs(jnp.diff(x)))

    def prox(x: Array, lam: Any) -> Array:
        if x.shape[0] == 1:
            return x
        return _tv1d_denoise(x, lam * w)

    return NonsmoothTerm(
        name="tv1d", value=value, prox=prox, bregman_proxes={}, params={"weight": w}
    )


# ---------------------------------------------------------------- separable sum


def separable_sum(blocks: Sequence[tuple[NonsmoothTerm, int]]) -> NonsmoothTerm:
    r"""A sum of terms on consecutive blocks of coordinates, :math:`g(x) = \sum_b g_b(x_b)`.

    ``blocks`` is a sequence of ``(term, size)``: the first term acts on the
    first ``size`` coordinates, and so on; the sizes must add up to the
    target's dimension. The prox (and, under the Euclidean map, the Bregman
    prox) acts block by block.
    """
    blocks = list(blocks)
    if not blocks:
        raise ValueError("separable_sum needs at least one (term, size) block.")
    for term, size in blocks:
        if not isinstance(term, NonsmoothTerm):
            raise TypeError(f"separable_sum blocks must be (NonsmoothTerm, size) pairs, got {term!r}.")
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"separable_sum block sizes must be positive ints, got {size!r}.")
    edges = np.cumsum([0] + [int(size) for _, size in blocks])

    def split(x: Array) -> list[Array]:
        if x.shape[0] != edges[-1]:
            raise ValueError(
                f"separable_sum blocks cover {edges[-1]} coordinates but x has {x.shape[0]}."
            )
        return [x[start:stop] for start, stop in zip(edges[:-1], edges[1:])]

    def value(x: Array) -> Array:
        return sum(term.value(part) for (term, _), part in zip(blocks, split(x)))

    def prox(x: Array, lam: Any) -> Array:
        return jnp.concatenate([term.prox(part, lam) for (term, _), part in zip(blocks, split(x))])

    return NonsmoothTerm(
        name="separable_sum",
        value=value,
        prox=prox,
        bregman_proxes={"euclidean": lambda x, lam, mirror: prox(x, lam)},  # D_phi = |y - x|^2 / 2
        params={"blocks": [(term.name, size) for term, size in blocks]},
    )
