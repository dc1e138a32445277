"""The particle axis, passed explicitly: one key per particle, per-particle maps, gathers.

A sampler works on the whole particle set; the driver tells it how the set is
laid out with a :class:`ParticleAxis`:

* ``name``: ``None`` when every particle is in this program (one device, or
  XLA-partitioned), or the mesh axis name when the program runs under
  :func:`jax.shard_map` on one device's share of the particles;
* ``loop``: whether per-particle work is a loop whose body is compiled for one
  particle (``sample(..., reproducible=True)``) rather than one vectorised
  program.

Nothing here reads global state: a sampler nested in another (rdMC's inner
chains) is called with the default ``ParticleAxis()`` and behaves the same
wherever its parent runs.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax

Array = jax.Array

__all__ = ["ParticleAxis", "ALL_PARTICLES", "particle_keys", "all_particles", "map_particles", "map_rows",
           "batch_kernel", "num_particles_of"]


class ParticleAxis(NamedTuple):
    """How the particle set is laid out in the program being traced."""

    name: Optional[str] = None
    loop: bool = False


ALL_PARTICLES = ParticleAxis()


def num_particles_of(state: Any) -> int:
    """The number of particles in ``state`` (axis 0 of its leaves)."""
    return jax.tree_util.tree_leaves(state)[0].shape[0]


def particle_keys(key: Array, num_local: int, axis: ParticleAxis = ALL_PARTICLES) -> Array:
    """One key per particle: ``jax.random.split(key, n)`` over all ``n`` particles.

    Under ``shard_map`` (``axis.name`` set) with ``num_local`` particles on this
    device, the rows of that split belonging to this shard, so each particle
    gets the key it gets on one device."""
    if axis.name is None:
        return jax.random.split(key, num_local)
    keys = jax.random.split(key, num_local * jax.lax.axis_size(axis.name))
    return jax.lax.dynamic_slice_in_dim(keys, jax.lax.axis_index(axis.name) * num_local, num_local)


def all_particles(values: Array, axis: ParticleAxis = ALL_PARTICLES) -> Array:
    """``values`` (particle axis first) for every particle: all-gathered over the
    shards under ``shard_map``, ``values`` itself otherwise."""
    return values if axis.name is None else jax.lax.all_gather(values, axis.name, tiled=True)


def map_particles(fn: Callable, *per_particle: Any, axis: ParticleAxis = ALL_PARTICLES) -> Any:
    """``fn`` applied to each particle's slice of ``per_particle`` (axis 0 of every leaf).

    ``jax.vmap`` normally; with ``axis.loop`` a ``lax.map`` whose body is compiled
    for one particle, so each particle's arithmetic is the same compiled code
    whatever the number of particles on the device (XLA may fuse a vectorised
    program differently at another batch size, e.g. contract other
    multiply-adds into FMA instructions, and round differently)."""
    if axis.loop:
        return jax.lax.map(lambda args: fn(*args), per_particle)
    return jax.vmap(fn)(*per_particle)


def map_rows(fn: Callable, rows: Array, axis: ParticleAxis = ALL_PARTICLES) -> Any:
    """``fn(rows)`` for a function of a batch of rows (e.g. SVGD's kernel sums of some
    particles against all): one call normally, one call per row with ``axis.loop``."""
    if axis.loop:
        return jax.lax.map(lambda row: jax.tree_util.tree_map(lambda leaf: leaf[0], fn(row[None])), rows)
    return fn(rows)


@functools.lru_cache(maxsize=None)
def batch_kernel(kernel: Callable[[Array, Any, Any], tuple[Any, Any]]) -> Callable:
    """The particle-batch step of a one-chain ``kernel(key, state, target)``.

    Each particle gets its own key (:func:`particle_keys`) and the kernel is
    mapped over the particle axis. Cached on the kernel, so one kernel gives one
    step function and the driver's compiled programs are reused across samplers
    that differ only in traced tunables."""

    def step(target: Any, state: Any, key: Array, axis: ParticleAxis = ALL_PARTICLES) -> tuple[Any, Any]:
        keys = particle_keys(key, num_particles_of(state), axis)
        return map_particles(lambda one_state, one_key: kernel(one_key, one_state, target), state, keys, axis=axis)

    return step
