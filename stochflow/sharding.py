"""Particles sharded across devices and hosts: the layout ``sample(..., devices=...)`` uses.

The particle axis (axis 0 of every per-particle leaf of a sampler state, axis
1 of the recorded draws ``(chunk, particles, ...)``) is split over one axis of
a :class:`jax.sharding.Mesh` with a :class:`~jax.sharding.NamedSharding`;
every other leaf (a step counter, an optimiser's scalar) is replicated. The
driver's chunk programs are ordinary ``jax.jit`` programs, so XLA's SPMD
partitioner (GSPMD) splits the vmapped per-chain work into local pieces and
inserts the collectives an interacting method needs (SVGD's pairwise sums,
its median heuristic): the program means the same whatever the layout.

Samplers that declare ``Sampler.shard_local`` (every independent-chain
sampler, and SVGD) run each chunk under :func:`jax.shard_map` instead
(:func:`shard_local`): each device runs the one-device program on its own
particles, and the only communication is what the method asks for
(:func:`all_particles`, an all-gather). Per-particle keys are this shard's
slice of ``jax.random.split(key, n)`` (:func:`particle_keys`), so each device
computes what one device computes for its particles, up to how XLA compiles a
vectorised program at another batch size: the chain methods' draws are the
one-device draws bit for bit in most of what the tests measure, within float32
rounding in the rest, and which is which depends on the jax version (the table in
README "Scale out", tests/test_sharding.py). SVGD computes its own particles' rows of the pairwise sums against the
gathered set, the same sums in the same order, but XLA:CPU's matrix kernels
do not promise the same rounding in two programs: its draws agree to float32
rounding. Samplers without the flag are partitioned by XLA (GSPMD), which is
correct but may round differently.

``sample(..., reproducible=True)`` traces the chunk programs under
:func:`one_particle_at_a_time`: per-particle work (:func:`map_particles`,
:func:`map_rows`) becomes a loop whose body is compiled for one particle, the
same code whatever the number of particles on a device, and the draws of the
chain methods and SVGD are then the one-device draws bit for bit (tested under
jax 0.10 and 0.12; on 0.12 it needs ``Target.logdensity_and_grad``'s optimisation
barrier, without which XLA recompiled the position update inside the density
differently in different programs).

Several processes (``jax.distributed.initialize``): ``devices="all"`` means
``jax.devices()``, every device of every process. Each process builds the
same starting state (it is a function of the key), keeps the shards of its
own devices (:func:`shard_tree`), and :func:`to_host` gathers a sharded
array onto every process (``multihost_utils.process_allgather``).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["PARTICLE_AXIS", "Devices", "resolve_mesh", "particle_axis", "num_shards", "check_divisible",
           "shard_tree", "constrain_tree", "is_multiprocess", "to_host", "tree_to_host", "shard_local",
           "particle_keys", "all_particles", "map_particles", "map_rows", "one_particle_at_a_time",
           "looping_over_particles"]

PARTICLE_AXIS = "particles"

# The mesh axis the particles are split over while a shard-local program is traced
# (set by :func:`shard_local`); ``None`` in an ordinary program holding every particle.
_LOCAL_AXIS: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("stochflow_particle_axis",
                                                                            default=None)
# Whether per-particle work is traced as a loop over particles (see :func:`map_particles`).
_ONE_AT_A_TIME: contextvars.ContextVar[bool] = contextvars.ContextVar("stochflow_one_at_a_time",
                                                                     default=False)

Devices = Union[None, str, Sequence[Any], Mesh]


def resolve_mesh(devices: Devices) -> Optional[Mesh]:
    """The 1-D particle mesh ``devices`` asks for, or ``None`` (one device, today's behaviour).

    ``"all"``: every device of every process (``jax.devices()``); a list or
    tuple of ``jax.Device``: those, in that order; a ``Mesh``: a 1-D mesh (any
    axis name), or a mesh with an axis named ``"particles"`` (particles are
    split over that axis and replicated over the others)."""
    if devices is None:
        return None
    if isinstance(devices, Mesh):
        if len(devices.axis_names) != 1 and PARTICLE_AXIS not in devices.axis_names:
            raise ValueError(
                f"devices=Mesh with axes {devices.axis_names}: give a 1-D mesh, or name the axis to "
                f"split particles over {PARTICLE_AXIS!r}."
            )
        return devices
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(f"devices={devices!r} is not understood; use None, 'all', a list of jax devices "
                             "or a jax.sharding.Mesh.")
        return Mesh(np.asarray(jax.devices()), (PARTICLE_AXIS,))
    if isinstance(devices, (list, tuple)):
        if not devices:
            raise ValueError("devices=[] lists no device; use None for one device or 'all'.")
        bad = [d for d in devices if not isinstance(d, jax.Device)]
        if bad:
            raise TypeError(f"devices must hold jax.Device objects (from jax.devices()), got {bad[0]!r}.")
        if len(set(devices)) != len(devices):
            raise ValueError("devices lists a device twice; each device may hold one shard.")
        return Mesh(np.asarray(devices), (PARTICLE_AXIS,))
    raise TypeError(f"devices must be None, 'all', a list of jax devices or a jax.sharding.Mesh, "
                    f"got {type(devices).__name__}.")


def particle_axis(mesh: Mesh) -> str:
    """The mesh axis particles are split over."""
    return PARTICLE_AXIS if PARTICLE_AXIS in mesh.axis_names else mesh.axis_names[0]


def num_shards(mesh: Mesh) -> int:
    return int(mesh.shape[particle_axis(mesh)])


def check_divisible(num_particles: int, mesh: Mesh) -> None:
    """A ValueError unless the particles split evenly over the mesh (there is no padding)."""
    shards = num_shards(mesh)
    if num_particles % shards:
        lower = num_particles - num_particles % shards
        options = ", ".join(str(n) for n in (lower, lower + shards) if n > 0)
        raise ValueError(
            f"num_particles={num_particles} does not split evenly over {shards} devices; use a multiple "
            f"of {shards} (e.g. {options}), or fewer devices (a divisor of {num_particles})."
        )


def _partition_spec(leaf: Any, mesh: Mesh, num_particles: int, axis: int) -> PartitionSpec:
    """Split ``axis`` if the leaf has ``num_particles`` entries there, else replicate."""
    if np.ndim(leaf) > axis and np.shape(leaf)[axis] == num_particles:
        parts = [None] * np.ndim(leaf)
        parts[axis] = particle_axis(mesh)
        return PartitionSpec(*parts)
    return PartitionSpec()


def _sharding_of(leaf: Any, mesh: Mesh, num_particles: int, axis: int) -> NamedSharding:
    return NamedSharding(mesh, _partition_spec(leaf, mesh, num_particles, axis))


def _is_key(leaf: Any) -> bool:
    return jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _global_array(values: np.ndarray, sharding: NamedSharding) -> jax.Array:
    return jax.make_array_from_callback(values.shape, sharding, lambda index: values[index])


def shard_tree(tree: Any, mesh: Mesh, num_particles: int) -> Any:
    """``tree`` (the same on every process) as global arrays laid out on ``mesh``.

    A leaf whose axis 0 has ``num_particles`` entries is split along it; the
    others are replicated. Each process only places its own shards. The
    values are copied exactly (PRNG keys through their raw key data)."""

    def place(leaf: Any) -> Any:
        sharding = _sharding_of(leaf, mesh, num_particles, 0)
        if _is_key(leaf):
            impl = jax.random.key_impl(leaf)
            data = _global_array(np.asarray(jax.random.key_data(leaf)), sharding)
            return jax.random.wrap_key_data(data, impl=impl)
        return _global_array(np.asarray(leaf), sharding)

    return jax.tree_util.tree_map(place, tree)


def constrain_tree(tree: Any, mesh: Mesh, num_particles: int, axis: int = 0) -> Any:
    """Inside a jitted program: pin the particle layout of ``tree`` (split ``axis``
    where it has ``num_particles`` entries, replicate the rest), so the state
    leaves every chunk as it came in and the next chunk reuses the program."""

    def pin(leaf: Any) -> Any:
        return jax.lax.with_sharding_constraint(leaf, _sharding_of(leaf, mesh, num_particles, axis))

    return jax.tree_util.tree_map(pin, tree)


def is_multiprocess(mesh: Optional[Mesh]) -> bool:
    """Whether ``mesh`` holds devices of other processes (arrays on it are not all addressable here)."""
    return mesh is not None and any(d.process_index != jax.process_index() for d in mesh.devices.flat)


def to_host(array: Any) -> np.ndarray:
    """A (possibly sharded) array as one NumPy array, on every process.

    With devices of other processes in the array this is a collective: every
    process must call it, in the same order."""
    if getattr(array, "is_fully_addressable", True):
        return np.asarray(array)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def tree_to_host(tree: Any) -> Any:
    """Every leaf of ``tree`` on the host; PRNG keys stay keys (rebuilt from their gathered data)."""

    def gather(leaf: Any) -> Any:
        if _is_key(leaf):
            impl = jax.random.key_impl(leaf)
            return jax.random.wrap_key_data(to_host(jax.random.key_data(leaf)), impl=impl)
        return to_host(leaf)

    return jax.tree_util.tree_map(gather, tree)


def particle_keys(key: Any, num_local: int) -> jax.Array:
    """One key per particle: ``jax.random.split(key, n)`` over all ``n`` particles.

    In a shard-local program (:func:`shard_local`) with ``num_local`` particles
    on this device, the rows of that split belonging to this shard, so every
    particle gets the key it gets on one device."""
    axis = _LOCAL_AXIS.get()
    if axis is None:
        return jax.random.split(key, num_local)
    keys = jax.random.split(key, num_local * jax.lax.axis_size(axis))
    return jax.lax.dynamic_slice_in_dim(keys, jax.lax.axis_index(axis) * num_local, num_local)


def all_particles(values: jax.Array) -> jax.Array:
    """``values`` (particle axis first) for every particle: gathered from all
    shards (an all-gather) in a shard-local program, ``values`` itself otherwise."""
    axis = _LOCAL_AXIS.get()
    return values if axis is None else jax.lax.all_gather(values, axis, tiled=True)


@contextlib.contextmanager
def _bound(variable: contextvars.ContextVar, value: Any) -> Iterator[None]:
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)


def one_particle_at_a_time(enabled: bool = True) -> contextlib.AbstractContextManager:
    """While a program is traced in this context, :func:`map_particles` loops over
    the particles instead of vectorising over them (``sample(..., reproducible=True)``)."""
    return _bound(_ONE_AT_A_TIME, enabled)


def looping_over_particles() -> bool:
    """Whether the program being traced runs per-particle work one particle at a time."""
    return _ONE_AT_A_TIME.get()


def map_rows(fn: Callable, rows: jax.Array) -> Any:
    """``fn(rows)`` for a function computing per-row results of a batch of rows (e.g. SVGD's
    kernel sums of some particles against all): one call normally, one call per row
    under :func:`one_particle_at_a_time` (each row by the same compiled code)."""
    if _ONE_AT_A_TIME.get():
        return jax.lax.map(lambda row: jax.tree_util.tree_map(lambda leaf: leaf[0], fn(row[None])), rows)
    return fn(rows)


def map_particles(fn: Callable, *per_particle: Any) -> Any:
    """``fn`` applied to each particle's slice of ``per_particle`` (axis 0 of every leaf).

    Normally ``jax.vmap``: one vectorised program over the particles. Under
    :func:`one_particle_at_a_time`, a ``lax.map`` whose body is compiled for one
    particle: then each particle's arithmetic is the same compiled code whatever
    the number of particles on the device, and rounds the same way on 1 or 8
    devices (XLA may compile the vectorised program differently at another batch
    size, e.g. contract other multiply-adds into FMA instructions). Slower: no
    vectorisation across particles."""
    if _ONE_AT_A_TIME.get():
        return jax.lax.map(lambda args: fn(*args), per_particle)
    return jax.vmap(fn)(*per_particle)


def shard_local(run: Callable, mesh: Mesh, num_particles: int, num_outputs: int) -> Callable:
    """``run(state, *replicated) -> (state, *per_particle)`` as a :func:`jax.shard_map`
    program: each device runs ``run`` on its own ``num_particles / shards``
    particles (axis 0 of ``state``, axis 1 of every leaf of each of the
    ``num_outputs`` per-particle outputs, e.g. recorded draws ``(chunk, particles, ...)``).

    While ``run`` is traced, :func:`particle_keys` and :func:`all_particles`
    know the particle axis, so a sampler written with them needs no other
    change. Leaves of ``state`` without a particle axis (a step counter) are
    replicated: ``run`` must compute the same value for them on every device."""
    axis = particle_axis(mesh)

    def local(state: Any, *replicated: Any) -> Any:
        with _bound(_LOCAL_AXIS, axis):
            return run(state, *replicated)

    def call(state: Any, *replicated: Any) -> Any:
        state_specs = jax.tree_util.tree_map(lambda leaf: _partition_spec(leaf, mesh, num_particles, 0), state)
        in_specs = (state_specs,) + (PartitionSpec(),) * len(replicated)
        out_specs = (state_specs,) + (PartitionSpec(None, axis),) * num_outputs
        # check_vma=False: the driver's scans start their per-particle counters from zeros
        # that are the same on every device; JAX's varying-axis typing would need each cast.
        mapped = jax.shard_map(local, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
        return mapped(state, *replicated)

    return call

