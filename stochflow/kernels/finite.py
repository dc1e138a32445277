"""Undo-and-flag: a step whose result holds a non-finite value is not taken.

A Langevin-type step that meets a NaN or an infinity (an overflow, a log of a
non-positive number, a point outside the support) cannot be trusted. The chain
keeps its previous state and the step is flagged ``diverging``, which the
driver counts and reports (cf. optax's ``apply_if_finite``, which skips an
update with a non-finite gradient the same way).
"""

from __future__ import annotations

from typing import Any, TypeVar

import jax
import jax.numpy as jnp

Array = jax.Array
State = TypeVar("State")

__all__ = ["all_finite", "finite_rows", "keep_if", "keep_rows", "undo_if_nonfinite"]


def all_finite(*arrays: Any) -> Array:
    """True when every entry of every array (or pytree of arrays) is finite."""
    leaves = jax.tree_util.tree_leaves(arrays)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def finite_rows(*arrays: Any) -> Array:
    """``(n,)``: whether row ``i`` (index ``i`` of the leading axis) of every array
    (or pytree of arrays) is finite; for a particle set stepped as a whole."""
    leaves = jax.tree_util.tree_leaves(arrays)
    rows = [jnp.all(jnp.isfinite(leaf.reshape(leaf.shape[0], -1)), axis=1) for leaf in leaves]
    return jnp.all(jnp.stack(rows), axis=0)


def keep_rows(ok: Array, new: State, old: State) -> State:
    """Row ``i`` of ``new`` where ``ok[i]``, else row ``i`` of ``old`` (leaf by leaf)."""
    return jax.tree_util.tree_map(
        lambda a, b: jnp.where(ok.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old
    )


def keep_if(condition: Array, new: State, old: State) -> State:
    """``new`` where ``condition`` holds, else ``old`` (leaf by leaf, same structure)."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(condition, a, b), new, old)


def undo_if_nonfinite(proposal: State, state: State, extra_ok: Any = True) -> tuple[State, Array]:
    """``(next state, diverging)``: ``proposal`` if all its leaves are finite and
    ``extra_ok`` holds, else ``state`` unchanged with ``diverging = True``."""
    ok = all_finite(proposal) & extra_ok
    return keep_if(ok, proposal, state), ~ok
