r"""Mirror maps: Legendre potentials whose gradient maps a domain onto a dual space.

A mirror map is a strictly convex, smooth potential :math:`\phi` on the interior
of a domain :math:`C` whose gradient :math:`\nabla\phi: \operatorname{int} C \to
\mathbb{R}^d` is a bijection, with inverse :math:`\nabla\phi^*` (the gradient of
the convex conjugate). Mirror-Langevin methods take their steps in the dual
space :math:`y = \nabla\phi(x)` and map back with :math:`\nabla\phi^*`, so the
iterates never leave the domain (Zhang et al. 2020; Ahn & Chewi 2021;
Lau & Liu, ICML 2022).

Every function of a :class:`MirrorMap` acts on ONE point ``x`` of shape
``(d,)`` (vmap it over particles). The Hessian is never formed as a dense
``d x d`` matrix: each map supplies matrix-vector products with
:math:`\nabla^2\phi(x)`, its inverse and a square root :math:`S(x)` with
:math:`S S^\top = \nabla^2\phi(x)` (the mirror-Langevin noise is
:math:`\sqrt{2h}\,S(x)\xi`), the row-wise divergence of the inverse Hessian
(for mirrored Stein methods) and :math:`\log\det\nabla^2\phi(x)` (for the change
of variables to the dual space).

Maps
----
* :func:`euclidean` -- :math:`\phi = \tfrac12\|x\|^2` on :math:`\mathbb{R}^d`.
* :func:`entropic_simplex` -- negative entropy on the open simplex, in reduced
  coordinates: a point of the D-simplex is :math:`x\in\mathbb{R}^{D-1}`,
  :math:`x > 0`, :math:`\sum_i x_i < 1`, with last weight
  :math:`x_D = 1 - \sum_i x_i`; :math:`\phi = \sum_{i=1}^{D} x_i\log x_i`.
* :func:`log_barrier` -- boxes, orthants and half-lines per coordinate.
* :func:`hyperbolic_entropy` -- :math:`\phi = \sum_i x_i\operatorname{arcsinh}(x_i/\beta_i)
  - \sqrt{x_i^2+\beta_i^2}` on :math:`\mathbb{R}^d` (Lau, Liu & Pock 2023).

Capabilities are fields, never looked up by name: ``separable`` (the potential
is a sum of one-coordinate potentials, so the Hessian is diagonal),
``bounds`` (per-coordinate bounds of the domain), ``inverse_hessian_factors``
(the inverse Hessian as a diagonal minus a rank one term). Two maps are equal
when their ``name`` (the family), parameters and these fields are equal, so
``log_barrier(0, 1) == log_barrier(0, 1) != log_barrier(0, 2)``, and a map is
hashable (it can key a cache of compiled kernels). A user-defined map with the
right fields gets the same fast paths and Bregman proxes as a built-in one.

``grad_conj`` never returns a point outside the domain: where floating-point
rounding would put the image on the boundary (a dual point of magnitude
~ -log(machine epsilon) or more), it is clamped to the nearest representable
interior point.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = [
    "MirrorMap",
    "euclidean",
    "entropic_simplex",
    "log_barrier",
    "hyperbolic_entropy",
    "resolve_mirror",
]


class MirrorMap(NamedTuple):
    """A mirror map; every function acts on one point ``x`` of shape ``(d,)``.

    Attributes
    ----------
    name
        The family: ``"euclidean"``, ``"entropic_simplex"``, ``"log_barrier"``,
        ``"hyperbolic_entropy"``, or a user's own; nonsmooth terms key their
        Bregman proxes by it.
    potential
        ``x -> phi(x)`` (scalar).
    grad
        ``x -> grad phi(x)``: domain to the dual space R^d.
    grad_conj
        ``y -> grad phi*(y)``: R^d to the interior of the domain (inverse of ``grad``).
    hessian_matvec
        ``(x, v) -> hess phi(x) v``.
    inverse_hessian_matvec
        ``(x, v) -> hess phi(x)^{-1} v``.
    hessian_sqrt_matvec
        ``(x, v) -> S(x) v`` with ``S S^T = hess phi(x)``.
    inverse_hessian_divergence
        ``x -> d_i = sum_j d/dx_j [hess phi(x)^{-1}]_{ij}``, shape ``(d,)``.
    logdet_hessian
        ``x -> log det hess phi(x)``.
    in_domain
        ``x -> bool``: ``x`` lies strictly inside the domain.
    params
        The parameters the map was built with (read-only arrays and numbers);
        with ``name`` they determine the map.
    separable
        ``phi(x) = sum_i phi_i(x_i)``: ``grad`` and ``grad_conj`` act coordinate by
        coordinate and the Hessian is diagonal.
    bounds
        ``(lower, upper)``, broadcastable to ``x``: per-coordinate bounds of the
        domain (its exact box for a separable map), ``-inf``/``inf`` where none.
    inverse_hessian_factors
        ``x -> (a, b)`` with ``hess phi(x)^{-1} v = a v - b (b . v)``, or ``None``
        (then the inverse Hessian is only available as ``inverse_hessian_matvec``).
    """

    name: str
    potential: Callable[[Array], Array]
    grad: Callable[[Array], Array]
    grad_conj: Callable[[Array], Array]
    hessian_matvec: Callable[[Array, Array], Array]
    inverse_hessian_matvec: Callable[[Array, Array], Array]
    hessian_sqrt_matvec: Callable[[Array, Array], Array]
    inverse_hessian_divergence: Callable[[Array], Array]
    logdet_hessian: Callable[[Array], Array]
    in_domain: Callable[[Array], Array]
    params: dict
    separable: bool = False
    bounds: tuple = (np.asarray(-np.inf), np.asarray(np.inf))
    inverse_hessian_factors: Optional[Callable[[Array], tuple[Array, Array]]] = None

    def _value(self) -> tuple:
        """What the map is: its family, parameters and capability fields (arrays by value)."""
        params = tuple(sorted((key, _frozen(value)) for key, value in self.params.items()))
        return (self.name, params, self.separable, _frozen(self.bounds), self.inverse_hessian_factors is None)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MirrorMap) and self._value() == other._value()

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self._value())

    def __repr__(self) -> str:
        shown = ", ".join(f"{key}={_shown(value)}" for key, value in self.params.items())
        return f"{self.name}({shown})"


def _frozen(value: Any) -> Any:
    """A hashable stand-in for a parameter, equal exactly when the values are (shape included)."""
    if isinstance(value, (tuple, list)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, (np.ndarray, np.generic, float, int)):
        array = np.asarray(value, dtype=float) + 0.0  # -0.0 and 0.0 are the same bound
        return (array.shape, array.tobytes())
    return value


def _shown(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return str(value.tolist())
    return repr(value)


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.array(array, dtype=float)
    array.setflags(write=False)
    return array


def _float(x: Array) -> Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.zeros(()).dtype)


def _diagonal_map(
    name: str,
    potential: Callable[[Array], Array],
    grad: Callable[[Array], Array],
    grad_conj: Callable[[Array], Array],
    hessian_diag: Callable[[Array], Array],
    hessian_diag_derivative: Callable[[Array], Array],
    in_domain: Callable[[Array], Array],
    params: dict,
    bounds: tuple = (np.asarray(-np.inf), np.asarray(np.inf)),
) -> MirrorMap:
    """A separable map from its diagonal Hessian ``h(x)`` and ``h'(x)`` (elementwise)."""

    def inverse_hessian_divergence(x: Array) -> Array:
        # d/dx_i (1 / h_i(x_i)) = -h_i'(x_i) / h_i(x_i)^2
        h = hessian_diag(x)
        return -hessian_diag_derivative(x) / h**2

    return MirrorMap(
        name=name,
        potential=potential,
        grad=grad,
        grad_conj=grad_conj,
        hessian_matvec=lambda x, v: hessian_diag(x) * v,
        inverse_hessian_matvec=lambda x, v: v / hessian_diag(x),
        hessian_sqrt_matvec=lambda x, v: jnp.sqrt(hessian_diag(x)) * v,
        inverse_hessian_divergence=inverse_hessian_divergence,
        logdet_hessian=lambda x: jnp.sum(jnp.log(hessian_diag(x))),
        in_domain=in_domain,
        params=params,
        separable=True,
        bounds=bounds,
        inverse_hessian_factors=lambda x: (jnp.ones_like(x) / hessian_diag(x), jnp.zeros_like(x)),
    )


