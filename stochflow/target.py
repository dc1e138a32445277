"""Target: what a sampler may ask of a density.

A :class:`Target` wraps an unnormalised log-density ``logdensity: (dim,) -> ()``
and, optionally, the extra structure some samplers need (a nonsmooth term with
a proximal operator, a mirror map for constrained domains) and the ground truth
benchmarks compare against (an exact sampler, the mean, the covariance).

The target is validated when it is built, before anything compiles: ``dim`` must
be a positive int and ``logdensity`` must map a ``(dim,)`` array to a scalar
(checked abstractly with :func:`jax.eval_shape`, so no FLOP is spent).

A ``Target`` is a pytree with no array leaves: it can be passed straight to a
jitted function (it is treated as static, compared by identity).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
LogDensityFn = Callable[[Array], Array]

__all__ = ["Target", "default_dtype"]


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
    "in_domain",
)


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


def _check_mirror(mirror: Any, dim: int) -> None:
    """A mirror map must have the functions of ``sf.geometry.MirrorMap`` and act on ``(dim,)``."""
    missing = [name for name in _MIRROR_FUNCTIONS if not callable(getattr(mirror, name, None))]
    if missing:
        raise TypeError(
            "mirror must be a mirror map such as sf.geometry.log_barrier(0.0, 1.0); "
            f"{type(mirror).__name__} lacks {', '.join(missing)}."
        )
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
    sample
        Optional exact sampler ``(key, n) -> (n, dim)`` (ground truth).
    mean, cov
        Optional exact mean ``(dim,)`` and covariance ``(dim, dim)``.
    name
        A short name, used in traces and reports.
    init
        Optional ``(key, n) -> (n, dim)`` default starts for ``sf.sample``
        (``sf.from_numpyro`` sets NumPyro's init strategy here).
    constrain
        Optional map from positions ``(..., dim)`` to a dict of named,
        constrained variables (``sf.from_numpyro`` sets it); traces of such a
        target export those variables to ArviZ.
    log_z
        Optional exact log normalising constant of ``exp(logdensity - g)``
        (benchmarks score methods that estimate it).
    modes
        Optional :class:`~stochflow.diagnostics.Modes` labelling which mode a
        point belongs to, with the exact mode weights (mode-weight metrics).
    components
        Optional ``(weights, means, covs)`` of a Gaussian mixture.
    """

    def __init__(
        self,
        logdensity: LogDensityFn,
        dim: int,
        *,
        nonsmooth: Any = None,
        mirror: Any = None,
        support: Optional[Callable[[Array], Array]] = None,
        sample: Optional[Callable[[Array, int], Array]] = None,
        mean: Any = None,
        cov: Any = None,
        name: Optional[str] = None,
        init: Optional[Callable[[Array, int], Array]] = None,
        constrain: Optional[Callable[[Array], dict]] = None,
        log_z: Optional[float] = None,
        modes: Any = None,
        components: Any = None,
    ) -> None:
        self.dim = _check_dim(dim)
        _check_logdensity(logdensity, self.dim)
        self.logdensity = logdensity
        if nonsmooth is not None:
            _check_nonsmooth(nonsmooth, self.dim)
        if mirror is not None:
            _check_mirror(mirror, self.dim)
        self.nonsmooth = nonsmooth
        self.mirror = mirror
        self.support = support
        self.sample = sample
        self.mean = None if mean is None else np.asarray(mean, dtype=float)
        self.cov = None if cov is None else np.asarray(cov, dtype=float)
        self.name = name or getattr(logdensity, "__name__", "target")
        self.init = init
        self.constrain = constrain
        self.log_z = log_z
        self.modes = modes
        self.components = components
        if self.mean is not None and self.mean.shape != (self.dim,):
            raise ValueError(f"mean must have shape ({self.dim},), got {self.mean.shape}.")
        if self.cov is not None and self.cov.shape != (self.dim, self.dim):
            raise ValueError(
                f"cov must have shape ({self.dim}, {self.dim}), got {self.cov.shape}."
            )

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
        extras = [k for k in ("nonsmooth", "mirror", "sample") if getattr(self, k) is not None]
        more = f", with {', '.join(extras)}" if extras else ""
        return f"Target(name={self.name!r}, dim={self.dim}{more})"


# A Target is static: no array leaves, compared and hashed by identity, so it can be
# an argument of jitted functions and of vmap (with in_axes None or 0 alike).
jax.tree_util.register_pytree_node(
    Target, lambda target: ((), target), lambda target, _: target
)
