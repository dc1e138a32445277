"""Target: what a sampler may ask of a density.

A :class:`Target` wraps an unnormalised log-density ``logdensity: (dim,) -> ()``
and, optionally, the extra structure some samplers need (a nonsmooth term with
a proximal operator, a mirror map for constrained domains). What benchmarks
compare against (an exact sampler, the mean, the covariance, ...) is not part of
the density: it is a separate :class:`GroundTruth`, read as ``target.truth``.

The target is validated when it is built, before anything compiles: ``dim`` must
be a positive int and ``logdensity`` must map a ``(dim,)`` array to a scalar
(checked abstractly with :func:`jax.eval_shape`, so no FLOP is spent).

A ``Target`` is a pytree with no array leaves: it can be passed straight to a
jitted function (it is treated as static, compared by identity). Its functions
should be pure: the data ``logdensity`` reads (closed-over arrays, globals) is
baked into the programs compiled for it, which ``sf.sample`` caches on the
``Target`` and a digest of what the log-density computes (so changed data gets
new programs).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
LogDensityFn = Callable[[Array], Array]

__all__ = ["GroundTruth", "Target", "default_dtype", "check_mirror"]


def default_dtype() -> jnp.dtype:
    """The floating dtype JAX uses by default (float64 when x64 is enabled)."""
    return jnp.zeros(()).dtype


def _check_dim(dim: Any) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(
            f"Target dim must be a positive int, got {dim!r} of type {type(dim).__name__}; "
            "pass the length of the position vector, e.g. Target(logdensity, dim=2)."
        )
    if dim <= 0:
        raise ValueError(f"Target dim must be a positive int, got {dim}.")
    return int(dim)


def _check_logdensity(logdensity: Any, dim: int) -> None:
    if not callable(logdensity):
        raise TypeError(
            f"logdensity must be a callable x -> log p(x), got {type(logdensity).__name__}."
        )
    probe = jax.ShapeDtypeStruct((dim,), default_dtype())
    try:
        out = jax.eval_shape(logdensity, probe)
    except Exception as err:  # surface the user's own error with context
        raise ValueError(
            f"logdensity failed on an input of shape ({dim},): {type(err).__name__}: {err}. "
            f"It must accept one position vector of shape (dim,) = ({dim},)."
        ) from err
    shape = getattr(out, "shape", None)
    if shape != ():
        raise ValueError(
            f"logdensity must return a scalar for an input of shape ({dim},), but it returned "
            f"shape {shape}. Sum the terms of a factorised density (e.g. jnp.sum(...)) and make "
            "sure the function takes a single position, not a batch."
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(
            f"logdensity must return a floating scalar, got dtype {out.dtype}; "
            "cast integer or boolean results to float."
        )


_MIRROR_FUNCTIONS = (
    "potential",
    "grad",
    "grad_conj",
    "hessian_matvec",
    "inverse_hessian_matvec",
    "hessian_sqrt_matvec",
    "inverse_hessian_divergence",
    "logdet_hessian",
    "in_domain",
)
# The capability fields the samplers read (sf.geometry.MirrorMap has them all).
_MIRROR_FIELDS = ("name", "params", "separable", "bounds", "inverse_hessian_factors")

def _check_nonsmooth(nonsmooth: Any, dim: int) -> None:
    """A nonsmooth term must have ``value(x) -> scalar`` and ``prox(x, lam) -> (dim,)``."""
    missing = [name for name in ("value", "prox") if not callable(getattr(nonsmooth, name, None))]
    if missing:
        raise TypeError(
            f"nonsmooth must be a term with value(x) and prox(x, lam) (e.g. sf.geometry.l1(1.0)); "
            f"{type(nonsmooth).__name__} has no callable {' or '.join(missing)}. A term without a "
            "proximal operator cannot be sampled by the proximal samplers: add it to logdensity "
            "if it is smooth."
        )
    probe = jax.ShapeDtypeStruct((dim,), default_dtype())
    try:
        value = jax.eval_shape(nonsmooth.value, probe)
        prox = jax.eval_shape(nonsmooth.prox, probe, 0.1)
    except Exception as err:
        raise ValueError(
            f"the nonsmooth term failed on an input of shape ({dim},): {type(err).__name__}: {err}."
        ) from err
    if getattr(value, "shape", None) != ():
        raise ValueError(f"nonsmooth.value must return a scalar, got shape {value.shape}.")
    if getattr(prox, "shape", None) != (dim,):
        raise ValueError(f"nonsmooth.prox must return shape ({dim},), got {prox.shape}.")


def check_mirror(mirror: Any, dim: Optional[int] = None) -> Any:
    """``mirror`` if it is a mirror map (the functions and fields of ``sf.geometry.MirrorMap``,
    hashable), acting on shape ``(dim,)`` when ``dim`` is given; else a TypeError/ValueError.

    The one check of a mirror map: for ``Target(..., mirror=)`` and every sampler's ``mirror=``.
    """
    missing = [name for name in _MIRROR_FUNCTIONS if not callable(getattr(mirror, name, None))]
    missing += [name for name in _MIRROR_FIELDS if not hasattr(mirror, name)]
    if missing:
        raise TypeError(
            "mirror must be a mirror map such as sf.geometry.log_barrier(0.0, 1.0); "
            f"{type(mirror).__name__} lacks {', '.join(missing)}."
        )
    try:
        hash(mirror)
    except TypeError:
        raise TypeError(
            f"a mirror map must be hashable (compared by value); {type(mirror).__name__} is not."
        ) from None
    if dim is None:
        return mirror
    probe = jax.ShapeDtypeStruct((dim,), default_dtype())
    try:
        out = jax.eval_shape(mirror.grad_conj, probe)
        inside = jax.eval_shape(mirror.in_domain, probe)
    except Exception as err:
        raise ValueError(
            f"the mirror map failed on an input of shape ({dim},): {type(err).__name__}: {err}. "
            "Check that its per-coordinate parameters (bounds, beta) have length dim."
        ) from err
    if out.shape != (dim,) or inside.shape != ():
        raise ValueError(
            f"the mirror map must map shape ({dim},) to ({dim},) and in_domain to a bool; got "
            f"{out.shape} and {inside.shape}. Check that its per-coordinate parameters have length dim."
        )
    return mirror


class GroundTruth(NamedTuple):
    """What is known exactly about a target, for benchmarks to score against.

    Every field is optional (``None``: not known).

    Attributes
    ----------
    sample
        Exact sampler ``(key, n) -> (n, dim)``.
    mean, cov
        Exact mean ``(dim,)`` and covariance ``(dim, dim)``.
    log_z
        Exact log normalising constant of the target's unnormalised density.
    modes
        A :class:`~stochflow.diagnostics.Modes` labelling which mode a point
        belongs to, with the exact mode weights.
    components
        ``(weights, means, covs)`` of a Gaussian mixture.
    """

    sample: Optional[Callable[[Array, int], Array]] = None
    mean: Optional[np.ndarray] = None
    cov: Optional[np.ndarray] = None
    log_z: Optional[float] = None
    modes: Any = None
    components: Any = None


def _check_truth(truth: Any, dim: int) -> GroundTruth:
    """``truth`` with ``mean``/``cov`` as float arrays of shapes ``(dim,)``/``(dim, dim)``."""
    if truth is None:
        return GroundTruth()
    if not isinstance(truth, GroundTruth):
        raise TypeError(f"truth must be an sf.GroundTruth, got {type(truth).__name__}.")
    mean = None if truth.mean is None else np.asarray(truth.mean, dtype=float)
    cov = None if truth.cov is None else np.asarray(truth.cov, dtype=float)
    if mean is not None and mean.shape != (dim,):
        raise ValueError(f"mean must have shape ({dim},), got {mean.shape}.")
    if cov is not None and cov.shape != (dim, dim):
        raise ValueError(f"cov must have shape ({dim}, {dim}), got {cov.shape}.")
    if truth.sample is not None and not callable(truth.sample):
        raise TypeError(f"sample must be a callable (key, n) -> (n, dim), got {type(truth.sample).__name__}.")
    if truth.components is not None:
        weights, means, covs = (np.asarray(c, dtype=float) for c in truth.components)
        k = weights.shape[0]
        if weights.shape != (k,) or means.shape != (k, dim) or covs.shape != (k, dim, dim):
            raise ValueError(
                f"components must be (weights (k,), means (k, {dim}), covs (k, {dim}, {dim})); got "
                f"shapes {weights.shape}, {means.shape}, {covs.shape}."
            )
    log_z = None if truth.log_z is None else float(truth.log_z)
    return truth._replace(mean=mean, cov=cov, log_z=log_z)


class Target:
    """An unnormalised density on R^dim (or on a mirror map's domain).

    Parameters
    ----------
    logdensity
        ``x -> log p(x)`` up to an additive constant, for one position ``x`` of
        shape ``(dim,)``; the smooth part of the density.
    dim
        Dimension of a position.
    nonsmooth
        Optional nonsmooth term ``g`` (``value``, ``prox``, ``bregman_prox``);
        the density is then ``exp(logdensity(x) - g(x))``.
    mirror
        Optional mirror map whose domain is the target's support.
    support
        Optional callable ``x -> bool``: whether ``x`` lies in the support.
    name
        A short name, used in traces and reports.
    init
        Optional ``(key, n) -> (n, dim)`` default starts for ``sf.sample``
        (``sf.from_numpyro`` sets NumPyro's init strategy here).
    constrain
        Optional map from positions ``(..., dim)`` to a dict of named,
        constrained variables (``sf.from_numpyro`` sets it); traces of such a
        target export those variables to ArviZ.
    truth
        Optional :class:`GroundTruth` (exact sampler, moments, ``log Z``,
        modes, mixture components), kept apart from the density and read as
        ``target.truth``; an empty ``GroundTruth()`` when not given.
    """

    def __init__(
        self,
        logdensity: LogDensityFn,
        dim: int,
        *,
        nonsmooth: Any = None,
        mirror: Any = None,
        support: Optional[Callable[[Array], Array]] = None,
        name: Optional[str] = None,
        init: Optional[Callable[[Array, int], Array]] = None,
        constrain: Optional[Callable[[Array], dict]] = None,
        truth: Optional[GroundTruth] = None,
    ) -> None:
        self.dim = _check_dim(dim)
        _check_logdensity(logdensity, self.dim)
        self.logdensity = logdensity
        if nonsmooth is not None:
            _check_nonsmooth(nonsmooth, self.dim)
        if mirror is not None:
            check_mirror(mirror, self.dim)
        self.nonsmooth = nonsmooth
        self.mirror = mirror
        self.support = support
        self.name = name or getattr(logdensity, "__name__", "target")
        self.init = init
        self.constrain = constrain
        self.truth = _check_truth(truth, self.dim)

    def logdensity_and_grad(self, position: Array) -> tuple[Array, Array]:
        """``(log p(x), grad log p(x))`` of the smooth part, in one pass.

        ``position`` goes through an optimisation barrier first, so the density is
        evaluated at the position as it was rounded and stored: otherwise XLA may fuse
        the step's position update into the density's first operations and compute it
        a second time there, with another set of multiply-adds contracted into FMA
        instructions. The two copies then differ in their last bits, the recorded
        log-density is not quite that of the recorded position, and (jax 0.12 on
        XLA:CPU) whether XLA duplicates depends on the enclosing program: it broke
        the bit-identity of ``reproducible=True`` runs across device counts (OBABO
        draws, UBU log-densities) until this barrier."""
        return jax.value_and_grad(self.logdensity)(jax.lax.optimization_barrier(position))

    def __repr__(self) -> str:
        extras = [k for k in ("nonsmooth", "mirror") if getattr(self, k) is not None]
        if self.truth.sample is not None:
            extras.append("an exact sampler")
        more = f", with {', '.join(extras)}" if extras else ""
        return f"Target(name={self.name!r}, dim={self.dim}{more})"


# A Target is static: no array leaves, compared and hashed by identity, so it can be
# an argument of jitted functions and of vmap (with in_axes None or 0 alike).
jax.tree_util.register_pytree_node(
    Target, lambda target: ((), target), lambda target, _: target
)