def euclidean() -> MirrorMap:
    r"""The Euclidean map :math:`\phi(x) = \tfrac12\|x\|^2` on :math:`\mathbb{R}^d`.

    Mirror-Langevin with this map is plain Langevin; Bregman proximal
    operators reduce to the usual ones.
    """
    return _diagonal_map(
        "euclidean",
        potential=lambda x: 0.5 * jnp.sum(_float(x) ** 2),
        grad=lambda x: _float(x),
        grad_conj=lambda y: _float(y),
        hessian_diag=lambda x: jnp.ones_like(_float(x)),
        hessian_diag_derivative=lambda x: jnp.zeros_like(_float(x)),
        in_domain=lambda x: jnp.all(jnp.isfinite(x)),
        params={},
    )


def entropic_simplex() -> MirrorMap:
    r"""Negative entropy on the open probability simplex, in reduced coordinates.

    A point of the D-simplex is :math:`x\in\mathbb{R}^{d}`, :math:`d = D-1`,
    with :math:`x_i > 0` and :math:`x_D := 1 - \sum_{i\le d} x_i > 0`.

    .. math::

        \phi(x) = \sum_{i=1}^{D} x_i\log x_i,\qquad
        \nabla\phi(x)_i = \log x_i - \log x_D,\qquad
        \nabla\phi^*(y) = \operatorname{softmax}(y, 0)_{1..d},

        \nabla^2\phi(x) = \operatorname{diag}(1/x) + \mathbf 1\mathbf 1^\top/x_D,\qquad
        \nabla^2\phi(x)^{-1} = \operatorname{diag}(x) - x x^\top.

    Square root (symmetric in the scaled frame, no eigendecomposition):
    with :math:`v = \sqrt{x}` (so :math:`\|v\|^2 = 1 - x_D`),
    :math:`I + vv^\top/x_D = (I + a\,vv^\top)^2` for
    :math:`a = 1/(\sqrt{x_D}(1+\sqrt{x_D}))`, hence
    :math:`S = \operatorname{diag}(x)^{-1/2}(I + a\,vv^\top)` and
    :math:`Sv_{\rm in} = v_{\rm in}/\sqrt{x} + a\,(\sqrt{x}\cdot v_{\rm in})\mathbf 1`.
    Divergence of the inverse Hessian: :math:`1 - D x_i`.
    :math:`\log\det\nabla^2\phi(x) = -\sum_{i=1}^{D}\log x_i`.
    """

    def last_weight(x: Array) -> Array:
        return 1.0 - jnp.sum(x)

    def potential(x: Array) -> Array:
        x = _float(x)
        x_last = last_weight(x)
        return jnp.sum(x * jnp.log(x)) + x_last * jnp.log(x_last)

    def grad(x: Array) -> Array:
        x = _float(x)
        return jnp.log(x) - jnp.log(last_weight(x))

    def grad_conj(y: Array) -> Array:
        y = _float(y)
        d = y.shape[-1]
        logits = jnp.concatenate([y, jnp.zeros((1,), y.dtype)])
        log_weights = jax.nn.log_softmax(logits)
        # Keep every weight (the last included) at least a few ulps of 1 away from
        # 0, so that x > 0 and 1 - sum(x) > 0 hold in floating point.
        floor = jnp.log(4.0 * (d + 1) * jnp.finfo(y.dtype).eps)
        weights = jnp.exp(jnp.maximum(log_weights, floor))
        return weights[:d] / jnp.sum(weights)

    def hessian_matvec(x: Array, v: Array) -> Array:
        return v / x + jnp.sum(v) / last_weight(x)

    def inverse_hessian_matvec(x: Array, v: Array) -> Array:
        return x * v - x * jnp.dot(x, v)

    def hessian_sqrt_matvec(x: Array, v: Array) -> Array:
        root_last = jnp.sqrt(last_weight(x))
        a = 1.0 / (root_last * (1.0 + root_last))
        root_x = jnp.sqrt(x)
        return v / root_x + a * jnp.dot(root_x, v)

    def inverse_hessian_divergence(x: Array) -> Array:
        return 1.0 - (x.shape[-1] + 1) * x

    def logdet_hessian(x: Array) -> Array:
        return -jnp.sum(jnp.log(x)) - jnp.log(last_weight(x))

    def in_domain(x: Array) -> Array:
        return jnp.all(x > 0) & (last_weight(x) > 0)

    return MirrorMap(
        name="entropic_simplex",
        potential=potential,
        grad=grad,
        grad_conj=grad_conj,
        hessian_matvec=hessian_matvec,
        inverse_hessian_matvec=inverse_hessian_matvec,
        hessian_sqrt_matvec=hessian_sqrt_matvec,
        inverse_hessian_divergence=inverse_hessian_divergence,
        logdet_hessian=logdet_hessian,
        in_domain=in_domain,
        params={},
        bounds=(np.asarray(0.0), np.asarray(1.0)),
        inverse_hessian_factors=lambda x: (x, x),  # diag(x) - x x^T
    )


