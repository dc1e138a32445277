"""Argument checks shared by every factory and the driver, run before anything compiles.

Each returns the checked value in its canonical Python type or raises a
``TypeError`` (wrong kind of value) or ``ValueError`` (right kind, bad value)
that names the argument and says what would be accepted.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..target import Target

__all__ = ["check_positive", "check_int", "check_probability", "check_key", "check_bool", "check_positions",
           "check_in_domain", "check_diagonal_mass"]


def _is_real_dtype(dtype: Any) -> bool:
    """A floating or integer dtype (bfloat16 included), not bool or complex."""
    return bool(jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer))


def _real_number(name: str, value: Any, wanted: str) -> float:
    """``value`` as a float if it is a real number (a Python or NumPy number, or a 0-d real
    array); a bool, a string or anything else is refused, naming ``name``."""
    dtype = getattr(value, "dtype", None)
    is_real = (isinstance(value, (int, float, np.integer, np.floating)) if dtype is None
               else getattr(value, "shape", None) == () and _is_real_dtype(dtype))
    if isinstance(value, (bool, np.bool_)) or not is_real:
        raise TypeError(f"{name} must be {wanted} (an int or float), got {value!r} of type "
                        f"{type(value).__name__}.")
    return float(value)


def check_positive(name: str, value: Any) -> float:
    """A finite, strictly positive float."""
    number = _real_number(name, value, "a positive number")
    if not math.isfinite(number) or number <= 0.0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}.")
    return number


def check_int(name: str, value: Any, minimum: int) -> int:
    """An int (not a bool) at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def check_probability(name: str, value: Any) -> float:
    """A float strictly between 0 and 1 (a target acceptance rate)."""
    number = _real_number(name, value, "a number in (0, 1)")
    if not 0.0 < number < 1.0:
        raise ValueError(f"{name} must lie in (0, 1), got {value!r}.")
    return number


def check_diagonal_mass(name: str, value: Any) -> np.ndarray:
    """A diagonal mass (or inverse mass): ``None`` (1), a positive scalar or a vector of
    positive entries, as a float array of shape ``()`` or ``(dim,)``."""
    if value is None:
        return np.ones(())
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive scalar or a vector of positive entries, got {value!r}.") from None
    if array.ndim > 1 or not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"{name} must be a positive scalar or a vector of positive entries (a diagonal), "
                         f"got {value!r}.")
    return array


def check_bool(name: str, value: Any) -> bool:
    """``True`` or ``False`` exactly (not a truthy number or string)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def check_key(key: Any) -> jax.Array:
    """A single JAX PRNG key: a typed key of shape () or a raw uint32 key of shape (2,)."""
    try:
        is_typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    except AttributeError:
        is_typed = False
    raw = getattr(key, "shape", None) == (2,) and getattr(key, "dtype", None) == jnp.uint32
    if not (is_typed and key.shape == ()) and not raw:
        raise TypeError(
            f"key must be a single JAX PRNG key (jax.random.key(seed) or PRNGKey(seed)), got {key!r}."
        )
    return key


def check_positions(target: Target, positions: Any, name: str = "positions") -> jax.Array:
    """Positions as a real array of shape ``(n_particles, target.dim)``."""
    if not isinstance(target, Target):
        raise TypeError(
            f"expected a stochflow Target, got {type(target).__name__}; "
            "wrap your log-density with sf.Target(logdensity, dim)."
        )
    dtype = getattr(positions, "dtype", None)
    if dtype is not None and not _is_real_dtype(dtype):
        raise TypeError(
            f"{name} must be real numbers, got dtype {dtype}; a target's coordinates are real "
            "(write a complex parameter as its real and imaginary parts)."
        )
    shape = getattr(positions, "shape", None)
    if shape is None or len(shape) != 2 or shape[1] != target.dim or shape[0] < 1:
        raise ValueError(
            f"{name} must have shape (n_particles, dim) = (n, {target.dim}), got "
            f"{shape}. A single start x of shape ({target.dim},) is passed as x[None, :]."
        )
    return jnp.asarray(positions)


def check_in_domain(name: str, mirror: Any, positions: jax.Array) -> None:
    """Refuse starts outside ``mirror``'s domain, naming them.

    Skipped when ``positions`` are traced (inside a jitted ``init``), where their
    values are unknown; the driver checks concrete starts before it compiles.
    """
    if isinstance(positions, jax.core.Tracer):
        return
    outside = np.flatnonzero(~np.asarray(jax.vmap(mirror.in_domain)(positions)))
    if outside.size:
        raise ValueError(
            f"{name}: {outside.size} starting position(s) lie outside the domain of the "
            f"{mirror.name!r} mirror map (particles {outside[:10].tolist()}); start strictly inside "
            "it, e.g. with sf.default_init (which maps dual draws through grad_conj)."
        )