def _check_bounds(lower: Any, upper: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        low = np.asarray(lower, dtype=float)
        high = np.asarray(upper, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(
            f"log_barrier bounds must be numbers or arrays of numbers, got {lower!r} and {upper!r}."
        ) from None
    if low.ndim > 1 or high.ndim > 1:
        raise ValueError("log_barrier bounds must be scalars or 1-D arrays (one bound per coordinate).")
    try:
        low, high = np.broadcast_arrays(low, high)
    except ValueError:
        raise ValueError(
            f"log_barrier lower and upper have incompatible shapes {low.shape} and {high.shape}."
        ) from None
    if np.any(np.isnan(low)) or np.any(np.isnan(high)):
        raise ValueError("log_barrier bounds must not be NaN; use -inf / inf for a missing bound.")
    if np.any(low == np.inf) or np.any(high == -np.inf):
        raise ValueError("log_barrier: a lower bound of +inf or an upper bound of -inf leaves no domain.")
    if np.any(low >= high):
        raise ValueError(f"log_barrier needs lower < upper in every coordinate, got {lower!r} and {upper!r}.")
    if np.all(~np.isfinite(low) & ~np.isfinite(high)):
        raise ValueError(
            "log_barrier with every bound infinite is the whole space; use sf.geometry.euclidean()."
        )
    return low.copy(), high.copy()


def log_barrier(lower: Any = 0.0, upper: Any = np.inf) -> MirrorMap:
    r"""Log-barrier map of the box :math:`\{x: \ell < x < u\}`, per coordinate.

    ``lower``/``upper`` are scalars or 1-D arrays (broadcast against each other
    and against ``x``); ``-inf``/``inf`` mark a missing bound, so
    ``log_barrier(0.0, inf)`` is the positive orthant. With
    :math:`s = x - \ell` and :math:`t = u - x`, coordinate by coordinate:

    * both bounds finite: :math:`\phi = -\log s - \log t`,
      :math:`\nabla\phi = 1/t - 1/s`, :math:`\nabla^2\phi = 1/s^2 + 1/t^2`;
    * lower bound only: :math:`\phi = \tfrac12 s^2 - \log s`,
      :math:`\nabla\phi = s - 1/s`, :math:`\nabla^2\phi = 1 + 1/s^2`;
    * upper bound only: :math:`\phi = \tfrac12 t^2 - \log t`,
      :math:`\nabla\phi = 1/t - t`, :math:`\nabla^2\phi = 1 + 1/t^2`;
    * no bound: :math:`\phi = \tfrac12 x^2`.

    A one-sided barrier carries the quadratic term so that :math:`\nabla\phi`
    maps the half-line onto all of :math:`\mathbb{R}` (the pure Burg entropy
    :math:`-\log s` only reaches :math:`(-\infty, 0)`), hence ``grad_conj`` is
    defined on the whole dual space. Inverses in closed form (the roots of a
    quadratic, written without cancellation):
    box: :math:`x = \ell + 2L/(2 + r)` or :math:`x = u - rL/(2 + r)`,
    :math:`L = u - \ell`, :math:`r = \sqrt{(yL)^2+4} - yL`;
    lower only: :math:`s = 2/(\sqrt{y^2+4} - y)`; upper only: :math:`t = 2/(\sqrt{y^2+4} + y)`.
    The Hessian is diagonal.
    """
    low, high = _check_bounds(lower, upper)
    has_low, has_high = np.isfinite(low), np.isfinite(high)
    # Finite stand-ins where a bound is missing (those coordinates use another branch).
    low_safe = np.where(has_low, low, 0.0)
    high_safe = np.where(has_high, high, 0.0)
    width = np.where(has_low & has_high, high_safe - low_safe, 1.0)
    kinds = {
        "box": has_low & has_high,
        "lower": has_low & ~has_high,
        "upper": ~has_low & has_high,
        "free": ~has_low & ~has_high,
    }
    # Only the kinds present are traced (a pure box map compiles one branch).
    present = [kind for kind, mask in kinds.items() if np.any(mask)]

    def combine(branches: dict[str, Callable[[], Array]]) -> Array:
        """Per coordinate, the branch of its kind (a nested where over the kinds present)."""
        out = branches[present[-1]]()
        for kind in present[-2::-1]:
            out = jnp.where(kinds[kind], branches[kind](), out)
        return out

    def gaps(x: Array) -> tuple[Array, Array]:
        # 1 where a bound is missing, so the unused branches stay finite (and so do their gradients).
        x = _float(x)
        return jnp.where(has_low, x - low_safe, 1.0), jnp.where(has_high, high_safe - x, 1.0)

    def potential(x: Array) -> Array:
        x = _float(x)
        s, t = gaps(x)
        return jnp.sum(combine({
            "box": lambda: -jnp.log(s) - jnp.log(t),
            "lower": lambda: 0.5 * s**2 - jnp.log(s),
            "upper": lambda: 0.5 * t**2 - jnp.log(t),
            "free": lambda: 0.5 * x**2,
        }))

    def grad(x: Array) -> Array:
        x = _float(x)
        s, t = gaps(x)
        return combine({
            "box": lambda: 1.0 / t - 1.0 / s,
            "lower": lambda: s - 1.0 / s,
            "upper": lambda: 1.0 / t - t,
            "free": lambda: x,
        })

    def box_inverse(y: Array) -> Array:
        yl = y * width
        # r = sqrt((yL)^2 + 4) - yL, computed without cancellation for either sign.
        root = jnp.hypot(yl, 2.0)
        r = jnp.where(yl >= 0, 4.0 / (root + yl), root - yl)
        return jnp.where(yl < 0, low_safe + width * 2.0 / (2.0 + r), high_safe - width * r / (2.0 + r))

    def lower_inverse(y: Array) -> Array:
        root = jnp.hypot(y, 2.0)
        return low_safe + jnp.where(y >= 0, 0.5 * (root + y), 2.0 / (root - y))

    def upper_inverse(y: Array) -> Array:
        root = jnp.hypot(y, 2.0)
        return high_safe - jnp.where(y <= 0, 0.5 * (root - y), 2.0 / (root + y))

    def grad_conj(y: Array) -> Array:
        y = _float(y)
        x = combine({
            "box": lambda: box_inverse(y),
            "lower": lambda: lower_inverse(y),
            "upper": lambda: upper_inverse(y),
            "free": lambda: y,
        })
        # Rounding (e.g. low + tiny gap == low) must not land on the boundary.
        inside_low = np.where(has_low, np.nextafter(low_safe.astype(x.dtype), np.inf), -np.inf)
        inside_high = np.where(has_high, np.nextafter(high_safe.astype(x.dtype), -np.inf), np.inf)
        return jnp.clip(x, inside_low.astype(x.dtype), inside_high.astype(x.dtype))

    def hessian_diag(x: Array) -> Array:
        s, t = gaps(x)
        return combine({
            "box": lambda: 1.0 / s**2 + 1.0 / t**2,
            "lower": lambda: 1.0 + 1.0 / s**2,
            "upper": lambda: 1.0 + 1.0 / t**2,
            "free": lambda: jnp.ones_like(s),
        })

    def hessian_diag_derivative(x: Array) -> Array:
        s, t = gaps(x)
        return combine({
            "box": lambda: -2.0 / s**3 + 2.0 / t**3,
            "lower": lambda: -2.0 / s**3,
            "upper": lambda: 2.0 / t**3,
            "free": lambda: jnp.zeros_like(s),
        })

    def in_domain(x: Array) -> Array:
        x = _float(x)
        s, t = gaps(x)
        return jnp.all(jnp.isfinite(x) & (s > 0) & (t > 0))

    return _diagonal_map(
        "log_barrier",
        potential,
        grad,
        grad_conj,
        hessian_diag,
        hessian_diag_derivative,
        in_domain,
        params={"lower": _read_only(low), "upper": _read_only(high)},
        bounds=(_read_only(low), _read_only(high)),
    )


def hyperbolic_entropy(beta: Any = 1.0) -> MirrorMap:
    r"""Hyperbolic entropy on :math:`\mathbb{R}^d` (Lau, Liu & Pock 2023).

    .. math::

        \phi(x) = \sum_i x_i\operatorname{arcsinh}(x_i/\beta_i) - \sqrt{x_i^2+\beta_i^2},\qquad
        \nabla\phi(x) = \operatorname{arcsinh}(x/\beta),\qquad
        \nabla\phi^*(y) = \beta\sinh(y),\qquad
        \nabla^2\phi(x) = \operatorname{diag}\big((x^2+\beta^2)^{-1/2}\big).

    ``beta`` is a positive scalar or one value per coordinate. It interpolates
    between an entropy-like geometry (small :math:`|x|/\beta` is Euclidean up to
    scale, large :math:`|x|` is logarithmic). ``grad_conj`` is clipped to the
    largest finite float so that a huge dual point maps to a finite position.
    """
    try:
        beta_arr = np.asarray(beta, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"hyperbolic_entropy beta must be positive numbers, got {beta!r}.") from None
    if beta_arr.ndim > 1 or not np.all(np.isfinite(beta_arr)) or np.any(beta_arr <= 0):
        raise ValueError(
            f"hyperbolic_entropy beta must be a positive finite scalar or 1-D array, got {beta!r}."
        )

    def radius(x: Array) -> Array:
        return jnp.sqrt(_float(x) ** 2 + beta_arr**2)

    def grad_conj(y: Array) -> Array:
        y = _float(y)
        big = jnp.finfo(y.dtype).max
        return jnp.clip(beta_arr * jnp.sinh(y), -big, big)

    return _diagonal_map(
        "hyperbolic_entropy",
        potential=lambda x: jnp.sum(_float(x) * jnp.arcsinh(_float(x) / beta_arr) - radius(x)),
        grad=lambda x: jnp.arcsinh(_float(x) / beta_arr),
        grad_conj=grad_conj,
        hessian_diag=lambda x: 1.0 / radius(x),
        hessian_diag_derivative=lambda x: -_float(x) / radius(x) ** 3,
        in_domain=lambda x: jnp.all(jnp.isfinite(x)),
        params={"beta": _read_only(beta_arr)},
    )


def resolve_mirror(method: str, mirror: Optional[MirrorMap], target: Any) -> MirrorMap:
    """The mirror map ``method`` runs with: its own ``mirror`` or else the target's.

    Both given: they must be equal by value (same family and parameters), else a
    ValueError naming both; neither: a ValueError saying where to pass one.
    """
    chosen = mirror if mirror is not None else target.mirror
    if chosen is None:
        raise ValueError(
            f"{method} needs a mirror map: pass sf.{method}(..., mirror=sf.geometry.log_barrier(...)) "
            "or build the target with sf.Target(..., mirror=...)."
        )
    if mirror is not None and target.mirror is not None and mirror != target.mirror:
        raise ValueError(
            f"{method} was given the {mirror!r} mirror map but the target lives on the domain of "
            f"{target.mirror!r}; use the target's map (leave mirror=None)."
        )
    return chosen
